"""Does bf16 autocast train as well as fp32? A small fine-tune and a small distillation, 3 seeds each, in both
precisions, alternating (seed 1: fp32 then bf16; seed 2: bf16 then fp32; ...), through the mbk stages themselves
(``train.precision``). Reports test accuracy per seed, mean and spread per precision, the difference of the
means against the seeds' spread, and train examples/s.

    python benchmarks/precision_accuracy.py --teacher artifacts/teacher        # ~3-4x a 2k-row finetune+distill
    python benchmarks/precision_accuracy.py --teacher artifacts/teacher --seeds 1 2 3 --train-examples 2000

``--teacher`` is a fine-tuned teacher folder (e.g. ``mbk finetune -o artifacts/teacher``): every distillation
starts from it (the teacher pass is cached once and shared, so only the student's training differs). bf16 needs
a CPU with avx512_bf16/amx_bf16 (or a GPU). Results: benchmarks/results/precision_accuracy.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from lib.results_io import cpu_line, provenance, write_results
from lib.stats import NOISE_VERDICT, seed_comparison

RESULTS = Path(__file__).resolve().parent / "results"
PRECISIONS = ("fp32", "bf16")


def train_section(args, precision: str, seed: int) -> dict:
    return {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "seed": seed,
        "precision": precision,
        "early_stopping_patience": 0,
        "checkpoint_every": 0,
    }


def finetune_once(args, precision: str, seed: int, work: Path) -> dict:
    from mobilebert_kit.artifacts import read_json
    from mobilebert_kit.stages import finetune
    from mobilebert_kit.stages.base import RunContext

    cfg = finetune.FinetuneConfig.from_dict(
        {
            "model": args.model,
            "data": {"max_train_examples": args.train_examples or None},
            "train": train_section(args, precision, seed),
            "output": str(work / f"ft-{precision}-{seed}"),
        }
    )
    out = finetune.run(cfg, RunContext(quiet=True)).output
    m = read_json(out / "metrics.json")
    return {
        "test_accuracy": m["test"]["accuracy"],
        "test_macro_f1": m["test"]["macro_f1"],
        "train_examples_per_second": m["train_examples_per_second"],
        "precision": m["precision"],
    }


def distill_once(args, precision: str, seed: int, work: Path) -> dict:
    from mobilebert_kit.artifacts import read_json
    from mobilebert_kit.data import data_config_for
    from mobilebert_kit.stages import distill
    from mobilebert_kit.stages.base import RunContext

    data = data_config_for(Path(args.teacher)).to_dict()
    data["max_train_examples"] = args.train_examples or None
    cfg = distill.DistillConfig.from_dict(
        {
            "teacher": args.teacher,
            "data": data,
            "cache_dir": str(work / "cache"),
            "train": train_section(args, precision, seed),
            "output": str(work / f"st-{precision}-{seed}"),
        }
    )
    out = distill.run(cfg, RunContext(quiet=True)).output
    m = read_json(out / "metrics.json")
    return {
        "test_accuracy": m["student"]["test"]["accuracy"],
        "test_macro_f1": m["student"]["test"]["macro_f1"],
        "train_examples_per_second": m["train_examples_per_second"],
        "precision": m["precision"],
    }


def summary(runs: dict) -> dict:
    """Per stage: per precision the accuracy and speed spread; bf16 minus fp32 mean accuracy vs the seeds' sd."""
    out = {}
    for stage, by_p in runs.items():
        c = seed_comparison(by_p["fp32"], by_p["bf16"])
        out[stage] = {
            "accuracy": dict(zip(PRECISIONS, c["accuracy"], strict=True)),
            "examples_per_second": dict(zip(PRECISIONS, c["examples_per_second"], strict=True)),
            "bf16_minus_fp32_accuracy": c["difference"],
            "within_noise": c["within_noise"],
            "bf16_speedup": c["speedup"],
        }
    return out


def markdown(r: dict) -> str:
    s = r["setup"]
    lines = [
        "# bf16 autocast vs fp32: accuracy over seeds (fine-tune and distillation)",
        "",
        f"`{s['model']}` fine-tuned and `{s['teacher']}` distilled (default student), {s['train_examples']} "
        f"training rows, {s['epochs']} epoch(s), batch {s['batch_size']}, max length {s['max_length']}, seeds "
        f"{s['seeds']} (precisions alternate in order per seed). CPU: {cpu_line(r.get('cpu'))}.",
        "",
        "| stage | precision | test accuracy per seed | mean | sd | train ex/s (mean) |",
        "|---|---|---|---:|---:|---:|",
    ]
    for stage, by_p in r["runs"].items():
        for p in PRECISIONS:
            a, e = r["summary"][stage]["accuracy"][p], r["summary"][stage]["examples_per_second"][p]
            per = ", ".join(f"{x['test_accuracy']:.4f}" for x in by_p[p])
            lines.append(f"| {stage} | {p} | {per} | {a['mean']:.4f} | {a['sd']:.4f} | {e['mean']:.1f} |")
    lines.append("")
    for stage, v in r["summary"].items():
        lines.append(
            f"- {stage}: bf16 - fp32 = {100 * v['bf16_minus_fp32_accuracy']:+.2f} pt, "
            f"{NOISE_VERDICT[v['within_noise']]}; bf16 trains {v['bf16_speedup']:.2f}x as fast"
        )
    lines += ["", f"Reproduce: `{r['command']}` (created {r['created']}).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm-l6", help="the model fine-tuned")
    p.add_argument("--teacher", default="artifacts/teacher", help="a fine-tuned teacher folder to distill from")
    p.add_argument("--train-examples", type=int, default=2000, help="0 = the whole training split")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--stages", nargs="+", default=["finetune", "distill"], choices=["finetune", "distill"])
    p.add_argument("--output", default=str(RESULTS))
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)
    from mobilebert_kit.runtimes import cpu_info

    runs: dict[str, dict[str, list[dict]]] = {s: {p: [] for p in PRECISIONS} for s in args.stages}
    once = {"finetune": finetune_once, "distill": distill_once}
    with tempfile.TemporaryDirectory(prefix="mbk-precision-") as tmp:
        for i, seed in enumerate(args.seeds):
            for precision in PRECISIONS if i % 2 == 0 else PRECISIONS[::-1]:
                for stage in args.stages:
                    runs[stage][precision].append(once[stage](args, precision, seed, Path(tmp)))
                    got = runs[stage][precision][-1]
                    print(f"{stage} seed {seed} {precision}: test {got['test_accuracy']:.4f}", file=sys.stderr)
    r = {
        **provenance("precision_accuracy", argv),
        "setup": {
            "model": args.model,
            "teacher": args.teacher,
            "train_examples": args.train_examples,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "seeds": args.seeds,
        },
        "cpu": cpu_info(),
        "runs": runs,
        "summary": summary(runs),
    }
    write_results(args.output, "precision_accuracy" + (f"-{args.tag}" if args.tag else ""), r, markdown(r))
    return r


if __name__ == "__main__":
    main()
