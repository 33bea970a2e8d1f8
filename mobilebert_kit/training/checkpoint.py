"""Crash-safe checkpoints: model, optimizer, scheduler, scaler, RNG and :class:`TrainState`.

Each checkpoint is written to a temp folder and renamed into place, so a ``kill -9`` mid-write
never corrupts the last good one (accelerate's ``save_state`` writes in place; that's why this is
ours). Only the newest ``keep`` checkpoints stay. Resume restores everything, RNG included, so the
resumed run takes bit for bit the steps the uninterrupted one would have taken, and refuses a
checkpoint whose fingerprint (data, model, options) differs from this run's.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mobilebert_kit.errors import TrainingError
from mobilebert_kit.training.state import TrainState

BEST = "best.safetensors"


def rng_state() -> dict:
    """The Python, NumPy, torch (and CUDA) random states, in a form ``torch.save`` can store."""
    import torch

    state = {
        "python": list(random.getstate()[1]),
        "python_pos": random.getstate()[2],
        "numpy": np.random.get_state()[1].tolist(),
        "numpy_pos": int(np.random.get_state()[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import torch

    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


HASHES = "hashes.json"  # sha256 of every file of a checkpoint, written last but one (state.json last)


def checkpoints(workdir: Path) -> list[Path]:
    """Complete checkpoints under ``workdir/checkpoints`` (those with a state.json), newest first."""
    ckdir = workdir / "checkpoints"
    if not ckdir.is_dir():
        return []
    done = [p for p in ckdir.iterdir() if p.name.startswith("step-") and (p / "state.json").exists()]
    return sorted(done, reverse=True)


def latest_checkpoint(workdir: Path) -> Path | None:
    """The newest complete checkpoint under ``workdir/checkpoints``."""
    found = checkpoints(workdir)
    return found[0] if found else None


def damage(ck: Path) -> str | None:
    """Why checkpoint ``ck`` cannot be trusted (a file missing, changed or truncated), or None."""
    from mobilebert_kit.artifacts import sha256_file

    try:
        json.loads((ck / "state.json").read_text())
        # checkpoints of mbk versions before hashes.json: the state must parse, the rest is trusted
        expected = json.loads((ck / HASHES).read_text()) if (ck / HASHES).exists() else {}
    except (OSError, ValueError) as e:
        return f"{e.__class__.__name__} reading its state"
    for name, digest in expected.items():
        if not (ck / name).is_file():
            return f"{name} is missing"
        if sha256_file(ck / name) != digest:
            return f"{name} does not match its recorded sha256"
    return None


def save_weights(module, path: Path) -> None:
    """``module``'s weights as safetensors, written atomically."""
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(tmp))
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write (disk full) leaves no partial file behind
        raise
    os.replace(tmp, path)


def load_best(workdir: Path, model) -> None:
    """Load the best epoch's weights (kept in ``workdir`` by the evaluation hook) into ``model``."""
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(workdir / BEST)))


class Checkpointer:
    """Saves and restores one training run's checkpoints in ``workdir/checkpoints/step-N``.

    Under data parallelism every process calls :meth:`save` (it synchronises) and only the main
    process writes.
    """

    def __init__(self, workdir: Path, keep: int, accelerator, wrapper, optimizer, scheduler, scaler):
        self.workdir, self.keep, self.accelerator = workdir, keep, accelerator
        self.wrapper, self.optimizer, self.scheduler, self.scaler = wrapper, optimizer, scheduler, scaler

    @property
    def folder(self) -> Path:
        return self.workdir / "checkpoints"

    def start(self, fingerprint: str, resume: bool, log: Callable[[str], None]) -> tuple[TrainState, str | None]:
        """A fresh state (discarding stale checkpoints) or, with ``resume``, the restored one;
        also returns the checkpoint resumed from."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        resumed_from = None
        if resume:
            state, ck = self.restore(fingerprint, log)
            resumed_from = str(ck)
            log(f"resuming from {ck.name}: epoch {state.epoch + 1}, step {state.global_step}")
        else:
            state = TrainState(fingerprint=fingerprint)
            stale = latest_checkpoint(self.workdir)
            if stale is not None and self.accelerator.is_main_process:
                log(
                    f"note: starting fresh; discarding an earlier interrupted run's checkpoints in {self.folder} "
                    f"(latest {stale.name}); next time use --resume to continue such a run"
                )
                shutil.rmtree(self.folder, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        return state, resumed_from

    def restore(self, fingerprint: str, log: Callable[[str], None] = print) -> tuple[TrainState, Path]:
        """Load the newest intact checkpoint into the model, optimizer, scheduler, scaler and RNGs;
        a damaged newer one (hash mismatch, truncated file) is skipped with a warning.

        Raises:
            TrainingError: no checkpoint, none intact, or one made with different data, model or options.
        """
        found = checkpoints(self.workdir)
        if not found:
            raise TrainingError(f"--resume: no checkpoint found in {self.workdir}; run without --resume to start fresh")
        for ck in found:
            why = damage(ck)
            if why is None:
                return self._load(ck, fingerprint), ck
            # a warning, printed even with --quiet: the run resumes from further back than the user expects
            print(f"warning: checkpoint {ck.name} is damaged ({why}); trying the one before it", file=sys.stderr)
        raise TrainingError(
            f"--resume: every checkpoint in {self.folder} is damaged ({', '.join(p.name for p in found)}); "
            "run without --resume to start fresh"
        )

    def _load(self, ck: Path, fingerprint: str) -> TrainState:
        import torch
        from safetensors.torch import load_file

        saved = json.loads((ck / "state.json").read_text())
        if saved.get("fingerprint") != fingerprint:
            raise TrainingError(
                f"--resume: the checkpoint in {ck} was made with different data, model or training options; "
                "re-run with the same options, or without --resume to start fresh"
            )
        self.accelerator.unwrap_model(self.wrapper).load_state_dict(load_file(str(ck / "model.safetensors")))
        self.optimizer.load_state_dict(torch.load(ck / "optimizer.pt", weights_only=True))
        self.scheduler.load_state_dict(torch.load(ck / "scheduler.pt", weights_only=True))
        if self.scaler is not None and (ck / "scaler.pt").exists():
            self.scaler.load_state_dict(torch.load(ck / "scaler.pt", weights_only=True))
        set_rng_state(torch.load(ck / "rng.pt", weights_only=True))
        return TrainState.from_dict(saved)

    def save(self, state: TrainState) -> None:
        """Checkpoint ``state`` as ``step-<global_step>`` (all processes call this; the main one writes)."""
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            self._write(self.folder / f"step-{state.global_step:08d}", state)
            self._prune()
        self.accelerator.wait_for_everyone()

    def _write(self, path: Path, state: TrainState) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            self._write_files(tmp, state)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # a failed write (disk full) leaves nothing half-written
            raise
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)

    def _write_files(self, tmp: Path, state: TrainState) -> None:
        import torch

        from mobilebert_kit.artifacts import sha256_file

        save_weights(self.accelerator.unwrap_model(self.wrapper), tmp / "model.safetensors")
        torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(self.scheduler.state_dict(), tmp / "scheduler.pt")
        if self.scaler is not None:
            torch.save(self.scaler.state_dict(), tmp / "scaler.pt")
        torch.save(rng_state(), tmp / "rng.pt")
        (tmp / "state.json").write_text(json.dumps(state.to_dict(), indent=2))
        hashes = {f.name: sha256_file(f) for f in sorted(tmp.iterdir()) if f.is_file()}
        (tmp / HASHES).write_text(json.dumps(hashes, indent=2))

    def _prune(self) -> None:
        for old in sorted(p for p in self.folder.iterdir() if p.name.startswith("step-"))[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
