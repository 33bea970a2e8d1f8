"""``recover``: a short knowledge-distillation run that wins back accuracy after pruning.

The method (:class:`Recover`) and the run itself (:func:`recover`): the teacher's logits on the training
texts (checked INT8 when asked), optional layer targets from the model before pruning, then the shared
training engine with the distillation loss.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from mobilebert_kit.compression.base import Method, Outcome, Work
from mobilebert_kit.config import check_choice, check_range
from mobilebert_kit.devices import TEACHER_PRECISIONS
from mobilebert_kit.errors import CompressError

# Recovery after structured pruning distills like `mbk distill` does by default (T=3, soft/hard 50/50).
RECOVERY_TEMPERATURE = 3.0
RECOVERY_ALPHA = 0.5
# Validation accounting: trimming builds its vocabulary from the training split only, and recovery
# trains on it; but with more than one epoch recovery keeps its best epoch by validation macro-F1,
# the split the accuracy guard then judges, so that choice flatters the guard a little.
SELECTION_NOTE = (
    "recovery picked its best epoch on the validation split the accuracy guard also checks: the guard's "
    "drop is slightly optimistic; the test-split numbers are the unbiased ones"
)


@dataclass
class Recover(Method):
    """Distil the model from ``teacher`` for ``epochs`` at learning rate ``lr``; the teacher defaults
    to the stage's ``teacher``, else the teacher recorded upstream, else the input model."""

    epochs: int = 1
    lr: float = 5e-5
    teacher: str | None = None
    hidden_weight: float = 0.0  # > 0: each layer also mimics the same layer of the compress input (before pruning)
    teacher_precision: str = "int8"  # the teacher's pass in checked dynamic INT8 on CPU, as mbk distill's; or fp32
    log_every: int = 10  # optimizer steps between per-step metric lines (the output's train_log.jsonl); 0 = off

    name: ClassVar[str] = "recover"
    label: ClassVar[str] = "recovery"
    seeded: ClassVar[bool] = True
    record: ClassVar[str | None] = "recovery"

    def validate(self) -> list[str]:
        p: list[str] = []
        check_range(p, "epochs", self.epochs, 1)
        check_range(p, "lr", self.lr, 0, lo_open=True)
        check_range(p, "hidden_weight", self.hidden_weight, 0)
        check_choice(p, "teacher_precision", self.teacher_precision, TEACHER_PRECISIONS)
        check_range(p, "log_every", self.log_every, 0)
        return p

    def apply(self, work: Work) -> Outcome:
        from mobilebert_kit.artifacts import lineage
        from mobilebert_kit.training.metrics_log import publish

        teacher = Path(self.teacher or work.teacher or lineage(work.model_dir)["teacher"] or work.model_dir)
        layers = f", layer outputs from {work.model_dir} (x{self.hidden_weight})" if self.hidden_weight else ""
        work.log(f"recovery: distilling from {teacher} for {self.epochs} epoch(s){layers}")
        report = recover(
            work.model,
            work.tokenizer,
            teacher,
            work.train,
            work.val,
            max_length=work.max_length,
            epochs=self.epochs,
            lr=self.lr,
            workdir=work.scratch / "recover",
            log_every=self.log_every,
            seed=work.seed,
            log=None if work.quiet else work.log,
            hidden_weight=self.hidden_weight,
            teacher_precision=self.teacher_precision,
            hidden_from=work.model_dir,
        )
        if work.out is not None:  # recovery's per-step log (steps marked "phase": "recovery") into the output
            publish(work.scratch / "recover", work.out, phase="recovery")
        if self.epochs > 1:
            work.note(SELECTION_NOTE)
        return Outcome(report, {"recovery": report})


def recover(
    model,
    tokenizer,
    teacher_dir: str | os.PathLike,
    train_split,
    val_split,
    *,
    max_length: int,
    epochs: int,
    lr: float,
    workdir: str | os.PathLike,
    seed: int = 0,
    log=None,
    hidden_weight: float = 0.0,
    hidden_from: str | os.PathLike | None = None,
    teacher_precision: str = "int8",
    log_every: int = 10,
) -> dict:
    """Short knowledge-distillation recovery of a pruned model from ``teacher_dir``.

    Uses the distillation loss (:func:`mobilebert_kit.training.losses.distillation_loss`: KL on
    temperature-softened logits plus CE on labels, with distill's default T and alpha) and the
    shared training engine (best epoch by validation macro-F1 is kept).
    The teacher's logits on the training texts are computed once, with the teacher's own tokenizer.
    With ``hidden_weight`` > 0, each layer's output also mimics (MSE, TinyBERT's hidden-state loss) the
    same layer of ``hidden_from``: the model before pruning, same depth and width, cached like distill's
    teacher outputs. Layer distillation to the unpruned model is CoFi's recipe for pruned models.
    ``teacher_precision`` ``int8`` runs the teacher's pass in checked dynamic INT8, as distill can.
    """
    from mobilebert_kit.batching import make_features
    from mobilebert_kit.training.engine import TrainConfig, TrainModule, train
    from mobilebert_kit.training.losses import distillation_loss

    t_logits, check = _teacher_logits(model, teacher_dir, train_split, max_length, teacher_precision, log)
    extras = {"teacher_logits": list(t_logits)}
    if hidden_weight > 0:
        extras["teacher_hidden"] = _layer_targets(model, hidden_from, train_split, max_length, log)
    train_cfg = TrainConfig(
        epochs=epochs,
        lr=lr,
        max_length=max_length,
        device="cpu",
        seed=seed,
        early_stopping_patience=0,
        checkpoint_every=0,
        warmup_ratio=0.1,
        log_every=log_every,
    )
    s = train_split
    train_set = make_features(tokenizer, s.texts, s.pairs, s.labels, max_length, extras=extras)
    if hidden_weight > 0:
        _check_aligned(train_set, extras["teacher_hidden"], hidden_from)
    val_set = make_features(tokenizer, val_split.texts, val_split.pairs, val_split.labels, max_length)
    result = train(
        TrainModule(model, distillation_loss(RECOVERY_TEMPERATURE, RECOVERY_ALPHA, hidden_weight, with_terms=True)),
        train_set,
        val_set,
        train_cfg,
        workdir=Path(workdir),
        pad_id=tokenizer.pad_token_id or 0,
        num_labels=model.config.num_labels,
        quiet=log is None,
        log=log,
        log_phase="recovery",
    )
    model.eval()
    return {
        "teacher": str(teacher_dir),
        "epochs": epochs,
        "lr": lr,
        "temperature": RECOVERY_TEMPERATURE,
        "alpha": RECOVERY_ALPHA,
        **({"hidden_weight": hidden_weight, "hidden_from": str(hidden_from)} if hidden_weight > 0 else {}),
        "teacher_precision": check["precision"] if check else "fp32",
        **({"int8_check": check} if check else {}),
        "best_epoch": result.best_epoch,
        "train_seconds": result.train_seconds,
        "history": [{k: v for k, v in h.items() if isinstance(v, (int, float, str))} for h in result.history],
    }


def _teacher_logits(model, teacher_dir, train_split, max_length: int, precision: str = "int8", log=None):
    """(the teacher's logits on the training texts, the INT8 check or None), with the teacher's own
    tokenizer (logits are compared text by text, so it may differ from the model's); the teacher is
    dropped afterwards."""
    from mobilebert_kit.batching import predict_logits
    from mobilebert_kit.devices import teacher_pass_precision
    from mobilebert_kit.models import load_classifier_folder
    from mobilebert_kit.training.int8_teacher import int8_teacher

    teacher, teacher_tok, _ = load_classifier_folder(teacher_dir)
    if teacher.config.num_labels != model.config.num_labels:
        raise CompressError(
            f"the recovery teacher {teacher_dir} has {teacher.config.num_labels} labels, the model "
            f"{model.config.num_labels}; pass --teacher with the model's teacher"
        )
    check = None
    if teacher_pass_precision(precision, "cpu") == "int8":  # recovery trains on CPU
        teacher, check = int8_teacher(
            teacher,
            teacher_tok,
            train_split.texts,
            train_split.pairs,
            max_length=max_length,
            temperature=RECOVERY_TEMPERATURE,
            log=log or (lambda m: None),
        )
    logits = predict_logits(
        teacher,
        teacher_tok,
        train_split.texts,
        train_split.pairs,
        max_length=max_length,
        progress="recovery: teacher logits" if log is not None else None,
    )
    return logits, check


def _layer_targets(model, source, train_split, max_length: int, log) -> list:
    """Every layer's output of ``source`` (the model before pruning) on the training texts, per example
    ``[tokens, layers, hidden]``, through distill's teacher cache. The pruned model may carry a trimmed
    vocabulary: trimming keeps every piece of the training texts, so they tokenize to the same positions,
    which :func:`_check_aligned` checks."""
    from mobilebert_kit.models import load_classifier_folder
    from mobilebert_kit.training.teacher_cache import default_cache_dir, teacher_outputs, teacher_weights_sha

    source_model, source_tok, _ = load_classifier_folder(source)
    n_layers = model.config.num_hidden_layers
    got = (source_model.config.num_hidden_layers, source_model.config.hidden_size)
    if got != (n_layers, model.config.hidden_size):
        raise CompressError(
            f"recover hidden_weight needs the model before pruning to have the pruned model's depth and width "
            f"({n_layers} layers, hidden {model.config.hidden_size}); {source} has {got[0]} layers, hidden "
            f"{got[1]}; set hidden_weight: 0"
        )
    outputs = teacher_outputs(
        source_model,
        source_tok,
        train_split.texts,
        train_split.pairs,
        max_length=max_length,
        hidden_layers=list(range(n_layers)),
        attention_layers=[],
        cache_dir=default_cache_dir(),
        slot={"teacher": str(Path(source).resolve()), "role": "recover-hidden"},
        teacher_sha=teacher_weights_sha(source),
        batch_size=64,
        device="cpu",
        log=log or (lambda msg: None),
        progress=log is not None,
    )
    return outputs.hidden


def _check_aligned(train_set, hidden: list, source) -> None:
    if [h.shape[0] for h in hidden] != list(train_set.lengths):
        raise CompressError(
            f"recover hidden_weight: the pruned model's tokenizer splits the training texts differently from "
            f"{source}'s, so their layers cannot be compared token by token; set hidden_weight: 0"
        )
