"""INT8 quantization of a fused ONNX classifier graph with ONNX Runtime's quantization tools.

One verb, one config per method::

    quantize("model.onnx", "int8.onnx", Int8Dynamic(per_channel=True))
    quantize("model.onnx", "int8.onnx", Int8Static(calibration=feeds, method="entropy"))

Names follow ORT / Optimum: ``per_channel``, ``reduce_range``, ``weight_type``, ``nodes_to_exclude``.
Pitfalls handled here (FACTS.md): ``quantize_dynamic`` on a fused graph needs
``DefaultTensorType=FLOAT``; static calibration needs typed tensors (see :func:`_prepared`); static QDQ
cannot quantize ORT's fused ``Attention``/``EmbedLayerNormalization`` (no QDQ kernels), so those
stay fp32 in static mode and the report says so.

:func:`sensitivity` ranks the quantizable nodes by the damage each does alone (Intel Neural
Compressor's fallback idea); the compress stage falls the worst back to fp32 until the accuracy
guard holds.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mobilebert_kit.config import check_choice, check_range
from mobilebert_kit.errors import CompressError, ConfigError

WEIGHT_TYPES = ("qint8", "quint8")
CALIB_METHODS = ("minmax", "entropy", "percentile")
# Op types each mode can turn into INT8 (ORT registries; Gemm/QDQ-only ops listed where they apply).
DYNAMIC_OPS = ("MatMul", "Attention", "EmbedLayerNormalization", "Gather")
STATIC_OPS = ("MatMul", "Gemm", "Gather")


@dataclass(frozen=True)
class Int8Dynamic:
    """Weights INT8 offline, activations quantized at run time (no calibration data needed)."""

    per_channel: bool = False
    reduce_range: bool = False
    weight_type: str = "qint8"
    nodes_to_exclude: tuple[str, ...] = ()

    name = "dynamic"

    def __post_init__(self) -> None:
        problems: list[str] = []
        check_choice(problems, "weight_type", self.weight_type, WEIGHT_TYPES)
        if problems:
            raise ConfigError(problems)


@dataclass(frozen=True)
class Int8Static:
    """Weights and activations INT8 (QDQ), activation ranges calibrated on ``calibration`` feeds.

    ``calibration`` is a list of ONNX input dicts (``{"input_ids": int64 [B, T], ...}``); the method
    refuses to be built without it, before any work starts.
    """

    calibration: Sequence[dict] | None = None
    method: str = "minmax"
    per_channel: bool = False
    reduce_range: bool = False
    weight_type: str = "qint8"
    activation_type: str = "quint8"  # U8S8: the fast path of ORT's x86 CPU kernels
    percentile: float = 99.999
    nodes_to_exclude: tuple[str, ...] = ()
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    name = "static"

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not self.calibration:
            problems.append(
                "static INT8 needs calibration data (a non-empty list of input batches); "
                "pass --calib-samples N with a training split available, or use dynamic INT8"
            )
        check_choice(problems, "calib_method", self.method, CALIB_METHODS)
        check_choice(problems, "weight_type", self.weight_type, WEIGHT_TYPES)
        check_choice(problems, "activation_type", self.activation_type, WEIGHT_TYPES)
        check_range(problems, "percentile", self.percentile, 90, 100, hi_open=False)
        if problems:
            raise ConfigError(problems)


Int8Method = Int8Dynamic | Int8Static


def _qtype(name: str):
    from onnxruntime.quantization import QuantType

    return {"qint8": QuantType.QInt8, "quint8": QuantType.QUInt8}[name]


class _FeedReader:
    """``CalibrationDataReader`` over a fixed list of feeds (ORT checks duck-typed ``get_next``)."""

    def __init__(self, feeds: Sequence[dict]):
        self.feeds = list(feeds)
        self.pos = 0

    def get_next(self):
        if self.pos >= len(self.feeds):
            return None
        self.pos += 1
        return self.feeds[self.pos - 1]

    def __len__(self) -> int:
        return len(self.feeds)

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item

    def set_range(self, start_index: int, end_index: int) -> None:  # used by strided calibration only
        self.feeds = self.feeds[start_index:end_index]
        self.pos = 0


def calibration_feeds(
    input_names: Sequence[str],
    tokenizer,
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    max_length: int,
    batch_size: int = 16,
) -> list[dict]:
    """ONNX feeds for calibration, every batch padded to the same length (the longest text, capped
    at ``max_length``): ORT's histogram calibrators (entropy, percentile) stack activations across
    batches and fail on ragged shapes."""
    from mobilebert_kit.batching import encode
    from mobilebert_kit.onnx_tools import feeds_for_names

    enc = encode(tokenizer, texts, pairs, max_length)
    length = max((len(x) for x in enc["input_ids"]), default=1)
    feeds = []
    for start in range(0, len(texts), batch_size):
        feats = [{k: enc[k][i] for k in enc.keys()} for i in range(start, min(start + batch_size, len(texts)))]
        batch = tokenizer.pad(feats, padding="max_length", max_length=length, return_tensors="np")
        feeds.append(feeds_for_names(input_names, batch))
    return feeds


def candidate_nodes(path_or_model, method: Int8Method) -> list[str]:
    """Names of the nodes ``method`` would quantize: supported op types that carry a weight initializer."""
    import onnx

    m = onnx.load(str(path_or_model)) if isinstance(path_or_model, (str, os.PathLike)) else path_or_model
    weights = {
        t.name
        for t in m.graph.initializer
        if len(t.dims) >= 2 and t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    }
    ops = DYNAMIC_OPS if isinstance(method, Int8Dynamic) else STATIC_OPS
    out = []
    for node in m.graph.node:
        if node.op_type in ops and any(i in weights for i in node.input):
            if not node.name:
                raise CompressError(
                    f"an ONNX {node.op_type} node has no name, so it cannot be excluded from quantization; "
                    "re-export the graph with mbk"
                )
            out.append(node.name)
    return out


def quantize(
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    method: Int8Method,
    nodes_to_exclude: Sequence[str] = (),
    nodes_to_quantize: Sequence[str] | None = None,
) -> dict:
    """Quantize an fp32 ONNX graph to INT8 with ``method``; returns a small report.

    Args:
        in_path: fp32 ONNX (fused or not).
        out_path: INT8 ONNX to write.
        method: :class:`Int8Dynamic` or :class:`Int8Static`.
        nodes_to_exclude: node names kept fp32 (added to ``method.nodes_to_exclude``).
        nodes_to_quantize: restrict quantization to these nodes (sensitivity analysis).

    Raises:
        CompressError: ORT's quantizer failed (message names the graph and the cause).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_dynamic, quantize_static

    in_path, out_path = Path(in_path), Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    exclude = sorted(set(method.nodes_to_exclude) | set(nodes_to_exclude))
    try:
        if isinstance(method, Int8Dynamic):
            quantize_dynamic(
                str(in_path),
                str(out_path),
                op_types_to_quantize=list(DYNAMIC_OPS),
                per_channel=method.per_channel,
                reduce_range=method.reduce_range,
                weight_type=_qtype(method.weight_type),
                nodes_to_exclude=exclude,
                nodes_to_quantize=list(nodes_to_quantize) if nodes_to_quantize else None,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        else:
            calib = {
                "minmax": CalibrationMethod.MinMax,
                "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile,
            }[method.method]
            prepared = _prepared(in_path, method)
            # Calibration runs once per (graph, method); later calls (sensitivity, fallback) reuse the ranges.
            cache = method._cache.setdefault(
                "calib:" + str(in_path), str(Path(tempfile.mkdtemp(prefix="mbk-calib-")) / "ranges.json")
            )
            extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}
            if method.method == "percentile":
                extra["CalibPercentile"] = method.percentile
            quantize_static(
                prepared,
                str(out_path),
                calibration_data_reader=_FeedReader(method.calibration),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(STATIC_OPS),
                per_channel=method.per_channel,
                reduce_range=method.reduce_range,
                activation_type=_qtype(method.activation_type),
                weight_type=_qtype(method.weight_type),
                nodes_to_exclude=exclude,
                nodes_to_quantize=list(nodes_to_quantize) if nodes_to_quantize else None,
                calibrate_method=calib,
                extra_options=extra,
                calibration_cache_path=cache,
            )
    except (ConfigError, CompressError):
        raise
    except Exception as e:  # noqa: BLE001 - wrap ORT failures with context
        out_path.unlink(missing_ok=True)
        first = str(e).splitlines()[0][:200] if str(e) else ""
        raise CompressError(f"{method.name} INT8 quantization of {in_path} failed ({type(e).__name__}: {first})") from e
    from mobilebert_kit.onnx_tools import op_counts

    return {
        "mode": method.name,
        "nodes_excluded": exclude,
        "size_bytes": out_path.stat().st_size,
        "ops": op_counts(out_path),
    }


def _prepared(in_path: Path, method: Int8Static) -> str:
    """Type/shape-annotate the graph once for static quantization.

    The calibrator and the QDQ quantizer only touch tensors whose type is known. ONNX's own shape
    inference stops at ORT's fused contrib ops (Attention, SkipLayerNormalization...), and
    ``quant_pre_process`` fails on BERT graphs unless symbolic inference is skipped (FACTS.md), which
    leaves every tensor after the first fused op untyped and unquantized. ORT's symbolic shape
    inference with ``auto_merge`` does type the fused graph.
    """
    key = "pre:" + str(in_path)
    if key not in method._cache:
        import onnx
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        out = Path(tempfile.mkdtemp(prefix="mbk-preq-")) / "model.onnx"
        try:
            typed = SymbolicShapeInference.infer_shapes(
                onnx.load(str(in_path)), auto_merge=True, guess_output_rank=True
            )
        except Exception as e:  # noqa: BLE001
            raise CompressError(
                f"shape inference on {in_path} failed before static quantization "
                f"({type(e).__name__}: {str(e)[:200]}); use dynamic INT8"
            ) from e
        onnx.save(typed, str(out))
        method._cache[key] = str(out)
    return method._cache[key]


def sensitivity(
    in_path: str | os.PathLike,
    method: Int8Method,
    candidates: Sequence[str],
    logits_of: Callable[[str], np.ndarray],
    reference: np.ndarray,
    workdir: str | os.PathLike,
    progress: Callable[[str], None] | None = None,
) -> list[tuple[str, float]]:
    """Damage each candidate node does when it alone is INT8: mean squared logit error against
    ``reference`` (the fp32 graph's logits on the same sample). Returns ``[(node, error)]``, worst first.

    ``logits_of(path)`` runs an ONNX file on the sample and returns its logits.
    """
    out = []
    tmp = Path(workdir) / "sensitivity.onnx"
    for i, node in enumerate(candidates):
        quantize(in_path, tmp, method, nodes_to_quantize=[node])
        err = float(np.mean((logits_of(str(tmp)) - reference) ** 2))
        out.append((node, err))
        if progress:
            progress(f"sensitivity {i + 1}/{len(candidates)}: {node} mse={err:.3g}")
    tmp.unlink(missing_ok=True)
    return sorted(out, key=lambda kv: -kv[1])
