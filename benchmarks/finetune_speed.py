"""Fine-tuning speed, side by side in one run: a plain Hugging Face Trainer baseline padded to
max_length (as users usually write it) vs `mbk finetune` with its defaults, and each speed switch
alone on top of the defaults. Same model, same data, same epochs, same optimizer settings.

    python benchmarks/finetune_speed.py                      # MiniLM-L6, 2000 train rows, 1 epoch
    python benchmarks/finetune_speed.py --train-examples 0   # the full 10k training split
    python benchmarks/finetune_speed.py --device cuda        # on a GPU: adds bf16/fp16 and MFU

Each variant runs in its own subprocess (no shared threads, caches or memory). Throughput is
training examples per second over the training loop only (evaluation excluded for both tools);
accuracy and macro-F1 are on the full test split. Results: benchmarks/results/finetune_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lib.results_io import write_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# name -> extra mbk flags on top of the defaults ("switch alone")
SWITCHES = {
    "mbk default": [],
    "--no-dynamic-padding": ["--no-dynamic-padding"],
    "--no-group-by-length": ["--no-group-by-length"],
    "--freeze-layers 3": ["--freeze-layers", "3"],
    "--grad-accum 2 (batch 16)": ["--grad-accum", "2", "--batch-size", "16"],
    "--gradient-checkpointing": ["--gradient-checkpointing"],
    "--num-workers 2": ["--num-workers", "2"],
    "--compile": ["--compile"],
}
GPU_SWITCHES = {
    "--precision fp32 (cuda)": ["--precision", "fp32"],
    "--precision fp16": ["--precision", "fp16"],
    "--pin-memory off": ["--no-pin-memory"],
}
BASELINE = "HF Trainer, padded to max_length"
# Dense bf16 peak of known GPUs, TFLOP/s, for MFU (model FLOPs utilisation).
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0, "T4": 65.0}


def baseline(args) -> dict:
    """The HF Trainer baseline, in-process (called in a subprocess by main)."""
    import numpy as np
    import torch
    from transformers import Trainer, TrainingArguments

    from mobilebert_kit.data import DataConfig, load_dataset
    from mobilebert_kit.metrics import classification_metrics
    from mobilebert_kit.models import load_pretrained_for_classification, load_tokenizer, resolve_model

    torch.manual_seed(args.seed)
    ds = load_dataset(DataConfig(max_train_examples=args.train_examples or None))
    resolved = resolve_model(args.model)
    tok = load_tokenizer(resolved.path)
    model = load_pretrained_for_classification(resolved, ds.label_names)

    class Enc(torch.utils.data.Dataset):
        def __init__(self, split):
            self.enc = tok(split.texts, truncation=True, max_length=args.max_length, padding="max_length")
            self.labels = split.labels

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            return {**{k: torch.tensor(v[i]) for k, v in self.enc.items()}, "labels": torch.tensor(self.labels[i])}

    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=128,
            num_train_epochs=args.epochs,
            learning_rate=args.lr,
            weight_decay=0.01,
            warmup_ratio=0.06,
            eval_strategy="no",
            save_strategy="no",
            report_to=[],
            logging_strategy="no",
            seed=args.seed,
            use_cpu=args.device == "cpu",
            disable_tqdm=True,
            bf16=args.device == "cuda" and torch.cuda.is_bf16_supported(),
        )
        trainer = Trainer(model=model, args=targs, train_dataset=Enc(ds.splits["train"]))
        out = trainer.train()
        pred = trainer.predict(Enc(ds.splits["test"]))
    test = classification_metrics(np.asarray(pred.predictions), ds.splits["test"].labels, ds.num_labels)
    return {
        "train_examples_per_second": out.metrics["train_samples_per_second"],
        "train_seconds": out.metrics["train_runtime"],
        "test": test,
        "train_examples": len(ds.splits["train"]),
    }


def run_mbk(args, flags: list[str], workdir: Path) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "mobilebert_kit",
        "finetune",
        "--model",
        args.model,
        "--data",
        "rotten_tomatoes",
        "--epochs",
        str(args.epochs),
        "--lr",
        str(args.lr),
        "--batch-size",
        str(args.batch_size),
        "--max-length",
        str(args.max_length),
        "--seed",
        str(args.seed),
        "--device",
        args.device,
        "--checkpoint-every",
        "0",
        "--early-stopping-patience",
        "0",
        "-o",
        str(workdir / "out"),
        "--overwrite",
        "--json",
        "-q",
    ]
    if args.train_examples:
        cmd += ["--max-train-examples", str(args.train_examples)]
    # flags given later override the earlier ones (click keeps the last value)
    r = subprocess.run(cmd + flags, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
    m = json.loads(r.stdout)
    return {
        "train_examples_per_second": m["train_examples_per_second"],
        "train_seconds": m["train_seconds"],
        "test": m["test"],
        "precision": m["precision"],
        "steps": m["steps"],
    }


def mfu(result: dict, args) -> float | None:
    """Model FLOPs utilisation: 6 * non-embedding params * tokens per second / peak."""
    import torch

    if args.device != "cuda" or "tokens_per_second" not in result:
        return None
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    if peak is None:
        return None
    return 6 * result["non_embedding_params"] * result["tokens_per_second"] / (peak * 1e12)


def tokens_per_example(args) -> float:
    from mobilebert_kit.data import DataConfig, load_dataset
    from mobilebert_kit.models import load_tokenizer, resolve_model

    ds = load_dataset(DataConfig(max_train_examples=args.train_examples or None))
    tok = load_tokenizer(resolve_model(args.model).path)
    lens = [len(x) for x in tok(ds.splits["train"].texts, truncation=True, max_length=args.max_length)["input_ids"]]
    return sum(lens) / len(lens)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--train-examples", type=int, default=2000, help="0 = the full training split")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--only", nargs="*", help="run only these variants (names as in the table)")
    ap.add_argument("--tag", default="", help="suffix for the result files (e.g. h100)")
    ap.add_argument("--_baseline", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args()


def run_all(args) -> dict[str, dict]:
    """The baseline (in a subprocess of this script) and every mbk variant (each an ``mbk finetune``
    subprocess), by table name."""
    variants = dict(SWITCHES)
    if args.device == "cuda":
        variants.update(GPU_SWITCHES)
    if args.only:
        variants = {k: v for k, v in variants.items() if k in args.only}
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    results: dict[str, dict] = {}
    print(f"baseline: HF Trainer, padding='max_length' ({args.max_length}) ...", file=sys.stderr)
    r = subprocess.run(
        [sys.executable, __file__, "--_baseline", *sys.argv[1:]], capture_output=True, text=True, cwd=ROOT, env=env
    )
    results[BASELINE] = (
        json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {"error": r.stderr[-500:]}
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in variants.items():
            print(f"mbk: {name} ...", file=sys.stderr)
            results[name] = run_mbk(args, flags, Path(tmp))
    return results


def table_rows(results: dict[str, dict], args, tpe: float) -> list[dict]:
    """One row per variant: speed, its speed-up and accuracy change against the baseline (and MFU on cuda)."""
    base = results[BASELINE]
    base_eps = base.get("train_examples_per_second")
    base_acc = base.get("test", {}).get("accuracy")
    rows = []
    for name, res in results.items():
        if "error" in res:
            rows.append({"variant": name, "error": res["error"]})
            continue
        eps = res["train_examples_per_second"]
        row = {
            "variant": name,
            "examples_per_second": eps,
            "speedup_vs_baseline": eps / base_eps if base_eps else None,
            "test_accuracy": res["test"]["accuracy"],
            "test_macro_f1": res["test"]["macro_f1"],
            "accuracy_delta_pt": 100 * (res["test"]["accuracy"] - base_acc) if base_acc is not None else None,
            "train_seconds": res["train_seconds"],
            "precision": res.get("precision", "fp32"),
        }
        if args.device == "cuda":
            from mobilebert_kit.models import load_pretrained_for_classification, resolve_model

            m = load_pretrained_for_classification(resolve_model(args.model), ["a", "b"])
            emb = sum(p.numel() for p in m.base_model.embeddings.parameters())
            padded = "padded" in name or "no-dynamic" in name
            res["tokens_per_second"] = eps * (args.max_length if padded else tpe)
            res["non_embedding_params"] = sum(p.numel() for p in m.parameters()) - emb
            row["mfu"] = mfu(res, args)
        rows.append(row)
    return rows


def main() -> None:
    args = parse_args()
    if args._baseline:
        print(json.dumps(baseline(args)))
        return
    t0 = time.time()
    results = run_all(args)
    tpe = tokens_per_example(args)
    rows = table_rows(results, args, tpe)
    import platform

    import torch

    report = {
        "benchmark": "finetune_speed",
        "model": args.model,
        "train_examples": results[BASELINE].get("train_examples"),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "max_length": args.max_length,
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "cpu_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "mean_tokens_per_example": tpe,
        "wall_seconds": time.time() - t0,
        "rows": rows,
        "command": " ".join(["python", "benchmarks/finetune_speed.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d"),
    }
    write_results(RESULTS, "finetune_speed" + (f"_{args.tag}" if args.tag else ""), report, markdown(report))


def markdown(rep: dict) -> str:
    lines = [
        f"# Fine-tuning speed: HF Trainer baseline vs `mbk finetune` ({rep['date']})",
        "",
        f"Model `{rep['model']}`, Rotten Tomatoes, {rep['train_examples']} training rows, {rep['epochs']} epoch(s), "
        f"batch {rep['batch_size']}, lr {rep['lr']}, max_length {rep['max_length']}, device {rep['device']} "
        f"({rep['cpu_threads']} threads); mean {rep['mean_tokens_per_example']:.1f} tokens per example. "
        "Throughput over the training loop only; accuracy on the full test split. Each mbk row is the defaults "
        "with one switch changed.",
        "",
        "| variant | train ex/s | vs baseline | test acc | Δ acc (pt) | macro-F1 |"
        + (" MFU |" if "mfu" in str(rep["rows"]) else ""),
        "|---|---:|---:|---:|---:|---:|" + ("---:|" if "mfu" in str(rep["rows"]) else ""),
    ]
    for r in rep["rows"]:
        if "error" in r:
            lines.append(f"| {r['variant']} | error: {r['error']} | | | | |")
            continue
        mfu_col = f" {r['mfu'] * 100:.1f}% |" if r.get("mfu") is not None else (" |" if "mfu" in r else "")
        lines.append(
            f"| {r['variant']} | {r['examples_per_second']:.1f} | {r['speedup_vs_baseline']:.2f}x | "
            f"{r['test_accuracy']:.4f} | {r['accuracy_delta_pt']:+.1f} | {r['test_macro_f1']:.4f} |{mfu_col}"
        )
    lines += ["", f"Reproduce: `{rep['command']}` (wall time {rep['wall_seconds'] / 60:.1f} min)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
