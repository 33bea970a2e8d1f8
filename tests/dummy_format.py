"""A format defined outside the package, in this one file: the export's ONNX graph stored as
``model.dummy`` and run in ONNX Runtime. tests/formats/test_format_registry.py registers it with one line."""

from __future__ import annotations

import shutil
from pathlib import Path

from mobilebert_kit.formats import Build, ExportFormat, Runner, Source
from mobilebert_kit.formats.onnx import OrtRunner, onnx_graph


class Dummy(ExportFormat):
    name = "dummy"
    model_file = "model.dummy"
    in_all = False
    benchable = True
    file_suffixes = (".dummy",)

    def export(self, src: Source, folder: Path, build: Build) -> dict:
        graph, _ = onnx_graph(src, build)
        shutil.copy2(graph, folder / self.model_file)
        return {"note": "an ONNX graph under another name"}

    def load(self, path: Path, meta: dict) -> Runner:
        return OrtRunner(path)


FORMAT = Dummy()
