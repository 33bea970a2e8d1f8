"""Do the CPU training paths (mobilebert_kit.training.cpu_paths: eager attention, fast dropout masks, sparse
word-embedding Adam) train as well as the stock torch paths? The default recipe's fine-tune and distillation
settings on the whole training split, 3 seeds each, stock and paths alternating per seed (seed 1: stock then
paths; seed 2: paths then stock; ...), through the mbk stages. Reports validation and test accuracy per seed,
mean and sd per variant, the difference of the means against the seeds' spread, and train examples/s.

    python benchmarks/cpu_paths.py --teacher artifacts/runs/default/teacher          # ~25 min on 2 cores
    python benchmarks/cpu_paths.py --teacher artifacts/runs/default/teacher --stages distill --seeds 1 2

Choose on validation; test is reported, never used to choose. Timings need a quiet machine.
Results: benchmarks/results/cpu_paths.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from lib.results_io import cpu_line, provenance, write_results
from lib.stats import NOISE_VERDICT, seed_comparison, spread

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {
    "stock": {"attention": "sdpa", "fast_dropout": False, "sparse_embeddings": False, "cls_only_last_layer": False},
    "paths": {"attention": "auto", "fast_dropout": True, "sparse_embeddings": True, "cls_only_last_layer": True},
}
# the default recipe's train sections (recipes/default.yaml)
TRAIN = {
    "finetune": {"epochs": 1, "max_length": 64, "batch_size": 32, "lr": 5e-5},
    "distill": {"epochs": 2, "max_length": 64, "batch_size": 32, "lr": 1e-4},
}


def train_section(stage: str, variant: str, seed: int) -> dict:
    return {**TRAIN[stage], **VARIANTS[variant], "seed": seed, "checkpoint_every": 0}


def _scores(m: dict, key: str | None) -> dict:
    val = m.get("validation") or {}
    test = m["test"] if key is None else m[key]["test"]
    val = val if key is None else (m[key].get("validation") or val)
    return {
        "validation_accuracy": val.get("accuracy"),
        "test_accuracy": test["accuracy"],
        "train_examples_per_second": m["train_examples_per_second"],
        "train_seconds": m.get("train_seconds"),
        "cpu_paths": m.get("cpu_paths"),
    }


def finetune_once(args, variant: str, seed: int, work: Path) -> dict:
    from mobilebert_kit.artifacts import read_json
    from mobilebert_kit.stages import finetune
    from mobilebert_kit.stages.base import RunContext

    cfg = finetune.FinetuneConfig.from_dict(
        {"model": args.model, "train": train_section("finetune", variant, seed), "output": str(work / "ft")}
    )
    out = finetune.run(cfg, RunContext(quiet=True, overwrite=True)).output
    return _scores(read_json(out / "metrics.json"), None)


def distill_once(args, variant: str, seed: int, work: Path) -> dict:
    from mobilebert_kit.artifacts import read_json
    from mobilebert_kit.data import data_config_for
    from mobilebert_kit.stages import distill
    from mobilebert_kit.stages.base import RunContext

    cfg = distill.DistillConfig.from_dict(
        {
            "teacher": args.teacher,
            "data": data_config_for(Path(args.teacher)).to_dict(),
            "layers": [0, 2, 4],
            "temperature": 3.0,
            "alpha": 0.5,
            "cache_dir": str(work / "cache"),  # one teacher pass, shared: only the student's training differs
            "train": train_section("distill", variant, seed),
            "output": str(work / "st"),
        }
    )
    out = distill.run(cfg, RunContext(quiet=True, overwrite=True)).output
    return _scores(read_json(out / "metrics.json"), "student")


def summary(runs: dict) -> dict:
    out = {}
    for stage, by_v in runs.items():
        c = seed_comparison(by_v["stock"], by_v["paths"])
        val = {
            v: spread([r["validation_accuracy"] for r in by_v[v] if r["validation_accuracy"] is not None])
            for v in VARIANTS
        }
        out[stage] = {
            "test_accuracy": dict(zip(VARIANTS, c["accuracy"], strict=True)),
            "validation_accuracy": val,
            "examples_per_second": dict(zip(VARIANTS, c["examples_per_second"], strict=True)),
            "paths_minus_stock_test": c["difference"],
            "paths_minus_stock_validation": val["paths"]["mean"] - val["stock"]["mean"],
            "within_noise": c["within_noise"],
            "speedup": c["speedup"],
        }
    return out


def _settings(variant: dict) -> str:
    return ", ".join(f"{k}: {str(v).lower()}" for k, v in variant.items())


def markdown(r: dict) -> str:
    s, variants = r["setup"], r["variants"]
    lines = [
        "# CPU training paths vs stock torch paths: accuracy over seeds, and speed",
        "",
        f"The default recipe's fine-tune (`{s['model']}`, 1 epoch) and distillation (`{s['teacher']}` layers 0,2,4, "
        f"2 epochs) on the whole training split, max length 64, batch 32, seeds {s['seeds']} (variants alternate "
        f"per seed). stock = `{_settings(variants['stock'])}`; paths = `{_settings(variants['paths'])}` (the default "
        f"recipe's settings). CPU: {cpu_line(r.get('cpu'))}." + (f" {s['note']}" if s.get("note") else ""),
        "",
        "| stage | variant | val acc per seed | test acc per seed | test mean | sd | train ex/s (mean) |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for stage, by_v in r["runs"].items():
        for v in VARIANTS:
            a, e = r["summary"][stage]["test_accuracy"][v], r["summary"][stage]["examples_per_second"][v]
            vals = ", ".join(f"{x['validation_accuracy']:.4f}" for x in by_v[v] if x["validation_accuracy"] is not None)
            per = ", ".join(f"{x['test_accuracy']:.4f}" for x in by_v[v])
            lines.append(f"| {stage} | {v} | {vals} | {per} | {a['mean']:.4f} | {a['sd']:.4f} | {e['mean']:.1f} |")
    lines.append("")
    for stage, v in r["summary"].items():
        lines.append(
            f"- {stage}: paths - stock = {100 * v['paths_minus_stock_validation']:+.2f} pt validation, "
            f"{100 * v['paths_minus_stock_test']:+.2f} pt test, {NOISE_VERDICT[v['within_noise']]}; "
            f"paths train {v['speedup']:.2f}x as fast"
        )
    lines += ["", f"Reproduce: `{r['command']}` (created {r['created']}).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm-l6", help="the model fine-tuned")
    p.add_argument("--teacher", default="artifacts/runs/default/teacher", help="a fine-tuned teacher to distill")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--stages", nargs="+", default=["finetune", "distill"], choices=["finetune", "distill"])
    p.add_argument("--output", default=str(RESULTS))
    p.add_argument("--tag", default="")
    p.add_argument("--note", help="a line for the results (e.g. what else ran on the machine)")
    args = p.parse_args(argv)
    from mobilebert_kit.runtimes import cpu_info

    runs: dict[str, dict[str, list[dict]]] = {s: {v: [] for v in VARIANTS} for s in args.stages}
    once = {"finetune": finetune_once, "distill": distill_once}
    with tempfile.TemporaryDirectory(prefix="mbk-cpu-paths-") as tmp:
        for i, seed in enumerate(args.seeds):
            for variant in list(VARIANTS) if i % 2 == 0 else list(VARIANTS)[::-1]:
                for stage in args.stages:
                    got = once[stage](args, variant, seed, Path(tmp))
                    runs[stage][variant].append(got)
                    print(
                        f"{stage} seed {seed} {variant}: val {got['validation_accuracy']} test "
                        f"{got['test_accuracy']:.4f} {got['train_examples_per_second']:.1f} ex/s",
                        file=sys.stderr,
                    )
    r = {
        **provenance("cpu_paths", argv),
        "setup": {"model": args.model, "teacher": args.teacher, "seeds": args.seeds, "train": TRAIN, "note": args.note},
        "cpu": cpu_info(),
        "variants": VARIANTS,
        "runs": runs,
        "summary": summary(runs),
    }
    write_results(args.output, "cpu_paths" + (f"-{args.tag}" if args.tag else ""), r, markdown(r))
    return r


if __name__ == "__main__":
    main()
