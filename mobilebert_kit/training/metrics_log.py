"""Per-step training metrics: JSON lines (``train_log.jsonl``) and, when ``tensorboard`` is installed,
TensorBoard event files (``tb/``), both in the training stage's working folder while it trains and
copied into its artifact at the end (so ``tensorboard --logdir artifacts/runs/<name>`` shows every stage).

Each line is one JSON object:

- ``{"kind": "step", "step": 40, "epoch": 1, "loss": 0.41, "loss_soft": ..., "lr": 4.1e-05,
  "grad_norm": 2.3, "examples_per_second": 51.0, "batches": 10}``: every ``log_every`` optimizer steps, and
  at the end of each epoch for the batches since the last line (so a short run still has its curve).
  ``loss`` and its terms are means over the batches since the previous line (``batches`` says how many);
  ``grad_norm`` is the step's total gradient norm before clipping.
- ``{"kind": "eval", "step": 120, "epoch": 1, "val_accuracy": ..., ...}``: the end-of-epoch evaluation.

Lines carry ``"phase"`` when the training has one (``"recovery"`` in compress, ``"transfer set"`` when
distillation trains on teacher-labelled extra text).

Cost: the engine already reads each batch's loss as a Python float; the loss terms and the gradient norm
stay on the device until a line is written, so logging adds one device sync per ``log_every`` steps.
Resume: a resumed run first cuts the log back to its checkpoint (step lines up to the checkpoint's step,
eval lines up to its finished epochs) and TensorBoard purges the later events, so no line is lost or doubled.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from mobilebert_kit.artifacts import TENSORBOARD, TRAIN_LOG
from mobilebert_kit.training.hooks import Hook
from mobilebert_kit.training.state import TrainState

__all__ = ["TENSORBOARD", "TRAIN_LOG", "EvalPoint", "StepLog", "publish", "read_log", "truncate_log"]


def tensorboard_available() -> bool:
    """Whether TensorBoard event files can be written (``torch.utils.tensorboard`` needs ``tensorboard``)."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The lines of a ``train_log.jsonl`` (a torn last line from a kill is skipped)."""
    out = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def truncate_log(path: Path, step: int, epochs: int) -> int:
    """Keep the step lines up to ``step`` and the eval lines up to epoch ``epochs`` (a checkpoint's state);
    rewritten atomically. Returns how many lines were dropped."""
    if not path.exists():
        return 0
    lines = read_log(path)
    keep = [r for r in lines if (r.get("epoch", 0) <= epochs if r.get("kind") == "eval" else r.get("step", 0) <= step)]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep), encoding="utf-8")
    os.replace(tmp, path)
    return len(lines) - len(keep)


class StepLog(Hook):
    """Writes the per-step lines (``on_step_end``, every ``every`` steps) of one training attempt.

    The engine calls :meth:`add_batch` after each batch with the batch's loss (a float it already has),
    the loss terms (device tensors, or None), at logged steps the gradient norm (a device tensor), and the
    learning rate the batch was trained with. ``every`` = 0 turns logging off (nothing is written); so does
    ``writer=False`` (a process other than the main one).
    """

    def __init__(self, folder: Path, every: int, phase: str | None = None, writer: bool = True):
        self.folder, self.every, self.phase = folder, every if writer else 0, phase
        self.lr = None
        self.file = None
        self.tb = None
        self.epoch_batches = 0
        self._reset()

    @property
    def path(self) -> Path:
        return self.folder / TRAIN_LOG

    def on_epoch_start(self, state: TrainState, batches: int, skip: int) -> None:
        self.epoch_batches = batches

    def _reset(self) -> None:
        self.loss_sum, self.batches, self.examples = 0.0, 0, 0
        self.terms: dict[str, Any] = {}
        self.grad_norm = None
        self.t0 = time.perf_counter()

    def start(self, state: TrainState, resumed: bool) -> None:
        """Open the log: a fresh run starts it empty; a resumed one cuts it back to ``state``."""
        if not self.every:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        if resumed:
            truncate_log(self.path, state.global_step, state.epoch)
        else:
            self.path.unlink(missing_ok=True)
            shutil.rmtree(self.folder / TENSORBOARD, ignore_errors=True)
        self.file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
        if tensorboard_available():
            from torch.utils.tensorboard import SummaryWriter

            purge = state.global_step + 1 if resumed else None
            self.tb = SummaryWriter(str(self.folder / TENSORBOARD), purge_step=purge)
        self._reset()

    def wants(self, step: int) -> bool:
        """Whether optimizer step ``step`` gets a line."""
        return bool(self.every) and step % self.every == 0

    def wants_norm(self, state: TrainState) -> bool:
        """Whether the coming batch's optimizer step (if it steps) gets a line, so the engine measures its
        gradient norm: every ``every`` steps and the epoch's last batch."""
        return self.wants(state.global_step + 1) or bool(self.every and state.batches_done + 1 >= self.epoch_batches)

    def add_batch(self, loss: float, examples: int, terms: dict | None = None, grad_norm=None, lr=None) -> None:
        if not self.every:
            return
        self.lr = lr
        self.loss_sum += loss
        self.batches += 1
        self.examples += examples
        for k, v in (terms or {}).items():
            self.terms[k] = self.terms[k] + v if k in self.terms else v
        if grad_norm is not None:
            self.grad_norm = grad_norm

    def on_step_end(self, state: TrainState) -> None:
        if self.wants(state.global_step):
            self._write_step(state)

    def on_epoch_end(self, state: TrainState) -> bool:
        self._write_step(state)  # the batches since the last line (runs before the evaluation closes the epoch)
        return False

    def _write_step(self, state: TrainState) -> None:
        if not self.every or not self.batches:
            return
        rec: dict[str, Any] = {"kind": "step", "step": state.global_step, "epoch": state.epoch + 1}
        rec["loss"] = self.loss_sum / self.batches
        values = _read_device({**{f"loss_{k}": v for k, v in self.terms.items()}, "grad_norm": self.grad_norm})
        rec.update({k: v / self.batches for k, v in values.items() if k.startswith("loss_")})
        if self.lr is not None:
            rec["lr"] = float(self.lr)
        if "grad_norm" in values:
            rec["grad_norm"] = values["grad_norm"]
        rec["examples_per_second"] = self.examples / max(time.perf_counter() - self.t0, 1e-9)
        rec["batches"] = self.batches
        self.write(rec)
        self._reset()

    def write_eval(self, record: dict[str, Any]) -> None:
        """The end-of-epoch evaluation point (the history record the evaluation hook made)."""
        if not self.every:
            return
        rec = {"kind": "eval", "step": record.get("step"), "epoch": record.get("epoch")}
        rec.update({k: v for k, v in record.items() if k.startswith("val_") and isinstance(v, (int, float))})
        rec["train_loss"] = record.get("train_loss")
        self.write(rec)
        self.t0 = time.perf_counter()  # evaluation time is not training time

    def write(self, rec: dict[str, Any]) -> None:
        if self.phase:
            rec["phase"] = self.phase
        self.file.write(json.dumps(rec) + "\n")
        self.file.flush()  # on disk before any checkpoint that follows this step
        if self.tb is not None:
            prefix = "eval" if rec["kind"] == "eval" else "train"
            for k, v in rec.items():
                if k not in ("kind", "step", "epoch", "phase", "batches") and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"{prefix}/{k.removeprefix('val_')}", v, rec["step"])
            self.tb.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def _read_device(values: dict) -> dict[str, float]:
    """Scalar device tensors (None: left out) as floats, with one device sync for all of them."""
    present = {k: v for k, v in values.items() if v is not None}
    if not present:
        return {}
    import torch

    tensors = {k: v for k, v in present.items() if isinstance(v, torch.Tensor)}
    out = {k: float(v) for k, v in present.items() if k not in tensors}
    if tensors:
        floats = torch.stack([v.detach().float().reshape(()).to(next(iter(tensors.values())).device)
                              for v in tensors.values()]).tolist()  # fmt: skip
        out.update(zip(tensors, floats))
    return out


class EvalPoint(Hook):
    """After the evaluation hook closed the epoch: its record as an eval line of the step log."""

    def __init__(self, log: StepLog):
        self.log = log

    def on_epoch_end(self, state: TrainState) -> bool:
        if state.history:
            self.log.write_eval(state.history[-1])
        return False


def publish(workdir: Path | None, target: Path, phase: str | None = None) -> list[str]:
    """Copy a training run's log and TensorBoard folder from ``workdir`` into the artifact folder ``target``
    (``phase`` puts the TensorBoard events under ``tb/<phase>``); a log already there (an earlier recovery
    step of the same compress run) is appended to. Returns the names copied."""
    if workdir is None:
        return []
    copied = []
    src = workdir / TRAIN_LOG
    if src.exists():
        with open(target / TRAIN_LOG, "ab") as dest:
            dest.write(src.read_bytes())
        copied.append(TRAIN_LOG)
    tb = workdir / TENSORBOARD
    if tb.is_dir() and any(tb.iterdir()):
        dest = target / TENSORBOARD / phase if phase else target / TENSORBOARD
        shutil.copytree(tb, dest, dirs_exist_ok=True)
        copied.append(TENSORBOARD)
    return copied
