"""Does averaging weights during recovery win back head pruning's accuracy? recipes/fast.yaml's compress plan
(heads 0.5 + FFN 0.6, trim, recover 2 epochs from the teacher, per-channel INT8), with recovery's weights
replaced at the end of its last epoch by

- ``none``: nothing (the plan as shipped);
- ``ema``: an exponential moving average of the weights after every optimizer step (``--decay``);
- ``last_epoch``: the uniform mean of the weights after every step of the last epoch (SWA's average, on
  the linear-decay schedule recovery already uses).

Recovery's usual rule then keeps the better epoch by validation macro-F1, so an average that scores lower
on validation than epoch 1 is not shipped. Every trial goes through ``mbk compress`` and its guard; the
INT8 graph is scored at batch 1 on validation and test. Results: ``benchmarks/results/weight_averaging.json``
and ``.md`` (summarised in heads_recovery.md).

    python benchmarks/weight_averaging.py --student artifacts/runs/default/student \\
        --teacher artifacts/runs/default/teacher --seeds 0 1      # ~15 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lib.results_io import write_results  # noqa: E402

from mobilebert_kit.training.hooks import Evaluation, Hook, Hooks  # noqa: E402

MODES = ("none", "ema", "last_epoch")
FAST_RECIPE = ROOT / "recipes" / "fast.yaml"


def fast_plan() -> list[dict]:
    """recipes/fast.yaml's compress steps, read from the recipe so the benchmark cannot drift from it."""
    from mobilebert_kit.pipeline.recipe import load_yaml

    return load_yaml(FAST_RECIPE)["compress"]["steps"]


class Average(Hook):
    """Keeps an average of ``model``'s floating-point weights over optimizer steps and loads it into the
    model when the last of ``epochs`` epochs ends (before the evaluation hook scores that epoch)."""

    def __init__(self, model, epochs: int, mode: str, decay: float = 0.99):
        self.model, self.epochs, self.mode, self.decay = model, epochs, mode, decay
        self.shadow: dict | None = None
        self.count = 0

    def _weights(self) -> dict:
        return {k: v.detach() for k, v in self.model.state_dict().items() if v.dtype.is_floating_point}

    def on_step_end(self, state) -> None:
        last = state.epoch + 1 == self.epochs
        if self.mode == "last_epoch" and not last:
            return
        weights = self._weights()
        self.count += 1
        if self.shadow is None:
            self.shadow = {k: v.clone() for k, v in weights.items()}
            return
        rate = 1 - self.decay if self.mode == "ema" else 1 / self.count
        for k, v in weights.items():
            self.shadow[k].add_(v - self.shadow[k], alpha=rate)

    def on_epoch_end(self, state) -> bool:
        if state.epoch + 1 == self.epochs and self.shadow is not None:
            self.model.load_state_dict(self.shadow, strict=False)
        return False


def install(mode: str, decay: float) -> None:
    """Put an :class:`Average` before the evaluation hook of every later training run. The engine builds its
    hook list itself and has no slot for extra hooks; this benchmark patches the list it builds rather than
    adding a product switch for a technique that, measured here, does not win."""
    from mobilebert_kit.training import engine

    class WithAverage(Hooks):
        def __init__(self, hooks: list[Hook]):
            ev = next(h for h in hooks if isinstance(h, Evaluation))
            if mode != "none":
                i = hooks.index(ev)
                hooks = [*hooks[:i], Average(ev.model, ev.epochs, mode, decay), *hooks[i:]]
            super().__init__(hooks)

    engine.Hooks = WithAverage


def trial(student: str, teacher: str, steps: list[dict], mode: str, decay: float, seed: int, out: Path) -> dict:
    from mobilebert_kit.stages.base import RunContext
    from mobilebert_kit.stages.compress import CompressConfig, run

    install(mode, decay)
    cfg = CompressConfig.from_dict(
        {"model": student, "output": str(out), "teacher": teacher, "seed": seed, "max_drop": 0.05, "steps": steps}
    )
    t0 = time.perf_counter()
    run(cfg, RunContext(overwrite=True, quiet=True))
    metrics = json.loads((out / "metrics.json").read_text())
    rec = json.loads((out / "compression.json").read_text())["recovery"]
    return {
        "mode": mode,
        "decay": decay if mode == "ema" else None,
        "seed": seed,
        "recovery_epochs": [
            {"epoch": h["epoch"], "val_accuracy": h["val_accuracy"], "val_macro_f1": h["val_macro_f1"]}
            for h in rec["history"]
        ],
        "best_epoch": rec["best_epoch"],
        "validation_accuracy": metrics["final"]["validation"]["accuracy"],
        "test_accuracy": metrics["final"]["test"]["accuracy"],
        "n_validation": metrics["final"]["validation"]["n"],
        "n_test": metrics["final"]["test"]["n"],
        "seconds": time.perf_counter() - t0,
    }


def markdown(res: dict) -> str:
    rows = [
        "# Weight averaging during head-pruning recovery",
        "",
        f"recipes/fast.yaml's compress plan on `{res['student']}` (teacher `{res['teacher']}`). Recovery epochs are "
        "the fp32 model's validation scores (epoch 2 is the averaged weights when averaging is on); the kept epoch is "
        "the better by validation macro-F1; val/test acc are the INT8 graph at batch 1.",
        "",
        "| averaging | seed | recovery val acc, epoch 1 / 2 | kept epoch | val acc | test acc | % of teacher |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for t in res["trials"]:
        name = f"ema {t['decay']}" if t["mode"] == "ema" else t["mode"]
        epochs = " / ".join(f"{e['val_accuracy']:.4f}" for e in t["recovery_epochs"])
        pct = f"{100 * t['test_accuracy'] / res['teacher_test_accuracy']:.1f}%" if res["teacher_test_accuracy"] else ""
        rows.append(
            f"| {name} | {t['seed']} | {epochs} | {t['best_epoch']} | {t['validation_accuracy']:.4f} | "
            f"{t['test_accuracy']:.4f} | {pct} |"
        )
    nv, nt = res["trials"][0]["n_validation"], res["trials"][0]["n_test"]
    rows += ["", f"Validation {nv} texts (one is {100 / nv:.2f} pt), test {nt} (one is {100 / nt:.2f} pt)."]
    return "\n".join(rows) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", default="artifacts/runs/default/student")
    ap.add_argument("--teacher", default="artifacts/runs/default/teacher")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--decay", type=float, default=0.99, help="EMA decay per optimizer step (638 steps in all)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--name", default="weight_averaging")
    args = ap.parse_args()

    steps, trials = fast_plan(), []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for mode in args.modes:
                print(f"{mode} seed {seed} ...", file=sys.stderr)
                out = Path(tmp) / f"{mode}-{seed}"
                trials.append(trial(args.student, args.teacher, steps, mode, args.decay, seed, out))
                print(json.dumps(trials[-1]), file=sys.stderr)
    teacher_metrics = json.loads((Path(args.teacher) / "metrics.json").read_text())
    res = {
        "student": args.student,
        "teacher": args.teacher,
        "teacher_test_accuracy": (teacher_metrics.get("test") or {}).get("accuracy"),
        "plan": steps,
        "trials": trials,
    }
    write_results(ROOT / "benchmarks" / "results", args.name, res, markdown(res))


if __name__ == "__main__":
    main()
