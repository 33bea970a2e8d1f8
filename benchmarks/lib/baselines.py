"""The peer path benchmarks compare mbk against: Optimum's ONNX export and dynamic INT8 of a student."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path


def optimum_int8(student: Path, work: Path) -> Path:
    """``optimum.exporters.onnx.main_export`` (text-classification, opset 17) + ``ORTQuantizer`` with
    ``AutoQuantizationConfig.avx2(is_static=False, per_channel=False)``; returns the quantized graph."""
    from optimum.exporters.onnx import main_export
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    exp = work / "optimum_export"
    shutil.rmtree(exp, ignore_errors=True)
    with contextlib.redirect_stdout(io.StringIO()):
        main_export(str(student), output=str(exp), task="text-classification", opset=17, do_validation=False)
        quantizer = ORTQuantizer.from_pretrained(exp, file_name="model.onnx")
        qcfg = AutoQuantizationConfig.avx2(is_static=False, per_channel=False)
        quantizer.quantize(save_dir=work / "optimum_int8", quantization_config=qcfg)
    return work / "optimum_int8" / "model_quantized.onnx"
