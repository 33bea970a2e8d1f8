"""What happens around the training steps, as hooks the loop calls at fixed points:

- ``on_epoch_start(state, batches, skip)``: an epoch of ``batches`` batches begins, ``skip`` of
  them already done (resume);
- ``on_batch_end(state)`` after every batch, ``on_step_end(state)`` after every optimizer step;
- ``on_epoch_end(state) -> bool``: the epoch is over; ``True`` asks the loop to stop early.

Hooks run in list order: the progress bar, the mid-epoch checkpoint, the fault-injection test hook,
and the evaluation (validation metrics, best epoch, early stopping), which closes the epoch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mobilebert_kit.training.checkpoint import BEST, Checkpointer, save_weights
from mobilebert_kit.training.state import TrainState


class Hook:
    """A no-op at every point; subclasses override what they need."""

    def on_epoch_start(self, state: TrainState, batches: int, skip: int) -> None:
        pass

    def on_batch_end(self, state: TrainState) -> None:
        pass

    def on_step_end(self, state: TrainState) -> None:
        pass

    def on_epoch_end(self, state: TrainState) -> bool:
        return False


class Hooks(Hook):
    """Several hooks called in order; the epoch ends the run early if any of them asks to."""

    def __init__(self, hooks: list[Hook]):
        self.hooks = hooks

    def on_epoch_start(self, state: TrainState, batches: int, skip: int) -> None:
        for h in self.hooks:
            h.on_epoch_start(state, batches, skip)

    def on_batch_end(self, state: TrainState) -> None:
        for h in self.hooks:
            h.on_batch_end(state)

    def on_step_end(self, state: TrainState) -> None:
        for h in self.hooks:
            h.on_step_end(state)

    def on_epoch_end(self, state: TrainState) -> bool:
        return any([h.on_epoch_end(state) for h in self.hooks])  # a list: every hook runs


class ProgressBar(Hook):
    """One tqdm bar per epoch on stderr with the running loss and examples/s."""

    def __init__(self, epochs: int, disable: bool):
        self.epochs, self.disable, self.bar = epochs, disable, None

    def on_epoch_start(self, state: TrainState, batches: int, skip: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=batches,
            initial=skip,
            desc=f"epoch {state.epoch + 1}/{self.epochs}",
            disable=self.disable,
            file=sys.stderr,
            dynamic_ncols=True,
            leave=True,
            mininterval=1.0,
        )

    def on_batch_end(self, state: TrainState) -> None:
        self.bar.update(1)
        self.bar.set_postfix(
            loss=f"{state.mean_loss:.4f}", ex_s=f"{state.epoch_examples_per_second:.1f}", refresh=False
        )

    def on_epoch_end(self, state: TrainState) -> bool:
        self.bar.close()
        return False


class PeriodicCheckpoint(Hook):
    """A checkpoint every ``every`` optimizer steps, except on an epoch's last batch (the epoch-end
    checkpoint, taken after evaluation, covers it)."""

    def __init__(self, checkpointer: Checkpointer, every: int):
        self.checkpointer, self.every, self.batches = checkpointer, every, 0

    def on_epoch_start(self, state: TrainState, batches: int, skip: int) -> None:
        self.batches = batches

    def on_step_end(self, state: TrainState) -> None:
        at_end = state.batches_done >= self.batches
        if self.every and state.global_step % self.every == 0 and not at_end:
            state.flush_timing()
            self.checkpointer.save(state)


class FaultInjection(Hook):
    """Test hook: ``MBK_KILL_AT_STEP=N`` SIGKILLs (``MBK_INTERRUPT_AT_STEP=N``: SIGINTs, as Ctrl-C does)
    this process right after optimizer step N: how the resume tests reproduce a kill at an exact point."""

    def on_step_end(self, state: TrainState) -> None:
        import signal

        for var, sig in (("MBK_KILL_AT_STEP", signal.SIGKILL), ("MBK_INTERRUPT_AT_STEP", signal.SIGINT)):
            at = os.environ.get(var)
            if at and int(at) == state.global_step:
                os.kill(os.getpid(), sig)


class Evaluation(Hook):
    """Closes each epoch: its history record (train loss, validation metrics, examples/s), the
    best epoch by validation macro-F1 (or lowest train loss without validation data) with its
    weights kept in ``workdir``, the log line, and early stopping after ``patience`` epochs
    without gain (0 = never).

    ``evaluate()`` returns the validation metrics (with ``macro_f1``), or ``None`` when there is
    no validation data.
    """

    def __init__(
        self,
        evaluate: Callable[[], dict[str, Any] | None],
        model,
        workdir: Path,
        *,
        epochs: int,
        patience: int,
        writer: bool,
        log: Callable[[str], None],
    ):
        self.evaluate, self.model, self.workdir = evaluate, model, workdir
        self.epochs, self.patience, self.writer, self.log = epochs, patience, writer, log

    def on_epoch_end(self, state: TrainState) -> bool:
        record: dict[str, Any] = {
            "epoch": state.epoch + 1,
            "step": state.global_step,
            "train_loss": state.mean_loss,
            "examples_per_second": state.examples_per_second,
        }
        metrics = self.evaluate()
        if metrics is not None:
            record.update({f"val_{k}": v for k, v in metrics.items() if k != "n"})
        improved = self._update_best(state, metrics["macro_f1"] if metrics is not None else -record["train_loss"])
        state.end_epoch(record)
        self.log(epoch_line(record, improved))
        stop = bool(self.patience and state.bad_epochs >= self.patience) and state.epoch < self.epochs
        if stop:
            self.log(f"early stopping: no validation macro-F1 gain for {state.bad_epochs} epochs")
        return stop

    def _update_best(self, state: TrainState, metric: float) -> bool:
        if not metric > state.best_metric + 1e-9:  # NaN never improves
            state.bad_epochs += 1
            return False
        state.best_metric, state.best_epoch, state.bad_epochs = metric, state.epoch + 1, 0
        if self.writer:
            save_weights(self.model, self.workdir / BEST)
        return True


def epoch_line(record: dict[str, Any], improved: bool) -> str:
    """``epoch 2 | loss 0.4123 | val_accuracy 0.8100 | ... | 512.3 ex/s | best``."""
    return " | ".join(
        [f"epoch {record['epoch']}", f"loss {record['train_loss']:.4f}"]
        + [f"{k} {v:.4f}" for k, v in record.items() if k.startswith("val_")]
        + [f"{record['examples_per_second']:.1f} ex/s", "best" if improved else ""]
    ).rstrip(" |")
