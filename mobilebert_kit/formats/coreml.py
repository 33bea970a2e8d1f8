"""``coreml``: ``model.mlpackage`` (mlprogram, batch 1). Packaged for iOS.

Sequence length: one flexible range 1..max_length, or enumerated buckets (``coreml_lengths``) —
the Neural Engine runs only enumerated or default shapes (coremltools#1764), so a flexible model
falls back to CPU/GPU. Weights: float, int8 (``linear_quantize_weights``) when INT8 is requested,
or palettized (``palettize_weights``, k-means or uniform, ``coreml_palettize_bits``).

Core ML predicts only on Apple platforms: elsewhere verify validates the spec (inputs, outputs,
shapes, weight dtypes / palettes in the ML program) and says plainly that numerics were NOT run;
package takes its golden logits from the sibling ONNX export.
"""

from __future__ import annotations

import contextlib
import io
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from mobilebert_kit.artifacts import META, read_json
from mobilebert_kit.errors import ArtifactError, ExportError, PackageError
from mobilebert_kit.formats import Build, BundleFacts, ExportFormat, Runner, Source
from mobilebert_kit.formats.traced import example_inputs, first_line, traceable

GOLDEN_FROM = ("onnx", "ort")  # sibling exports of the same model that run here
WEIGHT_THRESHOLD = 2048  # coremltools' default: weights with fewer elements stay float
INT8_INFO = {
    "mode": "weights",
    "method": "coremltools linear_quantize_weights",
    "dtype": "int8",
    "granularity": "per_channel",
    "weight_threshold": WEIGHT_THRESHOLD,
}
NOT_RUN = "numerics NOT run: Core ML runs only on Apple OSes"


def palette_info(bits: int, algorithm: str) -> dict:
    return {
        "mode": "palettization",
        "method": "coremltools palettize_weights",
        "algorithm": algorithm,
        "nbits": bits,
        "granularity": "per_tensor",
        "weight_threshold": WEIGHT_THRESHOLD,
    }


def weight_plan(src: Source, config) -> dict | None:
    """How the CoreML weights are compressed: palettized when asked (it replaces int8), int8 with INT8, else None."""
    if config.coreml_palettize_bits is not None:
        return palette_info(config.coreml_palettize_bits, config.coreml_palettize_mode)
    return dict(INT8_INFO) if src.int8 else None


def import_coremltools():
    """Import coremltools quietly (its import prints version warnings on Linux) or fail with an install hint."""
    import logging

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            logging.getLogger("coremltools").setLevel(logging.ERROR)
            import coremltools as ct
        return ct
    except ImportError as e:
        raise ExportError(
            "CoreML export needs coremltools; install it with: pip install coremltools==9.0 (or drop --format coreml)"
        ) from e


class CoreMLRunner(Runner):
    """An .mlpackage predicting one text at a time (macOS only)."""

    runtime = "coreml"
    static_batch = 1

    def __init__(self, path: Path, input_names: list[str]):
        self.model = import_coremltools().models.MLModel(str(path))
        self.input_names = input_names

    def logits(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        feed = {n: np.asarray(feeds[n], dtype=np.int32) for n in self.input_names}
        return np.asarray(self.model.predict(feed)["logits"]).reshape(1, -1)


class CoreML(ExportFormat):
    name = "coreml"
    model_file = "model.mlpackage"
    package_target = "ios"
    demo_app = "ios_demo"
    app_bundle_dir = "MBKDemo/bundle"
    app_marker = "MBKDemo/ContentView.swift"
    input_dtype = "int32"
    dynamic_batch = False

    def check_dependencies(self) -> None:
        import_coremltools()

    def check_request(self, src: Source, config) -> list[str]:
        """Enumerated lengths must fit the model; k-means palettization needs scikit-learn."""
        problems = length_problems(list(config.coreml_lengths), src)
        if config.coreml_palettize_bits is not None and config.coreml_palettize_mode == "kmeans":
            import importlib.util

            if importlib.util.find_spec("sklearn") is None:
                problems.append(
                    "k-means palettization (coreml_palettize_mode kmeans) needs scikit-learn: pip install "
                    "scikit-learn; or use --coreml-palettize-mode uniform"
                )
        return problems

    def export(self, src: Source, folder: Path, build: Build) -> dict:
        config = build.config
        lengths, target, weights = list(config.coreml_lengths), config.resolved_coreml_target, weight_plan(src, config)
        try:
            with (
                warnings.catch_warnings(),
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                warnings.simplefilter("ignore")
                mlmodel = _compress_weights(_convert(src, config.coreml_precision, target, lengths), weights)
                mlmodel.short_description = f"mobilebert_kit text classifier ({', '.join(src.label_names)})"
                mlmodel.save(str(folder / self.model_file))
        except Exception as e:  # noqa: BLE001
            raise ExportError(f"CoreML export of {src.path} failed ({type(e).__name__}: {first_line(e)})") from e
        shapes = {"sequence_lengths": lengths} if lengths else {"sequence_range": [1, src.max_length]}
        lossy = weights is not None
        return {
            "compute_precision": config.coreml_precision,
            "minimum_deployment_target": target,
            "quantization": weights,
            "int8": lossy and weights["mode"] == "weights",  # palettized weights are not INT8 (overrides applies_int8)
            "weights": _weights_label(weights, config.coreml_precision),
            "lossy_weights": lossy,
            "batch": 1,
            **shapes,
            "neural_engine": "enumerated lengths: each is a shape the Neural Engine may run (Core ML decides per op)"
            if lengths
            else "flexible length: the Neural Engine may run only the default shape; others run on CPU/GPU "
            "(coremltools#1764)",
        }

    def load(self, path: Path, meta: dict) -> Runner:
        return CoreMLRunner(path, list(meta.get("input_names") or []))

    def verify_action(self) -> str:
        return "running the test split" if sys.platform == "darwin" else f"checking the spec ({NOT_RUN})"

    def verify(self, folder: Path, meta: dict, parity) -> list[dict]:
        """The spec everywhere; numeric parity on macOS only."""
        path = folder / meta["model_file"]
        try:
            info = spec_summary(path)
        except ExportError:
            detail = "coremltools is not installed (pip install coremltools==9.0); spec not checked"
            return [parity.row("CoreML spec", None, detail=detail)]
        except ArtifactError as e:
            cause = e.__cause__ or e
            return [parity.row("CoreML spec loads", False, detail=f"{type(cause).__name__}: {str(cause)[:200]}")]
        keys = ("model_type", "specification_version", "inputs", "outputs", "weights")
        parity.entry["coreml_spec"] = {k: info[k] for k in keys if k in info}
        parity.entry["weights"] = meta.get("weights")
        checks = spec_checks(info, meta, parity.row)
        if sys.platform != "darwin":
            parity.entry["numeric_parity"] = "NOT run: Core ML runs only on Apple OSes"
            parity.entry["summary"] = f"spec checked; {NOT_RUN}"
            detail = f"{NOT_RUN}; the spec was validated instead"
            return [*checks, parity.row("CoreML numeric parity", None, detail=detail)]
        parity.entry["summary"] = "spec checked; numerics run on Core ML"
        return checks + parity.compare("logits", parity.logits(self.load(path, meta)))

    def bundle_facts(self, model: Path, export_dir: Path, vocab: list[str], special_ids: dict, pad_id: int):
        spec = spec_summary(model)
        spec.pop("ops")
        input_names = list(spec["inputs"])
        out_shape = next(iter(spec["outputs"].values()))["shape"] if spec["outputs"] else []
        embedding_rows = spec.get("embedding_rows", len(vocab))
        if embedding_rows != len(vocab):
            raise PackageError(
                f"vocab.txt has {len(vocab)} tokens but the model's word embedding has {embedding_rows} rows; "
                "the vocab does not belong to this model. Re-export with the model's own tokenizer"
            )
        runtime, golden_from = _golden_runtime(export_dir)
        if "input_ids" not in input_names:
            raise PackageError(
                f"{model} has no 'input_ids' input (inputs: {', '.join(input_names)}); "
                "it is not a BERT classifier export"
            )
        ids = spec["inputs"]["input_ids"]
        # Enumerated lengths: the default shape is the largest bucket, so an app padding to it is always
        # valid; "sequence_lengths" lets one pick the smallest bucket that fits instead.
        fixed_length = ids["shape"][1] if "ranges" not in ids and len(ids["shape"]) > 1 else None
        # Core ML's own numerics cannot be measured here (Linux): every golden vector keeps at least 1e-3.
        facts = {
            "coreml_spec": spec,
            "golden_logits_from": golden_from,
            "fixed_length": fixed_length,
            "golden_atol_floor": 1e-3,
        }
        if ids.get("enumerated"):
            facts["sequence_lengths"] = [shape[-1] for shape in ids["enumerated"]]
        num_outputs = int(out_shape[-1]) if out_shape else None
        return BundleFacts(runtime, input_names, num_outputs, embedding_rows, fixed_length, facts)


FORMAT = CoreML()


def length_problems(lengths: list[int], src: Source) -> list[str]:
    """Enumerated lengths against the model: none past its position embeddings or max_length, and the
    largest is max_length (a text truncated to max_length must fit a bucket)."""
    if not lengths:
        return []
    positions = int(getattr(src.model.config, "max_position_embeddings", src.max_length))
    over_positions = [n for n in lengths if n > positions]
    if over_positions:
        return [
            f"coreml_lengths {', '.join(map(str, over_positions))} exceed the model's max_position_embeddings "
            f"({positions}); the model cannot read texts that long"
        ]
    over_max = [n for n in lengths if n > src.max_length]
    if over_max:
        return [
            f"coreml_lengths {', '.join(map(str, over_max))} exceed the export's max_length ({src.max_length}); "
            f"drop them or pass --max-length {lengths[-1]}"
        ]
    if lengths[-1] != src.max_length:
        return [
            f"the largest coreml_lengths bucket ({lengths[-1]}) must equal the export's max_length ({src.max_length}) "
            f"so every text fits a bucket; add {src.max_length} or pass --max-length {lengths[-1]}"
        ]
    return []


def _convert(src: Source, precision: str, target: str, lengths: list[int]):
    import torch

    ct = import_coremltools()
    with torch.no_grad():
        traced = torch.jit.trace(traceable(src), example_inputs(src), check_trace=False)

    def shape():
        if lengths:  # the largest is the default: an app that ignores the buckets pads to max_length
            return ct.EnumeratedShapes(shapes=[(1, n) for n in lengths], default=(1, lengths[-1]))
        return (1, ct.RangeDim(lower_bound=1, upper_bound=src.max_length, default=min(64, src.max_length)))

    inputs = [ct.TensorType(name=n, shape=shape(), dtype=np.int32) for n in FORMAT.io_spec(src)["input_names"]]
    return ct.convert(
        traced,
        inputs=inputs,
        outputs=[ct.TensorType(name="logits")],
        convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16,
        minimum_deployment_target=getattr(ct.target, target),
        skip_model_load=sys.platform != "darwin",
    )


def _compress_weights(mlmodel, plan: dict | None):
    """coremltools' own weight compression passes: int8 linear (per channel) or an n-bit palette."""
    from coremltools.optimize.coreml import (
        OpLinearQuantizerConfig,
        OpPalettizerConfig,
        OptimizationConfig,
        linear_quantize_weights,
        palettize_weights,
    )

    if plan is None:
        return mlmodel
    if plan["mode"] == "palettization":
        op_cfg = OpPalettizerConfig(
            mode=plan["algorithm"], nbits=plan["nbits"], granularity="per_tensor", weight_threshold=WEIGHT_THRESHOLD
        )
        return palettize_weights(mlmodel, config=OptimizationConfig(global_config=op_cfg))
    op_cfg = OpLinearQuantizerConfig(
        mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=WEIGHT_THRESHOLD
    )
    return linear_quantize_weights(mlmodel, config=OptimizationConfig(global_config=op_cfg))


def _weights_label(plan: dict | None, precision: str) -> str:
    if plan is None:
        return precision
    if plan["mode"] == "palettization":
        return f"palettized {plan['nbits']}-bit {plan['algorithm']}"
    return "int8"


# --------------------------------------------------------------------------- the spec


def spec_summary(path: Path) -> dict:
    """Inspect an .mlpackage on any OS (no prediction): type, inputs (dtype, shape, ranges), outputs,
    op counts and the embedding rows.

    Raises:
        ExportError: coremltools is not installed.
        ArtifactError: coremltools could not read ``path``.
    """
    ct = import_coremltools()
    try:
        spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    except Exception as e:  # noqa: BLE001
        raise ArtifactError(
            f"coremltools could not read {path} ({type(e).__name__}: {str(e)[:200]}); "
            "re-run `mbk export --format coreml`"
        ) from e
    dtype_name = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name
    inputs = {
        f.name: {"dtype": dtype_name(f.type.multiArrayType.dataType), **_shape_of(f)} for f in spec.description.input
    }
    summary: dict[str, Any] = {
        "specification_version": spec.specificationVersion,
        "model_type": spec.WhichOneof("Type"),
        "inputs": inputs,
        "outputs": {f.name: _shape_of(f) for f in spec.description.output},
        "ops": {},
    }
    if spec.WhichOneof("Type") == "mlProgram":
        summary["ops"] = _op_counts(spec)
        summary["weights"] = _compressed_weights(spec, ct.proto.MIL_pb2.DataType.Name)
        rows = _embedding_rows(spec)
        if rows:
            summary["embedding_rows"] = rows
    return summary


def _shape_of(feature) -> dict:
    t = feature.type.multiArrayType
    info: dict[str, Any] = {"shape": list(t.shape)}
    if t.HasField("shapeRange"):
        info["ranges"] = [[r.lowerBound, r.upperBound] for r in t.shapeRange.sizeRanges]
    if t.WhichOneof("ShapeFlexibility") == "enumeratedShapes":
        info["enumerated"] = sorted(list(e.shape) for e in t.enumeratedShapes.shapes)
    return info


# The constexpr ops coremltools writes for compressed weights (iOS16 / iOS18 opsets) and the
# parameter holding the stored values: int8 data, or the palette (lookup table).
INT8_OPS = {"constexpr_affine_dequantize": "quantized_data", "constexpr_blockwise_shift_scale": "data"}
PALETTE_OP = "constexpr_lut_to_dense"


def _compressed_weights(spec, dtype_name) -> dict:
    """What the ML program stores: dtypes of the dequantized weights, palette sizes of the lut ops."""
    main = spec.mlProgram.functions.get("main")
    ops = main.block_specializations[main.opset].operations if main is not None else []
    consts = {o.outputs[0].name: o.attributes["val"].type.tensorType for o in ops if o.type == "const" and o.outputs}
    int8_dtypes: dict[str, int] = {}
    palettes: dict[int, int] = {}
    for op in ops:
        if op.type in INT8_OPS:
            t = _param_type(op, INT8_OPS[op.type], consts)
            name = dtype_name(t.dataType) if t is not None else "?"
            int8_dtypes[name] = int8_dtypes.get(name, 0) + 1
        elif op.type == PALETTE_OP:
            t = _param_type(op, "lut", consts)
            # iOS16: lut is [2**nbits]; iOS18: [..., 2**nbits, vector size]
            entries = t.dimensions[-1 if len(t.dimensions) == 1 else -2].constant.size if t is not None else 0
            palettes[entries] = palettes.get(entries, 0) + 1
    return {"dequantize_ops": int8_dtypes, "palette_ops": palettes}


def _param_type(op, name: str, consts: dict):
    """The tensor type of an op parameter stored as an attribute (iOS16), inline value or const (iOS18)."""
    if name in op.attributes:
        return op.attributes[name].type.tensorType
    args = op.inputs[name].arguments if name in op.inputs else []
    if not args:
        return None
    if args[0].HasField("value"):
        return args[0].value.type.tensorType
    return consts.get(args[0].name)


def _op_counts(spec) -> dict[str, int]:
    ops: dict[str, int] = {}
    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            for op in block.operations:
                ops[op.type] = ops.get(op.type, 0) + 1
    return ops


def _embedding_rows(spec) -> int | None:
    """The largest 2-D fixed-shape tensor feeding a gather in the ML program. With int8 weights the
    table comes out of a constexpr_* dequantize op rather than a const."""
    main = spec.mlProgram.functions.get("main")
    if main is None:
        return None
    const_shapes: dict[str, list[int]] = {}
    gathers: list[str] = []
    for op in main.block_specializations[main.opset].operations:
        if (op.type == "const" or op.type.startswith("constexpr_")) and op.outputs:
            dims = op.outputs[0].type.tensorType.dimensions
            if all(d.WhichOneof("dimension") == "constant" for d in dims):
                const_shapes[op.outputs[0].name] = [d.constant.size for d in dims]
        elif op.type == "gather":
            gathers.extend(arg.name for arg in op.inputs["x"].arguments)
    rows = [const_shapes[n][0] for n in gathers if n in const_shapes and len(const_shapes[n]) == 2]
    return max(rows) if rows else None


def spec_checks(info: dict, meta: dict, row) -> list[dict]:
    """The spec against ``model_meta.json``: mlprogram, inputs/outputs, int32, sequence lengths, weights."""
    want_inputs = list(meta.get("input_names") or [])
    outputs = list(info["outputs"])
    bad_dtype = [n for n, i in info["inputs"].items() if i["dtype"] != "INT32"]
    checks = [
        row("CoreML is an mlprogram", info["model_type"] == "mlProgram", info["model_type"], "mlProgram"),
        row("CoreML inputs", sorted(info["inputs"]) == sorted(want_inputs), sorted(info["inputs"]), want_inputs),
        row("CoreML outputs", outputs == list(meta.get("output_names") or []), outputs, meta.get("output_names")),
        row(
            "CoreML input dtypes int32",
            not bad_dtype,
            None,
            None,
            f"not INT32: {', '.join(bad_dtype)}" if bad_dtype else "",
        ),
        _length_check(info, meta, row),
    ]
    return [*checks, _weights_check(info.get("weights") or {}, meta, row)]


def _length_check(info: dict, meta: dict, row) -> dict:
    """Enumerated buckets exactly as exported, or one flexible range 1..max_length."""
    lengths = meta.get("sequence_lengths")
    if lengths:
        want = [[1, n] for n in lengths]
        got = {n: i.get("enumerated") for n, i in info["inputs"].items()}
        ok = bool(got) and all(g == want for g in got.values())
        detail = "" if ok else f"spec enumerates {got}, model_meta.json says lengths {lengths}"
        return row("CoreML enumerated sequence lengths in the spec", ok, got, want, detail)
    max_len = meta.get("max_length")
    ranges = {n: i.get("ranges") or [] for n, i in info["inputs"].items()}
    flexible = all(r and r[-1][0] <= 1 and r[-1][1] == max_len for r in ranges.values())
    return row("CoreML flexible sequence length 1..max_length", flexible, ranges, max_len)


def _weights_check(weights: dict, meta: dict, row) -> dict:
    """The weight storage model_meta.json promises, found in the ML program (dtype / palette size)."""
    int8_ops, palettes = weights.get("dequantize_ops") or {}, weights.get("palette_ops") or {}
    plan = meta.get("quantization") or {}
    if plan.get("mode") == "palettization":
        size = 2 ** int(plan["nbits"])
        ok = bool(palettes) and set(palettes) == {size} and not int8_ops
        detail = "" if ok else f"found palettes of sizes {sorted(palettes)} and int8 ops {int8_ops}"
        return row(f"CoreML {plan['nbits']}-bit palettized weights", ok, palettes, f"{size}-entry palettes", detail)
    if meta.get("int8"):
        ok = bool(int8_ops) and set(int8_ops) == {"INT8"} and not palettes
        detail = "" if ok else f"dequantize ops by stored dtype: {int8_ops or 'none'}; palettes: {palettes or 'none'}"
        return row("CoreML int8 weights", ok, int8_ops, "INT8 data in constexpr dequantize ops", detail)
    ok = not int8_ops and not palettes
    return row("CoreML fp weights", ok, {**int8_ops, **{f"palette{k}": v for k, v in palettes.items()}}, "none")


def _golden_runtime(export_dir: Path):
    """CoreML cannot predict on Linux: golden logits come from the sibling ORT/ONNX export of the same model.

    Verify has already proven the CoreML model matches PyTorch within its tolerance, and the ONNX
    export within its own, so these logits are what the iPhone must reproduce (within each vector's atol).
    """
    from mobilebert_kit.formats.ort import BundleRuntime

    for name in GOLDEN_FROM:
        folder = export_dir / name
        if folder.is_dir():
            meta = read_json(folder / META) if (folder / META).exists() else {}
            if meta.get("model_file"):
                path = folder / meta["model_file"]
            else:
                found = sorted(folder.glob(f"*.{name}"))
                path = found[0] if found else None
            if path is None or not path.exists():
                continue
            return BundleRuntime(path), f"{name}/{path.name}"
    raise PackageError(
        f"CoreML cannot run on this machine, so golden logits come from the ONNX export, but {export_dir} "
        "has no onnx/ or ort/ folder; run `mbk export --format onnx,coreml` first"
    )
