"""``mbk compress``: structured pruning, unstructured pruning, vocabulary trimming and INT8, each
one measured (accuracy / macro-F1 on validation and test, parameters, size on disk, latency), with
an accuracy guard that refuses to hand over a broken model.

The work is an ordered list of steps, each a method from :mod:`mobilebert_kit.compression`
(``steps: [{method: prune_ffn, fraction: 0.25}, {method: int8_dynamic}]`` in a recipe). The flags
(``--prune-heads``, ``--prune``, ``--int8``...) are shorthands that build the list in the order
structured pruning (heads, FFN neurons: the tensors shrink) -> vocabulary trimming -> recovery
training (wins back what both cost) -> unstructured L1 pruning (zeros only, reported as such; after
training, which would refill them); then the fp32 ONNX export + ORT fusion, then 4-bit embeddings
/ MatMuls, then INT8 on the fused graph. A ``steps`` list runs in the order written. The guard compares the final graph with the *uncompressed input* on the
validation split; when INT8 breaks it, the most sensitive nodes fall back to fp32 one by one
(ranked by the logit error each causes alone) until it holds, or the stage fails with the best
configuration it found.

Output (the hand-over to ``mbk export``): an HF classifier folder with the compressed fp32 PyTorch
model, ``onnx/model.onnx`` (the final graph that passed the guard), ``compression.json``,
``metrics.json`` and ``manifest.json``.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from mobilebert_kit.compression.guard import GUARD_METRICS
from mobilebert_kit.compression.ort_quant import INT4_BLOCK_SIZES, INT8_MIN_AGREEMENT
from mobilebert_kit.config import StageConfig, check_choice, check_range
from mobilebert_kit.errors import CompressError, ConfigError, DataError, ExportError
from mobilebert_kit.locking import holds_output
from mobilebert_kit.stages.base import RunContext, StageResult

# The flag-style fields that build the step list when ``steps`` is empty.
SHORTHAND = (
    "prune",
    "prune_scope",
    "prune_heads",
    "prune_ffn",
    "importance_samples",
    "recover_epochs",
    "recover_lr",
    "recover_log_every",
    "trim_vocab",
    "int4_embeddings",
    "int4_matmul",
    "block_size",
    "int8",
    "static",
    "calib_samples",
    "calib_method",
    "per_channel",
    "reduce_range",
    "weight_type",
)


@dataclass
class CompressConfig(StageConfig):
    """What to compress and how far; all fractions are of what each layer has.

    ``steps`` lists the methods in order (see :mod:`mobilebert_kit.compression`); when it is empty,
    the shorthand fields below build it (:meth:`plan`).
    """

    model: str = "artifacts/student"
    output: str = "artifacts/compressed"
    data: str | None = None  # default: the data recorded upstream (manifest lineage)
    max_length: int | None = None  # default: recorded upstream, else 128
    steps: list[dict] = field(default_factory=list)
    prune: float = 0.0  # unstructured L1 sparsity of the encoder Linear weights
    prune_scope: str = "global"
    prune_heads: float = 0.0
    prune_ffn: float = 0.0
    importance_samples: int = 256
    recover_epochs: int = 0  # knowledge-distillation recovery after structured pruning (0 = off)
    recover_lr: float = 5e-5
    recover_log_every: int = 10  # recovery's optimizer steps between per-step metric lines (train_log.jsonl); 0 = off
    teacher: str | None = None  # recovery teacher; default: the teacher recorded upstream, else the input model
    trim_vocab: bool = False
    int4_embeddings: bool = False  # 4-bit GatherBlockQuantized embedding tables (before INT8)
    int4_matmul: bool = False  # 4-bit MatMulNBits weights (before INT8)
    block_size: int = 32  # weights per 4-bit scale
    int8: bool = False
    static: bool = False
    calib_samples: int = 128
    calib_method: str = "minmax"
    per_channel: bool = False
    reduce_range: bool = False
    weight_type: str = "qint8"
    max_drop: float = 0.01
    guard_metric: str = "accuracy"  # accuracy: drop in validation accuracy; agreement: 1 - label agreement
    guard_samples: int = 128  # validation examples used to rank node sensitivity
    # INT8 label agreement with its fp32 graph that verify will require, checked at its 95% lower bound
    min_agreement: float = INT8_MIN_AGREEMENT
    # texts that agreement is measured on (and node sensitivity ranked on): the validation split, topped up
    # with training texts when it is smaller (label-free, so a small labelled split still resolves the bound)
    fidelity_texts: int = 1000
    latency_runs: int = 20
    seed: int = 0

    def validate(self) -> list[str]:
        p: list[str] = []
        check_range(p, "prune", self.prune, 0, 1, hi_open=True)
        check_choice(p, "prune_scope", self.prune_scope, ("global", "layer"))
        check_range(p, "prune_heads", self.prune_heads, 0, 1, hi_open=True)
        check_range(p, "prune_ffn", self.prune_ffn, 0, 1, hi_open=True)
        check_range(p, "importance_samples", self.importance_samples, 1)
        check_range(p, "recover_epochs", self.recover_epochs, 0)
        check_range(p, "recover_lr", self.recover_lr, 0, lo_open=True)
        check_range(p, "recover_log_every", self.recover_log_every, 0)
        check_range(p, "calib_samples", self.calib_samples, 1)
        check_choice(p, "calib_method", self.calib_method, ("minmax", "entropy", "percentile"))
        check_choice(p, "weight_type", self.weight_type, ("qint8", "quint8"))
        check_choice(p, "block_size", self.block_size, INT4_BLOCK_SIZES)
        check_choice(p, "guard_metric", self.guard_metric, GUARD_METRICS)
        check_range(p, "max_drop", self.max_drop, 0, 1)
        check_range(p, "guard_samples", self.guard_samples, 1)
        check_range(p, "min_agreement", self.min_agreement, 0, 1)
        check_range(p, "fidelity_texts", self.fidelity_texts, 1)
        check_range(p, "latency_runs", self.latency_runs, 0)
        check_range(p, "max_length", self.max_length, 8, 512)
        if self.static and not self.int8:
            p.append("--static is an INT8 mode: pass --int8 --static")
        if self.steps:
            p.extend(self._steps_problems())
        return p

    def _steps_problems(self) -> list[str]:
        from mobilebert_kit.compression import plan_problems

        defaults = {f.name: f.default for f in fields(self)}
        mixed = [name for name in SHORTHAND if getattr(self, name) != defaults[name]]
        p = plan_problems(self.steps)
        if mixed:
            p.append(f"steps replaces the shorthand options; drop {', '.join(mixed)} or write them as steps")
        return p

    def plan(self) -> list:
        """The steps to run, in order: ``steps``, else the ones the shorthand fields ask for.

        Raises:
            ConfigError: there is nothing to do.
        """
        from mobilebert_kit.compression import build_plan

        steps = self.steps or shorthand_steps(self)
        if not steps:
            raise ConfigError(
                "nothing to do: pass at least one of --prune, --prune-heads, --prune-ffn, --trim-vocab, "
                "--int4-embeddings, --int4-matmul, --int8"
            )
        return build_plan(steps)


def shorthand_steps(c: CompressConfig) -> list[dict]:
    """The step list the flags build, in ``mbk compress``'s order (recovery alone compresses nothing)."""
    if not (c.prune or c.prune_heads or c.prune_ffn or c.trim_vocab or c.int4_embeddings or c.int4_matmul or c.int8):
        return []
    steps: list[dict] = []
    if c.prune_heads:
        steps.append({"method": "prune_heads", "fraction": c.prune_heads, "importance_samples": c.importance_samples})
    if c.prune_ffn:
        steps.append({"method": "prune_ffn", "fraction": c.prune_ffn, "importance_samples": c.importance_samples})
    if c.trim_vocab:
        steps.append({"method": "trim_vocab"})
    if c.recover_epochs:
        steps.append(
            {"method": "recover", "epochs": c.recover_epochs, "lr": c.recover_lr, "log_every": c.recover_log_every}
        )
    if c.prune:
        steps.append({"method": "prune", "fraction": c.prune, "scope": c.prune_scope})
    for name in ("int4_embeddings", "int4_matmul"):
        if getattr(c, name):
            steps.append({"method": name, "block_size": c.block_size})
    if c.int8:
        int8 = {"method": "int8_static" if c.static else "int8_dynamic", "per_channel": c.per_channel}
        int8 |= {"reduce_range": c.reduce_range, "weight_type": c.weight_type}
        if c.static:
            int8 |= {"calib_samples": c.calib_samples, "calib_method": c.calib_method}
        steps.append(int8)
    return steps


# --------------------------------------------------------------------------- stage


@holds_output
def run(config: CompressConfig, ctx: RunContext | None = None) -> StageResult:
    """Compress ``config.model`` into ``config.output``; the result carries the folder and metrics.

    Raises:
        ConfigError / DataError / ModelError: bad input, before any work is written.
        CompressError: the accuracy guard could not be met (message carries the best numbers).
    """
    from mobilebert_kit import artifacts

    ctx = ctx or RunContext()
    t_start = time.perf_counter()
    artifacts.check_output_dir(config.output, ctx.overwrite, config.input_paths())
    plan = config.plan()
    work = _load(config, ctx)
    for step in plan:
        step.preflight(work)
    _measure_input(work, config, t_start)
    with (
        artifacts.staged_output(config.output, ctx.overwrite, config.input_paths()) as out,
        artifacts.scratch_dir("compress") as scratch,
    ):
        work.out, work.scratch = out, Path(scratch)
        _run_steps(plan, "pytorch", work)
        _save_model(work)
        _export_fp32(work, plan)
        _run_steps(plan, "onnx", work)
        work.metrics["guard"] = work.guard.check(work.graph_scores, work.graph_label)
        compression = _write_outputs(config, plan, work, t_start)
    return _result(config, Path(config.output), work.metrics, compression)


def _load(config: CompressConfig, ctx: RunContext):
    """The model, its data and the shared step state; refuses mismatched or unusable data."""
    from mobilebert_kit import data as data_mod
    from mobilebert_kit.artifacts import lineage
    from mobilebert_kit.compression import surgery as prune
    from mobilebert_kit.compression.base import Work
    from mobilebert_kit.label_map import align_labels
    from mobilebert_kit.models import load_classifier_folder

    model_dir = Path(config.model)
    model, tokenizer, label_names = load_classifier_folder(model_dir)
    override = data_mod.DataConfig(data=config.data) if config.data else None
    data_cfg = data_mod.data_config_for(model_dir, override)
    max_length = config.max_length or lineage(model_dir)["max_length"] or 128
    ds = data_mod.load_dataset(data_cfg)
    aligned = align_labels(ds, label_names, f"the model {model_dir}", "pass the data it was trained on")
    if aligned is not ds:
        ctx.log(f"data: {aligned.notes[-1]}")
    ds = aligned
    if len(ds.splits["validation"]) == 0:
        raise DataError("the validation split is empty; the accuracy guard needs it")
    prune.bert_layers(model)  # BERT-family classifiers only: refuse others before any work
    return Work(
        model=model,
        tokenizer=tokenizer,
        label_names=label_names,
        model_dir=model_dir,
        data_config=data_cfg,
        splits=ds.splits,
        max_length=max_length,
        seed=config.seed,
        latency_runs=config.latency_runs,
        teacher=config.teacher,
        log=ctx.log,
        quiet=ctx.quiet,
    )


def _measure_input(work, config: CompressConfig, t_start: float) -> None:
    """Score, size and time the uncompressed model: the reference of every step and of the guard."""
    import torch

    from mobilebert_kit.compression.guard import Guard
    from mobilebert_kit.compression.measure import state_size
    from mobilebert_kit.models import count_parameters

    torch.manual_seed(config.seed)
    work.log(f"evaluating the input model on {len(work.val)} validation + {len(work.test)} test examples")
    logits = {s: work.torch_logits(s) for s in ("validation", "test")}
    work.refs = {s: x.argmax(-1) for s, x in logits.items()}
    work.metrics = {
        "input": {
            **{s: work.scores(x, s) for s, x in logits.items()},
            "params": count_parameters(work.model),
            "size_bytes": state_size(work.model),
            "latency_ms_pytorch_fp32": work.torch_latency(),
        },
        "steps": [],
        "latency_setup": f"batch 1, sequence {work.max_length}, 1 thread, median of {config.latency_runs} runs "
        "after 3 warm-up",
        "notes": [],
    }
    work.timings["evaluate_input"] = time.perf_counter() - t_start
    base = work.metrics["input"]["validation"]
    work.guard = Guard(config.guard_metric, config.max_drop, config.guard_samples, base, config.min_agreement)
    work.fidelity = fidelity_texts(work.val, work.train, config.fidelity_texts, config.seed)


def fidelity_texts(val, train, n: int, seed: int):
    """The validation split, topped up to ``n`` texts with seeded training texts (their labels unused):
    what quantized graphs' agreement with the fp32 graph is measured on."""
    extra = max(0, n - len(val))
    return val.joined(train.subset(extra, seed)) if extra and len(train) else val


def _run_steps(plan: list, kind: str, work) -> None:
    """Apply the plan's steps of ``kind`` in order (an ONNX step records itself)."""
    for step in plan:
        if step.kind != kind:
            continue
        if kind == "pytorch":
            _apply_pytorch_step(step, work)
        else:
            step.apply(work)


def _apply_pytorch_step(step, work) -> None:
    """Apply a step to the PyTorch model, then time, record and measure it."""
    t = time.perf_counter()
    outcome = step.apply(work)
    if step.timed:
        work.timings[step.label] = time.perf_counter() - t
    if step.record:
        work.records[step.record] = outcome.report
    work.measure_step(step.label, outcome.entry)


def _save_model(work) -> None:
    from mobilebert_kit import artifacts

    work.model.config.architectures = [type(work.model).__name__]
    work.model.save_pretrained(work.out)
    work.tokenizer.save_pretrained(work.out)
    artifacts.write_labels(work.out, work.label_names)


def _export_fp32(work, plan: list) -> None:
    """Export + fuse the compressed model (the graph the ONNX steps start from) and score it, with
    the fusion options the plan's ONNX steps ask for (4-bit embeddings need the Gathers unfused).

    Without a graph (the export failed) and with no ONNX step asked for, the guard checks the
    PyTorch model instead.
    """
    from mobilebert_kit.graph import onnx_tools as ot

    onnx_steps = [s.name for s in plan if s.kind == "onnx"]
    fusion = {k: v for s in plan for k, v in s.fusion.items()}
    t = time.perf_counter()
    work.log(
        "exporting the compressed model to ONNX and fusing it (ORT transformer optimizer"
        + (f", {', '.join(f'{k}={v}' for k, v in fusion.items())})" if fusion else ")")
    )
    fused = work.scratch / "fused.onnx"
    try:
        with ot.quiet_ort():
            raw = ot.export_onnx(work.out, work.scratch / "raw.onnx")
            # num_heads/hidden_size 0: let the optimizer read them per layer (pruned heads differ from the config)
            fused_ops = ot.optimize_onnx(raw, fused, num_heads=0, hidden_size=0, fusion=fusion)
    except ExportError as e:
        if onnx_steps:
            raise CompressError(f"{', '.join(onnx_steps)} need(s) the ONNX graph, and exporting it failed: {e}") from e
        work.note(f"no ONNX graph: {e}")
        work.graph_scores, work.graph_label = work.last_validation(), "pytorch fp32 (no ONNX graph)"
        return
    work.timings["onnx_export"] = time.perf_counter() - t
    logits, pool_labels = work.fidelity_logits(fused)
    scores = work.scores(logits, "validation")
    work.metrics["steps"].append(
        {
            "step": "onnx_fp32",
            "validation": scores,
            "test": work.onnx_scores(fused, "test"),
            "fused_ops": fused_ops,
            "fusion_options": fusion,
            "size_bytes": fused.stat().st_size,
            "latency_ms_ort": work.ort_latency(fused),
        }
    )
    work.graph, work.graph_scores, work.graph_label = fused, scores, "onnx fp32"
    work.graph_labels = pool_labels


def _write_outputs(config: CompressConfig, plan: list, work, t_start: float) -> dict:
    """``onnx/model.onnx``, ``compression.json``, ``metrics.json`` and the manifest; returns the
    compression record."""
    from mobilebert_kit import artifacts

    out, metrics = work.out, work.metrics
    onnx_file = out / "onnx" / "model.onnx"
    if work.graph is not None:
        onnx_file.parent.mkdir(exist_ok=True)
        shutil.copy2(work.graph, onnx_file)
    final = metrics["steps"][-1] if metrics["steps"] else None
    metrics["final"] = final and {k: final[k] for k in ("step", "validation", "test") if k in final}
    metrics["size_on_disk"] = {
        "input_model_bytes": _file_size(work.model_dir, "model.safetensors"),
        "output_model_bytes": _file_size(out, "model.safetensors"),
        "onnx_bytes": onnx_file.stat().st_size if work.graph is not None else None,
    }
    compression = _compression_record(config, plan, work)
    artifacts.write_json(out / artifacts.COMPRESSION, compression)
    work.timings["total"] = time.perf_counter() - t_start
    metrics["timings_s"] = work.timings
    artifacts.write_json(out / artifacts.METRICS, metrics)
    artifacts.write_manifest(
        out,
        stage="compress",
        config=config.to_dict(),
        inputs={"model": artifacts.input_record(work.model_dir)},
        metrics={
            "input": metrics["input"]["validation"],
            "final": (metrics["final"] or {}).get("validation"),
            "guard": metrics.get("guard"),
        },
        timings=work.timings,
        extra={"data": work.data_config.to_dict(), "max_length": work.max_length},
    )
    return compression


def _compression_record(config: CompressConfig, plan: list, work) -> dict:
    """``compression.json``: the INT8 settings export reads, then every method's report.

    ``int8`` is true for any quantized graph (INT8 and/or 4-bit): export and verify read it as
    "quantized" (verify's agreement-gated tolerance instead of fp32's).
    """
    from mobilebert_kit.compression import record_keys
    from mobilebert_kit.compression.int8 import Int8Step

    int8 = next((s for s in plan if isinstance(s, Int8Step)), None)
    settings = (
        int8.settings()
        if int8
        else {
            "int8_mode": None,
            "per_channel": config.per_channel,
            "reduce_range": config.reduce_range,
            "weight_type": config.weight_type,
            "calib_method": None,
            "calib_samples": None,
        }
    )
    return {
        "int8": int8 is not None or any(s.kind == "onnx" for s in plan),
        **settings,
        "nodes_excluded": work.nodes_excluded,
        "onnx_model": "onnx/model.onnx" if work.graph is not None else None,
        **{key: work.records.get(key) for key in record_keys()},
        **{key: v for key, v in work.records.items() if key not in record_keys()},
        "guard": work.metrics.get("guard"),
    }


def _result(config: CompressConfig, out: Path, metrics: dict, comp: dict) -> StageResult:
    before, final = metrics["input"], metrics.get("final") or {}
    headline = {
        "input": before["validation"],
        "final": final,
        "guard": metrics.get("guard"),
        "nodes_excluded": comp["nodes_excluded"],
        "size_on_disk": metrics["size_on_disk"],
        "steps": metrics["steps"],
    }
    final_acc = final.get("validation", {}).get("accuracy", float("nan"))
    lines = [
        f"Compressed {config.model} -> {out}",
        f"  validation accuracy {before['validation']['accuracy']:.4f} -> {final_acc:.4f}",
    ]
    for s in metrics["steps"]:
        size = s.get("size_bytes")
        lines.append(
            f"  {s['step']:<14} val acc {s['validation']['accuracy']:.4f}" + (f"  {size / 1e6:8.2f} MB" if size else "")
        )
    if comp["nodes_excluded"]:
        kept = comp["nodes_excluded"]
        lines.append(f"  accuracy guard kept {len(kept)} node(s) in fp32: {', '.join(kept)}")
    forecast = verify_forecast(metrics.get("guard") or {})
    if forecast:
        lines.append("  " + forecast)
    lines.append("Next: mbk export --model " + str(out))
    return StageResult(out, headline, lines)


def verify_forecast(guard: dict) -> str | None:
    """What ``mbk verify`` should find of the quantized graph's labels, from the guard's agreement bound
    (None when no quantized graph was checked)."""
    agree, low, n, need = (
        guard.get(k) for k in ("agreement_with_fp32", "agreement_with_fp32_low95", "agreement_n", "min_agreement")
    )
    if agree is None or need is None or not n:
        return None
    head = f"verify forecast: INT8 labels agree with fp32 on {agree:.2%} of {n} texts (95% low {low:.2%}); verify needs {need:.0%}"
    if low >= need:
        return head + ": expected to pass on data like these"
    return head + f": {n} texts are too few to bound it, so verify may fail; give more data (--fidelity-texts)"


def _file_size(folder: Path, name: str) -> int | None:
    f = Path(folder) / name
    return f.stat().st_size if f.exists() else None


__all__ = ["CompressConfig", "run", "shorthand_steps"]
