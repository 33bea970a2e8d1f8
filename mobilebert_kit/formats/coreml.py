"""``coreml``: ``model.mlpackage`` (mlprogram, flexible sequence length, batch 1), int8 weights when
INT8 is requested. Packaged for iOS.

Core ML predicts only on Apple platforms: elsewhere verify validates the spec (inputs, outputs,
shape ranges, weight dtypes) and package takes its golden logits from the sibling ONNX export.
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
INT8_INFO = {
    "mode": "weights",
    "method": "coremltools linear_quantize_weights",
    "dtype": "int8",
    "granularity": "per_channel",
}


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

    def export(self, src: Source, folder: Path, build: Build) -> dict:
        config = build.config
        try:
            with (
                warnings.catch_warnings(),
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                warnings.simplefilter("ignore")
                mlmodel = _convert(src, config.coreml_precision, config.coreml_target)
                if src.int8:
                    mlmodel = _int8_weights(mlmodel)
                mlmodel.short_description = f"mobilebert_kit text classifier ({', '.join(src.label_names)})"
                mlmodel.save(str(folder / self.model_file))
        except Exception as e:  # noqa: BLE001
            raise ExportError(f"CoreML export of {src.path} failed ({type(e).__name__}: {first_line(e)})") from e
        return {
            "compute_precision": config.coreml_precision,
            "minimum_deployment_target": config.coreml_target,
            "quantization": dict(INT8_INFO) if src.int8 else None,
            "batch": 1,
            "sequence_range": [1, src.max_length],
        }

    def load(self, path: Path, meta: dict) -> Runner:
        return CoreMLRunner(path, list(meta.get("input_names") or []))

    def verify_action(self) -> str:
        return "running the test split" if sys.platform == "darwin" else "checking the spec"

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
        parity.entry["coreml_spec"] = {k: info[k] for k in ("model_type", "specification_version", "inputs", "outputs")}
        checks = spec_checks(info, meta, parity.row)
        if sys.platform != "darwin":
            detail = "needs macOS (Core ML runs only on Apple platforms); spec validated instead"
            parity.entry["numeric_parity"] = "skipped: needs macOS"
            return [*checks, parity.row("CoreML numeric parity", None, detail=detail)]
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
        fixed_length = ids["shape"][1] if "ranges" not in ids and len(ids["shape"]) > 1 else None
        # Core ML's own numerics cannot be measured here (Linux): every golden vector keeps at least 1e-3.
        facts = {
            "coreml_spec": spec,
            "golden_logits_from": golden_from,
            "fixed_length": fixed_length,
            "golden_atol_floor": 1e-3,
        }
        num_outputs = int(out_shape[-1]) if out_shape else None
        return BundleFacts(runtime, input_names, num_outputs, embedding_rows, fixed_length, facts)


FORMAT = CoreML()


def _convert(src: Source, precision: str, target: str):
    import torch

    ct = import_coremltools()
    with torch.no_grad():
        traced = torch.jit.trace(traceable(src), example_inputs(src), check_trace=False)
    seq = ct.RangeDim(lower_bound=1, upper_bound=src.max_length, default=min(64, src.max_length))
    inputs = [ct.TensorType(name=n, shape=(1, seq), dtype=np.int32) for n in FORMAT.io_spec(src)["input_names"]]
    return ct.convert(
        traced,
        inputs=inputs,
        outputs=[ct.TensorType(name="logits")],
        convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16,
        minimum_deployment_target=getattr(ct.target, target),
        skip_model_load=sys.platform != "darwin",
    )


def _int8_weights(mlmodel):
    from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

    op_cfg = OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel")
    return linear_quantize_weights(mlmodel, config=OptimizationConfig(global_config=op_cfg))


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
        rows = _embedding_rows(spec)
        if rows:
            summary["embedding_rows"] = rows
    return summary


def _shape_of(feature) -> dict:
    t = feature.type.multiArrayType
    info: dict[str, Any] = {"shape": list(t.shape)}
    if t.HasField("shapeRange"):
        info["ranges"] = [[r.lowerBound, r.upperBound] for r in t.shapeRange.sizeRanges]
    return info


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
    """The spec against ``model_meta.json``: mlprogram, inputs/outputs, int32, flexible length, weights."""
    want_inputs = list(meta.get("input_names") or [])
    outputs = list(info["outputs"])
    bad_dtype = [n for n, i in info["inputs"].items() if i["dtype"] != "INT32"]
    max_len = meta.get("max_length")
    ranges = {n: i.get("ranges") or [] for n, i in info["inputs"].items()}
    flexible = all(r and r[-1][0] <= 1 and r[-1][1] == max_len for r in ranges.values())
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
        row("CoreML flexible sequence length 1..max_length", flexible, ranges, max_len),
    ]
    quant_ops = sum(v for k, v in info["ops"].items() if k.startswith("constexpr_"))
    if not meta.get("int8"):
        return [*checks, row("CoreML fp weights", quant_ops == 0, quant_ops, 0)]
    missing = "" if quant_ops else "no int8 weight ops found although model_meta.json says int8"
    return [*checks, row("CoreML int8 weights", quant_ops > 0, quant_ops, "> 0 constexpr dequantize ops", missing)]


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
