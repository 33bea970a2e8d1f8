"""The export-format registry: the built-in formats and their flags, and a new format added in one
file (tests/dummy_format.py) plus one registration line, exported, verified, benched and reported."""

from __future__ import annotations

import json
import shutil

from mobilebert_kit import formats
from mobilebert_kit.artifacts import META, read_json


def test_builtin_formats_and_their_flags():
    assert formats.names() == ["onnx", "ort", "torchscript", "coreml", "executorch", "tflite"]
    assert [f.name for f in formats.every(in_all=True)] == ["onnx", "ort", "torchscript", "coreml"]
    assert [f.name for f in formats.every(benchable=True)] == ["onnx", "ort", "torchscript", "executorch", "tflite"]
    assert {t: formats.for_target(t).name for t in ("android", "ios")} == {"android": "ort", "ios": "coreml"}
    assert formats.for_target("android", "litert").name == "tflite" and formats.for_target("ios", "litert") is None
    assert {t: formats.runtimes_for(t) for t in ("android", "ios")} == {"android": ["ort", "litert"], "ios": ["coreml"]}
    assert [formats.get(n).model_file for n in formats.names()] == [
        "model.onnx",
        "model.ort",
        "model.pt",
        "model.mlpackage",
        "model.pte",
        "model.tflite",
    ]


def test_package_target_format():
    from mobilebert_kit.stages.package import target_format

    assert target_format("android") == "ort" and target_format("ios") == "coreml"
    assert target_format("android", "litert") == "tflite"


def test_a_new_format_is_one_file_and_one_line(monkeypatch, tiny_classifier_dir, sentiment_csv, tmp_path, cli):
    monkeypatch.setitem(formats.MODULES, "dummy", "dummy_format")  # the one registration line

    model = tmp_path / "model"
    shutil.copytree(tiny_classifier_dir, model)
    (model / "manifest.json").write_text(json.dumps({"data": {"data": str(sentiment_csv)}, "max_length": 64}))
    run_dir = tmp_path / "run"
    export = run_dir / "export"

    r = cli("export", "--format", "dummy", "--model", model, "-o", export, "-q")
    assert r.exit_code == 0, r.output
    meta = read_json(export / "dummy" / META)
    assert meta["format"] == "dummy" and (export / "dummy" / "model.dummy").is_file()
    assert meta["dynamic_axes"]["input_ids"] == {"0": "batch", "1": "sequence"}

    r = cli("verify", "-e", export, "--no-node")
    assert r.exit_code == 0, r.output
    entry = read_json(export / "verify.json")["formats"]["dummy"]
    assert entry["passed"] is True and entry["max_abs_diff"] < 1e-4 and entry["agreement"] == 1.0

    bench = run_dir / "bench"
    args = ("--seq-lengths", "8", "--threads", "1", "--runs", "2", "--rounds", "1", "--warmup", "0", "--no-pytorch")
    r = cli("bench", "-e", export, "-f", "dummy", *args, "-o", bench)
    assert r.exit_code == 0, r.output
    rows = read_json(bench / "bench.json")["rows"]
    assert [(row["model"], row["runtime"]) for row in rows] == [("dummy fp32", "onnxruntime")]
    r = cli("bench", "--model", export / "dummy" / "model.dummy", *args, "-o", tmp_path / "b2")
    assert r.exit_code == 0, r.output

    r = cli("report", run_dir, "-q")
    assert r.exit_code == 0, r.output
    md = (run_dir / "report.md").read_text()
    assert "| export: dummy | fp32 |" in md and "✓ max\\|Δ\\|" in md


def test_unknown_format_lists_the_registered_ones(monkeypatch, cli, tmp_path):
    monkeypatch.setitem(formats.MODULES, "dummy", "dummy_format")
    r = cli("export", "--format", "paddle", "-o", tmp_path / "e")
    assert (
        r.exit_code == 1 and "known formats: onnx, ort, torchscript, coreml, executorch, tflite, dummy, all" in r.output
    )
