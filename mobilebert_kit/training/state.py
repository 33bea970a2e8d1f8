"""Where a training run stands; saved as ``state.json`` in every checkpoint and restored on resume."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TrainState:
    """Everything a resumed run needs to continue exactly where the killed one stopped.

    Attributes:
        epoch: epochs completed (the running epoch is ``epoch + 1``, 1-based).
        batches_done: batches of the running epoch already trained (skipped on resume).
        global_step: optimizer steps taken.
        history: one record per finished epoch (loss, validation metrics, examples/s).
        best_metric / best_epoch: the best validation macro-F1 so far and its epoch (1-based).
        bad_epochs: epochs in a row without improvement (early-stopping patience).
        train_seconds / examples_seen: training time and examples, for examples/s.
        epoch_loss / epoch_n: running sum and count of the running epoch's batch losses.
        fingerprint: data, model and options the run was made with (resume refuses others).
    """

    epoch: int = 0
    batches_done: int = 0
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float = -1.0
    best_epoch: int = -1
    bad_epochs: int = 0
    train_seconds: float = 0.0
    examples_seen: int = 0
    epoch_loss: float = 0.0
    epoch_n: int = 0
    fingerprint: str = ""

    def __post_init__(self) -> None:
        self._t0 = time.perf_counter()  # timing since the last flush (not saved)
        self._examples = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> TrainState:
        return cls(**saved)

    def finished(self, epochs: int, max_steps: int | None) -> bool:
        return self.epoch >= epochs or bool(max_steps and self.global_step >= max_steps)

    def start_epoch(self) -> None:
        """Begin (or continue, after a resume) the running epoch."""
        if self.batches_done == 0:
            self.epoch_loss, self.epoch_n = 0.0, 0
        self._t0, self._examples = time.perf_counter(), 0

    def add_batch(self, loss: float, examples: int) -> None:
        self.batches_done += 1
        self.epoch_loss += loss
        self.epoch_n += 1
        self._examples += examples

    @property
    def mean_loss(self) -> float:
        return self.epoch_loss / max(self.epoch_n, 1)

    @property
    def epoch_examples_per_second(self) -> float:
        """Examples/s of the running epoch since its last flush (for the progress bar)."""
        return self._examples / max(time.perf_counter() - self._t0, 1e-9)

    @property
    def examples_per_second(self) -> float:
        return self.examples_seen / max(self.train_seconds, 1e-9)

    def flush_timing(self) -> None:
        """Move the time and examples since the last flush into the saved totals."""
        self.train_seconds += time.perf_counter() - self._t0
        self.examples_seen += self._examples
        self._t0, self._examples = time.perf_counter(), 0

    def end_epoch(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        self.epoch += 1
        self.batches_done = 0
