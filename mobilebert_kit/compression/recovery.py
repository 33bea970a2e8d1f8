"""``recover``: a short knowledge-distillation run that wins back accuracy after pruning."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from mobilebert_kit.compression.base import Method, Outcome, Work
from mobilebert_kit.config import check_choice, check_range
from mobilebert_kit.devices import TEACHER_PRECISIONS

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
        from mobilebert_kit import prune
        from mobilebert_kit.data import lineage
        from mobilebert_kit.training.metrics_log import publish

        teacher = Path(self.teacher or work.teacher or lineage(work.model_dir)["teacher"] or work.model_dir)
        layers = f", layer outputs from {work.model_dir} (x{self.hidden_weight})" if self.hidden_weight else ""
        work.log(f"recovery: distilling from {teacher} for {self.epochs} epoch(s){layers}")
        report = prune.recover(
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
