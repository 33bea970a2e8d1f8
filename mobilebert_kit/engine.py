"""The one training engine. Fine-tuning and distillation both run through :func:`train`;
distillation only brings its own loss (and, for intermediate-layer losses, extra trainable
modules such as width projections).

What it does, each behind a real switch in :class:`TrainConfig`:
dynamic padding and length-grouped batches, gradient accumulation, mixed precision
(``auto`` = bf16/fp16 on CUDA, fp32 on CPU), torch.compile, gradient checkpointing, freezing
embeddings + the lowest N layers, DataLoader workers / pin_memory, automatic batch size on
out-of-memory, evaluation every epoch with best-epoch selection and early stopping, crash-safe
checkpoints (model, optimizer, scheduler, scaler, RNG, data position) with exact resume, and
data-parallel training under ``accelerate launch`` / ``torchrun`` (one process writes).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mobilebert_kit.batching import TOKEN_KEYS, Collator, FeatureDataset, batch_order, predict
from mobilebert_kit.config import StageConfig, check_choice, check_range
from mobilebert_kit.errors import TrainingError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class TrainConfig(StageConfig):
    """Optimisation and speed switches shared by every training stage."""

    epochs: int = 3
    lr: float = 5e-5
    batch_size: int = 32
    eval_batch_size: int = 128
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0
    grad_accum: int = 1
    max_length: int = 128
    dynamic_padding: bool = True  # pad each batch to its longest row, not to max_length
    group_by_length: bool = True  # batches of similar lengths (less padding), in shuffled order
    freeze_layers: int = 0  # freeze embeddings + the lowest N encoder layers (0 = train all)
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    compile: bool = False
    compile_backend: str = "inductor"  # torch.compile backend (inductor; eager/aot_eager to debug)
    gradient_checkpointing: bool = False
    num_workers: int | None = None  # None = auto (0 on CPU: workers steal the cores training needs)
    pin_memory: bool | None = None  # None = auto (on with CUDA)
    auto_batch_size: bool = False  # halve the batch (doubling grad_accum) on out-of-memory
    seed: int = 42
    checkpoint_every: int = 200  # optimizer steps between checkpoints (0 = only at epoch ends)
    keep_checkpoints: int = 2
    early_stopping_patience: int = 2  # epochs without validation macro-F1 gain (0 = off)
    max_steps: int | None = None  # stop after this many optimizer steps (smoke runs, benchmarks)
    device: str = "auto"  # auto | cpu | cuda | cuda:N

    def validate(self) -> list[str]:
        p: list[str] = []
        check_range(p, "epochs", self.epochs, 1)
        check_range(p, "lr", self.lr, 0, lo_open=True)
        check_range(p, "batch_size", self.batch_size, 1)
        check_range(p, "eval_batch_size", self.eval_batch_size, 1)
        check_range(p, "weight_decay", self.weight_decay, 0)
        check_range(p, "warmup_ratio", self.warmup_ratio, 0, 1)
        check_range(p, "max_grad_norm", self.max_grad_norm, 0)
        check_range(p, "grad_accum", self.grad_accum, 1)
        check_range(p, "max_length", self.max_length, 8, 8192)
        check_range(p, "freeze_layers", self.freeze_layers, 0)
        check_choice(p, "precision", self.precision, PRECISIONS)
        check_range(p, "num_workers", self.num_workers, 0)
        check_range(p, "checkpoint_every", self.checkpoint_every, 0)
        check_range(p, "keep_checkpoints", self.keep_checkpoints, 1)
        check_range(p, "early_stopping_patience", self.early_stopping_patience, 0)
        check_range(p, "max_steps", self.max_steps, 1)
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            p.append(f"device must be auto, cpu, cuda or cuda:N; got '{self.device}'")
        return p


# --------------------------------------------------------------------------- data


# --------------------------------------------------------------------------- device / precision


def cpu_has_native_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(requested: str, device_type: str) -> str:
    """Map ``auto`` to what is fast on this device; refuse what the device can't do well."""
    import torch

    if device_type == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        if requested == "auto":
            return "bf16" if bf16_ok else "fp16"
        if requested == "bf16" and not bf16_ok:
            raise TrainingError(
                f"--precision bf16 is not supported by {torch.cuda.get_device_name()}; use --precision fp16 or auto"
            )
        return requested
    if requested == "auto":
        return "fp32"  # bf16 autocast on a CPU without native bf16 is ~20x slower than fp32
    if requested == "fp16":
        raise TrainingError("--precision fp16 needs a CUDA GPU; on CPU use --precision fp32 (or auto)")
    if requested == "bf16" and not cpu_has_native_bf16():
        raise TrainingError(
            "--precision bf16 on this CPU (no avx512_bf16/amx instructions) runs ~20x slower than fp32; "
            "use --precision fp32 (or auto), or train on a GPU"
        )
    return requested


# --------------------------------------------------------------------------- results


@dataclass
class TrainResult:
    best_epoch: int
    best_metric: float
    history: list[dict[str, Any]]
    train_seconds: float
    examples_per_second: float
    steps: int
    stopped_early: bool
    resumed_from: str | None
    batch_size: int
    grad_accum: int
    precision: str
    device: str
    world_size: int
    notes: list[str] = field(default_factory=list)


class TrainModule:
    """What the engine trains: the model plus optional extra modules (e.g. projections) and a
    loss function ``loss_fn(model, batch, extra) -> scalar loss``."""

    def __init__(self, model, loss_fn: Callable | None = None, extra=None):
        self.model, self.loss_fn, self.extra = model, loss_fn or default_loss, extra


def default_loss(model, batch: dict, extra=None):
    inputs = {k: batch[k] for k in TOKEN_KEYS if k in batch}
    return model(**inputs, labels=batch["labels"]).loss


def _wrapper_module(task: TrainModule):
    import torch

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = task.model
            self.extra = task.extra if task.extra is not None else torch.nn.Module()

        def forward(self, batch):
            return task.loss_fn(self.model, batch, self.extra)

    return Wrapper()


# --------------------------------------------------------------------------- checkpoints


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _rng_state() -> dict:
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


def _set_rng_state(state: dict) -> None:
    import torch

    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_checkpoint(workdir: Path) -> Path | None:
    ckdir = workdir / "checkpoints"
    if not ckdir.is_dir():
        return None
    done = sorted(p for p in ckdir.iterdir() if p.name.startswith("step-") and (p / "state.json").exists())
    return done[-1] if done else None


def _save_checkpoint(path: Path, wrapper, optimizer, scheduler, scaler, state: dict, keep: int) -> None:
    """Write to a temp dir and rename, so a kill -9 mid-write never corrupts the last checkpoint.
    (accelerate's save_state writes in place; that's why this is ours.)"""
    import torch
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in wrapper.state_dict().items()}, str(tmp / "model.safetensors")
    )
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    if scaler is not None:
        torch.save(scaler.state_dict(), tmp / "scaler.pt")
    torch.save(_rng_state(), tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    old = sorted(p for p in path.parent.iterdir() if p.name.startswith("step-"))[:-keep]
    for p in old:
        shutil.rmtree(p, ignore_errors=True)


def _save_best(workdir: Path, model) -> None:
    from safetensors.torch import save_file

    tmp = workdir / ".best.safetensors.tmp"
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, workdir / "best.safetensors")


def load_best(workdir: Path, model) -> None:
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(workdir / "best.safetensors")))


# --------------------------------------------------------------------------- evaluation


# --------------------------------------------------------------------------- the loop


def freeze_lower_layers(model, n: int) -> int:
    """Freeze embeddings + the lowest ``n`` encoder layers; returns the trainable parameter count."""
    if n <= 0:
        return sum(p.numel() for p in model.parameters() if p.requires_grad)
    base = model.base_model
    layers = base.encoder.layer
    if n > len(layers):
        raise TrainingError(f"freeze_layers={n} but the model has only {len(layers)} layers; use 0..{len(layers)}")
    for p in base.embeddings.parameters():
        p.requires_grad_(False)
    for layer in layers[:n]:
        for p in layer.parameters():
            p.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train(
    task: TrainModule,
    train_set: FeatureDataset,
    eval_set: FeatureDataset | None,
    cfg: TrainConfig,
    *,
    workdir: Path,
    pad_id: int,
    num_labels: int,
    resume: bool = False,
    quiet: bool = False,
    run_fingerprint: str = "",
    log: Callable[[str], None] | None = None,
    metric_fn: Callable[[np.ndarray, list[int]], dict] | None = None,
) -> TrainResult:
    """Train ``task`` on ``train_set``, evaluate on ``eval_set`` every epoch and keep the best
    epoch's weights in ``task.model`` (by validation macro-F1). Checkpoints live in ``workdir``.

    With ``cfg.auto_batch_size``, an out-of-memory error halves the batch, doubles gradient
    accumulation (same effective batch), restores the initial weights and starts again.
    """
    from accelerate.utils.memory import should_reduce_batch_size

    log = log or (lambda m: None if quiet else print(m, file=sys.stderr))
    batch_size, grad_accum = cfg.batch_size, cfg.grad_accum
    initial = None
    if cfg.auto_batch_size:
        initial = {k: v.detach().clone() for k, v in task.model.state_dict().items()}
    notes: list[str] = []
    while True:
        try:
            result = _train_once(
                task,
                train_set,
                eval_set,
                cfg,
                batch_size,
                grad_accum,
                workdir=workdir,
                pad_id=pad_id,
                num_labels=num_labels,
                resume=resume,
                quiet=quiet,
                run_fingerprint=run_fingerprint,
                log=log,
                metric_fn=metric_fn,
            )
            result.notes = notes + result.notes
            return result
        except RuntimeError as e:
            # accelerate's find_executable_batch_size retries but keeps half-trained weights and
            # drops the effective batch; we restore the start state and keep batch*accum fixed.
            if not (cfg.auto_batch_size and should_reduce_batch_size(e)) or batch_size == 1:
                raise
            _free_memory()
            task.model.load_state_dict(initial)
            batch_size //= 2
            grad_accum *= 2
            msg = (
                f"out of memory: retrying with batch_size {batch_size} x grad_accum {grad_accum} (same effective batch)"
            )
            notes.append(msg)
            log(msg)
            shutil.rmtree(workdir / "checkpoints", ignore_errors=True)
            resume = False


def _fault_injection(step: int) -> None:
    """Test hook: ``MBK_KILL_AT_STEP=N`` SIGKILLs this process right after optimizer step N,
    which is how the resume tests reproduce a ``kill -9`` at an exact point."""
    at = os.environ.get("MBK_KILL_AT_STEP")
    if at and int(at) == step:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _train_once(
    task,
    train_set,
    eval_set,
    cfg: TrainConfig,
    batch_size: int,
    grad_accum: int,
    *,
    workdir: Path,
    pad_id: int,
    num_labels: int,
    resume: bool,
    quiet: bool,
    run_fingerprint: str,
    log,
    metric_fn,
):
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_linear_schedule_with_warmup

    from mobilebert_kit.metrics import classification_metrics

    metric_fn = metric_fn or (lambda logits, labels: classification_metrics(logits, labels, num_labels))
    want_cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"device '{cfg.device}' requested but no CUDA GPU is visible; use --device cpu (or auto)")
    device_type = "cpu" if want_cpu else "cuda"
    precision = resolve_precision(cfg.precision, device_type)
    mixed = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]
    accelerator = Accelerator(
        cpu=want_cpu, mixed_precision=mixed, gradient_accumulation_steps=grad_accum, step_scheduler_with_optimizer=False
    )
    is_main = accelerator.is_main_process
    if not is_main:
        log = lambda m: None  # noqa: E731
    set_seed(cfg.seed)

    model = task.model
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    trainable = freeze_lower_layers(model, cfg.freeze_layers)
    wrapper = _wrapper_module(task)

    collator = Collator(pad_id, cfg.max_length, cfg.dynamic_padding)
    num_workers = (
        cfg.num_workers if cfg.num_workers is not None else (0 if device_type == "cpu" else min(4, os.cpu_count() or 1))
    )
    pin_memory = cfg.pin_memory if cfg.pin_memory is not None else device_type == "cuda"

    world = accelerator.num_processes
    batches_per_epoch = math.ceil(len(train_set) / batch_size)
    steps_per_epoch = math.ceil(math.ceil(batches_per_epoch / world) / grad_accum)
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)

    decay, no_decay = [], []
    for n, p in wrapper.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in n or n.endswith(".bias") else decay).append(p)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        fused=device_type == "cuda",
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), max(total_steps, 1))
    wrapper, optimizer = accelerator.prepare(wrapper, optimizer)
    scaler = getattr(accelerator, "scaler", None)
    forward = torch.compile(wrapper, dynamic=True, backend=cfg.compile_backend) if cfg.compile else wrapper

    # ---------------------------------------------------------------- resume
    fp = fingerprint(
        run_fingerprint,
        {
            k: v
            for k, v in cfg.to_dict().items()
            if k
            not in (
                "checkpoint_every",
                "keep_checkpoints",
                "num_workers",
                "pin_memory",
                "auto_batch_size",
                "compile",
                "compile_backend",
            )
        },
        batch_size,
        grad_accum,
        world,
    )
    state = {
        "epoch": 0,
        "batches_done": 0,
        "global_step": 0,
        "history": [],
        "best_metric": -1.0,
        "best_epoch": -1,
        "bad_epochs": 0,
        "train_seconds": 0.0,
        "examples_seen": 0,
        "epoch_loss": 0.0,
        "epoch_n": 0,
        "fingerprint": fp,
    }
    resumed_from = None
    workdir.mkdir(parents=True, exist_ok=True)
    if resume:
        ck = latest_checkpoint(workdir)
        if ck is None:
            raise TrainingError(f"--resume: no checkpoint found in {workdir}; run without --resume to start fresh")
        saved = json.loads((ck / "state.json").read_text())
        if saved.get("fingerprint") != fp:
            raise TrainingError(
                f"--resume: the checkpoint in {ck} was made with different data, model or training options; "
                "re-run with the same options, or without --resume to start fresh"
            )
        from safetensors.torch import load_file

        accelerator.unwrap_model(wrapper).load_state_dict(load_file(str(ck / "model.safetensors")))
        optimizer.load_state_dict(torch.load(ck / "optimizer.pt", weights_only=True))
        scheduler.load_state_dict(torch.load(ck / "scheduler.pt", weights_only=True))
        if scaler is not None and (ck / "scaler.pt").exists():
            scaler.load_state_dict(torch.load(ck / "scaler.pt", weights_only=True))
        _set_rng_state(torch.load(ck / "rng.pt", weights_only=True))
        state = saved
        resumed_from = str(ck)
        log(f"resuming from {ck.name}: epoch {state['epoch'] + 1}, step {state['global_step']}")
    elif latest_checkpoint(workdir) is not None and is_main:
        shutil.rmtree(workdir / "checkpoints", ignore_errors=True)  # a fresh start discards stale checkpoints
    accelerator.wait_for_everyone()

    def checkpoint(tag_state: dict) -> None:
        accelerator.wait_for_everyone()
        if is_main:
            _save_checkpoint(
                workdir / "checkpoints" / f"step-{tag_state['global_step']:08d}",
                accelerator.unwrap_model(wrapper),
                optimizer,
                scheduler,
                scaler,
                tag_state,
                cfg.keep_checkpoints,
            )
        accelerator.wait_for_everyone()

    # ---------------------------------------------------------------- loop
    from tqdm.auto import tqdm

    unwrapped_model = accelerator.unwrap_model(wrapper).model
    stopped_early = False
    wrapper.train()
    log(
        f"training on {device_type} ({precision}), {len(train_set)} examples, batch {batch_size}x{grad_accum}"
        f"{f' x{world} processes' if world > 1 else ''}, {trainable:,} trainable params, {total_steps} steps"
    )
    while state["epoch"] < cfg.epochs and not (cfg.max_steps and state["global_step"] >= cfg.max_steps):
        epoch = state["epoch"]
        batches = batch_order(
            train_set.lengths, batch_size, cfg.seed, epoch, cfg.group_by_length, longest_first=cfg.auto_batch_size
        )
        loader = torch.utils.data.DataLoader(
            train_set,
            batch_sampler=batches,
            collate_fn=collator,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=False,
            # its own generator: iterator creation must not draw from the
            # global RNG, or a resumed run's dropout masks would shift
            generator=torch.Generator().manual_seed(cfg.seed + epoch),
        )
        loader = accelerator.prepare_data_loader(loader, device_placement=True)
        local_batches = len(loader)
        skip = state["batches_done"]
        if skip:
            loader = accelerator.skip_first_batches(loader, skip)
        bar = tqdm(
            total=local_batches,
            initial=skip,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=quiet or not is_main,
            file=sys.stderr,
            dynamic_ncols=True,
            leave=True,
            mininterval=1.0,
        )
        if state["batches_done"] == 0:
            state["epoch_loss"], state["epoch_n"] = 0.0, 0
        t_epoch = time.perf_counter()
        epoch_examples = 0
        for batch in loader:
            with accelerator.accumulate(wrapper):
                loss = forward(batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(wrapper.parameters(), cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            n_ex = batch["input_ids"].shape[0] * world
            epoch_examples += n_ex
            state["batches_done"] += 1
            lv = float(loss.detach())
            if not math.isfinite(lv):
                raise TrainingError(
                    f"loss became {lv} at step {state['global_step']}; lower --lr or use --precision fp32"
                )
            state["epoch_loss"] += lv
            state["epoch_n"] += 1
            elapsed = time.perf_counter() - t_epoch
            bar.update(1)
            bar.set_postfix(
                loss=f"{state['epoch_loss'] / state['epoch_n']:.4f}",
                ex_s=f"{epoch_examples / max(elapsed, 1e-9):.1f}",
                refresh=False,
            )
            if accelerator.sync_gradients:
                scheduler.step()
                state["global_step"] += 1
                at_end = state["batches_done"] >= local_batches
                if cfg.checkpoint_every and state["global_step"] % cfg.checkpoint_every == 0 and not at_end:
                    state["train_seconds"] += time.perf_counter() - t_epoch
                    state["examples_seen"] += epoch_examples
                    t_epoch, epoch_examples = time.perf_counter(), 0
                    checkpoint(state)
                _fault_injection(state["global_step"])
                if cfg.max_steps and state["global_step"] >= cfg.max_steps:
                    break
        bar.close()
        state["train_seconds"] += time.perf_counter() - t_epoch
        state["examples_seen"] += epoch_examples

        # ------------------------------------------------------------ epoch end: eval, best, early stop
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": state["global_step"],
            "train_loss": state["epoch_loss"] / max(state["epoch_n"], 1),
            "examples_per_second": state["examples_seen"] / max(state["train_seconds"], 1e-9),
        }
        if eval_set is not None and len(eval_set):
            logits = predict(unwrapped_model, eval_set, collator, cfg.eval_batch_size, accelerator.device)
            labels = [f["labels"] for f in eval_set.features]
            m = metric_fn(logits, labels)
            record.update({f"val_{k}": v for k, v in m.items() if k != "n"})
            metric = m["macro_f1"]
        else:
            metric = -record["train_loss"]
        improved = metric > state["best_metric"] + 1e-9
        if improved:
            state["best_metric"], state["best_epoch"], state["bad_epochs"] = metric, epoch + 1, 0
            if is_main:
                _save_best(workdir, unwrapped_model)
        else:
            state["bad_epochs"] += 1
        state["history"].append(record)
        log(
            " | ".join(
                [f"epoch {epoch + 1}", f"loss {record['train_loss']:.4f}"]
                + [f"{k} {v:.4f}" for k, v in record.items() if k.startswith("val_")]
                + [f"{record['examples_per_second']:.1f} ex/s", "best" if improved else ""]
            ).rstrip(" |")
        )
        state["epoch"] += 1
        state["batches_done"] = 0
        stop = bool(cfg.early_stopping_patience and state["bad_epochs"] >= cfg.early_stopping_patience)
        if stop and state["epoch"] < cfg.epochs:
            stopped_early = True
            log(f"early stopping: no validation macro-F1 gain for {state['bad_epochs']} epochs")
        checkpoint(state)
        if stopped_early:
            break

    accelerator.wait_for_everyone()
    if (workdir / "best.safetensors").exists():
        load_best(workdir, unwrapped_model)
    if cfg.gradient_checkpointing:
        unwrapped_model.gradient_checkpointing_disable()
    for p in unwrapped_model.parameters():
        p.requires_grad_(True)
    unwrapped_model.eval()
    result = TrainResult(
        best_epoch=state["best_epoch"],
        best_metric=state["best_metric"],
        history=state["history"],
        train_seconds=state["train_seconds"],
        examples_per_second=state["examples_seen"] / max(state["train_seconds"], 1e-9),
        steps=state["global_step"],
        stopped_early=stopped_early,
        resumed_from=resumed_from,
        batch_size=batch_size,
        grad_accum=grad_accum,
        precision=precision,
        device=str(accelerator.device),
        world_size=world,
    )
    with contextlib.suppress(Exception):
        accelerator.free_memory()
    return result
