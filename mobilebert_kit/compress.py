"""``mbk compress``: structured pruning, unstructured pruning, vocabulary trimming and INT8, each
one measured (accuracy / macro-F1 on validation and test, parameters, size on disk, latency), with
an accuracy guard that refuses to hand over a broken model.

Order: structured pruning (heads, FFN neurons: the tensors shrink) -> unstructured L1 pruning
(zeros only, reported as such) -> vocabulary trimming -> fp32 ONNX export + ORT fusion -> INT8 on
the fused graph. The guard compares the final graph with the *uncompressed input* on the
validation split; when INT8 breaks it, the most sensitive nodes fall back to fp32 one by one
(ranked by the logit error each causes alone) until it holds, or the stage fails with the best
configuration it found.

Output (the hand-over to ``mbk export``): an HF classifier folder with the compressed fp32 PyTorch
model, ``onnx/model.onnx`` (the final graph that passed the guard), ``compression.json``,
``metrics.json`` and ``manifest.json``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobilebert_kit.config import StageConfig, check_choice, check_range
from mobilebert_kit.errors import CompressError, ConfigError, DataError, ExportError
from mobilebert_kit.stage import RunContext, StageResult

COMPRESSION = "compression.json"
GUARD_METRICS = ("accuracy", "agreement")
INT8_MODES = ("dynamic", "static")


@dataclass
class CompressConfig(StageConfig):
    """What to compress and how far; all fractions are of what each layer has."""

    model: str = "artifacts/student"
    output: str = "artifacts/compressed"
    data: str | None = None  # default: the data recorded upstream (manifest lineage)
    max_length: int | None = None  # default: recorded upstream, else 128
    prune: float = 0.0  # unstructured L1 sparsity of the encoder Linear weights
    prune_scope: str = "global"
    prune_heads: float = 0.0
    prune_ffn: float = 0.0
    importance_samples: int = 256
    recover_epochs: int = 0  # knowledge-distillation recovery after structured pruning (0 = off)
    recover_lr: float = 5e-5
    teacher: str | None = None  # recovery teacher; default: the teacher recorded upstream, else the input model
    trim_vocab: bool = False
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
        check_range(p, "calib_samples", self.calib_samples, 1)
        check_choice(p, "calib_method", self.calib_method, ("minmax", "entropy", "percentile"))
        check_choice(p, "weight_type", self.weight_type, ("qint8", "quint8"))
        check_choice(p, "guard_metric", self.guard_metric, GUARD_METRICS)
        check_range(p, "max_drop", self.max_drop, 0, 1)
        check_range(p, "guard_samples", self.guard_samples, 1)
        check_range(p, "latency_runs", self.latency_runs, 0)
        check_range(p, "max_length", self.max_length, 8, 512)
        if self.static and not self.int8:
            p.append("--static is an INT8 mode: pass --int8 --static")
        return p


# --------------------------------------------------------------------------- measuring


def _log(progress: Callable[[str], None] | None, msg: str) -> None:
    if progress:
        progress(msg)


@contextlib.contextmanager
def _quiet_ort():
    """ORT's quantizer prints calibration chatter on stdout and warns per tensor; keep stdout clean
    for ``--json`` and the log readable."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _scores(logits: np.ndarray, split, num_labels: int, ref_preds: np.ndarray | None = None) -> dict:
    from mobilebert_kit.metrics import classification_metrics

    out = classification_metrics(logits, split.labels, num_labels)
    if ref_preds is not None:
        out["agreement_with_input"] = float((logits.argmax(-1) == ref_preds).mean()) if len(ref_preds) else float("nan")
    return out


def _state_size(model) -> int:
    """Bytes of the model saved as safetensors (what ``save_pretrained`` writes)."""
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory(prefix="mbk-size-") as d:
        f = Path(d) / "m.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(f))
        return f.stat().st_size


def _torch_latency(model, seq: int, runs: int) -> float | None:
    import torch

    if runs <= 0:
        return None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    vocab = model.config.vocab_size
    ids = torch.randint(min(1000, vocab - 1), vocab, (1, seq), generator=torch.Generator().manual_seed(0))
    ids[0, 0] = 0  # any id exists; values do not matter for dense kernels
    ids = ids.clamp(max=vocab - 1)
    mask = torch.ones_like(ids)
    times = []
    try:
        with torch.inference_mode():
            for i in range(runs + 3):
                t = time.perf_counter()
                model(input_ids=ids, attention_mask=mask)
                if i >= 3:
                    times.append((time.perf_counter() - t) * 1000)
    finally:
        torch.set_num_threads(threads)
    return statistics.median(times)


def _ort_latency(path: Path, seq: int, runs: int, vocab: int) -> float | None:
    from mobilebert_kit.onnx_tools import session

    if runs <= 0:
        return None
    sess = session(path, threads=1)
    rng = np.random.default_rng(0)
    feeds = {}
    for i in sess.get_inputs():
        if i.name == "input_ids":
            feeds[i.name] = rng.integers(0, vocab, (1, seq), dtype=np.int64)
        elif i.name == "attention_mask":
            feeds[i.name] = np.ones((1, seq), dtype=np.int64)
        else:
            feeds[i.name] = np.zeros((1, seq), dtype=np.int64)
    times = []
    for k in range(runs + 3):
        t = time.perf_counter()
        sess.run(None, feeds)
        if k >= 3:
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


# --------------------------------------------------------------------------- stage


def run(config: CompressConfig, ctx: RunContext | None = None) -> StageResult:
    """Compress ``config.model`` into ``config.output``; the result carries the folder and metrics.

    Raises:
        ConfigError / DataError / ModelError: bad input, before any work is written.
        CompressError: the accuracy guard could not be met (message carries the best numbers).
    """
    import torch

    from mobilebert_kit import artifacts, prune
    from mobilebert_kit import data as data_mod
    from mobilebert_kit.batching import predict_logits
    from mobilebert_kit.models import count_parameters, load_classifier_folder

    ctx = ctx or RunContext()
    progress = ctx.log
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    model_dir = Path(config.model)
    artifacts.check_output_dir(config.output, ctx.overwrite)
    if not (config.prune or config.prune_heads or config.prune_ffn or config.trim_vocab or config.int8):
        raise ConfigError(
            "nothing to do: pass at least one of --prune, --prune-heads, --prune-ffn, --trim-vocab, --int8"
        )

    model, tokenizer, label_names = load_classifier_folder(model_dir)
    override = data_mod.DataConfig(data=config.data) if config.data else None
    data_cfg = data_mod.data_config_for(model_dir, override)
    max_length = config.max_length or data_mod.lineage(model_dir)["max_length"] or 128
    ds = data_mod.load_dataset(data_cfg)
    if ds.label_names != label_names:
        raise DataError(
            f"the data's labels {ds.label_names} differ from the model's {label_names}; pass the data it was trained on"
        )
    train, val, test = ds.splits["train"], ds.splits["validation"], ds.splits["test"]
    if len(val) == 0:
        raise DataError("the validation split is empty; the accuracy guard needs it")
    if config.int8 and config.static and config.calib_samples > len(train):
        raise ConfigError(
            f"--calib-samples {config.calib_samples} is more than the {len(train)} training examples available; "
            f"use at most {len(train)}"
        )
    # Fail on impossible structured requests before measuring anything.
    layers, _ = prune._bert_layers(model)
    heads_now = min(layer.attention.self.num_attention_heads for layer in layers)
    if config.prune_heads:
        prune.count_to_remove(config.prune_heads, heads_now, "attention head", "--prune-heads")
    if config.prune_ffn:
        prune.count_to_remove(config.prune_ffn, layers[0].intermediate.dense.out_features, "FFN neuron", "--prune-ffn")
    if config.trim_vocab:
        prune._normalizer_settings(tokenizer)
    torch.manual_seed(config.seed)
    n = len(label_names)
    seq = max_length

    def evaluate(m, tok) -> dict:
        lv = predict_logits(m, tok, val.texts, val.pairs, max_length=max_length)
        lt = predict_logits(m, tok, test.texts, test.pairs, max_length=max_length)
        return {"validation": _scores(lv, val, n, ref_val), "test": _scores(lt, test, n, ref_test)}

    _log(progress, f"evaluating the input model on {len(val)} validation + {len(test)} test examples")
    ref_val = ref_test = None
    base_val_logits = predict_logits(model, tokenizer, val.texts, val.pairs, max_length=max_length)
    base_test_logits = predict_logits(model, tokenizer, test.texts, test.pairs, max_length=max_length)
    ref_val, ref_test = base_val_logits.argmax(-1), base_test_logits.argmax(-1)
    metrics: dict = {
        "input": {
            "validation": _scores(base_val_logits, val, n, ref_val),
            "test": _scores(base_test_logits, test, n, ref_test),
            "params": count_parameters(model),
            "size_bytes": _state_size(model),
            "latency_ms_pytorch_fp32": _torch_latency(model, seq, config.latency_runs),
        },
        "steps": [],
        "latency_setup": f"batch 1, sequence {seq}, 1 thread, median of {config.latency_runs} runs after 3 warm-up",
        "notes": [],
    }
    timings["evaluate_input"] = time.perf_counter() - t_start
    record = {"prune": None, "structured": None, "recovery": None, "trim_vocab": None}

    def step(name: str, extra: dict) -> None:
        t = time.perf_counter()
        scores = evaluate(model, tokenizer)
        entry = {"step": name, **scores, "params": count_parameters(model), "size_bytes": _state_size(model), **extra}
        metrics["steps"].append(entry)
        timings[f"evaluate_{name}"] = time.perf_counter() - t
        _log(
            progress,
            f"{name}: validation accuracy {metrics['input']['validation']['accuracy']:.4f} -> "
            f"{scores['validation']['accuracy']:.4f}, params {entry['params']:,}",
        )

    if config.prune_heads or config.prune_ffn:
        t = time.perf_counter()
        sub = train.subset(config.importance_samples, config.seed)
        _log(progress, f"structured pruning: measuring head/neuron importance on {len(sub)} training examples")
        batches = prune.training_batches(model, tokenizer, sub.texts, sub.labels, sub.pairs, max_length)
        record["structured"] = prune.prune_structured(model, config.prune_heads, config.prune_ffn, batches)
        timings["structured"] = time.perf_counter() - t
        step(
            "structured",
            {
                "structured": {k: v for k, v in record["structured"].items() if k != "importance"},
                "latency_ms_pytorch_fp32": _torch_latency(model, seq, config.latency_runs),
            },
        )
    if config.recover_epochs:
        t = time.perf_counter()
        teacher = Path(config.teacher or data_mod.lineage(model_dir)["teacher"] or model_dir)
        _log(progress, f"recovery: distilling from {teacher} for {config.recover_epochs} epoch(s)")
        with tempfile.TemporaryDirectory(prefix="mbk-recover-") as work:
            record["recovery"] = prune.recover(
                model,
                tokenizer,
                teacher,
                train,
                val,
                max_length=max_length,
                epochs=config.recover_epochs,
                lr=config.recover_lr,
                workdir=work,
                seed=config.seed,
                log=progress,
            )
        timings["recovery"] = time.perf_counter() - t
        step("recovery", {"recovery": record["recovery"]})
    if config.prune:
        record["prune"] = prune.prune_unstructured(model, config.prune, config.prune_scope)
        lat = _torch_latency(model, seq, config.latency_runs)
        step(
            "unstructured",
            {
                "sparsity": record["prune"]["overall_sparsity"],
                "sparsity_per_layer": record["prune"]["layers"],
                "latency_ms_pytorch_fp32": lat,
            },
        )
        metrics["notes"].append(prune.DENSE_NOTE)

    with artifacts.staged_output(config.output, ctx.overwrite) as out:
        if config.trim_vocab:
            t = time.perf_counter()
            corpus = list(train.texts) + list(train.pairs or [])
            _log(progress, f"trimming the vocabulary to the pieces of {len(train)} training examples")
            tokenizer, record["trim_vocab"] = prune.trim_vocabulary(model, tokenizer, corpus, out, eval_texts=val.texts)
            timings["trim_vocab"] = time.perf_counter() - t
            step("trim_vocab", {"trim_vocab": record["trim_vocab"]})
        model.config.architectures = [type(model).__name__]
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        artifacts.write_labels(out, label_names)
        compressed_val = metrics["steps"][-1]["validation"] if metrics["steps"] else metrics["input"]["validation"]

        # ---- ONNX fp32 (fused), then INT8 with the guard
        onnx_dir = out / "onnx"
        scratch = Path(tempfile.mkdtemp(prefix="mbk-compress-"))
        try:
            final_onnx, quant = _onnx_and_int8(
                config,
                out,
                scratch,
                tokenizer,
                (train, val, test),
                max_length,
                n,
                (ref_val, ref_test),
                metrics,
                timings,
                progress,
                compressed_val,
            )
            if final_onnx is not None:
                onnx_dir.mkdir(exist_ok=True)
                shutil.copy2(final_onnx["path"], onnx_dir / "model.onnx")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        final = metrics["steps"][-1] if metrics["steps"] else None
        metrics["final"] = final and {k: final[k] for k in ("step", "validation", "test") if k in final}
        metrics["size_on_disk"] = {
            "input_model_bytes": _file_size(model_dir, "model.safetensors"),
            "output_model_bytes": _file_size(out, "model.safetensors"),
            "onnx_bytes": (onnx_dir / "model.onnx").stat().st_size if final_onnx else None,
        }
        compression = {
            "int8": bool(config.int8 and final_onnx is not None),
            "int8_mode": ("static" if config.static else "dynamic") if config.int8 else None,
            "per_channel": config.per_channel,
            "reduce_range": config.reduce_range,
            "weight_type": config.weight_type,
            "calib_method": config.calib_method if config.static else None,
            "calib_samples": config.calib_samples if config.static else None,
            "nodes_excluded": (quant or {}).get("nodes_excluded", []),
            "onnx_model": "onnx/model.onnx" if final_onnx is not None else None,
            "prune": record["prune"],
            "structured": record["structured"],
            "recovery": record["recovery"],
            "trim_vocab": record["trim_vocab"],
            "guard": metrics.get("guard"),
        }
        artifacts.write_json(out / COMPRESSION, compression)
        timings["total"] = time.perf_counter() - t_start
        metrics["timings_s"] = timings
        artifacts.write_json(out / artifacts.METRICS, metrics)
        artifacts.write_manifest(
            out,
            stage="compress",
            config=config.to_dict(),
            inputs={"model": artifacts.input_record(model_dir)},
            metrics={
                "input": metrics["input"]["validation"],
                "final": (metrics["final"] or {}).get("validation"),
                "guard": metrics.get("guard"),
            },
            timings=timings,
            extra={"data": data_cfg.to_dict(), "max_length": max_length},
        )
    return _result(config, Path(config.output), metrics, compression)


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
    lines.append("Next: mbk export --model " + str(out))
    return StageResult(out, headline, lines)


def _file_size(folder: Path, name: str) -> int | None:
    f = Path(folder) / name
    return f.stat().st_size if f.exists() else None


def _onnx_and_int8(
    config: CompressConfig,
    hf_dir: Path,
    scratch: Path,
    tokenizer,
    splits: tuple,
    max_length: int,
    n: int,
    refs: tuple[np.ndarray, np.ndarray],
    metrics: dict,
    timings: dict,
    progress,
    compressed_val: dict,
):
    """Export + fuse the compressed model, quantize it when asked, enforce the guard.

    Returns ``(final, quant_report)`` where ``final`` is ``{"path": Path}`` or None (no ONNX graph).
    """
    from mobilebert_kit import onnx_tools as ot
    from mobilebert_kit import quantize as q

    base = metrics["input"]["validation"]
    train, val, test = splits
    ref_val, ref_test = refs

    def drop_of(scores: dict) -> float:
        if config.guard_metric == "agreement":
            return 1.0 - scores["agreement_with_input"]
        return base["accuracy"] - scores["accuracy"]

    def val_logits(path) -> np.ndarray:
        return ot.onnx_predict_logits(ot.session(path), tokenizer, val.texts, val.pairs, max_length=max_length)

    def test_scores(path) -> dict:
        logits = ot.onnx_predict_logits(ot.session(path), tokenizer, test.texts, test.pairs, max_length=max_length)
        return _scores(logits, test, n, ref_test)

    t = time.perf_counter()
    _log(progress, "exporting the compressed model to ONNX and fusing it (ORT transformer optimizer)")
    try:
        with _quiet_ort():
            raw = ot.export_onnx(hf_dir, scratch / "raw.onnx")
            # num_heads/hidden_size 0: let the optimizer read them per layer (pruned heads differ from the config)
            fused_ops = ot.optimize_onnx(raw, scratch / "fused.onnx", num_heads=0, hidden_size=0)
    except ExportError as e:
        if config.int8:
            raise CompressError(f"INT8 needs the ONNX graph, and exporting it failed: {e}") from e
        metrics["notes"].append(f"no ONNX graph: {e}")
        _guard(config, drop_of(compressed_val), compressed_val, base, metrics, "pytorch fp32 (no ONNX graph)")
        return None, None
    fused = scratch / "fused.onnx"
    timings["onnx_export"] = time.perf_counter() - t
    vocab = _vocab_size(hf_dir)
    fp32_val = _scores(val_logits(fused), val, n, ref_val)
    metrics["steps"].append(
        {
            "step": "onnx_fp32",
            "validation": fp32_val,
            "test": test_scores(fused),
            "fused_ops": fused_ops,
            "size_bytes": fused.stat().st_size,
            "latency_ms_ort": _ort_latency(fused, max_length, config.latency_runs, vocab),
        }
    )
    if not config.int8:
        _guard(config, drop_of(fp32_val), fp32_val, base, metrics, "onnx fp32")
        return {"path": fused}, None
    if drop_of(fp32_val) > config.max_drop:
        raise CompressError(
            _fail_msg(
                config,
                base,
                fp32_val,
                drop_of(fp32_val),
                "before INT8: pruning/trimming alone exceed the bound, INT8 fallback cannot help; "
                "prune less or recover with training",
            )
        )

    # ---- INT8
    t = time.perf_counter()
    if config.static:
        sess = ot.session(fused)
        calib = train.subset(config.calib_samples, config.seed)
        feeds = q.calibration_feeds(
            [i.name for i in sess.get_inputs()], tokenizer, calib.texts, calib.pairs, max_length
        )
        method: q.Int8Method = q.Int8Static(
            calibration=feeds,
            method=config.calib_method,
            per_channel=config.per_channel,
            reduce_range=config.reduce_range,
            weight_type=config.weight_type,
        )
    else:
        method = q.Int8Dynamic(
            per_channel=config.per_channel, reduce_range=config.reduce_range, weight_type=config.weight_type
        )
    candidates = q.candidate_nodes(fused, method)
    out_path = scratch / "int8.onnx"
    _log(progress, f"INT8 {method.name}: quantizing {len(candidates)} nodes")
    with _quiet_ort():
        rep = q.quantize(fused, out_path, method)
    scores = _scores(val_logits(out_path), val, n, ref_val)
    tried = [{"nodes_excluded": [], "validation": scores, "drop": drop_of(scores)}]
    _log(
        progress,
        f"INT8: validation accuracy {scores['accuracy']:.4f} (drop {drop_of(scores):+.4f}, bound {config.max_drop})",
    )
    excluded: list[str] = []
    sens = None
    if drop_of(scores) > config.max_drop:
        sub = val.subset(config.guard_samples, config.seed)
        ref = ot.onnx_predict_logits(ot.session(fused), tokenizer, sub.texts, sub.pairs, max_length=max_length)

        def sample_logits(p: str) -> np.ndarray:
            return ot.onnx_predict_logits(ot.session(p), tokenizer, sub.texts, sub.pairs, max_length=max_length)

        _log(
            progress,
            f"accuracy guard: ranking {len(candidates)} nodes by sensitivity on {len(sub)} validation examples",
        )
        with _quiet_ort():
            sens = q.sensitivity(fused, method, candidates, sample_logits, ref, scratch, progress=None)
        for node, _err in sens:
            excluded.append(node)
            with _quiet_ort():
                rep = q.quantize(fused, out_path, method, nodes_to_exclude=excluded)
            scores = _scores(val_logits(out_path), val, n, ref_val)
            tried.append({"nodes_excluded": list(excluded), "validation": scores, "drop": drop_of(scores)})
            _log(progress, f"accuracy guard: {len(excluded)} node(s) fp32 (+{node}): drop {drop_of(scores):+.4f}")
            if drop_of(scores) <= config.max_drop:
                break
    timings["int8"] = time.perf_counter() - t
    best = min(tried, key=lambda r: (r["drop"], len(r["nodes_excluded"])))
    metrics["guard_search"] = {
        "candidates": candidates,
        "sensitivity_mse": sens and [[k, v] for k, v in sens],
        "tried": [
            {"nodes_excluded": len(r["nodes_excluded"]), "drop": r["drop"], "accuracy": r["validation"]["accuracy"]}
            for r in tried
        ],
    }
    if best["drop"] > config.max_drop:
        raise CompressError(
            _fail_msg(
                config,
                base,
                best["validation"],
                best["drop"],
                f"best INT8 configuration kept {len(best['nodes_excluded'])} of {len(candidates)} "
                "quantizable nodes in fp32",
            )
        )
    metrics["steps"].append(
        {
            "step": f"int8_{method.name}",
            "validation": scores,
            "test": test_scores(out_path),
            "nodes_excluded": excluded,
            "size_bytes": out_path.stat().st_size,
            "ops": rep["ops"],
            "latency_ms_ort": _ort_latency(out_path, max_length, config.latency_runs, vocab),
        }
    )
    _guard(config, drop_of(scores), scores, base, metrics, f"onnx int8 {method.name}")
    if config.static:
        metrics["notes"].append(
            "static QDQ quantizes MatMul/Gemm only: ORT's fused Attention and EmbedLayerNormalization "
            "have no QDQ kernels and stay fp32 (the QKV projections and the embedding table)"
        )
    return {"path": out_path}, {"nodes_excluded": excluded}


def _vocab_size(hf_dir: Path) -> int:
    import json

    return int(json.loads((hf_dir / "config.json").read_text())["vocab_size"])


def _guard(config: CompressConfig, drop: float, scores: dict, base: dict, metrics: dict, what: str) -> None:
    metrics["guard"] = {
        "metric": config.guard_metric,
        "max_drop": config.max_drop,
        "drop": drop,
        "checked": what,
        "input_accuracy": base["accuracy"],
        "final_accuracy": scores["accuracy"],
        "agreement_with_input": scores.get("agreement_with_input"),
        "passed": drop <= config.max_drop,
    }
    if drop > config.max_drop:
        raise CompressError(_fail_msg(config, base, scores, drop, what))


def _fail_msg(config: CompressConfig, base: dict, scores: dict, drop: float, what: str) -> str:
    measure = "label disagreement with the input" if config.guard_metric == "agreement" else "validation accuracy drop"
    return (
        f"accuracy guard failed: {measure} {drop:.4f} > --max-drop {config.max_drop:g} ({what}); "
        f"validation accuracy {base['accuracy']:.4f} -> {scores['accuracy']:.4f}, macro-F1 {base['macro_f1']:.4f} -> "
        f"{scores['macro_f1']:.4f}, agreement {scores.get('agreement_with_input', float('nan')):.4f}. "
        "Nothing was written; relax --max-drop or compress less"
    )


__all__ = ["CompressConfig", "run", "COMPRESSION"]
