"""Training throughput against the honest peer: `mbk finetune` / `mbk distill` vs a Hugging Face Trainer set up
as its docs recommend, on the same rows, in one interleaved run, with test accuracy at the end.

The peer (transformers' own advice for speed): ``DataCollatorWithPadding`` (pad per batch), ``group_by_length=True``
(batches of similar lengths), ``bf16=True`` where the CPU has native bf16 (avx512_bf16/amx_bf16; fp32 elsewhere:
the same rule mbk's ``auto`` follows), DataLoader workers tuned (each ``--peer-workers`` value is one variant; the
fastest is "the peer"), and for distillation teacher logits precomputed once (fp32, timed apart) with a small
``Trainer`` subclass computing the KD loss (KL at T^2 + hard CE, mbk's default T and alpha) from those cached
logits. The student of both distillations is the teacher's every other layer (mbk's default).

mbk runs with its defaults (``auto`` precision) and each freeze switch alone (``--freeze-embeddings``,
``--freeze-layers N``), and with each CPU training path of :mod:`mobilebert_kit.training.cpu_paths` off alone and
all off (``--no-cpu-paths`` skips those). Every variant is its own subprocess (no shared threads or caches); the variants rotate in
ABBA order over ``--repeats`` and medians are compared. Throughput is training examples/s over the training loop
(the peer's ``train_samples_per_second``, mbk's ``train_examples_per_second``); accuracy on the full test split.

    python benchmarks/trainer_peer.py --teacher artifacts/teacher                 # 2,000 rows, 1 epoch, MiniLM-L6
    python benchmarks/trainer_peer.py --teacher artifacts/teacher --repeats 2 --only finetune

Roughly 10 variants x (2,000 rows at 50-100 ex/s + model load/eval) ~ 10-15 min per repeat on 2 cores.
Results: benchmarks/results/trainer_peer.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lib.results_io import cpu_line, provenance, write_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


# --------------------------------------------------------------------------- the peer (run in a subprocess)


def peer(args, kind: str, workers: int) -> dict:
    """The recommended Trainer: fine-tune ``args.model`` (kind ``finetune``) or distill ``args.teacher``'s every
    other layer from cached teacher logits (kind ``distill``)."""
    import numpy as np
    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from mobilebert_kit.batching import predict_logits
    from mobilebert_kit.devices import cpu_has_native_bf16
    from mobilebert_kit.metrics import classification_metrics

    torch.manual_seed(args.seed)
    model, tok, ds, teacher_logits, teacher_seconds = _peer_model_and_data(args, kind)
    train, test = ds.splits["train"], ds.splits["test"]
    enc = tok(train.texts, train.pairs, truncation=True, max_length=args.max_length)
    rows = [
        {**{k: v[i] for k, v in enc.items()}, "labels": train.labels[i]}
        | ({"teacher_logits": teacher_logits[i].tolist()} if teacher_logits is not None else {})
        for i in range(len(train.texts))
    ]
    pad = DataCollatorWithPadding(tok)

    def collate(features):
        extra = [f.pop("teacher_logits") for f in features] if "teacher_logits" in features[0] else None
        batch = pad(features)
        if extra is not None:
            batch["teacher_logits"] = torch.tensor(extra, dtype=torch.float32)
        return batch

    bf16 = cpu_has_native_bf16() if args.device == "cpu" else torch.cuda.is_bf16_supported()
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=args.batch_size,
            num_train_epochs=args.epochs,
            learning_rate=args.lr,
            weight_decay=0.01,
            warmup_ratio=0.06,
            max_grad_norm=1.0,
            group_by_length=True,
            bf16=bf16,
            dataloader_num_workers=workers,
            remove_unused_columns=False,  # keep teacher_logits for compute_loss
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            seed=args.seed,
            use_cpu=args.device == "cpu",
            disable_tqdm=True,
        )
        trainer_class = _cached_kd_trainer(args) if kind == "distill" else Trainer
        trainer = trainer_class(model=model, args=targs, train_dataset=_Rows(rows), data_collator=collate)
        out = trainer.train()
    logits = predict_logits(model, tok, test.texts, test.pairs, max_length=args.max_length)
    test_m = classification_metrics(np.asarray(logits), test.labels, ds.num_labels)
    eps = out.metrics["train_samples_per_second"]
    return {
        "train_examples_per_second": eps,
        "train_seconds": out.metrics["train_runtime"],
        "teacher_pass_seconds": teacher_seconds,
        "test_accuracy": test_m["accuracy"],
        "test_macro_f1": test_m["macro_f1"],
        "precision": "bf16" if bf16 else "fp32",
        "dataloader_workers": workers,
        "train_examples": len(rows),
    }


class _Rows:
    """A map-style dataset of feature dicts (copies, so the collator may pop from them)."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return dict(self.rows[i])


def _peer_model_and_data(args, kind: str):
    """(model to train, tokenizer, dataset, cached teacher logits or None, seconds the teacher pass took)."""
    from mobilebert_kit.batching import predict_logits
    from mobilebert_kit.data import DataConfig, data_config_for, load_dataset
    from mobilebert_kit.models import (
        load_classifier_folder,
        load_pretrained_for_classification,
        load_tokenizer,
        resolve_model,
    )
    from mobilebert_kit.training.students import copy_layers_student, every_other_layer

    limit = args.train_examples or None
    if kind == "finetune":
        ds = load_dataset(DataConfig(max_train_examples=limit))
        resolved = resolve_model(args.model)
        return load_pretrained_for_classification(resolved, ds.label_names), load_tokenizer(resolved.path), ds, None, 0
    data = data_config_for(Path(args.teacher)).to_dict()
    data["max_train_examples"] = limit
    ds = load_dataset(DataConfig.from_dict(data))
    teacher, tok, _ = load_classifier_folder(Path(args.teacher))
    train = ds.splits["train"]
    t0 = time.perf_counter()
    logits = predict_logits(teacher, tok, train.texts, train.pairs, max_length=args.max_length)
    seconds = time.perf_counter() - t0
    student = copy_layers_student(teacher, every_other_layer(teacher.config.num_hidden_layers))
    return student, tok, ds, logits, seconds


def _cached_kd_trainer(args):
    """A Trainer whose loss is mbk's KD loss on precomputed teacher logits (no teacher forward per step)."""
    import torch.nn.functional as F
    from transformers import Trainer

    from mobilebert_kit.stages.distill import DistillConfig

    T, alpha = DistillConfig().temperature, DistillConfig().alpha

    class CachedKDTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels, t_logits = inputs.pop("labels"), inputs.pop("teacher_logits")
            out = model(**inputs)
            soft = F.kl_div(F.log_softmax(out.logits / T, -1), F.softmax(t_logits / T, -1), reduction="batchmean")
            loss = alpha * soft * T**2 + (1 - alpha) * F.cross_entropy(out.logits, labels)
            return (loss, out) if return_outputs else loss

    return CachedKDTrainer


# --------------------------------------------------------------------------- mbk (run as the CLI)


def run_mbk(args, kind: str, flags: list[str], work: Path) -> dict:
    common = ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr)]
    common += ["--max-length", str(args.max_length), "--seed", str(args.seed), "--device", args.device]
    common += ["--checkpoint-every", "0", "--early-stopping-patience", "0", "--overwrite", "--json", "-q"]
    if args.train_examples:
        common += ["--max-train-examples", str(args.train_examples)]
    if kind == "finetune":
        cmd = ["finetune", "--model", args.model, "--data", "rotten_tomatoes"]
    else:  # a cold teacher cache every run: mbk's teacher pass is timed like the peer's
        cmd = ["distill", "--teacher", args.teacher, "--cache-dir", str(work / "cache")]
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "mobilebert_kit", *cmd, *common, "-o", str(work / "out"), *flags],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
    m = json.loads(r.stdout)
    test = m["test"] if kind == "finetune" else m["student"]["test"]
    out = {
        "train_examples_per_second": m["train_examples_per_second"],
        "train_seconds": m["train_seconds"],
        "test_accuracy": test["accuracy"],
        "test_macro_f1": test["macro_f1"],
        "precision": m.get("precision"),
        "precision_reason": m.get("precision_reason"),
        "wall_seconds": wall,
    }
    if kind == "distill":
        out["teacher_pass_seconds"] = m["teacher_cache"]["train_seconds"]
        out["teacher_pass_precision"] = m["teacher_cache"]["train_precision"]
    return out


# --------------------------------------------------------------------------- the rotation


# each on by default (sparse embeddings are opt-in: their own variant below, the default recipe's setting)
CPU_PATH_OFF = (["--attention", "sdpa"], ["--no-fast-dropout"], ["--no-cls-only-last-layer"])


def variants(args) -> dict[str, tuple[str, str, object]]:
    """name -> (kind, who, workers or mbk flags)."""
    out: dict[str, tuple[str, str, object]] = {}
    for kind in args.only:
        for w in args.peer_workers:
            out[f"{kind}: peer Trainer (workers {w})"] = (kind, "peer", w)
        out[f"{kind}: mbk default"] = (kind, "mbk", [])
        out[f"{kind}: mbk --freeze-embeddings"] = (kind, "mbk", ["--freeze-embeddings"])
        out[f"{kind}: mbk --freeze-layers {args.freeze_layers}"] = (
            kind,
            "mbk",
            ["--freeze-layers", str(args.freeze_layers)],
        )
        if kind == "distill":
            out["distill: mbk --teacher-precision auto"] = (kind, "mbk", ["--teacher-precision", "auto"])
        if args.cpu_paths:  # each CPU training path off alone, then all of them (the stock torch paths)
            for flag in CPU_PATH_OFF:
                out[f"{kind}: mbk {' '.join(flag)}"] = (kind, "mbk", flag)
            out[f"{kind}: mbk stock paths"] = (kind, "mbk", [f for flag in CPU_PATH_OFF for f in flag])
            out[f"{kind}: mbk --sparse-embeddings"] = (kind, "mbk", ["--sparse-embeddings"])  # the recipe's setting
    if args.match:
        out = {k: v for k, v in out.items() if any(m in k for m in args.match)}
    return out


def run_variant(args, kind: str, who: str, what, argv: list[str]) -> dict:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    if who == "mbk":
        with tempfile.TemporaryDirectory() as tmp:
            return run_mbk(args, kind, list(what), Path(tmp))
    cmd = [sys.executable, __file__, "--_peer", kind, "--_workers", str(what), *argv]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1][-300:]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    out = dict(ok[0])
    for k in ("train_examples_per_second", "train_seconds", "wall_seconds", "teacher_pass_seconds"):
        if k in out and out[k] is not None:
            out[k] = statistics.median(r[k] for r in ok)
    out["runs"] = runs
    return out


def ratios(results: dict) -> dict:
    """Per kind: mbk default (and each switch) over the fastest peer variant, examples/s and accuracy delta."""
    out = {}
    for kind in dict.fromkeys(name.split(":")[0] for name in results):
        peers = {n: r for n, r in results.items() if n.startswith(f"{kind}: peer") and "error" not in r}
        if not peers:
            continue
        best_name = max(peers, key=lambda n: peers[n]["train_examples_per_second"])
        best = peers[best_name]
        out[kind] = {"peer": best_name, "vs_peer": {}}
        for n, r in results.items():
            if n.startswith(f"{kind}: mbk") and "error" not in r:
                out[kind]["vs_peer"][n] = {
                    "speedup": r["train_examples_per_second"] / best["train_examples_per_second"],
                    "accuracy_delta_pt": 100 * (r["test_accuracy"] - best["test_accuracy"]),
                }
    return out


def markdown(r: dict) -> str:
    s = r["setup"]
    lines = [
        "# Training throughput: mbk vs the honest peer (HF Trainer as its docs recommend)",
        "",
        f"`{s['model']}` fine-tuned / `{s['teacher']}` distilled into its every other layer; {s['train_examples']} "
        f"Rotten Tomatoes rows, {s['epochs']} epoch(s), batch {s['batch_size']}, max length {s['max_length']}, "
        f"lr {s['lr']}, seed {s['seed']}; {s['repeats']} repeat(s) in ABBA order, medians. "
        f"CPU: {cpu_line(r.get('cpu'))}; native bf16: {', '.join(s['cpu_bf16_flags']) or 'none'}; "
        f"1-min load before/after each run: {', '.join(f'{x:.1f}' for x in s['load_average_1min'])}.",
        "",
        "| variant | precision | train ex/s | teacher pass s | test acc | macro-F1 | runs (ex/s) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for name, v in r["results"].items():
        if "error" in v:
            lines.append(f"| {name} | error: {v['error']} | | | | | |")
            continue
        per = ", ".join(f"{x['train_examples_per_second']:.1f}" for x in v.get("runs", []) if "error" not in x)
        tp = v.get("teacher_pass_seconds")
        lines.append(
            f"| {name} | {v.get('precision')} | {v['train_examples_per_second']:.1f} | "
            f"{'' if not tp else f'{tp:.1f}'} | {v['test_accuracy']:.4f} | {v['test_macro_f1']:.4f} | {per} |"
        )
    lines.append("")
    for kind, v in r["vs_peer"].items():
        lines.append(f"**{kind}** against the fastest peer ({v['peer']}):")
        lines += [
            f"- {n}: **{x['speedup']:.2f}x**, accuracy {x['accuracy_delta_pt']:+.1f} pt"
            for n, x in v["vs_peer"].items()
        ]
        lines.append("")
    lines += [f"Reproduce: `{r['command']}` (created {r['created']}, wall {r['wall_seconds'] / 60:.1f} min).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict | None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm-l6", help="the model fine-tuned")
    p.add_argument("--teacher", default="artifacts/teacher", help="a fine-tuned teacher folder (distillation)")
    p.add_argument("--train-examples", type=int, default=2000, help="0 = the whole training split")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--peer-workers", type=int, nargs="+", default=[0, 2], help="the peer's dataloader workers to try")
    p.add_argument("--freeze-layers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument(
        "--cpu-paths",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run mbk with each CPU training path off, and with all off (mobilebert_kit.training.cpu_paths)",
    )
    p.add_argument("--only", nargs="+", default=["finetune", "distill"], choices=["finetune", "distill"])
    p.add_argument("--match", nargs="+", default=[], help="only the variants whose name contains one of these")
    p.add_argument("--output", default=str(RESULTS))
    p.add_argument("--tag", default="")
    p.add_argument("--_peer", choices=["finetune", "distill"], help=argparse.SUPPRESS)
    p.add_argument("--_workers", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._peer:
        print(json.dumps(peer(args, args._peer, args._workers)))
        return None
    from mobilebert_kit.devices import cpu_bf16_flags
    from mobilebert_kit.runtimes import cpu_info

    t0, load = time.time(), [os.getloadavg()[0]]
    plan = variants(args)
    runs: dict[str, list[dict]] = {n: [] for n in plan}
    for rep in range(args.repeats):
        for name in list(plan) if rep % 2 == 0 else list(plan)[::-1]:
            print(f"{name} ...", file=sys.stderr)
            runs[name].append(run_variant(args, *plan[name], argv))
            load.append(os.getloadavg()[0])
    results = {n: median_of(rs) for n, rs in runs.items()}
    setup = {k: getattr(args, k) for k in ("model", "teacher", "train_examples", "epochs", "batch_size", "lr")}
    setup.update(max_length=args.max_length, seed=args.seed, repeats=args.repeats, device=args.device)
    setup.update(cpu_bf16_flags=cpu_bf16_flags(), load_average_1min=load, cpu_count=os.cpu_count())
    r = {
        **provenance("trainer_peer", argv),
        "setup": setup,
        "cpu": cpu_info(),
        "results": results,
        "vs_peer": ratios(results),
        "wall_seconds": time.time() - t0,
    }
    write_results(args.output, "trainer_peer" + (f"-{args.tag}" if args.tag else ""), r, markdown(r))
    return r


if __name__ == "__main__":
    main()
