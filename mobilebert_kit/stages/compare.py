"""``mbk report RUN_A RUN_B ...`` (also ``mbk compare``): runs side by side.

For each run folder: every stage's metrics (test accuracy, macro-F1, parameters, size, training speed,
steps, final training loss), the phone model (the export ``mbk report`` headlines: accuracy, size, p50
latency, marked *not comparable* when bench timed the runs with other settings or runtimes), the config
keys that differ (dotted, as recipe overrides spell them: ``distill.temperature``), and the paired test
accuracy difference of each later run against the first on the same test texts, with a 95% interval
(percentile bootstrap over the texts, the same as compress's guard and verify use). An interval that
covers 0 is called noise.

Writes ``compare.md``, ``compare.html`` (plots embedded), ``compare.json`` and ``compare_files/`` into the
output folder; the per-step training curves of every run share one axis per stage.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobilebert_kit.artifacts import MANIFEST, METRICS, VERIFY, not_a_folder
from mobilebert_kit.errors import ArtifactError, ConfigError
from mobilebert_kit.stages import predictions, report_curves

LEVELS = ("teacher", "student", "phone")  # the models paired text by text, where both runs have predictions
STAGE_METRICS = (
    ("test accuracy", "accuracy", "acc"),
    ("macro-F1", "macro_f1", "acc"),
    ("params", "params", "params"),
    ("size", "size_bytes", "mb"),
    ("p50 ms", "p50_ms", "ms"),
    ("train ex/s", "train_examples_per_second", "num"),
    ("steps", "steps", "num"),
    ("final train loss", "final_loss", "num"),
)


@dataclass
class Run:
    name: str
    path: Path
    data: dict  # report.collect()
    config: dict[str, Any]  # dotted key -> value


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def check_runs(paths: list[str]) -> list[Path]:
    """The run folders, refused before any work: fewer than two, a path that is no run folder, one named twice."""
    from mobilebert_kit.stages.base import STAGES

    if len(paths) < 2:
        got = f"got only {paths[0]}" if paths else "got none"
        raise ConfigError(
            f"comparing needs at least two run folders ({got}); e.g. mbk report artifacts/runs/a artifacts/runs/b"
        )
    subdirs = {s.subdir for s in STAGES.values() if s.subdir}
    out = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise ArtifactError(f"{not_a_folder(p, 'run folder')}; pass run folders such as artifacts/runs/default")
        if not ((p / ".state").is_dir() or any((p / d).is_dir() for d in subdirs)):
            raise ArtifactError(
                f"{p} is not an mbk run folder (no .state/ and no stage output folder in it); "
                "pass the run folder of a recipe, e.g. artifacts/runs/default"
            )
        if any(p.resolve() == q.resolve() for q in out):
            raise ConfigError(f"{p} is named twice; compare different run folders")
        out.append(p)
    return out


def _names(paths: list[Path]) -> list[str]:
    """Short unique names: the folder name, with its parent when two runs share a name."""
    names = [p.resolve().name for p in paths]
    return [f"{p.resolve().parent.name}/{n}" if names.count(n) > 1 else n for p, n in zip(paths, names)]


def load(paths: list[Path], report_cfg) -> list[Run]:
    from mobilebert_kit.stages.report import collect

    return [Run(n, p, collect(p, report_cfg), run_config(p)) for n, p in zip(_names(paths), paths)]


# --------------------------------------------------------------------------- config differences


def run_config(run_dir: Path) -> dict[str, Any]:
    """Every stage's resolved config as dotted keys (``distill.train.lr``): from the recipe state
    (``.state/<step>.json``), else from the stage folders' manifests. Paths inside the run folder read
    ``<run>/...`` so that two runs' own folders are not a difference."""
    configs: dict[str, Any] = {}
    state = run_dir / ".state"
    for f in sorted(state.glob("*.json")) if state.is_dir() else []:
        cfg = (_read(f) or {}).get("config")
        if isinstance(cfg, dict):
            configs[f.stem] = cfg
    if not configs:
        for sub in sorted(p for p in run_dir.iterdir() if p.is_dir()):
            m = _read(sub / MANIFEST) or {}
            if isinstance(m.get("config"), dict):
                configs[str(m.get("stage") or sub.name)] = m["config"]
    flat: dict[str, Any] = {}
    _flatten(configs, "", flat)
    roots = {str(run_dir), str(run_dir.resolve()), os.path.relpath(run_dir.resolve())}  # however the recipe spelled it
    return {k: _relative(v, roots) for k, v in flat.items()}


def _flatten(d: Any, prefix: str, out: dict) -> None:
    if isinstance(d, dict) and d:
        for k, v in d.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix] = d


def _relative(v: Any, roots: set[str]) -> Any:
    if isinstance(v, str):
        for r in sorted(roots, key=len, reverse=True):
            if r and r != "." and (v == r or v.startswith(r.rstrip("/") + "/")):  # at a path boundary
                return "<run>" + v[len(r) :]
    return v


def config_differences(runs: list[Run]) -> list[dict]:
    """The dotted keys whose values differ between the runs (a key one run lacks counts), with each run's value."""
    keys = sorted({k for r in runs for k in r.config})
    missing = object()
    diffs = []
    for k in keys:
        values = [r.config.get(k, missing) for r in runs]
        if len({json.dumps(v, sort_keys=True, default=str) if v is not missing else "\0" for v in values}) > 1:
            diffs.append({"key": k, "values": [None if v is missing else v for v in values],
                          "present": [v is not missing for v in values]})  # fmt: skip
    return diffs


# --------------------------------------------------------------------------- stage metrics and the phone model


def stage_table(runs: list[Run]) -> dict[str, list[dict]]:
    """``{stage: [per run: its metrics or None]}`` for teacher, student and compressed."""
    out = {}
    for stage in ("teacher", "student", "compressed"):
        per_run = []
        for r in runs:
            row = next((x for x in r.data["rows"] if x["name"] == stage), None)
            if row is None:
                per_run.append(None)
                continue
            m = _read(r.path / stage / METRICS) or {}
            log = (r.data.get("training_logs") or {}).get(stage) or {}
            per_run.append(
                {
                    **{k: row.get(k) for k in ("accuracy", "macro_f1", "params", "size_bytes", "p50_ms")},
                    "train_examples_per_second": m.get("train_examples_per_second"),
                    "steps": m.get("steps") if isinstance(m.get("steps"), int) else log.get("last_step"),
                    "final_loss": log.get("final_loss"),
                }
            )
        if any(per_run):
            out[stage] = per_run
    return out


def phone_models(runs: list[Run]) -> dict[str, Any]:
    """Each run's phone model (the first format, by the report's headline ranking, that every run
    exported), and whether their latencies can be compared (same bench settings, runtime, versions, cores)."""
    from mobilebert_kit import formats as registry

    ranked = sorted((f for f in registry.every() if f.headline_rank is not None), key=lambda f: f.headline_rank)
    fmt = next((f.name for f in ranked if all(_export_row(r, f.name) for r in runs)), None)
    if fmt is None:
        return {"format": None, "runs": [None] * len(runs), "comparable": None, "why_not": []}
    per_run = []
    for r in runs:
        row = _export_row(r, fmt)
        per_run.append({k: row.get(k) for k in ("kind", "accuracy", "macro_f1", "size_bytes", "p50_ms", "app_p50_ms")}
                       | {"settings": _latency_settings(r, fmt, row)})  # fmt: skip
    settings = [p["settings"] for p in per_run]
    why = sorted({k for s in settings for k in s if len({json.dumps(x.get(k), default=str) for x in settings}) > 1})
    timed = all(p["p50_ms"] is not None for p in per_run)
    return {"format": fmt, "runs": per_run, "comparable": timed and not why, "why_not": why}


def _export_row(run: Run, fmt: str) -> dict | None:
    return next((x for x in run.data["rows"] if x["name"] == f"export: {fmt}"), None)


def _latency_settings(run: Run, fmt: str, row: dict) -> dict:
    """What a latency number depends on besides the model: bench's case, runtime and library versions, cores."""
    bench = _read(run.path / "bench" / "bench.json") or {}
    bench_row = next(
        (b for b in bench.get("rows") or [] if str(b.get("model", "")).startswith(fmt) and "@" not in str(b.get("model"))
         and b.get("seq_len") == run.data["seq_len"] and b.get("threads") == run.data["threads"]),
        {},
    )  # fmt: skip
    versions = bench.get("versions") or {}
    return {
        "seq_len": run.data["seq_len"],
        "threads": run.data["threads"],
        "batch": run.data["batch"],
        "runtime": bench_row.get("runtime"),
        "onnxruntime": versions.get("onnxruntime"),
        "torch": versions.get("torch"),
        "cpu_count": bench.get("cpu_count"),
    }


# --------------------------------------------------------------------------- paired accuracy


def level_predictions(run: Run, level: str, phone_format: str | None) -> dict | None:
    """A run's test predictions for ``level`` (teacher, student, or the phone model from verify.json)."""
    if level != "phone":
        return predictions.read(run.path / level)
    if phone_format is None:
        return None
    ver = _read(run.path / "export" / VERIFY) or {}
    texts = ver.get("test_texts") or {}
    got = ((ver.get("formats") or {}).get(phone_format) or {}).get("test_predicted")
    rec = {"text_ids": texts.get("text_ids"), "labels": texts.get("labels"), "predicted": got}
    return rec if predictions.valid(rec) else None


def paired(a: dict, b: dict, names: tuple[str, str], level: str) -> dict:
    """Accuracy of ``b`` minus ``a`` on the same test texts, with its 95% paired bootstrap interval.

    Raises:
        ArtifactError: the two were tested on different texts.
    """
    from mobilebert_kit.compression.guard import paired_drop_interval

    ia = {t: i for i, t in enumerate(a["text_ids"])}
    ib = {t: i for i, t in enumerate(b["text_ids"])}
    if set(ia) != set(ib):
        shared = len(set(ia) & set(ib))
        raise ArtifactError(
            f"the {level} of {names[0]} and {names[1]} were tested on different test texts ({shared} shared of "
            f"{len(ia)} and {len(ib)}); compare runs made with the same data and split (data.split_seed, data.max_eval_examples)"
        )
    ids = list(ia)
    right_a = [a["predicted"][ia[t]] == a["labels"][ia[t]] for t in ids]
    right_b = [b["predicted"][ib[t]] == b["labels"][ib[t]] for t in ids]
    n = len(ids)
    worse = sum(x and not y for x, y in zip(right_a, right_b))  # a right, b wrong
    better = sum(y and not x for x, y in zip(right_a, right_b))
    diff = (better - worse) / n if n else 0.0
    lo, hi = paired_drop_interval(worse, better, n) if n else (0.0, 0.0)
    ci = [0.0 - hi, 0.0 - lo]  # the interval of the drop, turned into one of the difference (no -0.0)
    return {
        "level": level,
        "n": n,
        "accuracy_a": sum(right_a) / n if n else None,
        "accuracy_b": sum(right_b) / n if n else None,
        "difference": diff,
        "ci95": ci,
        "b_right_a_wrong": better,
        "a_right_b_wrong": worse,
        "verdict": _verdict(diff, ci, worse + better),
    }


def _verdict(diff: float, ci: list[float], discordant: int) -> str:
    if discordant == 0:
        return "identical answers on every test text"
    if ci[0] <= 0 <= ci[1]:
        return "noise: the 95% interval covers 0, no real difference shown"
    return f"real: {'better' if diff > 0 else 'worse'} (the 95% interval excludes 0)"


def paired_differences(runs: list[Run], phone_format: str | None) -> list[dict]:
    """Each later run against the first, at every level both have predictions for."""
    base = runs[0]
    out = []
    for other in runs[1:]:
        for level in LEVELS:
            a, b = level_predictions(base, level, phone_format), level_predictions(other, level, phone_format)
            if a is not None and b is not None:
                out.append({"a": base.name, "b": other.name, **paired(a, b, (base.name, other.name), level)})
    return out


def compare(paths: list[str], report_cfg) -> dict:
    """Everything the comparison shows, as plain data (``--json``)."""
    runs = load(check_runs(paths), report_cfg)
    phone = phone_models(runs)
    return {
        "runs": [{"name": r.name, "path": str(r.path)} for r in runs],
        "stages": stage_table(runs),
        "phone": phone,
        "config_differences": config_differences(runs),
        "paired": paired_differences(runs, phone["format"]),
        "training_logs": {r.name: r.data.get("training_logs") or {} for r in runs},
        "bench_case": {"seq_len": runs[0].data["seq_len"], "threads": report_cfg.threads, "batch": report_cfg.batch},
    }


def curves(paths: list[str]) -> dict[str, dict[str, list[dict]]]:
    names = _names([Path(p) for p in paths])
    return {n: report_curves.stage_logs(Path(p)) for n, p in zip(names, paths)}
