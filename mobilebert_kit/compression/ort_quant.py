"""INT8 and 4-bit quantization of a fused ONNX classifier graph with ONNX Runtime's quantization tools.

One verb, one config per method::

    quantize("model.onnx", "int8.onnx", Int8Dynamic(per_channel=True))
    quantize("model.onnx", "int8.onnx", Int8Static(calibration=feeds, method="entropy"))
    quantize("model.onnx", "int4.onnx", Int4Weights(op_types_to_quantize=("Gather",), block_size=32))

``Int4Weights`` is ORT's ``MatMulNBitsQuantizer`` (block-wise weight-only, round to nearest):
MatMul -> ``MatMulNBits``, a constant-table Gather -> ``GatherBlockQuantized`` (both com.microsoft
contrib ops). It needs the graph's Gathers unfused (no ``EmbedLayerNormalization``) to reach the
embedding tables.

Names follow ORT / Optimum: ``per_channel``, ``reduce_range``, ``weight_type``, ``nodes_to_exclude``.
This is the one INT8 implementation: ``mbk compress`` (with its accuracy guard) and ``mbk export``
both call :func:`quantize`.

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
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mobilebert_kit.artifacts import new_scratch_dir
from mobilebert_kit.config import check_choice, check_range
from mobilebert_kit.errors import CompressError, ConfigError

WEIGHT_TYPES = ("qint8", "quint8")
# Label agreement an INT8 graph must keep with its fp32 graph: what `mbk verify` requires of an INT8
# export and what compress's guard checks (at its lower confidence bound) before handing one over.
INT8_MIN_AGREEMENT = 0.97
CALIB_METHODS = ("minmax", "entropy", "percentile")
# Op types each mode can turn into INT8 (ORT registries; Gemm/QDQ-only ops listed where they apply).
DYNAMIC_OPS = ("MatMul", "Attention", "EmbedLayerNormalization", "Gather")
STATIC_OPS = ("MatMul", "Gemm", "Gather")
# What ORT's MatMulNBitsQuantizer turns into 4-bit ops, and the block sizes both ops take (a power of
# two >= 16: GatherBlockQuantized asserts it, MatMulNBits' kernels are built for these).
INT4_OPS = ("MatMul", "Gather")
INT4_BLOCK_SIZES = (16, 32, 64, 128, 256)
INT4_BITS = (4,)  # GatherBlockQuantized stores 4-bit data only; 2/8-bit MatMulNBits are not offered
ACCURACY_LEVELS = (0, 1, 2, 3, 4)  # MatMulNBits' accuracy_level: 0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8 compute


class _Workspace:
    """Temp files a static method reuses between :func:`quantize` calls (the typed graph, the
    calibration ranges). They live while the method is open (``with method:``, or one
    :func:`quantize` call) and are deleted when the outermost user closes it: nothing is leaked."""

    def __init__(self) -> None:
        self.depth = 0
        self.dir: Path | None = None
        self.files: dict[str, str] = {}

    def open(self) -> None:
        if self.depth == 0:
            self.dir = new_scratch_dir("int8")
        self.depth += 1

    def close(self) -> None:
        self.depth -= 1
        if self.depth == 0:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
            self.files.clear()

    def path(self, key: str, name: str) -> tuple[str, bool]:
        """``(file path for key, whether it already exists)``: a new name inside the open folder when new."""
        if key not in self.files:
            self.files[key] = str(self.dir / f"{len(self.files)}-{name}")
            return self.files[key], False
        return self.files[key], True


class _Method:
    """Both methods can be opened (``with method: ...``) so repeated calls share their work."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


@dataclass(frozen=True)
class Int8Dynamic(_Method):
    """Weights INT8 offline, activations quantized at run time (no calibration data needed).

    ``op_types_to_quantize``: the op types turned into INT8 (default :data:`DYNAMIC_OPS`; ``None``:
    every type ORT's dynamic quantizer knows). Both give the same graph for a fused BERT graph.
    """

    per_channel: bool = False
    reduce_range: bool = False
    weight_type: str = "qint8"
    nodes_to_exclude: tuple[str, ...] = ()
    op_types_to_quantize: tuple[str, ...] | None = DYNAMIC_OPS

    name = "dynamic"

    def __post_init__(self) -> None:
        problems: list[str] = []
        check_choice(problems, "weight_type", self.weight_type, WEIGHT_TYPES)
        if problems:
            raise ConfigError(problems)


@dataclass(frozen=True)
class Int8Static(_Method):
    """Weights and activations INT8 (QDQ), activation ranges calibrated on ``calibration`` feeds.

    ``calibration`` is a list of ONNX input dicts (``{"input_ids": int64 [B, T], ...}``); the method
    refuses to be built without it, before any work starts. Open it (``with method:``) around several
    :func:`quantize` calls on the same graph to calibrate once; its temp files go when it closes.
    """

    calibration: Sequence[dict] | None = None
    method: str = "minmax"
    per_channel: bool = False
    reduce_range: bool = False
    weight_type: str = "qint8"
    activation_type: str = "quint8"  # U8S8: the fast path of ORT's x86 CPU kernels
    percentile: float = 99.999
    nodes_to_exclude: tuple[str, ...] = ()
    _workspace: _Workspace = field(default_factory=_Workspace, init=False, compare=False, repr=False)

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

    def __enter__(self):
        self._workspace.open()
        return self

    def __exit__(self, *exc) -> None:
        self._workspace.close()


@dataclass(frozen=True)
class Int4Weights(_Method):
    """4-bit block-wise weight-only quantization (ORT's ``MatMulNBitsQuantizer``, DEFAULT algorithm).

    ``op_types_to_quantize``: ``MatMul`` (-> ``MatMulNBits``) and/or ``Gather`` (constant tables ->
    ``GatherBlockQuantized``); ``block_size`` weights share one scale (and zero point unless
    ``is_symmetric``); ``accuracy_level``: MatMulNBits' compute type (None: ORT's default).
    Activations stay fp32: no calibration, no run-time quantization.
    """

    op_types_to_quantize: tuple[str, ...] = ("MatMul",)
    block_size: int = 32
    is_symmetric: bool = False
    accuracy_level: int | None = None
    bits: int = 4
    nodes_to_exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems: list[str] = []
        unknown = [op for op in self.op_types_to_quantize if op not in INT4_OPS]
        if unknown or not self.op_types_to_quantize:
            problems.append(f"op_types_to_quantize must be some of {', '.join(INT4_OPS)}; got {unknown or '()'}")
        check_choice(problems, "block_size", self.block_size, INT4_BLOCK_SIZES)
        check_choice(problems, "bits", self.bits, INT4_BITS)
        if self.accuracy_level is not None:
            check_choice(problems, "accuracy_level", self.accuracy_level, ACCURACY_LEVELS)
        if problems:
            raise ConfigError(problems)

    @property
    def name(self) -> str:
        return f"{self.bits}-bit {'+'.join(self.op_types_to_quantize)}"


Int8Method = Int8Dynamic | Int8Static
QuantMethod = Int8Dynamic | Int8Static | Int4Weights


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
    from mobilebert_kit.graph.onnx_tools import feeds_for_names

    enc = encode(tokenizer, texts, pairs, max_length)
    length = max((len(x) for x in enc["input_ids"]), default=1)
    feeds = []
    for start in range(0, len(texts), batch_size):
        feats = [{k: enc[k][i] for k in enc.keys()} for i in range(start, min(start + batch_size, len(texts)))]
        batch = tokenizer.pad(feats, padding="max_length", max_length=length, return_tensors="np")
        feeds.append(feeds_for_names(input_names, batch))
    return feeds


def candidate_nodes(path_or_model, method: QuantMethod) -> list[str]:
    """Names of the nodes ``method`` would quantize: supported op types that carry a weight initializer."""
    import onnx

    m = onnx.load(str(path_or_model)) if isinstance(path_or_model, (str, os.PathLike)) else path_or_model
    weights = {
        t.name
        for t in m.graph.initializer
        if len(t.dims) >= 2 and t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    }
    ops = _op_types(method)
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


def _op_types(method: QuantMethod) -> tuple[str, ...]:
    if isinstance(method, Int8Static):
        return STATIC_OPS
    if isinstance(method, Int4Weights):
        return method.op_types_to_quantize
    if method.op_types_to_quantize is None:
        from onnxruntime.quantization.registry import IntegerOpsRegistry

        return tuple(IntegerOpsRegistry)
    return tuple(method.op_types_to_quantize)


def quantize(
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    method: QuantMethod,
    nodes_to_exclude: Sequence[str] = (),
    nodes_to_quantize: Sequence[str] | None = None,
) -> dict:
    """Quantize the fp32 parts of an ONNX graph with ``method``; returns a small report.

    Args:
        in_path: ONNX graph (fused or not; may already hold 4-bit ops, which INT8 leaves alone).
        out_path: quantized ONNX to write.
        method: :class:`Int8Dynamic`, :class:`Int8Static` or :class:`Int4Weights`.
        nodes_to_exclude: node names kept fp32 (added to ``method.nodes_to_exclude``).
        nodes_to_quantize: restrict quantization to these nodes (sensitivity analysis).

    Returns:
        ``{"mode", "nodes_excluded", "size_bytes", "ops"}``.

    Raises:
        CompressError: ORT's quantizer failed (message names the graph and the cause).
    """
    from mobilebert_kit.graph.onnx_tools import op_counts, quiet_ort

    in_path, out_path = Path(in_path), Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    exclude = sorted(set(method.nodes_to_exclude) | set(nodes_to_exclude))
    only = list(nodes_to_quantize) if nodes_to_quantize else None
    try:
        with method, quiet_ort():
            if isinstance(method, Int8Dynamic):
                _quantize_dynamic(in_path, out_path, method, exclude, only)
            elif isinstance(method, Int4Weights):
                _quantize_nbits(in_path, out_path, method, exclude, only)
            else:
                _quantize_static(in_path, out_path, method, exclude, only)
    except (ConfigError, CompressError):
        raise
    except Exception as e:  # noqa: BLE001 - wrap ORT failures with context
        out_path.unlink(missing_ok=True)
        first = str(e).splitlines()[0][:200] if str(e) else ""
        what = method.name if isinstance(method, Int4Weights) else f"{method.name} INT8"
        raise CompressError(f"{what} quantization of {in_path} failed ({type(e).__name__}: {first})") from e
    return {
        "mode": method.name,
        "nodes_excluded": exclude,
        "size_bytes": out_path.stat().st_size,
        "ops": op_counts(out_path),
    }


def _quantize_dynamic(in_path: Path, out_path: Path, method: Int8Dynamic, exclude: list, only: list | None) -> None:
    import onnx
    from onnxruntime.quantization import quantize_dynamic

    ops = method.op_types_to_quantize
    quantize_dynamic(
        str(in_path),
        str(out_path),
        op_types_to_quantize=list(ops) if ops is not None else None,
        per_channel=method.per_channel,
        reduce_range=method.reduce_range,
        weight_type=_qtype(method.weight_type),
        nodes_to_exclude=exclude,
        nodes_to_quantize=only,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def _quantize_nbits(in_path: Path, out_path: Path, method: Int4Weights, exclude: list, only: list | None) -> None:
    """ORT's ``MatMulNBitsQuantizer``. Its ``nodes_to_include`` *adds* nodes to the op types rather than
    restricting to them, so "only these nodes" (sensitivity) is written as excluding every other
    candidate. For Gather it raises the opset to 21 and the IR version to 10 (int4 tensors)."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    model = onnx.load(str(in_path))
    if only is not None:
        exclude = sorted(set(exclude) | (set(candidate_nodes(model, method)) - set(only)))
    config = DefaultWeightOnlyQuantConfig(
        block_size=method.block_size,
        is_symmetric=method.is_symmetric,
        accuracy_level=method.accuracy_level,
        quant_format=QuantFormat.QOperator,
        op_types_to_quantize=tuple(method.op_types_to_quantize),
        bits=method.bits,
    )
    chatty = logging.getLogger(MatMulNBitsQuantizer.__module__)  # logs every node at INFO
    level = chatty.level
    chatty.setLevel(logging.ERROR)
    try:
        # all-zero blocks (e.g. pruned rows): ORT divides by their 0 scale, then masks the result
        with np.errstate(divide="ignore", invalid="ignore"):
            quantizer = MatMulNBitsQuantizer(model, nodes_to_exclude=list(exclude), algo_config=config)
            quantizer.process()
        quantizer.model.save_model_to_file(str(out_path), use_external_data_format=False)
    finally:
        chatty.setLevel(level)


def _quantize_static(in_path: Path, out_path: Path, method: Int8Static, exclude: list, only: list | None) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    calib = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[method.method]
    prepared = _prepared(in_path, method)
    # Calibration runs once per (graph, open method); later calls (sensitivity, fallback) reuse the ranges.
    cache, _ = method._workspace.path("calib:" + str(in_path), "ranges.json")
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
        nodes_to_quantize=only,
        calibrate_method=calib,
        extra_options=extra,
        calibration_cache_path=cache,
    )


def _prepared(in_path: Path, method: Int8Static) -> str:
    """Type/shape-annotate the graph once per open method for static quantization.

    The calibrator and the QDQ quantizer only touch tensors whose type is known. ONNX's own shape
    inference stops at ORT's fused contrib ops (Attention, SkipLayerNormalization...), and
    ``quant_pre_process`` fails on BERT graphs unless symbolic inference is skipped (FACTS.md), which
    leaves every tensor after the first fused op untyped and unquantized. ORT's symbolic shape
    inference with ``auto_merge`` does type the fused graph.
    """
    out, done = method._workspace.path("pre:" + str(in_path), "typed.onnx")
    if done:
        return out
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    try:
        typed = SymbolicShapeInference.infer_shapes(onnx.load(str(in_path)), auto_merge=True, guess_output_rank=True)
    except Exception as e:  # noqa: BLE001
        raise CompressError(
            f"shape inference on {in_path} failed before static quantization "
            f"({type(e).__name__}: {str(e)[:200]}); use dynamic INT8"
        ) from e
    onnx.save(typed, out)
    return out


def sensitivity(
    in_path: str | os.PathLike,
    method: QuantMethod,
    candidates: Sequence[str],
    logits_of: Callable[[str], np.ndarray],
    reference: np.ndarray,
    workdir: str | os.PathLike,
    progress: Callable[[str], None] | None = None,
) -> list[tuple[str, float]]:
    """Damage each candidate node does when it alone is quantized: mean squared logit error against
    ``reference`` (the fp32 graph's logits on the same sample). Returns ``[(node, error)]``, worst first.

    ``logits_of(path)`` runs an ONNX file on the sample and returns its logits.
    """
    out = []
    tmp = Path(workdir) / "sensitivity.onnx"
    with method:  # a static method calibrates once for all candidates
        for i, node in enumerate(candidates):
            quantize(in_path, tmp, method, nodes_to_quantize=[node])
            err = float(np.mean((logits_of(str(tmp)) - reference) ** 2))
            out.append((node, err))
            if progress:
                progress(f"sensitivity {i + 1}/{len(candidates)}: {node} mse={err:.3g}")
    tmp.unlink(missing_ok=True)
    return sorted(out, key=lambda kv: -kv[1])
