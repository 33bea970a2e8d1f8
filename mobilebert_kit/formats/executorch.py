"""``executorch`` (optional extra, not part of ``all``): ``model.pte`` lowered to XNNPACK, batch 1,
sequence 2..max_length, fp32 (INT8 for ExecuTorch is not implemented)."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

from mobilebert_kit.errors import ExportError, ModelError
from mobilebert_kit.formats import Build, ExportFormat, Runner, Source
from mobilebert_kit.formats.traced import TorchModuleRunner, example_inputs, first_line, traceable

EXTRA = "pip install 'mobilebert_kit[executorch]'"


def import_exir():
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
            f"ExecuTorch export needs the optional extra: {EXTRA} (executorch==1.5.1); "
            f"or drop --format executorch ({e})"
        ) from e


class ExecuTorch(ExportFormat):
    name = "executorch"
    model_file = "model.pte"
    in_all = False
    benchable = True
    file_suffixes = (".pte",)
    dynamic_batch = False

    def check_dependencies(self) -> None:
        import_exir()

    def applies_int8(self, src: Source) -> bool:
        return False

    def export(self, src: Source, folder: Path, build: Build) -> dict:
        import torch

        exir = import_exir()
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        seq = torch.export.Dim("sequence", min=2, max=src.max_length)
        try:
            with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                shapes = ({1: seq}, {1: seq}, {1: seq})
                program = torch.export.export(traceable(src), example_inputs(src), dynamic_shapes=shapes)
                lowered = exir.to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
            (folder / self.model_file).write_bytes(lowered.buffer)
        except Exception as e:  # noqa: BLE001
            raise ExportError(f"ExecuTorch export of {src.path} failed ({type(e).__name__}: {first_line(e)})") from e
        note = "fp32 weights; INT8 for ExecuTorch (XNNPACK PT2E quantization) is not implemented" if src.int8 else ""
        return {
            "backend": "XNNPACK",
            "batch": 1,
            "sequence_range": [2, src.max_length],
            "int8_applied": False,
            "note": note,
        }

    def load(self, path: Path, meta: dict) -> Runner:
        try:
            from executorch.runtime import Runtime
        except ImportError as e:
            raise ModelError(f"benchmarking a .pte needs the optional extra: {EXTRA}") from e
        method = Runtime.get().load_program(str(path)).load_method("forward")
        return TorchModuleRunner(lambda *inputs: method.execute(list(inputs))[0], "executorch", 1, fixed_threads=True)

    def verify(self, folder: Path, meta: dict, parity) -> list[dict]:
        try:
            runner = self.load(folder / meta["model_file"], meta)
        except ModelError:
            parity.entry["numeric_parity"] = "skipped: executorch is not installed"
            detail = f"executorch is not installed ({EXTRA}); not run"
            return [parity.row("ExecuTorch parity", None, detail=detail)]
        return parity.compare("logits", parity.logits(runner))


FORMAT = ExecuTorch()
