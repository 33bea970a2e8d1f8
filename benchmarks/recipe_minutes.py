"""The whole default recipe, timed: where its minutes go (issue 27's "<= 8 min on this machine").

Runs ``mbk run <recipe>`` from scratch into a fresh run folder (the recipe's own stages, nothing reused), then reads
the run's minutes per stage (the report's table: :func:`mobilebert_kit.stages.stage_minutes.stage_minutes`, each
stage's biggest parts included) and what it produced: the teacher's and the student's test accuracy, and the
phone model's (verify's ``ort`` accuracy on the full test split, with its agreement with PyTorch).

    python benchmarks/recipe_minutes.py                                  # recipes/default.yaml, ~7 min here
    python benchmarks/recipe_minutes.py --recipe recipes/default.yaml --tag quiet

Time it on a quiet machine (nothing else training). Results: benchmarks/results/recipe_minutes.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from lib.results_io import cpu_line, provenance, write_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def run_recipe(recipe: str, run_dir: Path, overrides: list[str]) -> float:
    """Wall seconds of ``mbk run`` (its exit status checked)."""
    cmd = [sys.executable, "-m", "mobilebert_kit", "run", recipe, f"run_dir={run_dir}", *overrides, "-q"]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True)
    return time.perf_counter() - t0


def outcome(run_dir: Path) -> dict:
    """Test accuracies of what the run produced, read from its own files."""

    def test_acc(folder: str, *keys: str):
        f = run_dir / folder / "metrics.json"
        if not f.exists():
            return None
        m = json.loads(f.read_text())
        for k in keys:
            m = m.get(k, {}) if isinstance(m, dict) else {}
        return m.get("accuracy") if isinstance(m, dict) else None

    verify = run_dir / "export" / "verify.json"
    phone = json.loads(verify.read_text())["formats"].get("ort", {}) if verify.exists() else {}
    return {
        "teacher_test_accuracy": test_acc("teacher", "test"),
        "student_test_accuracy": test_acc("student", "student", "test"),
        "phone_ort_test_accuracy": phone.get("accuracy"),
        "phone_agreement_with_pytorch": phone.get("agreement"),
    }


def markdown(r: dict) -> str:
    o, total = r["outcome"], r["wall_seconds"]
    lines = [
        "# The whole default recipe: where its minutes go",
        "",
        f"`mbk run {r['recipe']}` from scratch, {total / 60:.1f} min wall (target: <= 8 min on this machine). "
        f"CPU: {cpu_line(r.get('cpu'))}." + (f" {r['note']}" if r.get("note") else ""),
        "",
        "| stage | minutes | biggest parts |",
        "|---|---:|---|",
    ]
    for s in r["stages"]:
        parts = ", ".join(f"{name} {sec / 60:.1f}" for name, sec in s["parts"])
        lines.append(f"| {s['step']} | {s['seconds'] / 60:.1f} | {parts} |")
    fmt = lambda v: "–" if v is None else f"{v:.4f}"  # noqa: E731
    lines += [
        "",
        f"Test accuracy (1,276 texts; one text = 0.08 pt): teacher {fmt(o['teacher_test_accuracy'])}, student "
        f"{fmt(o['student_test_accuracy'])}, phone model (packaged INT8 `.ort`) {fmt(o['phone_ort_test_accuracy'])} "
        f"(agreement with PyTorch {fmt(o['phone_agreement_with_pytorch'])}).",
        "",
        f"Reproduce: `{r['command']}` (created {r['created']}).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    from mobilebert_kit.stages.stage_minutes import stage_minutes

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="recipes/default.yaml")
    p.add_argument("--work", default=str(ROOT / "benchmarks" / "work" / "recipe_minutes"))
    p.add_argument("--set", action="append", default=[], help="KEY.PATH=VALUE recipe overrides, as mbk run takes")
    p.add_argument("--note", default="")
    p.add_argument("--output", default=str(RESULTS))
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)
    run_dir = Path(args.work) / time.strftime("%Y%m%d-%H%M%S")  # always a fresh folder: nothing is reused
    wall = run_recipe(args.recipe, run_dir, args.set)
    r = {
        **provenance("recipe_minutes", argv),
        "recipe": args.recipe,
        "run_dir": str(run_dir),
        "wall_seconds": wall,
        "stages": stage_minutes(run_dir),
        "outcome": outcome(run_dir),
        "note": args.note,
    }
    write_results(args.output, "recipe_minutes" + (f"-{args.tag}" if args.tag else ""), r, markdown(r))
    print(markdown(r))
    return r


if __name__ == "__main__":
    main()
