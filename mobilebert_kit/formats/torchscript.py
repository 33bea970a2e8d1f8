"""``torchscript``: traced and frozen ``model.pt`` plus ``model.ptl`` for PyTorch Mobile's lite
interpreter; ``torch.ao`` dynamic INT8 linear layers when INT8 is requested."""

from __future__ import annotations

import warnings
from pathlib import Path

from mobilebert_kit.errors import ExportError
from mobilebert_kit.formats import Build, ExportFormat, Runner, Source
from mobilebert_kit.formats.traced import (
    TorchModuleRunner,
    example_inputs,
    first_line,
    quantized_traceable,
    traceable,
)

LITE_FILE = "model.ptl"
INT8_INFO = {
    "mode": "dynamic",
    "method": "torch.ao.quantization.quantize_dynamic",
    "modules": ["Linear"],
    "per_channel": True,
    "note": "embeddings stay fp32 (quantize_dynamic covers Linear layers only)",
}


class TorchScript(ExportFormat):
    name = "torchscript"
    model_file = "model.pt"
    benchable = True
    file_suffixes = (".pt",)

    def export(self, src: Source, folder: Path, build: Build) -> dict:
        import torch

        model = quantized_traceable(src) if src.int8 else traceable(src)
        try:
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(model, example_inputs(src), check_trace=False)
                frozen = torch.jit.freeze(traced.eval())
                full, lite = frozen.save_to_buffer(), frozen._save_to_buffer_for_lite_interpreter()
        except Exception as e:  # noqa: BLE001
            raise ExportError(f"TorchScript export of {src.path} failed ({type(e).__name__}: {first_line(e)})") from e
        # Written from Python, not by ScriptModule.save(): on a full disk torch's C++ writer aborts the whole
        # process (terminate, no exception; torch 2.13, found by the fault campaign); here it is an OSError.
        (folder / self.model_file).write_bytes(full)
        (folder / LITE_FILE).write_bytes(lite)
        return {
            "lite_interpreter_file": LITE_FILE,
            "traced": True,
            "frozen": True,
            "quantization": dict(INT8_INFO) if src.int8 else None,
            "note": "optimize_for_mobile is skipped: this torch build has no XNNPACK rewrite (FACTS.md)",
        }

    def load(self, path: Path, meta: dict) -> Runner:
        import torch

        return TorchModuleRunner(torch.jit.load(str(path)), "torchscript")

    def verify(self, folder: Path, meta: dict, parity) -> list[dict]:
        """The frozen ``model.pt`` and, when present, the lite-interpreter ``model.ptl``."""
        checks = parity.compare("logits", parity.logits(self.load(folder / meta["model_file"], meta)))
        lite = folder / LITE_FILE
        if lite.exists():
            from torch.jit.mobile import _load_for_lite_interpreter

            runner = TorchModuleRunner(_load_for_lite_interpreter(str(lite)), "torchscript lite")
            checks += parity.compare("logits", parity.logits(runner), prefix="lite interpreter: ")
        return checks


FORMAT = TorchScript()
