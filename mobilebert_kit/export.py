"""Export stage: a classifier folder -> self-contained runtime folders under ``artifacts/export/<format>/``.

Formats:

* ``onnx`` — fp32 graph with dynamic batch/sequence axes and ORT transformer fusion (fused
  ``Attention`` is checked), or INT8 when the source's ``compression.json`` asks for it. When
  compression already produced an ONNX graph (``compression.json["onnx_model"]``) that graph is
  *the* export: it was fused, quantized and accuracy-checked there, so it is copied as is.
* ``ort`` — the same graph converted to the ORT format for ONNX Runtime Mobile, plus
  ``model.required_operators.config`` for a reduced (minimal) build.
* ``torchscript`` — traced and frozen ``model.pt`` plus ``model.ptl`` for PyTorch Mobile's lite
  interpreter; ``torch.ao`` dynamic INT8 linear layers when INT8 is requested.
* ``coreml`` — ``model.mlpackage`` (mlprogram, flexible sequence length, batch 1), int8 weights
  when INT8 is requested.
* ``executorch`` (optional extra, not part of ``all``) — ``model.pte`` lowered to XNNPACK, batch 1,
  sequence 2..max_length, fp32.

Every folder holds the model file, tokenizer files, ``labels.json`` and ``model_meta.json``
(inputs, dtypes, dynamic axes, max length, normalisation settings, labels, sha256 of every file).
All requested formats are built in a hidden temp folder first and moved into place only when
every one succeeded, so a failure never leaves a half-written export.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from mobilebert_kit.artifacts import (
    LABELS,
    MANIFEST,
    check_output_dir,
    file_hashes,
    folder_size,
    library_versions,
    read_json,
    sha256_tree,
    write_json,
    write_labels,
    write_manifest,
)
from mobilebert_kit.config import StageConfig, check_range, did_you_mean
from mobilebert_kit.errors import ConfigError, ExportError, ModelError
from mobilebert_kit.stage import RunContext, StageResult

FORMATS = ("onnx", "ort", "torchscript", "coreml")  # what `all` means
OPTIONAL_FORMATS = ("executorch",)  # needs the optional extra: pip install 'mobilebert_kit[executorch]'
KNOWN_FORMATS = FORMATS + OPTIONAL_FORMATS
MODEL_FILES = {
    "onnx": "model.onnx",
    "ort": "model.ort",
    "torchscript": "model.pt",
    "coreml": "model.mlpackage",
    "executorch": "model.pte",
}
META = "model_meta.json"
COMPRESSION = "compression.json"
DEFAULT_MAX_LENGTH = 128


@dataclass
class ExportConfig(StageConfig):
    """What to export and how."""

    model: str = "artifacts/compressed"  # any classifier folder (compress/distill/finetune output)
    output: str = "artifacts/export"
    formats: list[str] = field(default_factory=lambda: ["all"])
    opset: int = 17
    max_length: int | None = None  # default: what the model was trained with (lineage), else 128
    int8: bool | None = None  # default: what compression.json asks for (fp32 without it)
    coreml_precision: str = "fp32"  # fp32 | fp16 compute precision of the mlprogram
    coreml_target: str = "iOS16"

    def validate(self) -> list[str]:
        p: list[str] = []
        for f in self.formats:
            if f not in (*KNOWN_FORMATS, "all"):
                p.append(
                    f"unknown export format '{f}'{did_you_mean(f, KNOWN_FORMATS)}; "
                    f"known formats: {', '.join(KNOWN_FORMATS)}, all"
                )
        if not self.formats:
            p.append(f"no export format given; known formats: {', '.join(KNOWN_FORMATS)}, all")
        check_range(p, "opset", self.opset, 14, 21)
        check_range(p, "max_length", self.max_length, 2, 8192)
        if self.coreml_precision not in ("fp32", "fp16"):
            p.append(f"coreml_precision must be fp32 or fp16; got '{self.coreml_precision}'")
        if self.coreml_target not in ("iOS15", "iOS16", "iOS17", "iOS18"):
            p.append(f"coreml_target must be one of iOS15, iOS16, iOS17, iOS18; got '{self.coreml_target}'")
        return p

    @property
    def resolved_formats(self) -> list[str]:
        every = "all" in self.formats
        return [f for f in KNOWN_FORMATS if f in self.formats or (every and f in FORMATS)]  # canonical order


@dataclass
class Source:
    """Everything about the model being exported that every format needs."""

    path: Path
    model: object
    tokenizer: object
    label_names: list[str]
    max_length: int
    int8: bool
    compression: dict
    sha256: str


def run(config: ExportConfig, ctx: RunContext | None = None) -> StageResult:
    """Export ``config.model`` to every requested format; the result lists each format's folder."""
    ctx = ctx or RunContext()
    log = ctx.log
    formats = config.resolved_formats
    out = Path(config.output)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output path {out} exists and is not a folder; choose another --output")
    for fmt in formats:  # refuse before any work
        check_output_dir(out / fmt, ctx.overwrite)
    if "coreml" in formats:
        _require_coremltools()
    if "executorch" in formats:
        _require_executorch()
    src = _load_source(Path(config.model), config)
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".export.tmp-", dir=out))
    results: dict[str, dict] = {}
    try:
        onnx_file: Path | None = None
        for fmt in formats:
            t0 = time.perf_counter()
            folder = stage / fmt
            folder.mkdir()
            log(f"exporting {fmt} ...")
            if fmt == "onnx" or (fmt == "ort" and onnx_file is None):
                onnx_file, extra = _build_onnx(src, stage / "_onnx", config)
                if fmt == "onnx":
                    shutil.copy2(onnx_file, folder / MODEL_FILES["onnx"])
            if fmt == "ort":
                extra = _build_ort(onnx_file, folder)
            elif fmt == "torchscript":
                extra = _build_torchscript(src, folder)
            elif fmt == "coreml":
                extra = _build_coreml(src, folder, config)
            elif fmt == "executorch":
                extra = _build_executorch(src, folder)
            extra["export_seconds"] = round(time.perf_counter() - t0, 2)
            results[fmt] = _finish_folder(fmt, folder, src, config, extra)
        shutil.rmtree(stage / "_onnx", ignore_errors=True)
        # All formats built: move each into place (replacing old ones only now).
        for fmt in formats:
            target = out / fmt
            if target.exists():
                old = out / f".{fmt}.old-{os.getpid()}"
                os.replace(target, old)
                os.replace(stage / fmt, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(stage / fmt, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    _forget_verification(out, formats)
    summary = {
        fmt: {"size_bytes": r["size_bytes"], "model_file": r["model_file"], "int8": r["int8"]}
        for fmt, r in results.items()
    }
    present = sorted(p.name for p in out.iterdir() if p.is_dir() and (p / META).exists())
    _write_export_manifest(out, config, src, summary, present)
    return _result(out, results)


def _result(out: Path, results: dict[str, dict]) -> StageResult:
    formats = {
        fmt: {
            "folder": str(out / fmt),
            "model_file": r["model_file"],
            "size_bytes": r["size_bytes"],
            "int8": r["int8"],
            "fused_ops": r.get("fused_ops"),
        }
        for fmt, r in results.items()
    }
    lines = [f"Exported {len(formats)} format(s) to {out}:"]
    for fmt, r in formats.items():
        precision = "int8" if r["int8"] else "fp32"
        lines.append(f"  {fmt:<12} {r['size_bytes'] / 1e6:8.2f} MB  {precision}  {r['folder']}/{r['model_file']}")
    lines.append(f"Next: mbk verify --export-dir {out}")
    return StageResult(out, {"formats": formats}, lines)


def _forget_verification(out: Path, formats: list[str]) -> None:
    """Drop verify.json entries of re-exported formats: an old verification no longer describes them."""
    path = out / "verify.json"
    if not path.exists():
        return
    try:
        report = read_json(path)
        kept = {k: v for k, v in (report.get("formats") or {}).items() if k not in formats}
    except Exception:  # noqa: BLE001 - an unreadable report is simply discarded
        kept = {}
    if not kept:
        path.unlink()
        return
    report["formats"] = kept
    report["passed"] = all(v.get("passed") is True for v in kept.values())
    write_json(path, report)


# --------------------------------------------------------------------------- source


def _require_coremltools():
    """Import coremltools quietly (its import prints version warnings on Linux) or fail with an install hint."""
    import logging

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            logging.getLogger("coremltools").setLevel(logging.ERROR)
            import coremltools
        return coremltools
    except ImportError as e:
        raise ExportError(
            "CoreML export needs coremltools; install it with: pip install coremltools==9.0 (or drop --format coreml)"
        ) from e


def _load_source(path: Path, config: ExportConfig) -> Source:
    from mobilebert_kit.data import lineage
    from mobilebert_kit.models import load_classifier_folder

    if not path.is_dir():
        raise ModelError(f"model folder {path} does not exist; run `mbk compress` first or pass --model PATH")
    model, tokenizer, labels = load_classifier_folder(path)
    compression = read_json(path / COMPRESSION) if (path / COMPRESSION).exists() else {}
    int8 = bool(compression.get("int8")) if config.int8 is None else config.int8
    max_length = config.max_length or lineage(path).get("max_length") or DEFAULT_MAX_LENGTH
    max_length = min(int(max_length), int(getattr(model.config, "max_position_embeddings", max_length)))
    return Source(path, model, tokenizer, labels, max_length, int8, compression, sha256_tree(path))


# --------------------------------------------------------------------------- formats


def _build_onnx(src: Source, work: Path, config: ExportConfig) -> tuple[Path, dict]:
    from mobilebert_kit import onnx_tools as ot

    work.mkdir(exist_ok=True)
    cfg = src.model.config
    given = src.compression.get("onnx_model")
    if given and (config.int8 is None or config.int8 == bool(src.compression.get("int8"))):
        given_path = src.path / given
        if not given_path.is_file():
            raise ExportError(
                f"{src.path / COMPRESSION} names onnx_model '{given}' but {given_path} is missing; "
                "re-run `mbk compress`"
            )
        final = work / "model.onnx"
        shutil.copy2(given_path, final)
        counts = ot.op_counts(final)
        return final, {
            "onnx_source": f"compression ({given})",
            "fused_ops": _fused(counts),
            "opset": _opset(final),
            "quantization": _quant_info(src.compression) if src.int8 else None,
        }
    fp32 = ot.export_onnx(src.path, work / "fp32.onnx", opset=config.opset)
    fusable = getattr(cfg, "model_type", "") in ot.FUSABLE_MODEL_TYPES
    pruned = bool(getattr(cfg, "pruned_heads", None))  # per-layer head counts differ: let the optimizer read them
    fused = ot.optimize_onnx(
        fp32,
        work / "fused.onnx",
        num_heads=0 if pruned else cfg.num_attention_heads,
        hidden_size=0 if pruned else cfg.hidden_size,
        require_attention=fusable,
    )
    final = work / "model.onnx"
    quant = None
    if src.int8:
        comp = src.compression
        quant = {
            "mode": "dynamic",
            "per_channel": bool(comp.get("per_channel", False)),
            "weight_type": comp.get("weight_type", "qint8"),
            "nodes_excluded": list(comp.get("nodes_excluded") or []),
        }
        ot.quantize_onnx_dynamic(
            work / "fused.onnx",
            final,
            per_channel=quant["per_channel"],
            weight_type=quant["weight_type"],
            nodes_to_exclude=quant["nodes_excluded"],
        )
    else:
        os.replace(work / "fused.onnx", final)
    return final, {
        "onnx_source": "mbk export (torch.onnx.export + ORT transformer fusion)",
        "fused_ops": fused,
        "fused_ops_after_quantization": _fused(ot.op_counts(final)) if src.int8 else None,
        "opset": config.opset,
        "quantization": quant,
    }


def _fused(counts: dict[str, int]) -> dict[str, int]:
    from mobilebert_kit.onnx_tools import FUSED_OPS

    return {k: v for k, v in counts.items() if k in FUSED_OPS}


def _opset(path: Path) -> int | None:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)


def _quant_info(comp: dict) -> dict:
    return {k: comp.get(k) for k in ("int8_mode", "per_channel", "weight_type", "nodes_excluded")}


def _build_ort(onnx_file: Path, folder: Path) -> dict:
    import logging

    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix=".ort-", dir=folder.parent))
    try:
        shutil.copy2(onnx_file, work / "model.onnx")
        with contextlib.redirect_stdout(io.StringIO()) as captured:
            try:
                convert_onnx_models_to_ort(
                    work / "model.onnx",
                    output_dir=work / "out",
                    optimization_styles=[OptimizationStyle.Fixed],
                    target_platform="arm",
                )
            except Exception as e:  # noqa: BLE001
                raise ExportError(
                    f"ORT format conversion failed ({type(e).__name__}: {str(e)[:200]}); "
                    f"converter output: {captured.getvalue()[-300:]}"
                ) from e
        produced = work / "out" / "model.ort"
        config_file = work / "out" / "model.required_operators.config"
        if not produced.exists():
            raise ExportError(
                f"ORT format conversion wrote no model.ort; converter output: {captured.getvalue()[-300:]}"
            )
        shutil.move(str(produced), folder / "model.ort")
        if config_file.exists():
            shutil.move(str(config_file), folder / "required_operators.config")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    import onnxruntime as ort

    return {
        "operator_config": "required_operators.config",
        "ort_format_version_writer": f"onnxruntime {ort.__version__}",
        "optimization_style": "Fixed",
        "target_platform": "arm",
        "note": "build a reduced runtime with --include_ops_by_config required_operators.config; "
        "the app's onnxruntime-mobile must read ORT format v6 (>= 1.19)",
    }


def _traceable(src: Source):
    """The source model in eager attention, returning a plain tuple (traceable)."""
    import copy

    model = copy.deepcopy(src.model).eval()
    model.config.return_dict = False
    model.config.torchscript = True
    with contextlib.suppress(Exception):
        model.config._attn_implementation = "eager"
        model.set_attn_implementation("eager")
    return model


def _example_inputs(src: Source, seq: int = 16):
    enc = src.tokenizer(
        ["an example sentence for tracing the model"],
        padding="max_length",
        truncation=True,
        max_length=seq,
        return_tensors="pt",
    )
    import torch

    tt = enc.get("token_type_ids", torch.zeros_like(enc["input_ids"]))
    return enc["input_ids"], enc["attention_mask"], tt


class _Wrapper:  # built lazily so torch is imported only when needed
    @staticmethod
    def make(model):
        import torch

        class LogitsOnly(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]

        return LogitsOnly(model).eval()


def _build_torchscript(src: Source, folder: Path) -> dict:
    import torch

    model = _traceable(src)
    quant = None
    if src.int8:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao quantization is deprecated but the only TorchScript int8 path
            # Per-channel weight scales: on a 3-layer MiniLM student they kept 96.6% label agreement and
            # -0.4 pt accuracy vs 96.3% / -0.6 pt per-tensor (benchmarks/work, rotten_tomatoes test split).
            qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear: qconfig}, dtype=torch.qint8)
        quant = {
            "mode": "dynamic",
            "method": "torch.ao.quantization.quantize_dynamic",
            "modules": ["Linear"],
            "per_channel": True,
            "note": "embeddings stay fp32 (quantize_dynamic covers Linear layers only)",
        }
    wrapped = _Wrapper.make(model)
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(wrapped, _example_inputs(src), check_trace=False)
            frozen = torch.jit.freeze(traced.eval())
            frozen.save(str(folder / "model.pt"))
            frozen._save_for_lite_interpreter(str(folder / "model.ptl"))
    except Exception as e:  # noqa: BLE001
        raise ExportError(
            f"TorchScript export of {src.path} failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from e
    return {
        "lite_interpreter_file": "model.ptl",
        "traced": True,
        "frozen": True,
        "quantization": quant,
        "note": "optimize_for_mobile is skipped: this torch build has no XNNPACK rewrite (FACTS.md)",
    }


def _build_coreml(src: Source, folder: Path, config: ExportConfig) -> dict:
    import numpy as np
    import torch

    ct = _require_coremltools()

    model = _traceable(src)
    wrapped = _Wrapper.make(model)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapped, _example_inputs(src), check_trace=False)
    seq = ct.RangeDim(lower_bound=1, upper_bound=src.max_length, default=min(64, src.max_length))
    inputs = [
        ct.TensorType(name=n, shape=(1, seq), dtype=np.int32) for n in ("input_ids", "attention_mask", "token_type_ids")
    ]
    precision = ct.precision.FLOAT32 if config.coreml_precision == "fp32" else ct.precision.FLOAT16
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            mlmodel = ct.convert(
                traced,
                inputs=inputs,
                outputs=[ct.TensorType(name="logits")],
                convert_to="mlprogram",
                compute_precision=precision,
                minimum_deployment_target=getattr(ct.target, config.coreml_target),
                skip_model_load=sys.platform != "darwin",
            )
            quant = None
            if src.int8:
                from coremltools.optimize.coreml import (
                    OpLinearQuantizerConfig,
                    OptimizationConfig,
                    linear_quantize_weights,
                )

                op_cfg = OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel")
                mlmodel = linear_quantize_weights(mlmodel, config=OptimizationConfig(global_config=op_cfg))
                quant = {
                    "mode": "weights",
                    "method": "coremltools linear_quantize_weights",
                    "dtype": "int8",
                    "granularity": "per_channel",
                }
            mlmodel.short_description = f"mobilebert_kit text classifier ({', '.join(src.label_names)})"
            mlmodel.save(str(folder / "model.mlpackage"))
    except Exception as e:  # noqa: BLE001
        raise ExportError(
            f"CoreML export of {src.path} failed ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})"
        ) from e
    return {
        "compute_precision": config.coreml_precision,
        "minimum_deployment_target": config.coreml_target,
        "quantization": quant,
        "batch": 1,
        "sequence_range": [1, src.max_length],
    }


def _require_executorch():
    try:
        with (
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            import executorch.exir as exir
        return exir
    except ImportError as e:
        raise ExportError(
            "ExecuTorch export needs the optional extra: pip install 'mobilebert_kit[executorch]' "
            f"(executorch==1.5.1); or drop --format executorch ({e})"
        ) from e


def _build_executorch(src: Source, folder: Path) -> dict:
    """``model.pte`` lowered to the XNNPACK backend; batch 1, sequence length 2..max_length."""
    import torch

    exir = _require_executorch()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    wrapped = _Wrapper.make(_traceable(src))
    seq = torch.export.Dim("sequence", min=2, max=src.max_length)
    try:
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.export.export(wrapped, _example_inputs(src), dynamic_shapes=({1: seq}, {1: seq}, {1: seq}))
            lowered = exir.to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
        (folder / "model.pte").write_bytes(lowered.buffer)
    except Exception as e:  # noqa: BLE001
        raise ExportError(
            f"ExecuTorch export of {src.path} failed ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})"
        ) from e
    note = "fp32 weights; INT8 for ExecuTorch (XNNPACK PT2E quantization) is not implemented" if src.int8 else ""
    return {
        "backend": "XNNPACK",
        "batch": 1,
        "sequence_range": [2, src.max_length],
        "int8_applied": False,
        "note": note,
    }


# --------------------------------------------------------------------------- metadata


def tokenizer_settings(tokenizer) -> dict:
    """Lower-casing / accent stripping as the fast tokenizer actually applies them."""
    import json

    do_lower = bool(getattr(tokenizer, "do_lower_case", False))
    strip = tokenizer.init_kwargs.get("strip_accents")
    with contextlib.suppress(Exception):
        norm = json.loads(tokenizer.backend_tokenizer.to_str()).get("normalizer") or {}
        if norm.get("type") == "BertNormalizer":
            do_lower = bool(norm.get("lowercase"))
            strip = norm.get("strip_accents")
    if strip is None:  # HF: accents are stripped whenever lower-casing is on
        strip = do_lower
    return {"do_lower_case": do_lower, "strip_accents": bool(strip)}


def _io_spec(fmt: str, src: Source) -> dict:
    names = ["input_ids", "attention_mask", "token_type_ids"]
    if fmt in ("onnx", "ort"):
        return {
            "input_names": names,
            "output_names": ["logits"],
            "dtypes": {**dict.fromkeys(names, "int64"), "logits": "float32"},
            "dynamic_axes": {**{n: {"0": "batch", "1": "sequence"} for n in names}, "logits": {"0": "batch"}},
        }
    if fmt == "torchscript":
        return {
            "input_names": names,
            "output_names": ["logits"],
            "dtypes": {**dict.fromkeys(names, "int64"), "logits": "float32"},
            "dynamic_axes": {**{n: {"0": "batch", "1": "sequence"} for n in names}, "logits": {"0": "batch"}},
        }
    if fmt == "executorch":
        return {
            "input_names": names,
            "output_names": ["logits"],
            "dtypes": {**dict.fromkeys(names, "int64"), "logits": "float32"},
            "dynamic_axes": {n: {"1": "sequence"} for n in names},
        }
    return {
        "input_names": names,
        "output_names": ["logits"],
        "dtypes": {**dict.fromkeys(names, "int32"), "logits": "float32"},
        "dynamic_axes": {n: {"1": "sequence"} for n in names},
    }


def _finish_folder(fmt: str, folder: Path, src: Source, config: ExportConfig, extra: dict) -> dict:
    src.tokenizer.save_pretrained(str(folder))
    write_labels(folder, src.label_names)
    cfg = src.model.config
    meta = {
        "format": fmt,
        "model_file": MODEL_FILES[fmt],
        **_io_spec(fmt, src),
        "max_length": src.max_length,
        **tokenizer_settings(src.tokenizer),
        "labels": src.label_names,
        "num_labels": len(src.label_names),
        "vocab_size": int(cfg.vocab_size),
        "pad_token_id": src.tokenizer.pad_token_id,
        "int8": src.int8 and fmt != "executorch",
        "model_type": getattr(cfg, "model_type", None),
        "hidden_size": cfg.hidden_size,
        "num_layers": cfg.num_hidden_layers,
        "num_heads": cfg.num_attention_heads,
        "source_model": {"path": str(src.path.resolve()), "sha256": src.sha256},
        **extra,
        "versions": library_versions(),
    }
    meta["files"] = file_hashes(folder, exclude=(META,))
    meta["size_bytes"] = folder_size(folder / MODEL_FILES[fmt])
    write_json(folder / META, meta)
    return meta


def _write_export_manifest(out: Path, config: ExportConfig, src: Source, summary: dict, present: list[str]) -> None:
    from mobilebert_kit.data import lineage

    lin = lineage(src.path)
    previous = read_json(out / MANIFEST) if (out / MANIFEST).exists() else {}
    formats = {**(previous.get("formats") or {}), **summary}
    formats = {k: v for k, v in formats.items() if k in present}
    tmp = Path(tempfile.mkdtemp(prefix=".manifest-", dir=out))
    try:
        write_manifest(
            tmp,
            stage="export",
            config=config.to_dict(),
            inputs={"model": {"path": str(src.path.resolve()), "sha256": src.sha256}},
            extra={"formats": formats, "data": lin.get("data"), "max_length": src.max_length},
        )
        m = read_json(tmp / MANIFEST)
        m["files"] = {f"{fmt}/{k}": v for fmt in present for k, v in file_hashes(out / fmt).items()}
        write_json(out / MANIFEST, m)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_meta(folder: str | os.PathLike) -> dict:
    """``model_meta.json`` of one format folder (ArtifactError when missing or invalid)."""
    return read_json(Path(folder) / META)


__all__ = ["ExportConfig", "FORMATS", "META", "LABELS", "run", "read_meta", "tokenizer_settings"]
