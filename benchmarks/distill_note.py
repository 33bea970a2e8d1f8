"""Note material for ``mbk distill``: teacher vs student (test accuracy, macro-F1, params, size,
time) and an ablation of the losses/options, on the data the teacher was trained with.

Each variant is one ``mbk distill`` run (distill.run) on the same teacher; the teacher-output
cache is shared, so only the first run (and the first with ``--unlabeled``) pays the teacher pass.
Writes ``benchmarks/results/distill_note.json`` and ``.md``.

    mbk finetune --epochs 1 --max-length 64 -o benchmarks/work/teacher
    python benchmarks/distill_note.py --teacher benchmarks/work/teacher --epochs 2 \\
        --variants seed004,hard_only,soft_only,unlabeled,hidden
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from lib.results_io import provenance, write_results

# name -> (description, DistillConfig overrides)
VARIANTS: dict[str, tuple[str, dict]] = {
    "seed004": ("layers 0,2,4, T=3, alpha=0.5 (soft KL*T^2 + hard CE)", {}),
    "hard_only": ("alpha=0: hard labels only (plain fine-tune of the copied layers)", {"alpha": 0.0}),
    "soft_only": ("alpha=1: teacher soft labels only", {"alpha": 1.0}),
    "unlabeled": ("seed004 + the built-in plot summaries, labelled by the teacher", {"unlabeled": "builtin"}),
    "hidden": ("seed004 + hidden-state MSE (weight 1, uniform layer map)", {"hidden_weight": 1.0}),
    "attention": ("seed004 + attention-map MSE (weight 1)", {"attention_weight": 1.0}),
    "t1": ("layers 0,2,4, T=1, alpha=0.5", {"temperature": 1.0}),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="artifacts/teacher")
    p.add_argument("--variants", default="seed004,hard_only,soft_only,unlabeled")
    p.add_argument("--layers", default="0,2,4")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=None, help="default: the teacher's")
    p.add_argument("--max-train-examples", type=int, default=None)
    p.add_argument("--work", default="benchmarks/work/distill_note")
    p.add_argument("--cache-dir", default=None, help="default: <work>/cache")
    p.add_argument("--output", default=str(Path(__file__).parent / "results"))
    p.add_argument("--render", metavar="JSON", help="only re-render the Markdown of an earlier results JSON")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="take a variant's finished output folder from an earlier run (same teacher) instead of training it again",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.render:
        result = json.loads(Path(args.render).read_text())
        Path(args.render).with_suffix(".md").write_text(markdown(result))
        return result

    from mobilebert_kit.artifacts import read_json

    teacher = Path(args.teacher)
    t_manifest = read_json(teacher / "manifest.json")
    t_metrics = read_json(teacher / "metrics.json")
    rows = []
    for name in args.variants.split(","):
        row, teacher_side = run_variant(args, teacher, name)
        rows.append(row)
        print(json.dumps(rows[-1]), file=sys.stderr)
    result = {
        **provenance("distill_note", argv),
        "teacher": teacher_summary(teacher, t_manifest, t_metrics, teacher_side),
        "setup": {
            "layers": args.layers,
            "epochs": args.epochs,
            "lr": args.lr,
            "batch_size": args.batch_size,
            "max_train_examples": args.max_train_examples,
            "cpu_count": os.cpu_count(),
        },
        "variants": rows,
    }
    write_results(args.output, "distill_note", result, markdown(result))
    return result


def variant_section(args, teacher: Path, name: str) -> dict:
    """The ``distill`` recipe section of one variant: the shared options, the variant's overrides, and
    what it inherits from the teacher."""
    from mobilebert_kit.stages import distill

    work = Path(args.work)
    section = {
        "teacher": str(teacher),
        "layers": [int(x) for x in args.layers.split(",")],
        "cache_dir": args.cache_dir or str(work / "cache"),
        "output": str(work / name),
        "train": {
            "epochs": args.epochs,
            "lr": args.lr,
            "batch_size": args.batch_size,
            "checkpoint_every": 0,
            "early_stopping_patience": 0,
        },
        **VARIANTS[name][1],
    }
    distill.inherit_from_teacher(
        section, str(teacher), {"max_train_examples": args.max_train_examples} if args.max_train_examples else {}
    )
    if args.max_length:
        section["train"]["max_length"] = args.max_length
    return section


def earlier_run_seconds(out: Path, teacher: Path, section: dict, overrides: dict) -> float:
    """The wall time of an earlier run of this variant in ``out``; stops when it used another teacher or options."""
    from mobilebert_kit.artifacts import read_json, sha256_tree

    manifest = read_json(out / "manifest.json")
    same = (
        manifest["inputs"]["model"]["sha256"] == sha256_tree(teacher)
        and all(manifest["config"]["train"][k] == section["train"][k] for k in ("epochs", "lr", "batch_size"))
        and all(manifest["config"][k] == v for k, v in overrides.items())
    )
    if not same:
        raise SystemExit(f"{out} was made from another teacher or with other options; run without --reuse")
    return manifest["timings"]["total_seconds"]


def run_variant(args, teacher: Path, name: str) -> tuple[dict, dict]:
    """Distil one variant (or take its earlier run with ``--reuse``); its row, and the teacher's side of
    its metrics."""
    from mobilebert_kit.artifacts import read_json
    from mobilebert_kit.stages import distill
    from mobilebert_kit.stages.base import RunContext

    desc, overrides = VARIANTS[name]
    section = variant_section(args, teacher, name)
    out = Path(section["output"])
    reused = args.reuse and (out / "manifest.json").exists()
    if reused:
        load0, wall = float("nan"), earlier_run_seconds(out, teacher, section, overrides)
    else:
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        out = distill.run(distill.DistillConfig.from_dict(section), RunContext(overwrite=True)).output
        wall = time.perf_counter() - t0
    m = read_json(out / "metrics.json")
    row = {
        "variant": name,
        "description": desc,
        "overrides": overrides,
        "test_accuracy": m["student"]["test"]["accuracy"],
        "test_macro_f1": m["student"]["test"]["macro_f1"],
        "validation_accuracy": m["student"]["validation"]["accuracy"],
        "retention_accuracy": m["retention"]["accuracy"],
        "agreement": m["test_agreement_with_teacher"],
        "best_epoch": m["best_epoch"],
        "train_examples": m["train_examples"],
        "train_examples_per_second": m["train_examples_per_second"],
        "train_seconds": m["train_seconds"],
        "teacher_cache": m["teacher_cache"]["train"],
        "teacher_cache_seconds": m["teacher_cache"]["seconds"],
        "wall_seconds": wall,
        "reused_earlier_run": reused,
        "load_average_1min": [load0, float("nan") if reused else os.getloadavg()[0]],
        "parameters": m["student"]["parameters"],
        "size_bytes": m["student"]["size_bytes"],
    }
    return row, m["teacher"]


def teacher_summary(teacher: Path, t_manifest: dict, t_metrics: dict, teacher_side: dict) -> dict:
    """The teacher's row: how it was trained (its manifest and metrics) and how it scored in the distill runs."""
    return {
        "path": str(teacher),
        "model": t_manifest["config"].get("model"),
        "epochs": t_manifest["config"]["train"]["epochs"],
        "max_length": t_manifest.get("max_length"),
        "test_accuracy": teacher_side["test"]["accuracy"],
        "test_macro_f1": teacher_side["test"]["macro_f1"],
        "parameters": teacher_side["parameters"],
        "size_bytes": teacher_side["size_bytes"],
        "train_seconds": t_metrics.get("train_seconds"),
        "train_examples_per_second": t_metrics.get("train_examples_per_second"),
        "test_examples": teacher_side["test"]["n"],
        "train_examples": t_manifest.get("dataset", {}).get("sizes", {}).get("train"),
    }


def markdown(r: dict) -> str:
    t, s = r["teacher"], r["setup"]
    lines = [
        "# mbk distill: teacher vs student and ablation",
        "",
        f"Teacher: {t['model']} fine-tuned {t['epochs']} epoch(s) with `mbk finetune` (max length {t['max_length']}): "
        f"{t['parameters']:,} params, {t['size_bytes'] / 1e6:.1f} MB, trained in {t['train_seconds'] or 0:.0f} s "
        f"({t['train_examples_per_second'] or 0:.1f} ex/s). Student: layers {s['layers']} copied, {s['epochs']} epoch(s), "
        f"lr {s['lr']}, batch {s['batch_size']}. Test set: {t['test_examples']} reviews (movie-grouped split). "
        f"{s['cpu_count']} CPU cores shared with other jobs (load averages per row).",
        "",
        "| model / variant | train rows | test acc | test macro-F1 | % of teacher acc | agreement | params | size MB | "
        "train ex/s | train s | teacher pass s | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| teacher | {t['train_examples'] or 0:,} | {t['test_accuracy']:.4f} | {t['test_macro_f1']:.4f} | 100.0% | | {t['parameters']:,} | "
        f"{t['size_bytes'] / 1e6:.1f} | {t['train_examples_per_second'] or 0:.1f} | {t['train_seconds'] or 0:.0f} | | |",
    ]
    for v in r["variants"]:
        load = f"{v['load_average_1min'][0]:.1f}-{v['load_average_1min'][1]:.1f}"
        if v.get("reused_earlier_run"):
            load = "(earlier run)"
        lines.append(
            f"| {v['variant']}: {v['description']} | {v['train_examples']:,} | {v['test_accuracy']:.4f} | {v['test_macro_f1']:.4f} | "
            f"{v['retention_accuracy']:.1%} | {v['agreement']:.1%} | {v['parameters']:,} | {v['size_bytes'] / 1e6:.1f} | "
            f"{v['train_examples_per_second']:.1f} | {v['train_seconds']:.0f} | "
            f"{v['teacher_cache_seconds']:.0f} ({v['teacher_cache']}) | {load} |"
        )
    lines += [
        "",
        "Agreement: share of test reviews where the student predicts the teacher's label. Train ex/s "
        "depends on what else ran on the shared cores (load column); compare speeds with "
        "distill_speed.md, where both sides run back to back in one process.",
        "",
        f"Reproduce: `{r['command']}`",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
