"""What the training stages (``finetune``, ``distill``) share around the engine: their output and
checkpoint folders, the per-split evaluation, the data hash for the manifest and the training
numbers every metrics.json carries. Neutral ground, so no stage imports another."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def checkpoint_dir(output: str | Path) -> Path:
    """Where a training stage keeps its checkpoints until it succeeds: ``<output>.ckpt``."""
    output = Path(output)
    return output.with_name(output.name + ".ckpt")


def training_dirs(output: str | Path, overwrite: bool, resume: bool, inputs: tuple = ()) -> tuple[Path, Path]:
    """(output folder, checkpoint folder) for a training stage; fails before any work when the
    output is occupied or ``resume`` has nothing to resume from."""
    from mobilebert_kit import artifacts
    from mobilebert_kit.errors import TrainingError
    from mobilebert_kit.training.checkpoint import BEST
    from mobilebert_kit.training.metrics_log import TENSORBOARD, TRAIN_LOG

    out = Path(output)
    work = artifacts.check_scratch_dir(
        checkpoint_dir(out),
        lambda p: p.name in ("checkpoints", BEST, TRAIN_LOG, TENSORBOARD),
        "its training checkpoints",
    )
    if resume and not (work / "checkpoints").is_dir():
        raise TrainingError(f"--resume: no checkpoint found in {work}; run without --resume to start fresh")
    artifacts.check_output_dir(out, may_replace(out, overwrite, resume), inputs)
    return out, work


def finish_checkpoints(work: Path, keep: bool, log) -> None:
    """After a successful save: remove ``<output>.ckpt`` (it can hold hundreds of MB), or keep it and
    say where (``--keep-checkpoints``)."""
    from mobilebert_kit.artifacts import remove_retired, retire

    if keep and work.is_dir():
        log(f"checkpoints kept in {work} (--keep-checkpoints); delete the folder when no longer needed")
    elif work.is_dir():
        # renamed away first, so a kill mid-delete leaves no half checkpoint folder that --resume would trust
        remove_retired(retire(work, work.with_name(work.name[: -len(".ckpt")]), "ckpt"))


def may_replace(out: Path, overwrite: bool, resume: bool) -> bool:
    """Whether the stage may replace ``out``: with --overwrite, or when resuming a run that was killed
    while saving its result (the output is already mbk's own, the checkpoints are still there)."""
    from mobilebert_kit import artifacts

    return overwrite or (resume and artifacts.is_mbk_output(out))


def evaluate_splits(model, sets: dict, train_cfg, pad_id: int, num_labels: int, logits_out: dict | None = None) -> dict:
    """Accuracy / macro-F1 (and eval time) of ``model`` on the validation and test feature sets
    (their logits into ``logits_out`` when given)."""
    from mobilebert_kit.batching import Collator, predict
    from mobilebert_kit.metrics import classification_metrics

    collator = Collator(pad_id, train_cfg.max_length, dynamic=True)
    device = next(model.parameters()).device
    out = {}
    for name in ("validation", "test"):
        t = time.perf_counter()
        logits = predict(model, sets[name], collator, train_cfg.eval_batch_size, device)
        m = classification_metrics(logits, [f["labels"] for f in sets[name].features], num_labels)
        m["eval_seconds"] = time.perf_counter() - t
        out[name] = m
        if logits_out is not None:
            logits_out[name] = logits
        if name == "validation":
            warn_if_degenerate(logits)
    return out


def warn_if_degenerate(logits, share: float = 0.95) -> None:
    """A model that predicts one class for (nearly) everything learned nothing useful: say so."""
    import numpy as np

    preds = np.asarray(logits).argmax(-1)
    if len(preds) < 20:
        return
    top = np.bincount(preds).max() / len(preds)
    if top >= share:
        from mobilebert_kit.errors import warn

        warn(
            f"the model predicts one class for {top:.0%} of the validation examples: it has learned little "
            "(too few steps, too high a learning rate, or labels the text does not explain); check before shipping it"
        )


def warn_if_unknown_tokens(tokenizer, texts, name: str, limit: float = 0.1) -> None:
    """Most of a text mapping to [UNK] means the model's vocabulary cannot represent it (another script)."""
    unk = tokenizer.unk_token_id
    if unk is None or not texts:
        return
    ids = tokenizer(list(texts[:500]), add_special_tokens=False, truncation=True, max_length=128)["input_ids"]
    total = sum(len(x) for x in ids)
    rate = sum(x.count(unk) for x in ids) / total if total else 0.0
    if rate > limit:
        from mobilebert_kit.errors import warn

        warn(
            f"{rate:.0%} of the training text's tokens are unknown ({tokenizer.unk_token}) to {name}'s vocabulary "
            "(another language or script?); the model cannot learn from them: choose a model whose vocabulary covers it"
        )


def data_hash(data) -> dict:
    """``{"sha256": {path: digest}}`` of the user's data files (nothing for built-in data)."""
    from mobilebert_kit import artifacts

    paths = [p for p in (data.data, data.validation_data, data.test_data) if p and Path(p).exists()]
    return {"sha256": {p: artifacts.sha256_tree(p) for p in paths}} if paths else {}


def training_history(result) -> dict[str, Any]:
    """How training went (a :class:`~mobilebert_kit.training.engine.TrainResult`), for metrics.json."""
    return {
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "history": result.history,
        "train_examples_per_second": result.examples_per_second,
        "train_seconds": result.train_seconds,
        "steps": result.steps,
    }


def training_setup(result) -> dict[str, Any]:
    """Where and how it trained (precision, device, processes, batch layout, notes), for metrics.json."""
    return {
        "precision": result.precision,
        "precision_reason": getattr(result, "precision_reason", ""),
        "cpu_paths": getattr(result, "cpu_paths", []),  # cpu_paths switched on (eager attention, fast dropout, ...)
        "device": result.device,
        "world_size": result.world_size,
        "batch_size": result.batch_size,
        "grad_accum": result.grad_accum,
        "notes": result.notes,
    }


def model_input(source: str, resolved) -> dict[str, Any]:
    """The manifest's record of a model the stage started from (a built-in, a folder or a hub id)."""
    from mobilebert_kit import artifacts

    return {
        "source": source,
        "path": resolved.path,
        "kind": resolved.kind,
        **({"sha256": artifacts.sha256_tree(resolved.path)} if resolved.kind != "hub" else {}),
    }


def check_fits_model(model, train_cfg, name: str) -> None:
    """Refuse training options the model cannot take, before any work: a ``max_length`` beyond its
    position embeddings (indexing past them crashes mid-run) or more ``freeze_layers`` than it has."""
    from mobilebert_kit.errors import ConfigError
    from mobilebert_kit.models import usable_positions

    problems = []
    usable = usable_positions(model.config)
    if usable is not None and train_cfg.max_length > usable:
        problems.append(
            f"max_length {train_cfg.max_length} is more than {name} can take ({usable} positions); "
            f"use --max-length {usable} or less"
        )
    n_layers = getattr(model.config, "num_hidden_layers", None)
    if n_layers is not None and train_cfg.freeze_layers > n_layers:
        problems.append(
            f"freeze_layers must be in [0, {n_layers}] for {name} ({n_layers} layers); got {train_cfg.freeze_layers}"
        )
    if problems:
        raise ConfigError(problems)
