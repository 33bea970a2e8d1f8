"""ONNX building blocks shared by compress, export, verify and bench.

* :func:`export_onnx` — fp32 ONNX of a Hugging Face sequence classifier (TorchScript-based
  ``torch.onnx.export(dynamo=False)``: the graph ORT's transformer optimizer fully fuses; the
  dynamo exporter's graph does not get fused attention, see FACTS.md).
* :func:`optimize_onnx` — ORT transformer graph fusion (model_type ``bert``), returns the fused-op
  counts and fails when attention should have fused but did not.
* :func:`session` / :func:`onnx_predict_logits` — run a ``.onnx`` or ``.ort`` file on CPU with the
  same tokenization and dynamic padding as :func:`mobilebert_kit.metrics.predict_logits`.

* :func:`quiet_ort` — keeps ORT's quantizer and optimizer chatter off stdout and the root log.

INT8 lives in :mod:`mobilebert_kit.compression.ort_quant`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mobilebert_kit.errors import ExportError, ModelError

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAMES = ("logits",)
DYNAMIC_AXES = {**{n: {0: "batch", 1: "sequence"} for n in INPUT_NAMES}, "logits": {0: "batch"}}
# Fused ops reported by optimize_onnx (other op types are counted too when present).
FUSED_OPS = (
    "Attention",
    "MultiHeadAttention",
    "EmbedLayerNormalization",
    "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization",
    "LayerNormalization",
    "BiasGelu",
    "FastGelu",
    "Gelu",
    "MatMulNBits",
    "MatMulInteger",
    "DynamicQuantizeLinear",
    "QAttention",
    "QEmbedLayerNormalization",
)
# The batch ONNX Runtime graphs are scored at (compress's guard, verify): the phone's, one text, unpadded.
# Dynamic INT8 quantizes each activation over the whole batch, padding included, so in padded batches of
# 32 a text's label depended on its batch-mates (0.6-0.8% of test labels on the default run).
PHONE_BATCH = 1
# Node names of a layer rewritten by mobilebert_kit.graph.first_token carry this (its transposed key weight's module).
FIRST_TOKEN_NODE = "/key_t/"
# Model types whose attention ORT's 'bert' fusion is known to recognise.
FUSABLE_MODEL_TYPES = ("bert", "distilbert", "roberta", "xlm-roberta", "electra", "mobilebert")


def export_onnx(
    model_dir: str | os.PathLike, out_path: str | os.PathLike, opset: int = 17, first_token: bool = True
) -> Path:
    """Export an HF sequence classifier folder to fp32 ONNX.

    Inputs ``input_ids``, ``attention_mask`` and (when the model uses them) ``token_type_ids``, all
    int64 with dynamic ``batch`` and ``sequence`` axes; output ``logits`` ``[batch, num_labels]``.

    Args:
        model_dir: folder written by ``save_pretrained`` with a ``*ForSequenceClassification`` head.
        out_path: the ``.onnx`` file to write (its folder is created).
        opset: ONNX opset (17 keeps LayerNormalization native and loads on ORT Mobile >= 1.14).
        first_token: run the last layer for the first token only where the head reads nothing else
            (:mod:`mobilebert_kit.graph.first_token`: the same logits; on the default 3-layer student a quarter less
            time at 128 tokens, benchmarks/results/graph_variants.md).

    Returns:
        ``out_path``.

    Raises:
        ModelError: the folder holds no classifier.
        ExportError: the exporter failed (the message names the folder and the cause).
    """
    from mobilebert_kit.models import load_classifier_folder

    out_path = Path(out_path)
    model, tokenizer, _ = load_classifier_folder(model_dir)
    model.config.return_dict = True
    if first_token:
        from mobilebert_kit.graph.first_token import rewrite

        rewrite(model)
    names = _graph_input_names(model)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _trace_to_onnx(model, names, _dummy_inputs(tokenizer, names), out_path, opset)
    except Exception as e:  # noqa: BLE001 - wrap exporter failures with context
        out_path.unlink(missing_ok=True)
        raise ExportError(
            f"ONNX export of {model_dir} failed ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); "
            "check that the model is a standard transformers classifier (transformers==4.57.6)"
        ) from e
    return out_path


def _graph_input_names(model) -> list[str]:
    names = [n for n in INPUT_NAMES if n in _forward_args(model)]
    if "token_type_ids" in names and getattr(model.config, "type_vocab_size", 2) < 1:
        names.remove("token_type_ids")
    return names


def _dummy_inputs(tokenizer, names: list[str]) -> tuple:
    import torch

    dummy = tokenizer(
        ["a short example sentence", "another one"], padding="max_length", max_length=16, return_tensors="pt"
    )
    return tuple(dummy[n] if n in dummy else torch.zeros_like(dummy["input_ids"]) for n in names)


def _trace_to_onnx(model, names: list[str], args: tuple, out_path: Path, opset: int) -> None:
    """TorchScript-based export of ``model``'s logits with positional inputs ``names``."""
    import torch

    class _Logits(torch.nn.Module):  # positional inputs, logits only (no dict outputs in the graph)
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *inputs):
            return self.inner(**dict(zip(names, inputs))).logits

    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about constant masks are expected
        torch.onnx.export(
            _Logits(model).eval(),
            args,
            str(out_path),
            input_names=names,
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={n: DYNAMIC_AXES[n] for n in [*names, "logits"]},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def _forward_args(model) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


def op_counts(path_or_model) -> dict[str, int]:
    """Count node op types of an ONNX file or ModelProto (top graph)."""
    import onnx

    m = (
        onnx.load(str(path_or_model), load_external_data=False)
        if isinstance(path_or_model, (str, os.PathLike))
        else path_or_model
    )
    return dict(Counter(n.op_type for n in m.graph.node))


def optimize_onnx(
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    num_heads: int,
    hidden_size: int,
    model_type: str = "bert",
    require_attention: bool = True,
    fusion: dict | None = None,
) -> dict[str, int]:
    """Apply ORT's transformer graph fusion and save the result.

    Args:
        in_path: fp32 ONNX from :func:`export_onnx`.
        out_path: where to write the fused graph (may equal ``in_path``).
        num_heads, hidden_size: attention shape (from the HF config); 0 lets the optimizer read them from
            the graph per layer (needed after head pruning).
        model_type: the optimizer's model type; ``bert`` covers BERT/MiniLM/DistilBERT-like graphs.
        require_attention: raise when no ``Attention`` node was produced.
        fusion: ``FusionOptions`` attributes to override, e.g. ``{"enable_embed_layer_norm": False}``.

    Returns:
        Counts of the fused op types present, e.g. ``{"Attention": 5, "SkipLayerNormalization": 12,
        "EmbedLayerNormalization": 1, "BiasGelu": 6, ..., "first_token_layer": 1}`` (the last key, not an op:
        the graph's last layer runs for the first token only, :mod:`mobilebert_kit.graph.first_token`).

    Raises:
        ExportError: the optimizer failed, or attention did not fuse although ``require_attention``.
    """
    in_path, out_path = Path(in_path), Path(out_path)
    try:
        _fuse(in_path, out_path, num_heads, hidden_size, model_type, fusion or {})
    except Exception as e:  # noqa: BLE001
        raise ExportError(
            f"ORT transformer optimization of {in_path} failed ({type(e).__name__}: {str(e)[:200]})"
        ) from e
    counts, first_token = _graph_facts(out_path)
    fused = _fused_ops(counts, first_token)
    # No fused attention is only right for a one-layer model rewritten by mobilebert_kit.graph.first_token (its
    # one-query product is not ORT's Attention pattern and needs no fusing): one Softmax, its own.
    unfused = not (first_token and counts.get("Softmax", 0) == 1)
    if require_attention and not (fused.get("Attention") or fused.get("MultiHeadAttention")) and unfused:
        raise ExportError(
            f"ORT transformer optimization of {in_path} did not fuse attention (ops: {_top_ops(counts)}); "
            "the graph was probably exported with the dynamo exporter or from an unsupported architecture"
        )
    return fused


def fused_ops(path: str | os.PathLike) -> dict[str, int]:
    """The fused op types in an ONNX graph (:data:`FUSED_OPS`), plus ``first_token_layer: 1`` (not an op) when
    its last layer runs for the first token only (:mod:`mobilebert_kit.graph.first_token`)."""
    return _fused_ops(*_graph_facts(path))


def _graph_facts(path: str | os.PathLike) -> tuple[dict[str, int], bool]:
    """Op-type counts and whether a first-token layer is present, from one read of the graph."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return dict(Counter(n.op_type for n in graph.node)), any(FIRST_TOKEN_NODE in n.name for n in graph.node)


def _fused_ops(counts: dict[str, int], first_token: bool) -> dict[str, int]:
    fused = {k: v for k, v in counts.items() if k in FUSED_OPS}
    if first_token:
        fused["first_token_layer"] = 1
    return fused


def _fuse(in_path: Path, out_path: Path, num_heads: int, hidden_size: int, model_type: str, fusion: dict) -> None:
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    options = FusionOptions(model_type)
    for key, value in fusion.items():
        if not hasattr(options, key):
            raise ValueError(f"unknown ORT fusion option {key!r}")
        setattr(options, key, value)
    m = optimizer.optimize_model(
        str(in_path),
        model_type=model_type,
        num_heads=num_heads,
        hidden_size=hidden_size,
        optimization_options=options,
        opt_level=0,
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    m.save_model_to_file(str(out_path))


def _top_ops(counts: dict[str, int], n: int = 8) -> str:
    return ", ".join(f"{k}×{v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:n])


def session(path: str | os.PathLike, threads: int = 1):
    """A CPU ``onnxruntime.InferenceSession`` for a ``.onnx`` or ``.ort`` file with ``threads`` intra-op threads."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist; run `mbk export` first or check the path")
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if path.suffix == ".ort":
        so.add_session_config_entry("session.load_model_format", "ORT")
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        raise ModelError(
            f"ONNX Runtime could not load {path} ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from e


def feeds_for(sess, batch: dict[str, Sequence]) -> dict[str, np.ndarray]:
    """Inputs the graph declares, as int64 arrays (zeros for a declared ``token_type_ids`` the tokenizer lacks)."""
    return feeds_for_names([i.name for i in sess.get_inputs()], batch)


def feeds_for_names(names: Sequence[str], batch: dict[str, Sequence]) -> dict[str, np.ndarray]:
    """:func:`feeds_for` given the graph's input names instead of a session."""
    out = {}
    for n in names:
        if n in batch:
            out[n] = np.asarray(batch[n], dtype=np.int64)
        elif n == "token_type_ids":
            out[n] = np.zeros_like(np.asarray(batch["input_ids"], dtype=np.int64))
        else:
            raise ModelError(
                f"the ONNX graph wants an input '{n}' the tokenizer does not produce (inputs: {', '.join(names)})"
            )
    return out


def onnx_predict_logits(
    sess,
    tokenizer,
    texts: Sequence[str],
    pairs: Sequence[str] | None = None,
    max_length: int = 128,
    batch_size: int = 32,
) -> np.ndarray:
    """Logits ``[len(texts), num_labels]`` (float32, input order) from an ORT session."""
    from mobilebert_kit.batching import padded_batches

    out: np.ndarray | None = None
    for idx, batch in padded_batches(tokenizer, texts, pairs, max_length, batch_size):
        logits = sess.run(None, feeds_for(sess, batch))[0]
        if out is None:
            out = np.zeros((len(texts), logits.shape[-1]), dtype=np.float32)
        out[idx] = logits
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


@contextlib.contextmanager
def quiet_ort():
    """ORT's quantizer prints calibration chatter on stdout and warns per tensor (and its optimizer
    logs on the root logger); keep stdout clean for ``--json`` and the log readable."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)
