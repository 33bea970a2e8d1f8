"""``mbk tune``: try a small grid of compression plans, measure every one, keep the best.

Each trial is one ``mbk compress`` run (the same methods, the same accuracy guard) on the same
model and data: validation accuracy with the guard's verdict, size of the final graph on disk and
its ONNX Runtime latency (batch 1, 1 thread, as compress measures it). Every trial is reported,
losers and refused ones included (``tune.json`` / ``tune.md`` / ``pareto.png``); the output folder is
the winning trial's compress output (so ``mbk export --model <output>`` takes it as it would take
``mbk compress``'s), chosen by ``objective`` among the trials the guard passed.

Olive's auto-opt and Neural Compressor's tuning loop are the anchors; neither fits here as a
library: both drive their own model wrappers and evaluators, while the trials must be mbk's own
compress runs (same guard, same records) for the winner to hand over to export and verify.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mobilebert_kit.config import StageConfig, check_choice, check_range
from mobilebert_kit.errors import CompressError, ConfigError, DataError, ExportError, TuneError
from mobilebert_kit.locking import holds_output
from mobilebert_kit.stages.base import RunContext, StageResult

OBJECTIVES = ("size", "latency", "accuracy")
GRIDS = ("quick", "full")
TUNE_JSON, TUNE_MD, PARETO_PNG = "tune.json", "tune.md", "pareto.png"

# The built-in grids: name -> steps. A plan whose methods are not registered is left out.
QUICK_GRID: dict[str, list[dict]] = {
    "int8-dynamic": [{"method": "int8_dynamic"}],
    "int8-dynamic-per-channel": [{"method": "int8_dynamic", "per_channel": True}],
    "int8-static": [{"method": "int8_static"}],
    "trim-vocab+int8-dynamic": [{"method": "trim_vocab"}, {"method": "int8_dynamic"}],
    "trim-vocab+int8-dynamic-per-channel": [{"method": "trim_vocab"}, {"method": "int8_dynamic", "per_channel": True}],
    "int4-embeddings+int8-dynamic": [{"method": "int4_embeddings"}, {"method": "int8_dynamic"}],
    "trim-vocab+int4-embeddings+int8-dynamic-per-channel": [
        {"method": "trim_vocab"},
        {"method": "int4_embeddings", "block_size": 128},
        {"method": "int8_dynamic", "per_channel": True},
    ],
    "int4-matmul": [{"method": "int4_matmul"}],
}
FULL_EXTRA: dict[str, list[dict]] = {
    "prune-ffn-0.25+recover+int8-dynamic": [
        {"method": "prune_ffn", "fraction": 0.25},
        {"method": "recover", "epochs": 1},
        {"method": "int8_dynamic"},
    ],
    "prune-heads-0.25+recover+int8-dynamic": [
        {"method": "prune_heads", "fraction": 0.25},
        {"method": "recover", "epochs": 1},
        {"method": "int8_dynamic"},
    ],
}


@dataclass
class TuneConfig(StageConfig):
    model: str = "artifacts/student"
    output: str = "artifacts/tuned"
    data: str | None = None  # default: the data recorded upstream (manifest lineage)
    max_length: int | None = None
    plans: list[dict] = field(default_factory=list)  # [{name: ..., steps: [...]}]; empty: the built-in grid
    grid: str = "quick"  # quick | full (adds structured pruning with recovery training: slower)
    objective: str = "size"  # size | latency | accuracy, among the trials the guard passed
    max_drop: float = 0.01
    latency_runs: int = 50
    keep_trials: bool = False  # keep every trial's folder in <output>.trials/
    seeds: int = 1  # run plans with a seeded step (pruning importance, recovery, calibration) with seeds 0..N-1
    ort_format: bool = False  # only plans whose graph can become the Android app's .ort compete

    def validate(self) -> list[str]:
        p: list[str] = []
        check_choice(p, "objective", self.objective, OBJECTIVES)
        check_choice(p, "grid", self.grid, GRIDS)
        check_range(p, "max_drop", self.max_drop, 0, 1)
        check_range(p, "latency_runs", self.latency_runs, 0)
        check_range(p, "seeds", self.seeds, 1, 10)
        check_range(p, "max_length", self.max_length, 8, 512)
        p.extend(_plans_problems(self.plans))
        return p

    def candidates(self) -> dict[str, list[dict]]:
        """The plans to try, by name."""
        if self.plans:
            return {str(p["name"]): list(p["steps"]) for p in self.plans}
        from mobilebert_kit.compression import METHODS

        grid = {**QUICK_GRID, **(FULL_EXTRA if self.grid == "full" else {})}
        return {n: s for n, s in grid.items() if all(step["method"] in METHODS for step in s)}


def _plans_problems(plans: list) -> list[str]:
    from mobilebert_kit.compression import plan_problems

    p: list[str] = []
    names: set[str] = set()
    for i, plan in enumerate(plans):
        if not isinstance(plan, dict) or set(plan) != {"name", "steps"} or not isinstance(plan["steps"], list):
            p.append(f"plans[{i}]: expected {{name: ..., steps: [...]}}, got {plan!r}")
            continue
        if str(plan["name"]) in names:
            p.append(f"plans[{i}]: the name '{plan['name']}' is used twice")
        names.add(str(plan["name"]))
        p.extend(plan_problems(plan["steps"], where=f"plans[{i}].steps"))
    return p


@holds_output
def run(config: TuneConfig, ctx: RunContext | None = None) -> StageResult:
    """Run every candidate plan as a compress trial; the output is the best trial's folder."""
    from mobilebert_kit import artifacts

    ctx = ctx or RunContext()
    out = artifacts.check_output_dir(config.output, ctx.overwrite, config.input_paths())
    trials_dir = artifacts.check_scratch_dir(
        out.with_name(out.name + ".trials"), lambda p: p.is_dir() and artifacts.is_mbk_output(p), "every trial"
    )
    _check_data(config)
    candidates = config.candidates()
    if not candidates:
        raise ConfigError("no plan to try: every plan of the grid names a method that is not registered")
    try:
        trials = [_plan_trials(config, name, steps, trials_dir, ctx, i, len(candidates))
                  for i, (name, steps) in enumerate(candidates.items(), 1)]  # fmt: skip
    except BaseException:
        shutil.rmtree(trials_dir, ignore_errors=True)
        raise
    best = choose([t for t in trials if t.get("ort_format", True) or not config.ort_format], config.objective)
    if best is None:
        shutil.rmtree(trials_dir, ignore_errors=True)
        raise TuneError(_no_winner(trials, config))
    mark_pareto(trials)
    report = {"objective": config.objective, "max_drop": config.max_drop, "best": best["name"], "trials": trials}
    with artifacts.staged_output(out, ctx.overwrite, config.input_paths()) as tmp:
        shutil.copytree(trials_dir / best["name"], tmp, dirs_exist_ok=True)
        _write_report(tmp, report)
    if not config.keep_trials:
        shutil.rmtree(trials_dir, ignore_errors=True)
    return StageResult(out, _headline(report, best), _summary(out, report, best))


def _check_data(config: TuneConfig) -> None:
    """Refuse before any trial when there is nothing to evaluate on: no data recorded or given, or a
    ``--data`` file that does not load (empty, unreadable, no labels); recorded data loaded when it trained."""
    from mobilebert_kit import artifacts
    from mobilebert_kit.artifacts import lineage
    from mobilebert_kit.data import DataConfig, load_dataset

    model = Path(config.model)
    if not model.is_dir():
        raise ConfigError(
            f"{artifacts.not_a_folder(model, 'model folder')}; run `mbk distill` first or pass --model PATH"
        )
    if config.data:
        load_dataset(DataConfig(data=config.data))
    elif not lineage(model).get("data"):
        raise DataError(
            f"no data to evaluate the trials on: {model} records none (no manifest.json with a 'data' entry); "
            "pass --data (the data the model was trained on)"
        )


def seeded(steps: list[dict]) -> bool:
    """Whether a plan's result depends on compress's seed (one of its methods samples or trains)."""
    from mobilebert_kit.compression import method_class

    return any(method_class(step["method"]).seeded for step in steps)


def _plan_trials(config: TuneConfig, name: str, steps: list[dict], trials_dir: Path, ctx, i: int, n: int) -> dict:
    """A plan's trial; with ``seeds`` > 1 and a seeded step, one trial per seed: the record is seed 0's
    (the model the output ships) with every seed's accuracies and their mean and range beside it."""
    ctx.log(f"[{i}/{n}] {name}: {' -> '.join(s['method'] for s in steps)}")
    first = _trial(config, name, steps, trials_dir / name, ctx)
    if config.seeds == 1 or not seeded(steps):
        return first
    runs = [first] + [
        _trial(config, name, steps, trials_dir / f"{name}@seed{seed}", ctx, seed) for seed in range(1, config.seeds)
    ]
    first["seeds"] = [
        {"seed": seed, **{k: r.get(k) for k in ("status", "validation_accuracy", "test_accuracy", "drop")}}
        for seed, r in enumerate(runs)
    ]
    for split in ("validation", "test"):
        values = [
            r[f"{split}_accuracy"] for r in runs if r["status"] == "passed" and r.get(f"{split}_accuracy") is not None
        ]
        if values:
            first[f"{split}_accuracy_mean"] = sum(values) / len(values)
            first[f"{split}_accuracy_range"] = [min(values), max(values)]
    return first


def _trial(config: TuneConfig, name: str, steps: list[dict], folder: Path, ctx: RunContext, seed: int = 0) -> dict:
    """One compress run; its record whether it passed, was refused by the guard or could not run."""
    from mobilebert_kit.stages import compress

    if seed:
        ctx.log(f"    seed {seed}:")
    cfg = compress.CompressConfig(
        model=config.model,
        output=str(folder),
        data=config.data,
        max_length=config.max_length,
        steps=steps,
        max_drop=config.max_drop,
        latency_runs=config.latency_runs,
        seed=seed,
    )
    t0 = time.perf_counter()
    record: dict[str, Any] = {"name": name, "steps": steps}
    try:
        result = compress.run(cfg, RunContext(overwrite=True, quiet=True))
    except (CompressError, ExportError) as e:  # the guard's refusal, or a plan this model cannot take: a loser
        # (bad data or a bad model fail every trial alike: those propagate and stop the run)
        record.update(status="refused", reason=str(e), seconds=time.perf_counter() - t0)
        ctx.log(f"    refused: {str(e).splitlines()[0][:160]}")
        return record
    record.update(status="passed", seconds=time.perf_counter() - t0, **trial_numbers(result.metrics))
    record["ort_format"] = ort_format_ok(folder)
    lat = f"{record['latency_ms']:.2f} ms" if record["latency_ms"] is not None else "latency not measured"
    ctx.log(
        f"    validation {record['validation_accuracy']:.4f} (drop {record['drop']:+.4f}), "
        f"{record['size_bytes'] / 1e6:.2f} MB, {lat}"
    )
    return record


def ort_format_ok(folder: Path) -> bool:
    """Whether the trial's graph can become the Android app's ``.ort`` (4-bit embeddings cannot: ORT
    format stores no uint4 tensors; see compression/int4.py's RUNTIMES)."""
    from mobilebert_kit.artifacts import COMPRESSION, read_json

    comp = read_json(folder / COMPRESSION) if (folder / COMPRESSION).exists() else {}
    return all(
        (v.get("runtimes") or {}).get("ort_format_loads_in", [True]) != [] for v in comp.values() if isinstance(v, dict)
    )


def trial_numbers(metrics: dict) -> dict:
    """The numbers a trial is ranked by, from compress's headline metrics."""
    final = metrics.get("final") or {}
    last = (metrics.get("steps") or [{}])[-1]
    val, test = final.get("validation") or {}, final.get("test") or {}
    before = metrics.get("input") or {}  # compress's headline: the input's validation numbers
    before = before.get("validation", before)
    return {
        "validation_accuracy": val.get("accuracy"),
        "validation_n": val.get("n"),
        "test_accuracy": test.get("accuracy"),
        "drop": (before.get("accuracy") or 0) - (val.get("accuracy") or 0),
        "agreement_with_input": val.get("agreement_with_input"),
        "size_bytes": metrics["size_on_disk"].get("onnx_bytes") or metrics["size_on_disk"]["output_model_bytes"],
        "latency_ms": last.get("latency_ms_ort"),
        "guard": metrics.get("guard"),
    }


def _accuracy(t: dict) -> float:
    """A plan's validation accuracy for ranking: the mean over its seeds when it ran more than one
    (the best seed would be a lucky draw, not a better plan)."""
    return t.get("validation_accuracy_mean", t["validation_accuracy"])


def _key(objective: str):
    if objective == "size":
        return lambda t: (t["size_bytes"], t["latency_ms"] or 0, -_accuracy(t))
    if objective == "latency":
        return lambda t: (t["latency_ms"] or float("inf"), t["size_bytes"], -_accuracy(t))
    return lambda t: (-_accuracy(t), t["size_bytes"], t["latency_ms"] or 0)


def choose(trials: list[dict], objective: str) -> dict | None:
    """The best trial the guard passed for ``objective`` (ties broken by the other two), or None."""
    passed = [t for t in trials if t["status"] == "passed"]
    return min(passed, key=_key(objective)) if passed else None


def mark_pareto(trials: list[dict]) -> None:
    """``pareto: True`` on every passed trial no other passed trial beats on size, latency and accuracy."""

    def beats(a: dict, b: dict) -> bool:
        no_worse = (
            a["size_bytes"] <= b["size_bytes"]
            and (a["latency_ms"] or 0) <= (b["latency_ms"] or 0)
            and _accuracy(a) >= _accuracy(b)
        )
        return no_worse and (a["size_bytes"], a["latency_ms"], _accuracy(a)) != (
            b["size_bytes"],
            b["latency_ms"],
            _accuracy(b),
        )

    passed = [t for t in trials if t["status"] == "passed"]
    for t in trials:
        t["pareto"] = t["status"] == "passed" and not any(beats(o, t) for o in passed if o is not t)


def _no_winner(trials: list[dict], config: TuneConfig) -> str:
    lines = [f"no plan passed the accuracy guard (--max-drop {config.max_drop}); every trial:"]
    if any(t["status"] == "passed" for t in trials):
        lines = ["no plan that passed the guard can become an .ort model (--ort-format); every trial:"]
    lines += [f"  {t['name']}: {t.get('reason', 'passed, but 4-bit embeddings cannot be stored in ORT format')}"
              .splitlines()[0][:240] for t in trials]  # fmt: skip
    lines.append("raise --max-drop, try other --plans, or distill a stronger student")
    return "\n".join(lines)


def _write_report(folder: Path, report: dict) -> None:
    from mobilebert_kit.artifacts import write_json

    write_json(folder / TUNE_JSON, report)
    (folder / TUNE_MD).write_text(markdown(report), encoding="utf-8")
    plot(report, folder / PARETO_PNG)


def markdown(report: dict) -> str:
    rows = [
        f"# mbk tune: {len(report['trials'])} plans, objective {report['objective']}, max drop {report['max_drop']}",
        "",
        f"Winner: **{report['best']}**. Every trial is listed; * marks the Pareto front (size, latency, accuracy).",
        *_resolution(report["trials"]),
        "",
        "| plan | status | val acc | drop pt (95% CI) | test acc | size MB | latency ms | .ort | |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in report["trials"]:
        if t["status"] != "passed":
            rows.append(f"| {t['name']} | refused: {t['reason'].splitlines()[0][:80]} | | | | | | | |")
            continue
        lat = f"{t['latency_ms']:.2f}" if t["latency_ms"] is not None else "n/a"
        test = f"{t['test_accuracy']:.4f}" if t["test_accuracy"] is not None else "n/a"
        rows.append(
            f"| {t['name']} | passed | {t['validation_accuracy']:.4f} | {_drop_cell(t)} | {test} | "
            f"{t['size_bytes'] / 1e6:.2f} | {lat} | {'yes' if t.get('ort_format', True) else 'no'} | "
            f"{'*' if t['pareto'] else ''} |"
        )
    return "\n".join(rows + _seed_rows(report["trials"])) + "\n"


def _seed_rows(trials: list[dict]) -> list[str]:
    """Plans run with several seeds: the spread the seed alone causes, and the mean the ranking used."""
    repeated = [t for t in trials if t.get("seeds")]
    if not repeated:
        return []

    def spread(t: dict, split: str) -> str:
        if f"{split}_accuracy_mean" not in t:
            return "n/a"
        lo, hi = t[f"{split}_accuracy_range"]
        return f"{t[f'{split}_accuracy_mean']:.4f} ({lo:.4f} … {hi:.4f})"

    rows = [
        "",
        "Plans with a seeded step (pruning importance subset, recovery training, calibration texts) ran once per "
        "seed; the table above shows seed 0, the model the output holds, and accuracy ranks by the mean below.",
        "",
        "| plan | seeds passed | val acc mean (min … max) | test acc mean (min … max) |",
        "|---|---|---|---|",
    ]
    for t in repeated:
        passed = sum(r["status"] == "passed" for r in t["seeds"])
        rows.append(f"| {t['name']} | {passed}/{len(t['seeds'])} | {spread(t, 'validation')} | {spread(t, 'test')} |")
    return rows


def _drop_cell(trial: dict) -> str:
    """The validation drop in points with the guard's paired 95% interval, e.g. "+1.17 (-0.2 … +2.5)"."""
    from mobilebert_kit.compression.guard import ci_text

    ci = (trial.get("guard") or {}).get("drop_ci95")
    text = f"{100 * trial['drop']:+.2f}"
    return f"{text} ({ci_text(*ci)})" if ci else text


def _resolution(trials: list[dict]) -> list[str]:
    """What one validation example is worth, so a reader does not rank trials on noise."""
    n = next((t["validation_n"] for t in trials if t.get("validation_n")), None)
    if not n:
        return []
    return [
        "",
        f"Validation has {n} examples: one example is {100 / n:.2f} pt. A drop whose interval spans 0 is not a "
        "real loss, and trials whose accuracies differ by less than its half-width cannot be told apart here.",
    ]


def plot(report: dict, path: Path) -> None:
    """Size vs latency of every passed trial, the Pareto front joined, the winner ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    passed = [t for t in report["trials"] if t["status"] == "passed" and t["latency_ms"] is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for t in passed:
        ax.scatter(t["size_bytes"] / 1e6, t["latency_ms"], c="tab:blue" if t["pareto"] else "tab:gray")
        ax.annotate(f"{t['name']}\n{t['validation_accuracy']:.3f}", (t["size_bytes"] / 1e6, t["latency_ms"]),
                    fontsize=7, xytext=(4, 4), textcoords="offset points")  # fmt: skip
        if t["name"] == report["best"]:
            ax.scatter(t["size_bytes"] / 1e6, t["latency_ms"], s=180, facecolors="none", edgecolors="tab:red")
    front = sorted((t["size_bytes"] / 1e6, t["latency_ms"]) for t in passed if t["pareto"])
    if len(front) > 1:
        ax.plot(*zip(*front), c="tab:blue", lw=0.8)
    ax.set_xlabel("size on disk (MB)")
    ax.set_ylabel("ORT latency, batch 1, 1 thread (ms)")
    ax.set_title(f"mbk tune: objective {report['objective']} (label: validation accuracy)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _headline(report: dict, best: dict) -> dict:
    return {
        "best": best["name"],
        "objective": report["objective"],
        "size_bytes": best["size_bytes"],
        "latency_ms": best["latency_ms"],
        "validation_accuracy": best["validation_accuracy"],
        "trials": [
            {k: t.get(k) for k in ("name", "status", "size_bytes", "latency_ms", "validation_accuracy")}
            for t in report["trials"]
        ],  # fmt: skip
    }


def _summary(out: Path, report: dict, best: dict) -> list[str]:
    passed = sum(t["status"] == "passed" for t in report["trials"])
    return [
        f"{len(report['trials'])} plans tried, {passed} passed the guard; best for {report['objective']}: "
        f"{best['name']} ({best['size_bytes'] / 1e6:.2f} MB, {best['latency_ms'] or float('nan'):.2f} ms, "
        f"validation {best['validation_accuracy']:.4f})",
        f"Trials: {out / TUNE_MD}; next: mbk export --model {out}",
    ]
