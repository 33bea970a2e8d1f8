"""``mbk finetune``: train a BERT sequence classifier (the teacher) and write an HF folder.

Output folder (default ``artifacts/teacher/``): save_pretrained model + tokenizer, labels.json,
metrics.json (accuracy / macro-F1 per split and per epoch, examples/s) and manifest.json.
Checkpoints live beside it in ``<output>.ckpt/`` until the run succeeds, so a crash or
``kill -9`` loses at most ``checkpoint_every`` steps: ``mbk finetune --resume``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mobilebert_kit.config import StageConfig
from mobilebert_kit.data import DataConfig
from mobilebert_kit.locking import holds_output
from mobilebert_kit.stages.base import RunContext, StageResult
from mobilebert_kit.training.common import (
    check_fits_model,
    data_hash,
    evaluate_splits,
    finish_checkpoints,
    may_replace,
    model_input,
    training_dirs,
    training_history,
    training_setup,
    warn_if_unknown_tokens,
)
from mobilebert_kit.training.engine import TrainConfig
from mobilebert_kit.training.metrics_log import publish as publish_training_log


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


@dataclass
class _Loaded:
    """The model and data a fine-tuning run starts from."""

    resolved: Any  # models.ResolvedModel
    dataset: Any  # data.TextDataset
    tokenizer: Any
    model: Any

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id or 0


@holds_output
def run(cfg: FinetuneConfig, ctx: RunContext | None = None) -> StageResult:
    """Fine-tune ``cfg.model`` on ``cfg.data``; the result carries the output folder and metrics."""
    from accelerate import PartialState

    ctx = ctx or RunContext()
    t0 = time.perf_counter()
    inputs = cfg.input_paths()
    out, work = training_dirs(cfg.output, ctx.overwrite, ctx.resume, inputs)
    loaded = _load(cfg, ctx.log)
    t_load = time.perf_counter()
    sets, result = _train(cfg, loaded, work, ctx)
    t_train = time.perf_counter()
    state = PartialState()
    if not state.is_main_process:  # one process writes artifacts
        state.wait_for_everyone()
        return StageResult(out, written=False)
    logits: dict = {}
    metrics = _metrics(cfg, loaded, sets, result, logits)
    ctx.log("test: accuracy {accuracy:.4f}, macro-F1 {macro_f1:.4f}".format(**metrics["test"]))
    timings = {"load_seconds": t_load - t0, "train_seconds": t_train - t_load}
    replace = may_replace(out, ctx.overwrite, ctx.resume)
    _write(out, cfg, loaded, metrics, result, timings, t0, replace, inputs, logits["test"])
    finish_checkpoints(work, cfg.train.retain_checkpoints, ctx.log)
    state.wait_for_everyone()
    return StageResult(out, metrics, [_summary_line(out, metrics)])


def _load(cfg: FinetuneConfig, log) -> _Loaded:
    """The data, the tokenizer and the pretrained model with a fresh classification head."""
    from mobilebert_kit.data import load_dataset, warn_about_splits
    from mobilebert_kit.models import load_pretrained_for_classification, load_tokenizer, resolve_model

    resolved = resolve_model(cfg.model)
    ds = load_dataset(cfg.data)
    warn_about_splits(ds, cfg.data)
    log(f"data: {ds.source}: " + ", ".join(f"{k} {len(v)}" for k, v in ds.splits.items()))
    tokenizer = load_tokenizer(resolved.path)
    warn_if_unknown_tokens(tokenizer, ds.splits["train"].texts, cfg.model)
    model = load_pretrained_for_classification(resolved, ds.label_names, cfg.dropout, seed=cfg.train.seed, log=log)
    check_fits_model(model, cfg.train, cfg.model)
    return _Loaded(resolved, ds, tokenizer, model)


def _train(cfg: FinetuneConfig, loaded: _Loaded, work: Path, ctx: RunContext):
    """Tokenize every split and train on the shared engine; returns (feature sets, TrainResult)."""
    from mobilebert_kit.batching import make_features
    from mobilebert_kit.training.engine import TrainModule, fingerprint, train

    ds, L = loaded.dataset, cfg.train.max_length
    sets = {name: make_features(loaded.tokenizer, s.texts, s.pairs, s.labels, L) for name, s in ds.splits.items()}
    run_fp = fingerprint(loaded.resolved.path, cfg.data.to_dict(), ds.summary()["sizes"], cfg.dropout)
    result = train(
        TrainModule(loaded.model),
        sets["train"],
        sets["validation"],
        cfg.train,
        workdir=work,
        pad_id=loaded.pad_id,
        num_labels=ds.num_labels,
        resume=ctx.resume,
        quiet=ctx.quiet,
        run_fingerprint=run_fp,
        log=ctx.log,
    )
    return sets, result


def _metrics(cfg: FinetuneConfig, loaded: _Loaded, sets: dict, result, logits: dict) -> dict:
    from mobilebert_kit.models import count_parameters

    metrics = evaluate_splits(loaded.model, sets, cfg.train, loaded.pad_id, loaded.dataset.num_labels, logits)
    return {
        **metrics,
        **training_history(result),
        "parameters": count_parameters(loaded.model),
        **training_setup(result),
    }


def _write(
    out: Path,
    cfg,
    loaded: _Loaded,
    metrics: dict,
    result,
    timings: dict,
    t0: float,
    overwrite: bool,
    inputs: tuple,
    test_logits,
) -> None:
    """The teacher folder: model, tokenizer, labels, metrics.json, test predictions, the training log and manifest.json."""
    from mobilebert_kit import artifacts
    from mobilebert_kit.stages import predictions

    ds = loaded.dataset
    with artifacts.staged_output(out, overwrite=overwrite, inputs=inputs) as tmp:
        loaded.model.save_pretrained(tmp, safe_serialization=True)
        loaded.tokenizer.save_pretrained(tmp)
        artifacts.write_labels(tmp, ds.label_names)
        artifacts.write_json(tmp / artifacts.METRICS, metrics)
        publish_training_log(result.log_dir, tmp)
        test = ds.splits["test"]
        predictions.write(tmp, predictions.record(test.texts, test.pairs, test.labels, test_logits))
        inputs = {
            "model": model_input(cfg.model, loaded.resolved),
            "data": {"source": ds.source, **data_hash(cfg.data)},
        }
        artifacts.write_manifest(
            tmp,
            stage="finetune",
            config=cfg.to_dict(),
            inputs=inputs,
            metrics=_headline(metrics),
            timings={**timings, "total_seconds": time.perf_counter() - t0},
            extra={
                "data": cfg.data.to_dict(),
                "max_length": cfg.train.max_length,
                "dataset": ds.summary(),
                "resumed_from": result.resumed_from,
            },
        )


def _summary_line(out: Path, metrics: dict) -> str:
    return (
        f"teacher written to {out}: test accuracy {metrics['test']['accuracy']:.4f}, "
        f"macro-F1 {metrics['test']['macro_f1']:.4f}, {metrics['train_examples_per_second']:.1f} train ex/s"
    )


def _headline(metrics: dict) -> dict:
    return {
        "test_accuracy": metrics["test"]["accuracy"],
        "test_macro_f1": metrics["test"]["macro_f1"],
        "validation_accuracy": metrics["validation"]["accuracy"],
        "validation_macro_f1": metrics["validation"]["macro_f1"],
        "train_examples_per_second": metrics["train_examples_per_second"],
        "parameters": metrics["parameters"],
        "precision": f"{metrics['precision']} ({metrics.get('precision_reason', '')})",
    }
