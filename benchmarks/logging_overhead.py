"""What per-step metric logging (train_log.jsonl + TensorBoard, issue 30) costs a training step.

The same training, `log_every` off / 10 / 1, interleaved: each round runs every setting once (in a
rotating order), each run restarts from the same initial weights and trains `--steps` optimizer steps
of the engine (`mobilebert_kit.training.engine.train`) with the distillation loss and its logged terms (soft,
hard; the costliest path: term tensors summed on the device), on real Rotten Tomatoes texts. The time
per step is the engine's own training-loop time (`TrainResult.train_seconds`: no setup, no evaluation,
no checkpoints) over the steps. The overhead of a setting is its median step time over the rounds
against the median with logging off.

    python benchmarks/logging_overhead.py                    # MiniLM-L6, 60 steps x 5 rounds, batch 32
    python benchmarks/logging_overhead.py --device cuda      # where syncs cost the most
    python benchmarks/logging_overhead.py --tiny --steps 10 --rounds 2 --results-dir /tmp/lo   # does it run?

Results: benchmarks/results/logging_overhead.{json,md}. Time it on a quiet machine: the differences
measured are small, and a loaded machine's noise is larger than them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lib.results_io import provenance, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"off": 0, "every 10 steps": 10, "every step": 1}


def build(args):
    """(model, initial weights, training features, pad id) on real texts with made-up teacher logits."""
    import numpy as np
    import torch

    from mobilebert_kit.batching import make_features
    from mobilebert_kit.data import DataConfig, load_dataset
    from mobilebert_kit.models import load_pretrained_for_classification, load_tokenizer, resolve_model

    resolved = resolve_model(args.model)
    tokenizer = load_tokenizer(resolved.path)
    ds = load_dataset(DataConfig(max_train_examples=args.batch_size * args.steps, max_eval_examples=32))
    if args.tiny:
        from transformers import BertConfig, BertForSequenceClassification

        cfg = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, num_labels=ds.num_labels)  # fmt: skip
        model = BertForSequenceClassification(cfg)
    else:
        model = load_pretrained_for_classification(resolved, ds.label_names, seed=0)
    train = ds.splits["train"]
    rng = np.random.default_rng(0)
    teacher = [rng.normal(size=ds.num_labels).astype(np.float32) for _ in train.texts]
    feats = make_features(
        tokenizer, train.texts, None, train.labels, args.max_length, extras={"teacher_logits": teacher}
    )
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.set_num_threads(args.threads)
    return model, initial, feats, tokenizer.pad_token_id or 0


def one_run(model, initial, feats, pad_id: int, log_every: int, args) -> float:
    """Seconds per optimizer step of one training run at ``log_every``."""
    from mobilebert_kit.training.engine import TrainConfig, TrainModule, train
    from mobilebert_kit.training.losses import distillation_loss

    model.load_state_dict(initial)
    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, max_steps=args.steps, checkpoint_every=0,
                      early_stopping_patience=0, log_every=log_every, device=args.device, max_length=args.max_length)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="mbk-logging-overhead-") as work:
        result = train(TrainModule(model, distillation_loss(3.0, 0.5, with_terms=True)), feats, None, cfg,
                       workdir=Path(work), pad_id=pad_id, num_labels=model.config.num_labels, quiet=True)  # fmt: skip
    return result.train_seconds / max(result.steps, 1)


def measure(args) -> dict[str, list[float]]:
    model, initial, feats, pad_id = build(args)
    one_run(model, initial, feats, pad_id, 0, args)  # warm-up (allocator, kernels), not counted
    times: dict[str, list[float]] = {name: [] for name in SETTINGS}
    names = list(SETTINGS)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order every round
            times[name].append(one_run(model, initial, feats, pad_id, SETTINGS[name], args))
            print(f"round {r + 1}/{args.rounds} {name}: {1000 * times[name][-1]:.2f} ms/step", file=sys.stderr)
    return times


def report(times: dict[str, list[float]], args) -> tuple[dict, str]:
    from mobilebert_kit.training.metrics_log import tensorboard_available

    base = statistics.median(times["off"])
    rows = {
        name: {"median_ms_per_step": 1000 * statistics.median(t), "overhead": statistics.median(t) / base - 1,
               "ms_per_step": [1000 * x for x in t]}
        for name, t in times.items()
    }  # fmt: skip
    setup = {
        k: getattr(args, k)
        for k in ("model", "tiny", "steps", "rounds", "batch_size", "max_length", "threads", "device")
    }
    result = {
        **provenance("logging_overhead"),
        "setup": setup,
        "tensorboard": tensorboard_available(),
        "settings": rows,
    }
    md = [
        "# Per-step metric logging: cost per training step",
        "",
        f"{'tiny BERT' if args.tiny else args.model}, distillation loss with logged terms, batch {args.batch_size}, "
        f"{args.steps} steps per run, {args.rounds} interleaved rounds, {args.threads} thread(s), device {args.device}; "
        f"TensorBoard events {'written' if result['tensorboard'] else 'not written (tensorboard not installed)'}.",
        "",
        "| log_every | median ms/step | overhead vs off |",
        "|---|---:|---:|",
    ]
    md += [f"| {name} | {r['median_ms_per_step']:.2f} | {100 * r['overhead']:+.2f}% |" for name, r in rows.items()]
    return result, "\n".join(md) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="minilm-l6")
    p.add_argument("--tiny", action="store_true", help="A 2-layer, hidden-32 BERT (checks the script runs).")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--results-dir", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    result, md = report(measure(args), args)
    write_results(args.results_dir, "logging_overhead", result, md)


if __name__ == "__main__":
    main()
