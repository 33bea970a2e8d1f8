"""Recipes: YAML over the stage configs, run as one pipeline with content-hash reuse.

A recipe is a mapping with one section per stage, using the same keys as the stage's config
dataclass (and the same names as its command-line options)::

    name: smoke                      # default: the file name without .yaml
    run_dir: artifacts/runs/smoke    # default: artifacts/runs/<name>
    stages: [finetune, distill, compress, export, verify, bench, package, report]
    data: {max_train_examples: 200}  # shared by every stage that trains (finetune, distill)
    finetune: {model: minilm-l6, train: {epochs: 1}}
    compress: {int8: true}

Each stage's output goes under ``run_dir`` (``teacher/``, ``student/``, ``compressed/``,
``export/``, ``bench/``, ``package/<target>/``), and each stage's input path (``distill.teacher``,
``compress.model``, ``export.model``, ``verify.export_dir``...) is wired to the output of the
stage before it, unless the recipe sets it. String values may use ``{run_dir}``.

Reuse: before a stage runs, its *fingerprint* is the hash of its resolved config plus the hash
of every input it reads (the upstream ``manifest.json``, or the file itself). It is stored in
``<run_dir>/.state/<step>.json`` when the stage succeeds; next time, a stage whose fingerprint
is unchanged and whose output is still the one it wrote is reused instead of re-run. So a run
that failed half-way continues where it stopped, and editing one stage re-runs only it and what
depends on it.

Stages are looked up by registry name (never by an importable dotted path); a stage whose module
is not part of this installation is reported at validate time, not as a crash.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import re
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from mobilebert_kit.bounded_input import check_override, check_yaml_text
from mobilebert_kit.config import did_you_mean
from mobilebert_kit.errors import ArtifactError, ConfigError
from mobilebert_kit.locking import hold_output
from mobilebert_kit.stage import (
    ORDER,
    STAGES,
    RunContext,
    StageSpec,
    config_class,
    stage_available,
    stage_module,
)

STATE_DIR = ".state"
TOP_LEVEL_KEYS = ("name", "description", "run_dir", "stages", "data")
DATA_PATH_KEYS = ("data", "validation_data", "test_data")


# --------------------------------------------------------------------------- loading


class DuplicateKeyError(yaml.YAMLError):
    """A mapping gives the same key twice; plain YAML would keep the last value and drop the first."""

    def __init__(self, key: Any, line: int, first_line: int):
        super().__init__(
            f"line {line}: duplicate key '{key}' (the earlier one, line {first_line}, would be ignored); merge them"
        )


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load`` semantics (no python tags), but a key repeated in one mapping is an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            # merge keys (<<) may legitimately be overridden by the keys beside them
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKeyError(key, line, seen[key])
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path, what: str) -> Any:
    """Parse a user's YAML file with :class:`UniqueKeyLoader`; ``what`` starts every error line."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{what} is not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}); save it as UTF-8"
        ) from e
    try:
        check_yaml_text(text, what)  # size, nesting, alias expansion: before anything is built
        return yaml.load(text, Loader=UniqueKeyLoader)  # safe: UniqueKeyLoader is a SafeLoader
    except DuplicateKeyError as e:
        raise ConfigError(f"{what} {e}") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{what} is not valid YAML{where}: {getattr(e, 'problem', None) or e}") from e


def load_yaml(path: str | os.PathLike) -> dict:
    """Read a recipe file into a dict (ConfigError when missing, unreadable or not a mapping)."""
    path = Path(path)
    if not path.is_file():
        hint = "check the path (the shipped recipes are in recipes/, e.g. recipes/default.yaml)"
        raise ConfigError(f"recipe {path} does not exist; " + (hint if path.suffix else "pass a .yaml file"))
    raw = read_yaml(path, f"recipe {path}")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"recipe {path} must be a mapping of sections (stages:, data:, finetune:, ...), got {type(raw).__name__}"
        )
    return raw


def parse_value(text: str) -> Any:
    """A command-line override value, typed as YAML would type it (2 -> int, true -> bool, [a, b] -> list)."""
    try:
        if not text.strip():
            return ""
        check_yaml_text(text, "an override value")
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict, overrides: list[str] | tuple[str, ...]) -> list[str]:
    """Apply ``a.b.c=value`` overrides to ``raw`` in place; returns the problems found."""
    problems: list[str] = []
    for item in overrides:
        check_override(item)
        if "=" not in item:
            problems.append(f"override '{item}' must look like key.path=value (e.g. finetune.train.epochs=2)")
            continue
        key, value = item.split("=", 1)
        parts = [p.strip() for p in key.strip().split(".")]
        if not all(parts):
            problems.append(f"override '{item}': empty key in '{key}'")
            continue
        top = parts[0]
        if top not in TOP_LEVEL_KEYS and top not in STAGES:
            problems.append(
                f"override '{item}': unknown section '{top}'{did_you_mean(top, (*TOP_LEVEL_KEYS, *STAGES))}"
            )
            continue
        node = raw
        for i, p in enumerate(parts[:-1]):
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                problems.append(f"override '{item}': '{'.'.join(parts[: i + 1])}' is not a section")
                break
            node = nxt
        else:
            node[parts[-1]] = parse_value(value)
    return problems


# --------------------------------------------------------------------------- the resolved recipe


@dataclass
class Step:
    """One stage of a run, fully resolved (config with wired paths)."""

    stage: str
    key: str  # state/plan name: the stage, or stage-target for package
    config: Any  # the stage's config object
    output: Path | None  # folder (or file for verify) the stage writes
    inputs: dict[str, Path]  # what it reads: config field (or 'after:<stage>') -> path
    producers: dict[str, str]  # input name -> step key in this recipe that writes it (when one does)

    @property
    def label(self) -> str:
        return self.key if self.key == self.stage else f"{self.stage} ({self.key.split('-', 1)[1]})"


@dataclass
class Recipe:
    name: str
    path: Path | None
    run_dir: Path
    stages: list[str]
    steps: list[Step]
    raw: dict

    def step(self, key: str) -> Step:
        return next(s for s in self.steps if s.key == key)


def _substitute(value: Any, run_dir: str) -> Any:
    if isinstance(value, str):
        return value.replace("{run_dir}", run_dir)
    if isinstance(value, list):
        return [_substitute(v, run_dir) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, run_dir) for k, v in value.items()}
    return value


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init}


def _field_default(cls: type, name: str) -> Any:
    f = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    if f is None:
        return None
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def _field_is_data_config(cls: type, name: str) -> bool:
    from mobilebert_kit.data import DataConfig

    try:
        hint = typing.get_type_hints(cls).get(name)
    except Exception:  # noqa: BLE001 - unresolvable annotations: treat as not a DataConfig
        return False
    return hint is DataConfig or DataConfig in typing.get_args(hint)


def _looks_local(value: str) -> bool:
    return (
        value.startswith((".", "/", "~")) or value.count("/") > 1 or value.endswith((".csv", ".tsv", ".jsonl", ".json"))
    )


def load(
    source: str | os.PathLike | dict, overrides: list[str] | tuple[str, ...] = (), *, name: str | None = None
) -> Recipe:
    """Load, override and validate a recipe; raises one ConfigError listing *every* problem.

    Args:
        source: a recipe file, or an already-parsed mapping (tests, ``--save-recipe`` round trips).
        overrides: ``section.key.path=value`` strings applied before validation.
        name: recipe name when ``source`` is a mapping without ``name:``.
    """
    path = None if isinstance(source, dict) else Path(source)
    raw = copy.deepcopy(source) if isinstance(source, dict) else load_yaml(path)  # overrides edit it in place
    problems = apply_overrides(raw, overrides)
    _check_top_level_keys(raw, problems)
    rname = _recipe_name(raw, name, path, problems)
    run_dir = _run_dir(raw, rname, problems)
    stages = _stage_list(raw.get("stages"), problems)
    _check_sections(raw, problems)
    shared_data = _shared_data(raw.get("data"), problems)
    builder = _StepBuilder(run_dir, stages, shared_data, problems)
    for s in stages:
        builder.add_stage(s, raw.get(s) if isinstance(raw.get(s), dict) else {})
    steps = builder.steps
    _link_after_inputs(steps)
    problems.extend(_cross_checks(stages, {st.key: st.config for st in steps}, shared_data))
    problems.extend(_model_fit_checks(steps))
    if problems:
        raise ConfigError(_dedupe(problems))
    return Recipe(rname, path, run_dir, stages, steps, raw)


def _check_top_level_keys(raw: dict, problems: list[str]) -> None:
    for key in raw:
        if key not in TOP_LEVEL_KEYS and key not in STAGES:
            problems.append(
                f"unknown key '{key}'{did_you_mean(str(key), (*TOP_LEVEL_KEYS, *STAGES))}; "
                f"top-level keys are {', '.join(TOP_LEVEL_KEYS)} and one section per stage ({', '.join(STAGES)})"
            )
    if raw.get("description") is not None and not isinstance(raw.get("description"), str):
        problems.append("description must be a string")


def _recipe_name(raw: dict, name: str | None, path: Path | None, problems: list[str]) -> str:
    rname = raw.get("name") if raw.get("name") is not None else (name or (path.stem if path else "recipe"))
    if not isinstance(rname, str) or not rname or "/" in rname or rname.startswith("."):
        problems.append(f"name must be a plain folder name, got {rname!r}")
        return "recipe"
    return rname


def _run_dir(raw: dict, rname: str, problems: list[str]) -> Path:
    run_dir_raw = raw.get("run_dir") if raw.get("run_dir") is not None else f"artifacts/runs/{rname}"
    if not isinstance(run_dir_raw, str) or not run_dir_raw:
        problems.append(f"run_dir must be a folder path, got {run_dir_raw!r}")
        run_dir_raw = f"artifacts/runs/{rname}"
    run_dir = Path(run_dir_raw)
    _check_run_dir_is_folder(run_dir, problems)
    return run_dir


def _check_run_dir_is_folder(run_dir: Path, problems: list[str]) -> None:
    """A file where the run folder (or one of its parents) belongs would only fail at the first write."""
    fix = "set run_dir to a folder (run_dir=PATH)"
    if run_dir.exists() and not run_dir.is_dir():
        problems.append(f"run_dir {run_dir} is a file, not a folder; {fix}")
        return
    blocking = next((p for p in run_dir.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        problems.append(f"run_dir {run_dir} lies under {blocking}, which is a file; {fix}")


def _stage_list(stages_raw: Any, problems: list[str]) -> list[str]:
    """The ``stages:`` entry as a list of known, available stage names in pipeline order."""
    if stages_raw is None:
        problems.append(f"stages: missing; list the stages to run in order, e.g. stages: [{', '.join(ORDER)}]")
        return []
    if isinstance(stages_raw, str):
        stages_raw = [s.strip() for s in stages_raw.split(",") if s.strip()]
    if not isinstance(stages_raw, list):
        problems.append(f"stages must be a list of stage names, got {stages_raw!r}")
        return []
    if not stages_raw:
        problems.append("stages is empty; list at least one stage")
    stages: list[str] = []
    for s in stages_raw:
        if not isinstance(s, str) or s not in STAGES:
            problems.append(f"unknown stage '{s}'{did_you_mean(str(s), STAGES)}; known stages: {', '.join(STAGES)}")
        elif s in stages:
            problems.append(f"stage '{s}' is listed twice in stages")
        elif not stage_available(s):
            problems.append(f"stage '{s}' is not available in this version")
        else:
            stages.append(s)
    for a, b in zip(stages, stages[1:]):
        if ORDER.index(b) < ORDER.index(a):
            problems.append(f"stage '{b}' must come before '{a}' (stages run in the order {' -> '.join(ORDER)})")
    return stages


def _check_sections(raw: dict, problems: list[str]) -> None:
    for s in STAGES:
        if raw.get(s) is not None and not isinstance(raw.get(s), dict):
            problems.append(f"section '{s}' must be a mapping of {s} settings, got {raw.get(s)!r}")


def _shared_data(data: Any, problems: list[str]) -> dict:
    """The top-level ``data:`` section, shared by every stage that trains or evaluates."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(
            f"data must be a mapping (data: {{data: rotten_tomatoes, max_train_examples: 200}}), got {data!r}"
        )
        return {}
    from mobilebert_kit.data import DataConfig

    shared: dict = {}
    try:
        DataConfig.from_dict(data, section="data")
        shared = dict(data)
    except ConfigError as e:
        problems.extend(e.problems)
    problems.extend(_missing_data_files(data, "data"))
    return shared


def _package_targets(section: dict, problems: list[str]) -> list[str | None]:
    """``package.target`` as a list (one step per target); ``[]`` after reporting a problem."""
    t = section.get("target", "android")
    targets = [x.strip() for x in t.split(",")] if isinstance(t, str) else t if isinstance(t, list) else [t]
    if not targets:
        problems.append("package.target is empty; use android, ios or [android, ios]")
        return []
    if not all(isinstance(x, str) and x for x in targets):  # found by the hostile campaign: null crashed
        problems.append(f"package.target must be android, ios or [android, ios], got {t!r}")
        return []
    if len(set(map(str, targets))) != len(targets):
        problems.append(f"package.target lists a target twice: {targets}")
        return []
    return targets


@dataclass
class _StepBuilder:
    """Turns recipe sections into :class:`Step` objects, wiring each stage's inputs to earlier outputs."""

    run_dir: Path
    stages: list[str]
    shared_data: dict
    problems: list[str]
    steps: list[Step] = field(default_factory=list)
    outputs: dict[str, Path | None] = field(default_factory=dict)  # step key -> its output

    def add_stage(self, s: str, section: dict) -> None:
        section = self._with_data(s, _substitute(dict(section), str(self.run_dir)))
        targets = _package_targets(section, self.problems) if s == "package" else [None]
        for target in targets:
            sec = dict(section)
            key = s
            if s == "package":
                sec["target"] = target
                key = f"package-{target}"
            self._add_step(s, key, sec, target)

    def _with_data(self, s: str, section: dict) -> dict:
        """Merge the shared ``data:`` into a stage that trains or evaluates; check data files exist."""
        cls = config_class(s)
        if STAGES[s].takes_data and "data" in _field_names(cls) and _field_is_data_config(cls, "data"):
            own = section.get("data")
            # Only when there is something to share: a stage whose data is optional (distill) otherwise
            # inherits the data recorded upstream instead of a default.
            if (own is None and self.shared_data) or isinstance(own, dict):
                section["data"] = {**self.shared_data, **(own or {})}
                self.problems.extend(_missing_data_files(own or {}, f"{s}.data"))
        elif isinstance(section.get("data"), (str, dict)):
            data = section["data"]
            where = s if isinstance(data, str) else f"{s}.data"
            self.problems.extend(_missing_data_files(data if isinstance(data, dict) else {"data": data}, where))
        return section

    def _add_step(self, s: str, key: str, sec: dict, target: str | None) -> None:
        spec, cls = STAGES[s], config_class(s)
        inputs, producers = self._wire_inputs(s, sec)
        for up in spec.after:
            if up in self.stages:
                producers[f"after:{up}"] = up
        out = self._default_output(s, sec, target)
        try:
            cfg = cls.from_dict(sec, section=s)
        except ConfigError as e:
            self.problems.extend(e.problems)
            cfg = None
        if s == "verify" and cfg is not None:
            out = Path(cfg.export_dir) / "verify.json"
        if s == "report":
            out = self.run_dir / "report.html"
        self.outputs[key] = out
        if cfg is not None:
            self.steps.append(Step(s, key, cfg, out, inputs, producers))
        self.problems.extend(_missing_model_paths(s, sec, spec, str(self.run_dir)))

    def _wire_inputs(self, s: str, sec: dict) -> tuple[dict[str, Path], dict[str, str]]:
        """Point each input field at the nearest earlier output (or check the path the recipe set)."""
        spec, cls = STAGES[s], config_class(s)
        fields = _field_names(cls)
        inputs: dict[str, Path] = {}
        producers: dict[str, str] = {}
        for fld, ups in spec.inputs.items():
            if fld not in fields:
                continue
            if sec.get(fld) is not None:  # set by the recipe: use as is
                self._check_given_input(s, fld, sec[fld], ups, inputs, producers)
                continue
            up = next((u for u in ups if u in self.outputs), None)  # an earlier stage of this recipe
            if up is not None:
                sec[fld] = str(self.outputs[up])
                inputs[fld] = self.outputs[up]
                producers[fld] = up
                continue
            # Nothing upstream in this recipe: the stage's own default, as its command would use
            # (one-stage recipes written by --save-recipe); plan() checks that it exists.
            default = _field_default(cls, fld)
            if not isinstance(default, str):
                self.problems.append(
                    f"{s}.{fld} is not set and no earlier stage in this recipe produces it "
                    f"(one of: {', '.join(ups)}); add one to stages or set {s}.{fld}"
                )
                continue
            sec[fld] = default
            inputs[fld] = Path(default)
        return inputs, producers

    def _check_given_input(self, s: str, fld: str, value: Any, ups: tuple[str, ...], inputs: dict, producers: dict):
        made_here = any(str(self.outputs.get(u)) == value for u in ups)
        if isinstance(value, str) and _looks_local(value) and not Path(value).expanduser().exists() and not made_here:
            self.problems.append(f"{s}.{fld}: {value} does not exist")
        if isinstance(value, str):
            inputs[fld] = Path(value)
            prod = next((u for u in ups if u in self.outputs and str(self.outputs[u]) == value), None)
            if prod:
                producers[fld] = prod

    def _default_output(self, s: str, sec: dict, target: str | None) -> Path | None:
        """The step's output folder; an unset one goes under the run folder. Sets ``report.run_dir``."""
        spec = STAGES[s]
        fields = _field_names(config_class(s))
        out: Path | None = None
        if spec.output_key and spec.output_key in fields:
            if sec.get(spec.output_key) is None:
                sub = self.run_dir / spec.subdir
                sec[spec.output_key] = str(sub / target if s == "package" else sub)
            if not isinstance(sec[spec.output_key], str):  # found by the hostile campaign: a mapping crashed Path()
                self.problems.append(
                    f"{s}.{spec.output_key} must be a folder path, got {type(sec[spec.output_key]).__name__}"
                )
                return None
            out = Path(sec[spec.output_key])
        if s == "report" and "run_dir" in fields:
            sec.setdefault("run_dir", str(self.run_dir))
        return out


def _link_after_inputs(steps: list[Step]) -> None:
    """``after:`` inputs (read without a config field, e.g. package reads verify.json) resolve to files."""
    for st in steps:
        for k, up in list(st.producers.items()):
            if k.startswith("after:"):
                upstep = next((x for x in steps if x.stage == up), None)
                if upstep is not None and upstep.output is not None:
                    st.inputs[k] = upstep.output


def _dedupe(items: list[str]) -> list[str]:
    seen: set[str] = set()
    return [x for x in items if not (x in seen or seen.add(x))]


def _missing_data_files(data: dict, where: str) -> list[str]:
    from mobilebert_kit.data import BUILTIN_DATASETS

    out = []
    for k in DATA_PATH_KEYS:
        v = data.get(k)
        if not isinstance(v, str) or not v or v in BUILTIN_DATASETS or Path(v).expanduser().exists():
            continue
        if k == "data" and "/" not in v and "." not in v:  # read as a built-in name, as data.load_dataset does
            out.append(
                f"{where}.{k}: unknown built-in dataset '{v}'{did_you_mean(v, BUILTIN_DATASETS)}; "
                f"known: {', '.join(BUILTIN_DATASETS)}; or pass a .csv/.tsv/.jsonl file"
            )
        else:
            out.append(f"{where}.{k}: file {v} does not exist")
    return out


def _missing_model_paths(stage: str, section: dict, spec: StageSpec, run_dir: str) -> list[str]:
    out = []
    for k in ("model", "student", "teacher", "install_into"):
        if k in spec.inputs:
            continue
        v = section.get(k)
        if isinstance(v, str) and _looks_local(v) and not Path(v).expanduser().exists():
            out.append(f"{stage}.{k}: {v} does not exist")
    models = section.get("models")
    for v in models if isinstance(models, list) else []:
        if isinstance(v, str) and not v.startswith(run_dir) and not Path(v).expanduser().exists():
            out.append(f"{stage}.models: {v} does not exist")
    return out


def _cross_checks(stages: list[str], cfgs: dict[str, Any], shared_data: dict) -> list[str]:
    """Combinations no single stage can see."""
    p: list[str] = []
    comp = cfgs.get("compress")
    if comp is not None:
        if not (comp.steps or comp.prune or comp.prune_heads or comp.prune_ffn or comp.trim_vocab or comp.int8):
            p.append("compress has nothing to do: set at least one of prune, prune_heads, prune_ffn, trim_vocab, int8")
        if getattr(comp, "static", False):
            n_train = shared_data.get("max_train_examples")
            if not comp.int8:
                pass  # CompressConfig.validate already says so
            elif comp.calib_samples < 1:
                p.append("compress.static needs calibration data: calib_samples must be >= 1")
            elif isinstance(n_train, int) and comp.calib_samples > n_train:
                p.append(
                    f"compress.static calibrates on the training split, but data.max_train_examples is {n_train} "
                    f"< compress.calib_samples {comp.calib_samples}; lower calib_samples or use dynamic INT8"
                )
    exp = cfgs.get("export")
    formats = set(exp.resolved_formats) if exp is not None and hasattr(exp, "resolved_formats") else None
    if formats is not None:
        bench = cfgs.get("bench")
        if bench is not None and not bench.models:
            for f in bench.formats or []:
                if f not in formats:
                    p.append(
                        f"bench.formats has '{f}' but export.formats ({', '.join(sorted(formats))}) does not make it"
                    )
        ver = cfgs.get("verify")
        if ver is not None:
            for f in ver.formats:
                if f not in formats:
                    p.append(
                        f"verify.formats has '{f}' but export.formats ({', '.join(sorted(formats))}) does not make it"
                    )
        from mobilebert_kit import formats as registry

        for key, cfg in cfgs.items():
            need = registry.for_target(cfg.target, cfg.runtime) if key.startswith("package-") else None
            if need and need.name not in formats:
                p.append(f"package target '{cfg.target}' needs the '{need.name}' export: add it to export.formats")
    if any(k.startswith("package-") for k in cfgs) and "export" in stages and "verify" not in stages:
        p.append(
            "package only bundles a verified export, and this recipe exports a new one: add 'verify' to stages before 'package'"
        )
    return p


# --------------------------------------------------------------------------- what the models can take

# Built-in models whose folder is found without work. mpnet-base is joined and extracted from a zip
# of several hundred MB on first use: too costly for a check that promises to run nothing.
LOCATABLE_BUILTINS = ("minilm-l6",)
_ORIGIN = "_mbk_origin"  # attribute naming the built-in a model config descends from, for messages


def _builtin_model_config(name: Any) -> SimpleNamespace | None:
    """A built-in model's config.json, read without loading weights; None when not cheaply known."""
    from mobilebert_kit.errors import MbkError
    from mobilebert_kit.models import BUILTIN_MODELS

    if name not in LOCATABLE_BUILTINS or name not in BUILTIN_MODELS:
        return None
    try:
        folder = BUILTIN_MODELS[name][0]()
        values = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (MbkError, OSError, ValueError):
        return None  # a missing package is the stage's to report, with its install command
    return SimpleNamespace(**values, **{_ORIGIN: name}) if isinstance(values, dict) else None


def _model_fit_checks(steps: list[Step]) -> list[str]:
    """Layers and lengths that the built-in models' config.json already rules out, reported by
    validate instead of by a stage after the ones before it have run."""
    problems: list[str] = []
    models: dict[str, SimpleNamespace] = {}  # step key -> config of the model it writes
    for st in steps:
        field_name = next(iter(STAGES[st.stage].inputs), "")
        upstream = models.get(st.producers.get(field_name, ""))
        cfg = st.config
        if st.stage == "finetune":
            model = _builtin_model_config(cfg.model)
            problems += _fit_problems("finetune", model, cfg.train, cfg.model)
        elif st.stage == "distill":
            problems += _teacher_layer_problems(cfg, upstream)
            model = _student_config(cfg, upstream)
            problems += _fit_problems("distill", model, cfg.train, "the student")
        elif st.stage == "export":
            model = None
            problems += _export_length_problems(cfg, upstream)
        else:
            model = upstream  # compression keeps the layers' positions
        if model is not None:
            models[st.key] = model
    return problems


def _fit_problems(section: str, model: SimpleNamespace | None, train: Any, name: str) -> list[str]:
    from mobilebert_kit.training.stages import check_fits_model

    if model is None:
        return []
    try:
        check_fits_model(SimpleNamespace(config=model), train, name)
    except ConfigError as e:
        return [f"{section}.train: {p}" for p in e.problems]
    return []


def _teacher_layer_problems(cfg: Any, teacher: SimpleNamespace | None) -> list[str]:
    n = getattr(teacher, "num_hidden_layers", None)
    if cfg.init_method != "layers" or not cfg.layers or not isinstance(n, int):
        return []
    bad = [i for i in cfg.layers if i >= n]  # negative ones: DistillConfig.validate
    if not bad:
        return []
    # distill.copy_layers_student's message at run time
    return [f"distill.layers {','.join(map(str, bad))} out of range: the teacher has {n} layers (0..{n - 1})"]


def _student_config(cfg: Any, teacher: SimpleNamespace | None) -> SimpleNamespace | None:
    """The student's config as distill builds it (its layer count; positions are its base model's)."""
    from mobilebert_kit.distill import every_other_layer

    base = _builtin_model_config(cfg.student) if cfg.init_method == "student" else teacher
    n = getattr(base, "num_hidden_layers", None)
    if base is None or not isinstance(n, int):
        return None
    if cfg.layers:
        n = len(cfg.layers)
    elif cfg.init_method == "student_config":
        n = cfg.student_config.num_layers or n
    elif cfg.init_method == "layers":
        n = len(every_other_layer(n))
    return SimpleNamespace(**{**vars(base), "num_hidden_layers": n})


def _export_length_problems(cfg: Any, model: SimpleNamespace | None) -> list[str]:
    from mobilebert_kit.training.stages import usable_positions

    usable = usable_positions(model) if model is not None else None
    if not cfg.max_length or usable is None or cfg.max_length <= usable:
        return []
    return [
        f"export.max_length {cfg.max_length} is more than the model can take ({usable} positions, "
        f"from {getattr(model, _ORIGIN, 'its base model')}); set export.max_length to {usable} or less"
    ]


# --------------------------------------------------------------------------- fingerprints and state


def config_dict(cfg: Any) -> dict:
    d = cfg.to_dict() if hasattr(cfg, "to_dict") else dataclasses.asdict(cfg)
    return d


def input_fingerprint(path: Path) -> str | None:
    """What a stage's input is, by content: its manifest.json when it has one, else the file or folder."""
    from mobilebert_kit.artifacts import MANIFEST, sha256_file, sha256_tree

    path = Path(path)
    if path.is_dir() and (path / MANIFEST).is_file():
        return sha256_file(path / MANIFEST)
    if path.exists():
        return sha256_tree(path, exclude=())
    return None


def _referenced_files(d: Any, skip: set[str]) -> dict[str, str]:
    """sha256 of user files named in a config (data files...), so editing one invalidates the stage."""
    from mobilebert_kit.artifacts import sha256_tree

    out: dict[str, str] = {}

    def walk(v: Any, key: str) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                if k not in skip:
                    walk(x, k)
        elif isinstance(v, list):
            for x in v:
                walk(x, key)
        elif isinstance(v, str) and key in DATA_PATH_KEYS and Path(v).expanduser().exists():
            out[v] = sha256_tree(Path(v).expanduser(), exclude=())

    walk(d, "")
    return out


def fingerprint(step: Step) -> str:
    spec = STAGES[step.stage]
    cfg = config_dict(step.config)
    from mobilebert_kit import __version__

    payload = {
        "mobilebert_kit": __version__,  # a new release may compute a stage differently
        "stage": step.stage,
        "config": cfg,
        "inputs": {k: input_fingerprint(p) for k, p in sorted(step.inputs.items())},
        "files": _referenced_files(cfg, skip={*spec.inputs, spec.output_key or ""}),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def output_fingerprint(step: Step) -> str | None:
    return input_fingerprint(step.output) if step.output is not None else None


def state_path(recipe: Recipe, step: Step) -> Path:
    return recipe.run_dir / STATE_DIR / f"{step.key}.json"


def read_state(recipe: Recipe, step: Step) -> dict:
    p = state_path(recipe, step)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def write_state(recipe: Recipe, step: Step, data: dict) -> None:
    from mobilebert_kit.artifacts import write_json

    p = state_path(recipe, step)
    p.parent.mkdir(parents=True, exist_ok=True)
    write_json(p, data)


def reuse_reason(recipe: Recipe, step: Step, fp: str) -> str | None:
    """None when the step can be reused, else why it must run."""
    if step.stage == "report":
        return "always rebuilt"
    st = read_state(recipe, step)
    if not st or st.get("status") != "done":
        return "not run yet" if not st else "did not finish last time"
    if st.get("fingerprint") != fp:
        changed = "config changed" if st.get("config") != config_dict(step.config) else "input changed"
        return changed
    if step.output is not None and not step.output.exists():
        return f"output {step.output} is missing"
    if st.get("output_fingerprint") != output_fingerprint(step):
        return f"output {step.output} was changed outside this run"
    damaged = _damaged_files(step.output)
    if damaged:
        return f"output {step.output} was changed outside this run ({damaged[0]} differs from its manifest)"
    return None


def _damaged_files(output: Path | None) -> list[str]:
    """Files of a reused output whose content no longer matches the sha256 its manifest recorded."""
    from mobilebert_kit.artifacts import MANIFEST, read_json, sha256_file

    if output is None or not (output / MANIFEST).is_file():
        return []
    files = read_json(output / MANIFEST).get("files") or {}
    return [
        name for name, digest in files.items() if not (output / name).is_file() or sha256_file(output / name) != digest
    ]


# --------------------------------------------------------------------------- planning and running


@dataclass
class PlanItem:
    step: Step
    action: str  # run | reuse | skip
    reason: str


def select(recipe: Recipe, start: str | None = None, until: str | None = None) -> list[Step]:
    """The steps between --from and --until (stage names; inclusive)."""
    names = [s.stage for s in recipe.steps]
    for flag, v in (("--from", start), ("--until", until)):
        if v is not None and v not in names:
            hint = did_you_mean(v, names) or did_you_mean(v, STAGES)
            known = f"stages of this recipe: {', '.join(dict.fromkeys(names))}"
            if v in STAGES:
                raise ConfigError(f"{flag} {v}: stage '{v}' is not in this recipe's stages; {known}")
            raise ConfigError(f"{flag} {v}: unknown stage '{v}'{hint}; {known}")
    i0 = names.index(start) if start else 0
    i1 = len(names) - 1 - names[::-1].index(until) if until else len(names) - 1
    if i0 > i1:
        raise ConfigError(f"--from {start} comes after --until {until}; nothing to run")
    return recipe.steps[i0 : i1 + 1]


def plan(recipe: Recipe, start: str | None = None, until: str | None = None) -> list[PlanItem]:
    """What a run would do, without doing it. Raises ArtifactError when a selected stage's input
    is missing and no selected stage before it will produce it."""
    chosen = select(recipe, start, until)
    chosen_keys = {s.key for s in chosen}
    items: list[PlanItem] = []
    will_run: set[str] = set()
    for step in recipe.steps:
        if step.key not in chosen_keys:
            items.append(PlanItem(step, "skip", "outside --from/--until"))
            continue
        for name, path in step.inputs.items():
            prod = step.producers.get(name)
            produced_now = prod is not None and any(k == prod or k.startswith(prod + "-") for k in will_run)
            if not produced_now and not Path(path).exists():
                fld = name.split(":", 1)[-1]
                if prod is not None:
                    raise ArtifactError(
                        f"stage '{step.stage}' needs {path}, which does not exist: stage '{prod}' is not "
                        f"part of this run (--from/--until); run it first (e.g. --from {prod})"
                    )
                raise ArtifactError(
                    f"stage '{step.stage}' needs {path} ({step.stage}.{fld}), which does not exist; "
                    "check the path or add the stage that produces it"
                )
        upstream_runs = [p for p in step.producers.values() if any(k == p or k.startswith(p + "-") for k in will_run)]
        if upstream_runs:
            items.append(PlanItem(step, "run", f"after {', '.join(dict.fromkeys(upstream_runs))} re-runs"))
            will_run.add(step.key)
            continue
        reason = reuse_reason(recipe, step, fingerprint(step))
        if reason is None:
            items.append(PlanItem(step, "reuse", "unchanged"))
        else:
            items.append(PlanItem(step, "run", reason))
            will_run.add(step.key)
    return items


def _owned(recipe: Recipe, step: Step) -> bool:
    """True when mbk run may replace the step's output: it is inside the run folder, or this run wrote it."""
    if step.output is None or _is_under(step.output, recipe.run_dir):
        return True
    return read_state(recipe, step).get("output") == str(step.output)


def run_step(recipe: Recipe, step: Step, ctx: RunContext):
    """Run one step through the stage contract; ``ctx.overwrite``: it may replace its output."""
    try:
        return stage_module(step.stage).run(step.config, ctx)
    except ArtifactError as e:
        raise ArtifactError(_recipe_fix(str(e), recipe, step)) from e
    except ConfigError as e:
        raise ConfigError([_recipe_fix(p, recipe, step) for p in e.problems]) from e


_OUTPUT_FLAG_FIX = re.compile(r"choose (?:another|a new) --output")


def _recipe_fix(message: str, recipe: Recipe, step: Step) -> str:
    """A stage names ``--output`` as the fix for an occupied output; ``mbk run`` has no such option:
    the output is the run folder's, unless the recipe set the stage's output key."""
    where = "run_dir"
    if step.output is not None and not _is_under(step.output, recipe.run_dir):
        where = f"{step.stage}.{STAGES[step.stage].output_key or 'output'}"
    return _OUTPUT_FLAG_FIX.sub(f"choose another {where}", message)


def _is_under(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _can_resume(recipe: Recipe, step: Step, fp: str) -> bool:
    """A training stage interrupted last time with the same fingerprint left checkpoints to continue from."""
    st = read_state(recipe, step)
    if st.get("status") != "running" or st.get("fingerprint") != fp or step.output is None:
        return False
    if not STAGES[step.stage].resumable:
        return False
    ckpt = step.output.with_name(step.output.name + ".ckpt") / "checkpoints"
    return ckpt.is_dir() and any(ckpt.iterdir())


def plan_json(recipe: Recipe, items: list[PlanItem]) -> dict:
    rows = [
        {"step": it.step.key, "action": it.action, "reason": it.reason, "output": str(it.step.output or "") or None}
        for it in items
    ]
    return {"recipe": recipe.name, "run_dir": str(recipe.run_dir), "plan": rows}


def plan_lines(recipe: Recipe, items: list[PlanItem]) -> list[str]:
    width = max(len(it.step.label) for it in items)
    lines = [f"Plan for {recipe.name} (run folder {recipe.run_dir}):"]
    lines += [f"  {i}. {it.step.label:<{width}}  {it.action:<5}  {it.reason}" for i, it in enumerate(items, 1)]
    return lines


def run_summary(recipe: Recipe, records: list[dict]) -> str:
    ran = [x["step"] for x in records if x["action"] == "run"]
    reused = [x["step"] for x in records if x["action"] == "reuse"]
    report = recipe.run_dir / "report.html"
    tail = f"; report: {report}" if any(x["step"] == "report" and x["action"] == "run" for x in records) else ""
    return (
        f"{recipe.name}: ran {len(ran)} stage(s){' (' + ', '.join(ran) + ')' if ran else ''}, reused {len(reused)}"
        f"{' (' + ', '.join(reused) + ')' if reused else ''}; outputs in {recipe.run_dir}{tail}"
    )


def execute(
    recipe: Recipe,
    *,
    start: str | None = None,
    until: str | None = None,
    quiet: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """Run the recipe; returns one record per step (key, action, reason, seconds, output)."""
    log = log or (lambda m: None)
    items = plan(recipe, start, until)  # fails before any work when an input is missing
    records: list[dict] = []
    n = sum(1 for it in items if it.action != "skip")
    recipe.run_dir.mkdir(parents=True, exist_ok=True)
    i = 0
    with hold_output(recipe.run_dir):  # one `mbk run` per run folder: its .state/ and every stage output
        for it in items:
            if it.action == "skip":
                records.append({"step": it.step.key, "action": "skip", "reason": it.reason})
                continue
            i += 1
            records.append(_execute_step(recipe, it.step, f"[{i}/{n}] {it.step.label}", quiet, overwrite, log))
    return records


def _execute_step(recipe: Recipe, step: Step, label: str, quiet: bool, overwrite: bool, log) -> dict:
    """Reuse the step when unchanged, else run it, recording its state before and after."""
    fp = fingerprint(step)
    reason = reuse_reason(recipe, step, fp)
    if reason is None:
        log(f"{label}: reused (unchanged) -> {step.output}")
        return {"step": step.key, "action": "reuse", "reason": "unchanged", "output": str(step.output)}
    resume = _can_resume(recipe, step, fp)
    log(f"{label}: running ({'resuming from its last checkpoint' if resume else reason}) ...")
    may_replace = overwrite or _owned(recipe, step)  # decided before this run claims the output
    state = {"fingerprint": fp, "config": config_dict(step.config), "output": str(step.output or "") or None}
    write_state(recipe, step, {"status": "running", **state, "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
    t0 = time.perf_counter()
    prefix = f"  {step.label}: "
    ctx = RunContext(overwrite=may_replace, resume=resume, quiet=quiet, log=lambda m: log(prefix + m))
    run_step(recipe, step, ctx)
    secs = time.perf_counter() - t0
    done = {"output_fingerprint": output_fingerprint(step), "seconds": round(secs, 2)}
    write_state(recipe, step, {"status": "done", **state, **done, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
    log(f"{label}: done in {secs:.1f} s -> {step.output}")
    return {"step": step.key, "action": "run", "reason": reason, "seconds": round(secs, 2), "output": str(step.output)}
