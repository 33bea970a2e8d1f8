"""The hostile-input campaign (issue 29): generated inputs through the data readers, ``mbk validate`` and
every command's options. The invariant: each case ends in success or in one clean error (an ``MbkError``
inside, one ``Error:`` line at the CLI edge): no traceback, no "internal error", no user file changed.

Used by tests/edge/test_hostile_campaign.py (a seeded slice in the default suite, the long campaign under
``slow``) and benchmarks/hostile_campaign.py (which records the counts in benchmarks/results/).
Findings are collected, not raised, so one run reports every kind of failure it met.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# --------------------------------------------------------------------------- strategies

CHARS = list("abc xyz,;\"'\t\n\r\\{}[]:#&*!|>-+.0123456789") + [
    "\x00",
    "\ufeff",
    "é",
    "e\u0301",
    "，",
    "\u2028",
    "😀",
    "Ｐ",
    "ß",
]
cell = st.lists(st.sampled_from(CHARS), max_size=14).map("".join)  # "e\u0301" is two code points
label = st.sampled_from(["pos", "neg", "Pos", " pos", "1", "01", "1.0", "0", "", "é", "e\u0301", "true", "null"]) | cell
HEADERS = ["text,label", "text\tlabel", "label,text", "review,stars", "text,label,extra", "", "text", "text,text"]
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]
SUFFIXES = [".csv", ".tsv", ".jsonl", ".json", ".csv.gz", ".txt", ".CSV"]
json_scalar = st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats() | cell
json_value = st.recursive(
    json_scalar, lambda c: st.lists(c, max_size=3) | st.dictionaries(cell, c, max_size=3), max_leaves=6
)


SAFE = list("abcdefgh xyz!?.'") + ["é", "e\u0301", "ß", "😀", "Ｐ"]
safe_cell = st.lists(st.sampled_from(SAFE), min_size=1, max_size=14).map("".join)


@st.composite
def delimited_file(draw) -> bytes:
    """Half the time a file that should load (so the label checks, splitter and warnings run), else a messy one."""
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    if draw(st.booleans()):
        sep = draw(st.sampled_from([",", "\t"]))
        labels = draw(st.lists(label, min_size=2, max_size=4, unique=True))
        rows = draw(st.lists(st.tuples(safe_cell, st.sampled_from(labels)), min_size=20, max_size=60))
        rows += [(f"text {i}", labels[i % 2]) for i in range(20)]
        text = f"text{sep}label" + newline + newline.join(f"{t} {i}{sep}{lab}" for i, (t, lab) in enumerate(rows))
        return text.encode(draw(st.sampled_from(["utf-8", "utf-8-sig"])))
    sep = draw(st.sampled_from([",", "\t", ";"]))
    header = draw(st.sampled_from(HEADERS) | cell)
    rows = draw(st.lists(st.tuples(cell, label), max_size=40))
    text = header + newline + newline.join(f"{t}{sep}{lab}" for t, lab in rows)
    return text.encode(draw(st.sampled_from(ENCODINGS)), errors="replace")


@st.composite
def jsonl_file(draw) -> bytes:
    rows = draw(
        st.lists(
            st.dictionaries(st.sampled_from(["text", "label", "extra"]) | cell, json_value, max_size=3)
            | st.fixed_dictionaries({"text": cell, "label": label | json_scalar}),
            max_size=30,
        )
    )
    lines = [json.dumps(r, ensure_ascii=draw(st.booleans())) for r in rows]
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), draw(cell))
    return "\n".join(lines).encode(draw(st.sampled_from(ENCODINGS)), errors="replace")


data_file = st.tuples(
    st.sampled_from(SUFFIXES), delimited_file() | jsonl_file() | st.binary(max_size=300), st.booleans()
) | st.tuples(st.sampled_from([".csv", ".tsv"]), delimited_file(), st.booleans())

# --------------------------------------------------------------------------- checks


@dataclasses.dataclass
class Tally:
    cases: Counter = dataclasses.field(default_factory=Counter)
    outcomes: Counter = dataclasses.field(default_factory=Counter)
    findings: list[dict] = dataclasses.field(default_factory=list)

    def finding(self, family: str, case: object, problem: str) -> None:
        if len(self.findings) < 50:
            self.findings.append({"family": family, "case": repr(case)[:400], "problem": problem[-1500:]})


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def check_reader(tally: Tally, case, work: Path) -> None:
    """One generated data file through the reader (and the split warnings)."""
    from mobilebert_kit.data import DataConfig, load_dataset, warn_about_splits
    from mobilebert_kit.errors import MbkError

    suffix, body, normalize = case
    path = work / f"data{suffix}"
    if suffix.endswith(".gz"):
        import gzip

        body = gzip.compress(body) if normalize else body  # raw bytes named .gz: a broken archive
    path.write_bytes(body)
    before = path.read_bytes()
    tally.cases["readers"] += 1
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            cfg = DataConfig(data=str(path), normalize_labels=normalize)
            ds = load_dataset(cfg)
            warn_about_splits(ds, cfg)
        tally.outcomes["readers: loaded"] += 1
    except MbkError as e:
        tally.outcomes["readers: clean error"] += 1
        msg = str(e)
        if "\n" in msg or len(msg) > 3000:
            tally.finding("readers", case, f"error message is {len(msg)} chars / multi-line: {msg[:300]!r}")
    except Exception:  # noqa: BLE001 - that is the finding
        tally.finding("readers", case, traceback.format_exc())
    if path.read_bytes() != before:
        tally.finding("readers", case, "the data file was changed")


def check_cli(tally: Tally, family: str, args: list[str], user: Path) -> None:
    """One ``mbk`` invocation in-process: exit 0, or 1/2 with exactly one Error: line."""
    from click.testing import CliRunner

    from mobilebert_kit.cli import main

    tally.cases[family] += 1
    before = snapshot(user)
    result = CliRunner().invoke(main, args, catch_exceptions=True)
    out = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        tb = "".join(traceback.format_exception(result.exception))
        tally.finding(family, args, tb)
    elif result.exit_code == 0:
        tally.outcomes[f"{family}: success"] += 1
    elif "Traceback" in out or "internal error" in out or out.count("Error:") != 1:
        tally.finding(family, args, f"exit {result.exit_code}, output: {out[-1500:]}")
    elif len(max(out.splitlines(), key=len, default="")) > 3000:
        tally.finding(family, args, f"an output line of {len(max(out.splitlines(), key=len))} chars")
    else:
        tally.outcomes[f"{family}: clean error (exit {result.exit_code})"] += 1
    after = snapshot(user)
    changed = [f for f in before if after.get(f) != before[f]]
    # a new file is fine where the case asked for one (--save-recipe PATH writes there; it refuses to replace)
    added = [f for f in after if f not in before and f not in args]
    if changed or added:
        tally.finding(family, args, f"user files changed: {changed}, added: {added}")


# --------------------------------------------------------------------------- recipes


def stage_fields() -> dict[str, list[str]]:
    from mobilebert_kit.stages.base import STAGES, config_class

    return {name: [f.name for f in dataclasses.fields(config_class(name))] for name in STAGES}


@st.composite
def recipe_text(draw, fields: dict[str, list[str]]) -> str:
    if draw(st.integers(0, 9)) == 0:  # raw YAML-ish text
        return draw(st.lists(st.sampled_from(CHARS), max_size=200).map("".join))
    raw: dict = {}
    if draw(st.booleans()):
        raw["stages"] = draw(st.lists(st.sampled_from([*fields, "fintune", ""]), max_size=4) | json_value)
    for key in draw(st.lists(st.sampled_from(["name", "run_dir", "description", "data"]), max_size=2)):
        raw[key] = draw(json_value)
    for stage in draw(st.lists(st.sampled_from(list(fields)), max_size=3)):
        raw[stage] = draw(st.dictionaries(st.sampled_from(fields[stage]) | cell, json_value, max_size=4) | json_value)
    return yaml.safe_dump(raw, allow_unicode=draw(st.booleans()))


@st.composite
def override(draw, fields: dict[str, list[str]]) -> str:
    stage = draw(st.sampled_from([*fields, "data", "name", "run_dir", "nosuch"]))
    key = draw(st.sampled_from(fields.get(stage, ["x"])) | cell)
    sub = draw(st.sampled_from(["", ".epochs", ".train.lr", ".a.b"]))
    value = draw(cell | json_value.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()))
    return f"{stage}.{key}{sub}={value}" if draw(st.integers(0, 9)) else draw(cell)


# --------------------------------------------------------------------------- CLI options


class Reached(Exception):
    """Raised by the stubbed stage ``run``: the command parsed and validated its options."""


def stub_stages(monkeypatch) -> None:
    """Every stage's ``run`` (and ``mbk run``'s executor) raises a clean error instead of working, so a
    case costs milliseconds and exercises option parsing and config validation, not training."""
    import importlib

    from mobilebert_kit.errors import MbkError
    from mobilebert_kit.stages.base import STAGES

    class StageReached(MbkError):
        pass

    def stop(*a, **k):
        raise StageReached("stage reached (stubbed by the campaign)")

    for spec in STAGES.values():
        monkeypatch.setattr(importlib.import_module(f"mobilebert_kit.stages.{spec.module}"), "run", stop)
    for module in ("device_bench",):
        with contextlib.suppress(ImportError, AttributeError):
            monkeypatch.setattr(importlib.import_module(f"mobilebert_kit.stages.{module}"), "run", stop)
    monkeypatch.setattr(importlib.import_module("mobilebert_kit.pipeline.recipe"), "execute", stop)


def command_params() -> dict[str, list]:
    import importlib

    from mobilebert_kit.cli import COMMANDS

    out = {}
    for name, (module, _) in COMMANDS.items():
        cmd = importlib.import_module(f"mobilebert_kit.cli.{module}").command
        out[name] = [p for p in cmd.params if p.name not in ("help",)]
    return out


@st.composite
def cli_args(draw, params: dict[str, list], paths: list[str]) -> list[str]:
    import click

    name = draw(st.sampled_from(sorted(params)))
    args = [name]
    chosen = (
        draw(st.lists(st.sampled_from(params[name]), max_size=5, unique_by=lambda p: p.name)) if params[name] else []
    )
    number = st.sampled_from(["0", "-1", "1", "2", "1e9", "nan", "inf", "-0.5", "0.5", "99999999999999999999"])
    anything = number | st.sampled_from(paths) | cell
    for p in chosen:
        if isinstance(p, click.Argument):
            args += [draw(anything) for _ in range(1 if p.nargs == 1 else draw(st.integers(0, 2)))]
            continue
        flag = p.opts[0]
        if p.is_flag:
            args.append(flag)
        elif isinstance(p.type, click.Choice):
            args += [flag, draw(st.sampled_from(list(p.type.choices)) | cell)]
        else:
            args += [flag, draw(anything)]
    return [a for a in args if "\x00" not in a]


# --------------------------------------------------------------------------- the runner


def run_family(strategy, check: Callable, n: int, seed: int | None = None) -> None:
    """Run ``check`` on ``n`` generated examples: derandomised (the same cases every run) without ``seed``,
    else the cases of that seed (another seed, other cases; the same seed, the same cases)."""
    from hypothesis import seed as with_seed

    @settings(
        max_examples=n,
        derandomize=seed is None,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[p for p in __import__("hypothesis").Phase if p.name in ("explicit", "generate")],
    )
    @given(strategy)
    def inner(case):
        check(case)

    (with_seed(seed)(inner) if seed is not None else inner)()
