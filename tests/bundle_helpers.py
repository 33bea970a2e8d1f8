"""Helpers for the package / Java tokenizer tests: a hand-built export folder following the
contract documented in mobilebert_kit/stages/package.py (tiny BERT -> ONNX -> .ort, model_meta.json,
verify.json). Built once per test process and copied per test that needs to mutate it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from mobilebert_kit.artifacts import file_hashes, sha256_file, write_json

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
_CACHE: dict[str, Path] = {}


def build_ort_export(root: Path, model_dir: Path, max_length: int = 128) -> Path:
    """Write <root>/export/{ort,onnx}/ + verify.json for ``model_dir``; returns <root>/export."""
    key = str(model_dir)
    if key in _CACHE and _CACHE[key].exists():
        return _CACHE[key]
    from mobilebert_kit.graph.onnx_tools import export_onnx

    export = root / "export"
    onnx_dir, ort_dir = export / "onnx", export / "ort"
    onnx_path = export_onnx(model_dir, onnx_dir / "model.onnx")
    ort_dir.mkdir(parents=True)
    conv = root / "conv"
    conv.mkdir()
    shutil.copy2(onnx_path, conv / "model.onnx")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "onnxruntime.tools.convert_onnx_models_to_ort",
            str(conv / "model.onnx"),
            "--output_dir",
            str(conv / "out"),
            "--optimization_style",
            "Fixed",
        ],
        check=True,
        capture_output=True,
    )
    shutil.copy2(next((conv / "out").glob("*.ort")), ort_dir / "model.ort")
    verify = {"passed": True, "formats": {}}
    for fmt, d, model_file in (("onnx", onnx_dir, "model.onnx"), ("ort", ort_dir, "model.ort")):
        for name in (*TOKENIZER_FILES, "labels.json", "config.json"):
            if (model_dir / name).exists():
                shutil.copy2(model_dir / name, d / name)
        write_meta(d, fmt, model_file, max_length)
        verify["formats"][fmt] = {
            "passed": True,
            "max_abs_diff": 1e-6,
            "label_agreement": 1.0,
            "model_sha256": sha256_file(d / model_file),
            "runtimes": runtime_records(),
        }
    write_json(export / "verify.json", verify)
    _CACHE[key] = export
    return export


def runtime_records(*versions: str) -> dict:
    """verify.json's per-runtime records, as `mbk verify --runtime-version` writes them (passed)."""
    from mobilebert_kit.runtimes import ANDROID_ORT_VERSION, host_ort_version, runtime_key

    return {
        runtime_key("onnxruntime", v): {"passed": True, "provenance": {"runtime": "onnxruntime", "version": v}}
        for v in versions or (host_ort_version(), ANDROID_ORT_VERSION)
    }


def write_meta(folder: Path, fmt: str, model_file: str, max_length: int = 128, **extra) -> None:
    import json

    labels = json.loads((folder / "labels.json").read_text())["labels"]
    meta = {
        "format": fmt,
        "model_file": model_file,
        "input_names": ["input_ids", "attention_mask", "token_type_ids"],
        "max_length": max_length,
        "do_lower_case": True,
        "strip_accents": None,
        "labels": labels,
        "files": file_hashes(folder, exclude=("model_meta.json",)),
        **extra,
    }
    write_json(folder / "model_meta.json", meta)


def copy_export(export: Path, dest: Path) -> Path:
    shutil.copytree(export, dest)
    return dest


def build_int8_ort_export(root: Path, model_dir: Path) -> Path:
    """Like :func:`build_ort_export`, with both models dynamically quantized to INT8 (model_meta int8: true)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from mobilebert_kit.formats.ort import convert_to_ort

    export = copy_export(build_ort_export(root / "fp32", model_dir), root / "export")
    onnx_dir, ort_dir = export / "onnx", export / "ort"
    quantize_dynamic(str(onnx_dir / "model.onnx"), str(root / "int8.onnx"), weight_type=QuantType.QInt8)
    shutil.copy2(root / "int8.onnx", onnx_dir / "model.onnx")
    (ort_dir / "model.ort").unlink()
    convert_to_ort(onnx_dir / "model.onnx", ort_dir)
    verify = {"passed": True, "formats": {}}
    for fmt, d, model_file in (("onnx", onnx_dir, "model.onnx"), ("ort", ort_dir, "model.ort")):
        write_meta(d, fmt, model_file, int8=True)
        verify["formats"][fmt] = {
            "passed": True,
            "int8": True,
            "model_sha256": sha256_file(d / model_file),
            "runtimes": runtime_records(),
        }
    write_json(export / "verify.json", verify)
    return export
