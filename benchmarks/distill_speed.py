"""Distillation speed, side by side in one process: the seed-004 recipe (an HF ``Trainer`` subclass
that runs the teacher forward on every step, rows padded to max length) against ``mbk distill``
(teacher outputs computed once and cached, dynamic padding, length-grouped batches, shared engine),
on the same teacher, data, student initialisation (copied layers), epochs, batch, lr and loss
(T=3, alpha=0.5 by default).

Reports train examples/s of each (and ``mbk distill``'s end to end, teacher pass included, on a
cold cache), their ratio (target >= 2x) and each student's test accuracy / macro-F1 next to the
teacher's. ``--teacher-precision fp32 int8`` runs ``mbk distill`` once per teacher-pass precision in
the same rotation. Writes ``benchmarks/results/distill_speed.json`` and ``.md``.

    python benchmarks/distill_speed.py --teacher artifacts/teacher --max-train-examples 2000 --epochs 1
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from lib.results_io import provenance, write_results


def _distill_trainer_class():
    """The seed-004 ``DistillTrainer``: an HF Trainer whose loss runs the teacher forward on every step
    (soft KL at temperature T, times T^2, mixed with hard cross-entropy by alpha)."""
    import torch
    import torch.nn.functional as F
    from transformers import Trainer

    class DistillTrainer(Trainer):
        def __init__(self, *a, teacher_model=None, temperature=3.0, alpha=0.5, **kw):
            super().__init__(*a, **kw)
            self.teacher = teacher_model.eval()
            self.T, self.alpha = temperature, alpha

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            out = model(**inputs)
            with torch.no_grad():
                t_logits = self.teacher(**inputs).logits
            soft = (
                F.kl_div(
                    F.log_softmax(out.logits / self.T, -1), F.softmax(t_logits / self.T, -1), reduction="batchmean"
                )
                * self.T**2
            )
            hard = F.cross_entropy(out.logits, labels)
            loss = self.alpha * soft + (1 - self.alpha) * hard
            return (loss, out) if return_outputs else loss

    return DistillTrainer


def _padded_rows(tok, train, max_length: int):
    """The training split as a torch Dataset of rows padded to ``max_length`` (as the seed recipe fed them)."""
    import torch

    enc = tok(train.texts, truncation=True, max_length=max_length, padding="max_length")

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(train.texts)

        def __getitem__(self, i):
            row = {k: torch.tensor(v[i]) for k, v in enc.items()}
            row["labels"] = torch.tensor(train.labels[i])
            return row

    return Rows()


def seed_distill(teacher_dir: Path, layers: list[int], train, test, args) -> dict:
    """The seed-004 DistillTrainer: HF Trainer, teacher forward inside compute_loss every step."""
    import torch
    from transformers import TrainingArguments

    from mobilebert_kit.batching import predict_logits
    from mobilebert_kit.metrics import classification_metrics
    from mobilebert_kit.models import load_classifier_folder
    from mobilebert_kit.training.students import copy_layers_student

    teacher, tok, names = load_classifier_folder(teacher_dir)
    student = copy_layers_student(teacher, layers)
    rows = _padded_rows(tok, train, args.max_length)
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=args.batch_size,
            num_train_epochs=args.epochs,
            learning_rate=args.lr,
            weight_decay=0.01,
            warmup_ratio=0.06,
            max_grad_norm=1.0,
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            report_to=[],
            use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0,
            seed=args.seed,
            disable_tqdm=True,
        )
        trainer = _distill_trainer_class()(
            model=student,
            args=targs,
            train_dataset=rows,
            teacher_model=teacher,
            temperature=args.temperature,
            alpha=args.alpha,
        )
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
    logits = predict_logits(student, tok, test.texts, max_length=args.max_length)
    m = classification_metrics(logits, test.labels, len(names))
    n = len(train.texts) * args.epochs
    return {
        "train_seconds": seconds,
        "train_examples_per_second": n / seconds,
        "test_accuracy": m["accuracy"],
        "test_macro_f1": m["macro_f1"],
    }


def mbk_distill(teacher_dir: Path, layers: list[int], data: dict, args, work: Path, precision: str) -> dict:
    from mobilebert_kit.artifacts import read_json
    from mobilebert_kit.stages import distill
    from mobilebert_kit.stages.base import RunContext

    cfg = distill.DistillConfig.from_dict(
        {
            "teacher": str(teacher_dir),
            "layers": layers,
            "temperature": args.temperature,
            "alpha": args.alpha,
            "data": data,
            "cache_dir": str(work / "cache"),
            "teacher_precision": precision,
            "output": str(work / "student"),
            "train": {
                "epochs": args.epochs,
                "lr": args.lr,
                "batch_size": args.batch_size,
                "max_length": args.max_length,
                "seed": args.seed,
                "early_stopping_patience": 0,
                "checkpoint_every": 0,
            },
        }
    )
    t0 = time.perf_counter()
    out = distill.run(cfg, RunContext(quiet=True)).output
    wall = time.perf_counter() - t0
    m = read_json(out / "metrics.json")
    return {
        "train_seconds": m["train_seconds"],
        "train_examples_per_second": m["train_examples_per_second"],
        "teacher_cache_seconds": m["teacher_cache"]["train_seconds"],
        "teacher_eval_pass_seconds": m["teacher_cache"]["eval_seconds"],
        "teacher_cache": m["teacher_cache"]["train"],
        "teacher_precision": m["teacher_cache"]["train_precision"],
        "end_to_end_examples_per_second": m["end_to_end_examples_per_second"],
        "wall_seconds": wall,
        "test_accuracy": m["student"]["test"]["accuracy"],
        "test_macro_f1": m["student"]["test"]["macro_f1"],
        "teacher_test_accuracy": m["teacher"]["test"]["accuracy"],
        "teacher_test_macro_f1": m["teacher"]["test"]["macro_f1"],
        "student_parameters": m["student"]["parameters"],
        "teacher_parameters": m["teacher"]["parameters"],
    }


def _median_run(runs: list[dict], keys: tuple[str, ...]) -> dict:
    import statistics

    out = dict(runs[0])  # accuracy etc. from the first run (same seed, same result)
    for k in keys:
        out[k] = statistics.median(r[k] for r in runs)
    out["runs"] = runs
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="artifacts/teacher")
    p.add_argument("--layers", default=None, help="default: every other teacher layer")
    p.add_argument("--max-train-examples", type=int, default=None)
    p.add_argument("--max-eval-examples", type=int, default=None)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--temperature", type=float, default=3.0)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--repeats", type=int, default=2, help="runs per side, in ABBA order; medians are compared")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for both sides (default: torch's); 1 keeps "
        "the comparison fair when other jobs share the cores",
    )
    p.add_argument(
        "--teacher-precision",
        nargs="+",
        default=["int8"],
        choices=["fp32", "int8"],
        help="run mbk distill once per teacher-pass precision (the first is the headline; int8 is mbk's default)",
    )
    p.add_argument("--tag", default="", help="suffix of the results files: distill_speed-<tag>.json/.md")
    p.add_argument("--output", default=str(Path(__file__).parent / "results"))
    return p.parse_args(argv)


def load_data(teacher_dir: Path, args) -> tuple[list[int], dict, object, object]:
    """The student's layers (``--layers`` or every other teacher layer), the data section both sides train
    on, and its train and test splits."""
    from mobilebert_kit.data import DataConfig, data_config_for, load_dataset
    from mobilebert_kit.models import load_classifier_folder
    from mobilebert_kit.training.students import every_other_layer

    teacher, _, _ = load_classifier_folder(teacher_dir)
    layers = (
        [int(x) for x in args.layers.split(",")] if args.layers else every_other_layer(teacher.config.num_hidden_layers)
    )
    del teacher
    data = data_config_for(teacher_dir).to_dict()
    data.update({"max_train_examples": args.max_train_examples, "max_eval_examples": args.max_eval_examples})
    ds = load_dataset(DataConfig.from_dict(data))
    train, test = ds.splits["train"], ds.splits["test"]
    print(
        f"data: {ds.source}: train {len(train)}, test {len(test)}; layers {layers}; epochs {args.epochs}",
        file=sys.stderr,
    )
    return layers, data, train, test


def run_abba(teacher_dir: Path, layers: list[int], data: dict, train, test, args) -> tuple[dict, list[float]]:
    """Every side ``--repeats`` times: its runs, and the 1-minute load average before and after each run.

    Other jobs may share these cores; the sides run in ABBA order (mbk, seed, seed, mbk, ...) and medians
    are compared, so a load change mid-benchmark hits every side alike."""
    load = [os.getloadavg()[0]]
    order = [*(f"mbk-{p}" for p in args.teacher_precision), "seed"]
    runs: dict[str, list[dict]] = {side: [] for side in order}
    for r in range(args.repeats):
        for side in order if r % 2 == 0 else order[::-1]:
            if side == "seed":
                runs["seed"].append(seed_distill(teacher_dir, layers, train, test, args))
            else:
                with tempfile.TemporaryDirectory() as tmp:  # cold cache every time: the teacher pass is counted
                    runs[side].append(mbk_distill(teacher_dir, layers, data, args, Path(tmp), side[4:]))
            load.append(os.getloadavg()[0])
            print(f"{side}: {runs[side][-1]['train_examples_per_second']:.1f} train ex/s", file=sys.stderr)
    return runs, load


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    teacher_dir = Path(args.teacher)
    layers, data, train, test = load_data(teacher_dir, args)
    runs, load = run_abba(teacher_dir, layers, data, train, test, args)
    seed = _median_run(runs["seed"], ("train_examples_per_second",))
    variants = {
        side[4:]: _median_run(runs[side], ("train_examples_per_second", "end_to_end_examples_per_second"))
        for side in runs
        if side != "seed"
    }
    ours = variants[args.teacher_precision[0]]
    setup = {
        "teacher": str(teacher_dir),
        "layers": layers,
        "train_examples": len(train),
        "test_examples": len(test),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "lr": args.lr,
        "temperature": args.temperature,
        "alpha": args.alpha,
        "seed": args.seed,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_1min": load,
        "repeats": args.repeats,
    }
    result = {**provenance("distill_speed", argv), "setup": setup, **speedups(seed, variants, ours)}
    write_results(args.output, f"distill_speed-{args.tag}" if args.tag else "distill_speed", result, markdown(result))
    return result


def speedups(seed: dict, variants: dict[str, dict], ours: dict) -> dict:
    """Both sides' medians, and mbk distill's speed-up over the seed trainer for each teacher-pass precision
    (``ours``: the headline precision's)."""
    return {
        "teacher": {
            "test_accuracy": ours["teacher_test_accuracy"],
            "test_macro_f1": ours["teacher_test_macro_f1"],
            "parameters": ours["teacher_parameters"],
        },
        "seed_distill_trainer": seed,
        "mbk_distill": ours,
        "speedup_train": ours["train_examples_per_second"] / seed["train_examples_per_second"],
        "speedup_end_to_end": ours["end_to_end_examples_per_second"] / seed["train_examples_per_second"],
        "by_teacher_precision": {
            p: {
                "mbk_distill": v,
                "speedup_train": v["train_examples_per_second"] / seed["train_examples_per_second"],
                "speedup_end_to_end": v["end_to_end_examples_per_second"] / seed["train_examples_per_second"],
            }
            for p, v in variants.items()
        },
    }


def markdown(r: dict) -> str:
    s, t, u = r["setup"], r["teacher"], r["seed_distill_trainer"]
    variants = r.get("by_teacher_precision") or {"fp32": r}
    rows, speedups = [], []
    for p, v in variants.items():
        o = v["mbk_distill"]
        rows.append(
            f"| mbk distill, teacher pass {p} (cached teacher outputs, dynamic padding) | "
            f"{o['train_examples_per_second']:.1f} | {o['end_to_end_examples_per_second']:.1f} | "
            f"{o['teacher_cache_seconds']:.1f} | {o['test_accuracy']:.4f} | {o['test_macro_f1']:.4f} |"
        )
        speedups.append(
            f"- teacher pass {p}: **{v['speedup_train']:.2f}x** on training steps, "
            f"**{v['speedup_end_to_end']:.2f}x** end to end"
        )
    per_run = "; ".join(
        f"{name} " + ", ".join(f"{x['train_examples_per_second']:.1f}" for x in runs)
        for name, runs in [("seed", u["runs"]), *((f"mbk {p}", v["mbk_distill"]["runs"]) for p, v in variants.items())]
    )
    return "\n".join(
        [
            "# Distillation speed: seed-004 DistillTrainer vs mbk distill",
            "",
            f"Teacher `{s['teacher']}` ({t['parameters']:,} params) -> layers {s['layers']} "
            f"({r['mbk_distill']['student_parameters']:,} params); {s['train_examples']} train / "
            f"{s['test_examples']} test examples, {s['epochs']} epoch(s), batch {s['batch_size']}, max length "
            f"{s['max_length']}, lr {s['lr']}, T={s['temperature']}, alpha={s['alpha']}; {s['device']}, "
            f"{s['torch_threads']} torch threads on {s['cpu_count']} cores; {s['repeats']} run(s) per side in ABBA "
            "order, medians shown (1-min load average before and after each run: "
            f"{', '.join(f'{x:.1f}' for x in s['load_average_1min'])}).",
            "",
            f"Per run, train ex/s: {per_run}.",
            "",
            "| | train ex/s | end-to-end ex/s | teacher pass s (cold cache) | test accuracy | test macro-F1 |",
            "|---|---:|---:|---:|---:|---:|",
            f"| teacher | | | | {t['test_accuracy']:.4f} | {t['test_macro_f1']:.4f} |",
            f"| seed-004 DistillTrainer (teacher forward every step, padded) | {u['train_examples_per_second']:.1f} | "
            f"{u['train_examples_per_second']:.1f} | | {u['test_accuracy']:.4f} | {u['test_macro_f1']:.4f} |",
            *rows,
            "",
            "Speed-up over the seed DistillTrainer (mbk's one teacher pass over the training set is counted end to "
            "end; with more epochs or a warm cache the end-to-end figure moves toward the training one):",
            "",
            *speedups,
            "",
            f"Reproduce: `{r['command']}`",
            "",
        ]
    )


if __name__ == "__main__":
    main()
