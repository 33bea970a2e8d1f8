"""The one training engine. Fine-tuning and distillation both run through :func:`train`;
distillation only brings its own loss (and, for intermediate-layer losses, extra trainable
modules such as width projections).

What it does, each behind a real switch in :class:`TrainConfig`:
dynamic padding and length-grouped batches, gradient accumulation, mixed precision
(``auto`` = bf16/fp16 on CUDA; on CPU bf16 autocast where it has native bf16, else fp32), torch.compile, gradient checkpointing, freezing
embeddings + the lowest N layers, DataLoader workers / pin_memory, automatic batch size on
out-of-memory, evaluation every epoch with best-epoch selection and early stopping, crash-safe
checkpoints (model, optimizer, scheduler, scaler, RNG, data position) with exact resume, and
data-parallel training under ``accelerate launch`` / ``torchrun`` (one process writes).

The parts live in :mod:`mobilebert_kit.training`: the :class:`~.state.TrainState`, the
:class:`~.checkpoint.Checkpointer` and the hooks (progress, mid-epoch checkpoints, fault
injection, evaluation / best epoch / early stopping); this module puts them together.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mobilebert_kit.batching import TOKEN_KEYS, Collator, FeatureDataset, batch_order, predict
from mobilebert_kit.config import StageConfig, check_choice, check_range
from mobilebert_kit.devices import choose_precision, precision_line, resolve_precision, select_device
from mobilebert_kit.errors import Interrupted, TrainingError
from mobilebert_kit.training.checkpoint import BEST, Checkpointer, latest_checkpoint, load_best
from mobilebert_kit.training.hooks import Evaluation, FaultInjection, Hooks, PeriodicCheckpoint, ProgressBar
from mobilebert_kit.training.metrics_log import EvalPoint, StepLog
from mobilebert_kit.training.state import TrainState

__all__ = [
    "PRECISIONS",
    "TrainConfig",
    "TrainModule",
    "TrainResult",
    "default_loss",
    "fingerprint",
    "freeze_lower_layers",
    "latest_checkpoint",
    "load_best",
    "resolve_precision",
    "train",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ATTENTIONS = ("auto", "eager", "sdpa")
# options that change how fast a run goes, not what it computes: resume accepts a change of these
RESUME_NEUTRAL = (
    "checkpoint_every",
    "keep_checkpoints",
    "retain_checkpoints",
    "num_workers",
    "pin_memory",
    "auto_batch_size",
    "compile",
    "compile_backend",
    "log_every",
)


@dataclass
class TrainConfig(StageConfig):
    """Optimisation and speed switches shared by every training stage."""

    epochs: int = 3
    lr: float = 5e-5
    batch_size: int = 32
    # batches for evaluation and the teacher's cached pass (length-sorted). On this 2-core CPU the MiniLM teacher's
    # pass over 1,000 texts took 7.1 s at 32 vs 8.3 s at 128 (1 thread; 4.2 vs 4.8 s at 2 threads): small
    # batches stay in cache. An accelerator gains little from more for evaluation-sized sets.
    eval_batch_size: int = 32
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0
    grad_accum: int = 1
    max_length: int = 128
    dynamic_padding: bool = True  # pad each batch to its longest row, not to max_length
    group_by_length: bool = True  # batches of similar lengths (less padding), in shuffled order
    freeze_layers: int = 0  # freeze embeddings + the lowest N encoder layers (0 = train all)
    freeze_embeddings: bool = False  # freeze the embeddings alone (freeze_layers > 0 freezes them anyway)
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    compile: bool = False
    compile_backend: str = "inductor"  # torch.compile backend (inductor; eager/aot_eager to debug)
    gradient_checkpointing: bool = False
    num_workers: int | None = None  # None = auto (0 on CPU: workers steal the cores training needs)
    pin_memory: bool | None = None  # None = auto (on with CUDA)
    auto_batch_size: bool = False  # halve the batch (doubling grad_accum) on out-of-memory
    seed: int = 42
    checkpoint_every: int = 200  # optimizer steps between checkpoints (0 = only at epoch ends)
    keep_checkpoints: int = 2  # rolling checkpoints kept during the run
    retain_checkpoints: bool = False  # keep <output>.ckpt after success (CLI --keep-checkpoints)
    early_stopping_patience: int = 2  # epochs without validation macro-F1 gain (0 = off)
    max_steps: int | None = None  # stop after this many optimizer steps (smoke runs, benchmarks)
    log_every: int = 10  # optimizer steps between per-step metric lines (train_log.jsonl, TensorBoard); 0 = off
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # CPU training paths (mobilebert_kit.training.cpu_paths; benchmarks/results/trainer_peer-cpu-paths.md, cpu_paths.md)
    attention: str = "auto"  # auto | eager | sdpa: auto trains with eager attention on CPU (faster for short rows)
    fast_dropout: bool = True  # CPU: dropout masks from 64-bit draws, not one bernoulli draw per element
    # CPU, one process: sparse word-embedding gradient + lazy Adam for it. Off by default: equal accuracy when
    # fine-tuning/distilling pretrained weights (benchmarks/results/cpu_paths.md, 3 seeds; the default recipe turns
    # it on), but a tiny BERT trained from random init learned in 1 of 3 seeds where dense AdamW learned in 2 of 3
    sparse_embeddings: bool = False
    # BERT classifiers: the last layer computes only the token its pooler reads (exact; any device would do,
    # but only the CPU path is tested here, so it is a CPU path like the others)
    cls_only_last_layer: bool = True

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
        check_choice(p, "attention", self.attention, ATTENTIONS)
        check_range(p, "num_workers", self.num_workers, 0)
        check_range(p, "checkpoint_every", self.checkpoint_every, 0)
        check_range(p, "keep_checkpoints", self.keep_checkpoints, 1)
        check_range(p, "early_stopping_patience", self.early_stopping_patience, 0)
        check_range(p, "max_steps", self.max_steps, 1)
        check_range(p, "log_every", self.log_every, 0)
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            p.append(f"device must be auto, cpu, cuda or cuda:N; got '{self.device}'")
        return p


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
    log_dir: Path | None = None  # where train_log.jsonl (and tb/) were written, for the stage to publish
    cpu_paths: list = field(default_factory=list)  # cpu_paths switched on for this run (e.g. "fast dropout")
    precision_reason: str = ""  # why this precision (e.g. "CPU has avx512_bf16"), see devices.choose_precision


class TrainModule:
    """What the engine trains: the model plus optional extra modules (e.g. projections) and a
    loss function ``loss_fn(model, batch, extra) -> scalar loss`` (or ``(loss, {term: detached scalar})``:
    the terms then appear in the per-step metrics as ``loss_<term>``)."""

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


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resume_fingerprint(
    run_fingerprint: str, cfg: TrainConfig, batch_size: int, grad_accum: int, world: int, cpu_auto_bf16: bool = False
) -> str:
    """What a checkpoint must have been made with to be resumed: the caller's data/model
    fingerprint, every option that changes the computation, the batch layout and process count.
    ``cpu_auto_bf16``: ``auto`` resolved to bf16 on a CPU (it used to mean fp32 there, and still does on a CPU
    without native bf16, whose checkpoints keep their fingerprint), so an fp32 checkpoint is not resumed in bf16."""
    options = {k: v for k, v in cfg.to_dict().items() if k not in RESUME_NEUTRAL}
    if cpu_auto_bf16:
        options["precision"] = "auto:bf16"
    return fingerprint(run_fingerprint, options, batch_size, grad_accum, world)


def freeze_lower_layers(model, n: int, embeddings: bool = False) -> int:
    """Freeze embeddings + the lowest ``n`` encoder layers (``embeddings``: the embeddings even when ``n`` is 0);
    returns the trainable parameter count."""
    if embeddings:
        for p in model.base_model.embeddings.parameters():
            p.requires_grad_(False)
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


@dataclass
class _Options:
    """How :func:`train` was called (everything but the model, the data and the config)."""

    workdir: Path
    pad_id: int
    num_labels: int
    resume: bool
    quiet: bool
    run_fingerprint: str
    log: Callable[[str], None]
    metric_fn: Callable[[np.ndarray, list[int]], dict] | None
    phase: str | None = None


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
    log_phase: str | None = None,
) -> TrainResult:
    """Train ``task`` on ``train_set``, evaluate on ``eval_set`` every epoch and keep the best
    epoch's weights in ``task.model`` (by validation macro-F1). Checkpoints live in ``workdir``.

    With ``cfg.auto_batch_size``, an out-of-memory error halves the batch, doubles gradient
    accumulation (same effective batch), restores the initial weights and starts again.

    Every ``cfg.log_every`` optimizer steps a metrics line goes to ``workdir/train_log.jsonl`` (and
    TensorBoard events to ``workdir/tb/``; see :mod:`mobilebert_kit.training.metrics_log`), tagged with
    ``log_phase`` when given; ``TrainResult.log_dir`` says where, for the stage to copy into its artifact.
    """
    from accelerate.utils.memory import should_reduce_batch_size

    log = log or (lambda m: None if quiet else _stderr(m))
    opts = _Options(workdir, pad_id, num_labels, resume, quiet, run_fingerprint, log, metric_fn, log_phase)
    batch_size, grad_accum = cfg.batch_size, cfg.grad_accum
    initial = None
    if cfg.auto_batch_size:
        initial = {k: v.detach().clone() for k, v in task.model.state_dict().items()}
    notes: list[str] = []
    while True:
        try:
            result = _train_once(task, train_set, eval_set, cfg, batch_size, grad_accum, opts)
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
            opts.resume = False


def _stderr(msg: str) -> None:
    import sys

    print(msg, file=sys.stderr)


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- one attempt


@dataclass
class _Run:
    """What one training attempt is built from (see :func:`_setup`)."""

    accelerator: Any
    wrapper: Any  # model + extra modules + loss, prepared by accelerate
    forward: Any  # the wrapper, or its torch.compile'd version
    optimizer: Any
    scheduler: Any
    collator: Collator
    device_type: str
    precision: str
    total_steps: int
    trainable: int
    log: Callable[[str], None]
    precision_reason: str = ""
    paths: Any = None  # cpu_paths.Paths: what was switched on, and its undo (always set by _setup)

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def model(self):
        return self.accelerator.unwrap_model(self.wrapper).model


def _after_interrupt(workdir: Path) -> str:
    """What to do after Ctrl-C during training: resume only when there is a checkpoint to resume from."""
    from mobilebert_kit.training.checkpoint import latest_checkpoint

    ck = latest_checkpoint(workdir)
    if ck is None:
        return "no checkpoint was written yet; run the same command again (without --resume)"
    return f"run the same command with --resume to continue from checkpoint {ck.name} in {workdir}"


def _train_once(task, train_set, eval_set, cfg: TrainConfig, batch_size: int, grad_accum: int, opts: _Options):
    """One training attempt at a fixed batch layout: set up, start or resume, run the epochs."""
    run = _setup(task, cfg, batch_size, grad_accum, len(train_set), opts)
    scaler = getattr(run.accelerator, "scaler", None)
    ckpt = Checkpointer(
        opts.workdir, cfg.keep_checkpoints, run.accelerator, run.wrapper, run.optimizer, run.scheduler, scaler
    )
    cpu_auto_bf16 = cfg.precision == "auto" and run.device_type == "cpu" and run.precision == "bf16"
    fp = resume_fingerprint(opts.run_fingerprint, cfg, batch_size, grad_accum, run.world, cpu_auto_bf16)
    state, resumed_from = ckpt.start(fp, opts.resume, run.log)
    step_log = StepLog(opts.workdir, cfg.log_every, opts.phase, writer=run.is_main)
    step_log.start(state, resumed=resumed_from is not None)
    hooks = Hooks(
        [
            step_log,  # before the checkpoint hook: a step's line is on disk before its checkpoint
            ProgressBar(cfg.epochs, disable=opts.quiet or not run.is_main),
            PeriodicCheckpoint(ckpt, cfg.checkpoint_every),
            FaultInjection(),
            _evaluation(run, eval_set, cfg, opts),
            EvalPoint(step_log),
        ]
    )
    run.wrapper.train()
    run.log(
        f"training on {run.device_type} ({run.precision}), {len(train_set)} examples, batch {batch_size}x{grad_accum}"
        f"{f' x{run.world} processes' if run.world > 1 else ''}, {run.trainable:,} trainable params, "
        f"{run.total_steps} steps"
        f"{f', CPU paths: {run.paths.describe()}' if run.paths.names else ''}"
    )
    stopped_early = False
    try:
        while not stopped_early and not state.finished(cfg.epochs, cfg.max_steps):
            _train_epoch(run, state, train_set, cfg, batch_size, hooks, step_log)
            stopped_early = hooks.on_epoch_end(state)
            ckpt.save(state)
    except KeyboardInterrupt as e:
        raise Interrupted(_after_interrupt(opts.workdir)) from e
    finally:
        step_log.close()
        run.paths.restore()  # the model leaves with its own dropout, attention and dense embeddings
    _finish(run, cfg, opts.workdir)
    return TrainResult(
        best_epoch=state.best_epoch,
        best_metric=state.best_metric,
        history=state.history,
        train_seconds=state.train_seconds,
        examples_per_second=state.examples_per_second,
        steps=state.global_step,
        stopped_early=stopped_early,
        resumed_from=resumed_from,
        batch_size=batch_size,
        grad_accum=grad_accum,
        precision=run.precision,
        device=str(run.accelerator.device),
        world_size=run.world,
        log_dir=opts.workdir if step_log.every else None,
        precision_reason=run.precision_reason,
        cpu_paths=list(run.paths.names),
    )


def _setup(task: TrainModule, cfg: TrainConfig, batch_size: int, grad_accum: int, n_train: int, opts: _Options) -> _Run:
    """Accelerator, seeded model (checkpointing, frozen layers), optimizer and schedule."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_linear_schedule_with_warmup

    from mobilebert_kit.training import cpu_paths

    device_type = select_device(cfg.device).type
    precision, precision_reason = choose_precision(cfg.precision, device_type)
    _forget_mixed_precision()
    accelerator = Accelerator(
        cpu=device_type == "cpu",
        mixed_precision={"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision],
        gradient_accumulation_steps=grad_accum,
        step_scheduler_with_optimizer=False,
    )
    set_seed(cfg.seed)
    if cfg.gradient_checkpointing:
        task.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    trainable = freeze_lower_layers(task.model, cfg.freeze_layers, cfg.freeze_embeddings)
    paths = cpu_paths.enable(task.model, cfg, device_type, accelerator.num_processes)
    wrapper = _wrapper_module(task)
    batches_per_process = math.ceil(math.ceil(n_train / batch_size) / accelerator.num_processes)
    total_steps = math.ceil(batches_per_process / grad_accum) * cfg.epochs
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    optimizer = _optimizer(wrapper, cfg, device_type, paths.sparse_param)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), max(total_steps, 1))
    wrapper, optimizer = accelerator.prepare(wrapper, optimizer)
    forward = torch.compile(wrapper, dynamic=True, backend=cfg.compile_backend) if cfg.compile else wrapper
    collator = Collator(opts.pad_id, cfg.max_length, cfg.dynamic_padding)
    log = opts.log if accelerator.is_main_process else (lambda m: None)
    log(precision_line(precision, precision_reason))
    return _Run(
        accelerator,
        wrapper,
        forward,
        optimizer,
        scheduler,
        collator,
        device_type,
        precision,
        total_steps,
        trainable,
        log,
        precision_reason,
        paths,
    )


def _forget_mixed_precision() -> None:
    """accelerate keeps the first Accelerator's mixed precision for the whole process and refuses another, so a
    second training in one process (``mbk run``'s stages, compress's recovery) could not use another precision.
    Clearing its AcceleratorState (not the process-group state) lets each training choose its own."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=False)


def _optimizer(wrapper, cfg: TrainConfig, device_type: str, sparse_param=None):
    """AdamW with weight decay on matrices only (not on biases, LayerNorm or other vectors); with a
    ``sparse_param`` (cpu_paths' sparse word embeddings), SparseAdam for that one beside it."""
    import torch

    from mobilebert_kit.training.cpu_paths import DenseAndSparseAdam

    decay, no_decay = [], []
    for n, p in wrapper.named_parameters():
        if p.requires_grad and p is not sparse_param:
            (no_decay if p.ndim < 2 or "LayerNorm" in n or n.endswith(".bias") else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # torch's fused AdamW (one kernel over all tensors) has a CPU kernel since torch 2.4, and it is what an HF
    # Trainer picks by default (adamw_torch_fused). Against the per-tensor default: mbk distill 146 -> 154 ex/s,
    # finetune 89 -> 97 ex/s (benchmarks/results/trainer_peer.md -> trainer_peer-fused.md, one repeat each, so
    # within run-to-run noise of ~5%). Older torch or another device: the foreach path.
    try:
        dense = torch.optim.AdamW(groups, lr=cfg.lr, fused=device_type in ("cpu", "cuda"))
    except (RuntimeError, TypeError):
        dense = torch.optim.AdamW(groups, lr=cfg.lr, foreach=True)
    if sparse_param is None:
        return dense
    return DenseAndSparseAdam(dense, torch.optim.SparseAdam([sparse_param], lr=cfg.lr))


def _evaluation(run: _Run, eval_set, cfg: TrainConfig, opts: _Options) -> Evaluation:
    """The epoch-end hook: validation metrics (macro-F1 picks the best epoch), early stopping."""
    from mobilebert_kit.metrics import classification_metrics

    metric_fn = opts.metric_fn or (lambda logits, labels: classification_metrics(logits, labels, opts.num_labels))

    def evaluate() -> dict | None:
        if eval_set is None or not len(eval_set):
            return None
        logits = predict(run.model, eval_set, run.collator, cfg.eval_batch_size, run.accelerator.device)
        return metric_fn(logits, [f["labels"] for f in eval_set.features])

    return Evaluation(
        evaluate,
        run.model,
        opts.workdir,
        epochs=cfg.epochs,
        patience=cfg.early_stopping_patience,
        writer=run.is_main,
        log=run.log,
    )


def _train_epoch(
    run: _Run, state: TrainState, train_set, cfg: TrainConfig, batch_size: int, hooks: Hooks, step_log: StepLog
) -> None:
    """The running epoch's remaining batches (all of them, unless resuming mid-epoch)."""
    loader = _epoch_loader(run, train_set, cfg, batch_size, state.epoch)
    batches, skip = len(loader), state.batches_done
    if skip:
        loader = run.accelerator.skip_first_batches(loader, skip)
    hooks.on_epoch_start(state, batches, skip)
    state.start_epoch()
    for batch in loader:
        loss, terms, grad_norm = _step(run, batch, cfg.max_grad_norm, step_log.wants_norm(state))
        examples = batch["input_ids"].shape[0] * run.world
        value = _finite(loss, state)
        state.add_batch(value, examples)
        step_log.add_batch(value, examples, terms, grad_norm, lr=run.scheduler.get_last_lr()[0])  # this step's LR
        hooks.on_batch_end(state)
        if run.accelerator.sync_gradients:
            run.scheduler.step()
            state.global_step += 1
            hooks.on_step_end(state)
            if cfg.max_steps and state.global_step >= cfg.max_steps:
                break
    state.flush_timing()


def _epoch_loader(run: _Run, train_set, cfg: TrainConfig, batch_size: int, epoch: int):
    """This epoch's batches, deterministic in (seed, epoch), which is what makes exact resume possible."""
    import os

    import torch

    batches = batch_order(
        train_set.lengths, batch_size, cfg.seed, epoch, cfg.group_by_length, longest_first=cfg.auto_batch_size
    )
    auto_workers = 0 if run.device_type == "cpu" else min(4, os.cpu_count() or 1)
    loader = torch.utils.data.DataLoader(
        train_set,
        batch_sampler=batches,
        collate_fn=run.collator,
        num_workers=cfg.num_workers if cfg.num_workers is not None else auto_workers,
        pin_memory=cfg.pin_memory if cfg.pin_memory is not None else run.device_type == "cuda",
        persistent_workers=False,
        # its own generator: iterator creation must not draw from the
        # global RNG, or a resumed run's dropout masks would shift
        generator=torch.Generator().manual_seed(cfg.seed + epoch),
    )
    return run.accelerator.prepare_data_loader(loader, device_placement=True)


def _step(run: _Run, batch, max_grad_norm: float, want_norm: bool = False):
    """Forward, backward and (at accumulation boundaries) clip + optimizer step; returns (the loss, its
    terms or None, the gradient norm before clipping when ``want_norm`` at a boundary, else None). The norm
    stays a device tensor: reading it is the step log's one sync per logged step."""
    accelerator = run.accelerator
    norm = None
    with accelerator.accumulate(run.wrapper):
        out = run.forward(batch)
        loss, terms = out if isinstance(out, tuple) else (out, None)
        accelerator.backward(loss)
        if accelerator.sync_gradients and (max_grad_norm > 0 or want_norm):
            # max_norm inf only measures (and unscales fp16 gradients); the scale it applies is exactly 1
            norm = _clip(run, max_grad_norm or float("inf"))
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
    return loss, terms, norm if want_norm else None


def _clip(run: _Run, max_norm: float):
    """accelerate's clip (fp16 unscale, DDP), or cpu_paths' when a gradient is sparse (torch's refuses it)."""
    if run.paths.sparse_param is not None:
        from mobilebert_kit.training.cpu_paths import clip_grad_norm

        return clip_grad_norm(list(run.wrapper.parameters()), max_norm)
    return run.accelerator.clip_grad_norm_(run.wrapper.parameters(), max_norm)


def _finite(loss, state: TrainState) -> float:
    value = float(loss.detach())
    if not math.isfinite(value):
        raise TrainingError(f"loss became {value} at step {state.global_step}; lower --lr or use --precision fp32")
    return value


def _finish(run: _Run, cfg: TrainConfig, workdir: Path) -> None:
    """Leave the model as callers expect it: best epoch's weights, all trainable, in eval mode."""
    run.accelerator.wait_for_everyone()
    model = run.model
    if (workdir / BEST).exists():
        load_best(workdir, model)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_disable()
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    with contextlib.suppress(Exception):
        run.accelerator.free_memory()
