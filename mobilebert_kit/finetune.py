"""``mbk finetune``: train a BERT sequence classifier (the teacher) and write an HF folder.

Output folder (default ``artifacts/teacher/``): save_pretrained model + tokenizer, labels.json,
metrics.json (accuracy / macro-F1 per split and per epoch, examples/s) and manifest.json.
Checkpoints live beside it in ``<output>.ckpt/`` until the run succeeds, so a crash or
``kill -9`` loses at most ``checkpoint_every`` steps: ``mbk finetune --resume``.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from mobilebert_kit.config import StageConfig
from mobilebert_kit.data import DataConfig
from mobilebert_kit.engine import TrainConfig
from mobilebert_kit.stage import RunContext, StageResult


@dataclass
class FinetuneConfig(StageConfig):
    model: str = "minilm-l6"  # built-in name, local HF folder or hub id
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: str = "artifacts/teacher"
    dropout: float | None = None  # override hidden/attention dropout

    def validate(self) -> list[str]:
        from mobilebert_kit.config import check_range

        p: list[str] = []
        check_range(p, "dropout", self.dropout, 0, 1, hi_open=True)
        return p


def checkpoint_dir(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".ckpt")


def training_dirs(output: str | Path, overwrite: bool, resume: bool) -> tuple[Path, Path]:
    """(output folder, checkpoint folder) for a training stage; fails before any work when the
    output is occupied or ``resume`` has nothing to resume from."""
    from mobilebert_kit import artifacts
    from mobilebert_kit.errors import TrainingError

    out = artifacts.check_output_dir(output, overwrite)
    work = checkpoint_dir(out)
    if resume and not (work / "checkpoints").is_dir():
        raise TrainingError(f"--resume: no checkpoint found in {work}; run without --resume to start fresh")
    return out, work


def run(cfg: FinetuneConfig, ctx: RunContext | None = None) -> StageResult:
    """Fine-tune ``cfg.model`` on ``cfg.data``; the result carries the output folder and metrics."""
    from mobilebert_kit import artifacts
    from mobilebert_kit.batching import make_features
    from mobilebert_kit.data import load_dataset
    from mobilebert_kit.engine import TrainModule, fingerprint, train
    from mobilebert_kit.models import (
        count_parameters,
        load_pretrained_for_classification,
        load_tokenizer,
        resolve_model,
    )

    ctx = ctx or RunContext()
    log, overwrite, resume, quiet = ctx.log, ctx.overwrite, ctx.resume, ctx.quiet
    t0 = time.perf_counter()
    out, work = training_dirs(cfg.output, overwrite, resume)

    resolved = resolve_model(cfg.model)
    ds = load_dataset(cfg.data)
    log(f"data: {ds.source}: " + ", ".join(f"{k} {len(v)}" for k, v in ds.splits.items()))
    tokenizer = load_tokenizer(resolved.path)
    model = load_pretrained_for_classification(resolved, ds.label_names, cfg.dropout)
    n_layers = getattr(model.config, "num_hidden_layers", None)
    if n_layers is not None and cfg.train.freeze_layers > n_layers:
        from mobilebert_kit.errors import ConfigError

        raise ConfigError(
            f"freeze_layers must be in [0, {n_layers}] for {cfg.model} ({n_layers} layers); got {cfg.train.freeze_layers}"
        )
    t_load = time.perf_counter()

    L = cfg.train.max_length
    sets = {name: make_features(tokenizer, s.texts, s.pairs, s.labels, L) for name, s in ds.splits.items()}
    run_fp = fingerprint(resolved.path, cfg.data.to_dict(), ds.summary()["sizes"], cfg.dropout)
    result = train(
        TrainModule(model),
        sets["train"],
        sets["validation"],
        cfg.train,
        workdir=work,
        pad_id=tokenizer.pad_token_id or 0,
        num_labels=ds.num_labels,
        resume=resume,
        quiet=quiet,
        run_fingerprint=run_fp,
        log=log,
    )
    t_train = time.perf_counter()

    from accelerate import PartialState

    state = PartialState()
    if not state.is_main_process:  # one process writes artifacts
        state.wait_for_everyone()
        return StageResult(out, written=False)
    metrics = evaluate_splits(model, sets, cfg.train, tokenizer.pad_token_id or 0, ds.num_labels)
    metrics.update(
        {
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "stopped_early": result.stopped_early,
            "history": result.history,
            "train_examples_per_second": result.examples_per_second,
            "train_seconds": result.train_seconds,
            "steps": result.steps,
            "parameters": count_parameters(model),
            "precision": result.precision,
            "device": result.device,
            "world_size": result.world_size,
            "batch_size": result.batch_size,
            "grad_accum": result.grad_accum,
            "notes": result.notes,
        }
    )
    log("test: accuracy {accuracy:.4f}, macro-F1 {macro_f1:.4f}".format(**metrics["test"]))
    with artifacts.staged_output(out, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        artifacts.write_labels(tmp, ds.label_names)
        artifacts.write_json(tmp / artifacts.METRICS, metrics)
        timings = {
            "load_seconds": t_load - t0,
            "train_seconds": t_train - t_load,
            "total_seconds": time.perf_counter() - t0,
        }
        inputs = {
            "model": {
                "source": cfg.model,
                "path": resolved.path,
                "kind": resolved.kind,
                **({"sha256": artifacts.sha256_tree(resolved.path)} if resolved.kind != "hub" else {}),
            },
            "data": {"source": ds.source, **data_hash(cfg.data)},
        }
        artifacts.write_manifest(
            tmp,
            stage="finetune",
            config=cfg.to_dict(),
            inputs=inputs,
            metrics=_headline(metrics),
            timings=timings,
            extra={
                "data": cfg.data.to_dict(),
                "max_length": L,
                "dataset": ds.summary(),
                "resumed_from": result.resumed_from,
            },
        )
    shutil.rmtree(work, ignore_errors=True)
    state.wait_for_everyone()
    return StageResult(out, metrics, [_summary_line(out, metrics)])


def _summary_line(out: Path, metrics: dict) -> str:
    return (
        f"teacher written to {out}: test accuracy {metrics['test']['accuracy']:.4f}, "
        f"macro-F1 {metrics['test']['macro_f1']:.4f}, {metrics['train_examples_per_second']:.1f} train ex/s"
    )


def evaluate_splits(model, sets: dict, train_cfg: TrainConfig, pad_id: int, num_labels: int) -> dict:
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
    return out


def _headline(metrics: dict) -> dict:
    return {
        "test_accuracy": metrics["test"]["accuracy"],
        "test_macro_f1": metrics["test"]["macro_f1"],
        "validation_accuracy": metrics["validation"]["accuracy"],
        "validation_macro_f1": metrics["validation"]["macro_f1"],
        "train_examples_per_second": metrics["train_examples_per_second"],
        "parameters": metrics["parameters"],
    }


def data_hash(data: DataConfig) -> dict:
    from mobilebert_kit import artifacts

    paths = [p for p in (data.data, data.validation_data, data.test_data) if p and Path(p).exists()]
    return {"sha256": {p: artifacts.sha256_tree(p) for p in paths}} if paths else {}
