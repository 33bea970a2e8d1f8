"""Does a bigger teacher pay off? Students of the same shape compared on the same test texts.

Each argument is ``NAME=FOLDER`` (a classifier folder with ``metrics.json``, e.g. a run's ``student``);
the first is the reference. Every model is scored on the Rotten Tomatoes test split (PyTorch fp32),
and each other model's accuracy difference from the first comes with a paired 95% bootstrap interval
over the same texts (compression.guard.paired_drop_interval), so a difference inside the noise is
reported as such.

    python benchmarks/teacher_payoff.py "MPNet teacher=artifacts/runs/quality-2k/student" \\
        "MiniLM teacher=artifacts/runs/minilm-2k/student" "no teacher=artifacts/runs/direct-2k/student"
Writes ``benchmarks/results/teacher_payoff.json`` and ``teacher_payoff.md`` (``--tag`` suffixes them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lib.results_io import write_results  # noqa: E402
from lib.stats import paired_ci  # noqa: E402

from mobilebert_kit.artifacts import library_versions, read_json  # noqa: E402


def main() -> None:
    import torch

    from mobilebert_kit.batching import predict_logits
    from mobilebert_kit.data import DataConfig, load_dataset
    from mobilebert_kit.models import load_classifier_folder

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="NAME=FOLDER, the first is the reference")
    ap.add_argument("--note", default="", help="a line saying how the models were trained")
    ap.add_argument("--tag", default="")
    ap.add_argument("--results", default="benchmarks/results")
    args = ap.parse_args()
    torch.set_num_threads(2)
    test = load_dataset(DataConfig(data="rotten_tomatoes")).splits["test"]
    y = np.asarray(test.labels)
    res: dict = {"n_test": len(y), "note": args.note, "models": {}, "vs_first": {}, "versions": library_versions()}
    correct = {}
    for spec in args.models:
        name, folder = spec.split("=", 1)
        model, tok, _ = load_classifier_folder(folder)
        logits = predict_logits(model.eval(), tok, test.texts, test.pairs, max_length=64)
        correct[name] = logits.argmax(-1) == y
        val = read_json(Path(folder) / "metrics.json").get("validation", {})
        res["models"][name] = {
            "folder": folder,
            "test_accuracy": float(correct[name].mean()),
            "validation_accuracy": val.get("accuracy"),
        }
    first, *others = list(correct)
    for name in others:
        diff, lo, hi = paired_ci(correct[first], correct[name])  # first minus this one
        res["vs_first"][name] = {"first_minus_this": diff, "ci95": [lo, hi]}
    write_results(args.results, "teacher_payoff" + (f"-{args.tag}" if args.tag else ""), res, markdown(res, first))


def markdown(res: dict, first: str) -> str:
    rows = ["# Does a bigger teacher pay off?", "", res["note"], "", "| student | validation accuracy | test accuracy | "
            f"{first} minus this (test, paired 95% CI) |", "|---|---:|---:|---|"]  # fmt: skip
    for name, m in res["models"].items():
        d = res["vs_first"].get(name)
        diff = (
            "reference"
            if d is None
            else f"{100 * d['first_minus_this']:+.2f} pt ({100 * d['ci95'][0]:+.2f} … {100 * d['ci95'][1]:+.2f})"
        )
        val = "n/a" if m["validation_accuracy"] is None else f"{m['validation_accuracy']:.4f}"
        rows.append(f"| {name} | {val} | {m['test_accuracy']:.4f} | {diff} |")
    rows += ["", f"{res['n_test']} test texts: one text is {100 / res['n_test']:.2f} pt."]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
