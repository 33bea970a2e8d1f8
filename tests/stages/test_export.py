"""mbk export on the tiny BERT: every format, metadata, INT8, atomicity and bad input."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from mobilebert_kit.artifacts import META, file_hashes, read_json, sha256_file
from mobilebert_kit.formats import every

FORMATS = [f.name for f in every(in_all=True)]


def tiny_with_manifest(src, folder, data_csv, max_length=64):
    """Copy the read-only tiny classifier and record its training data like finetune would."""
    shutil.copytree(src, folder)
    (folder / "manifest.json").write_text(
        json.dumps({"stage": "finetune", "data": {"data": str(data_csv)}, "max_length": max_length})
    )
    return folder


@pytest.fixture(scope="module")
def exported(tiny_classifier_dir, sentiment_csv, tmp_path_factory):
    from mobilebert_kit.stages.export import ExportConfig, run

    root = tmp_path_factory.mktemp("export")
    model = tiny_with_manifest(tiny_classifier_dir, root / "model", sentiment_csv)
    out = run(ExportConfig(model=str(model), output=str(root / "export"), formats=["all"])).output
    return model, out


def test_help(cli):
    r = cli("export", "--help")
    assert r.exit_code == 0
    assert "mbk export --format all" in r.output and "coreml" in r.output


def test_every_format_is_self_contained(exported):
    model, out = exported
    for fmt in FORMATS:
        folder = out / fmt
        meta = read_json(folder / META)
        assert meta["format"] == fmt
        assert (folder / meta["model_file"]).exists()
        for f in ("labels.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json"):
            assert (folder / f).is_file(), (fmt, f)
        assert meta["files"] == file_hashes(folder, exclude=(META,))  # sha256 of every other file
        assert meta["labels"] == ["neg", "pos"] and meta["num_labels"] == 2
        assert meta["max_length"] == 64  # from the model's lineage
        assert meta["do_lower_case"] is True and meta["strip_accents"] is True  # MiniLM is uncased
        assert meta["vocab_size"] == 30522 and meta["int8"] is False
        assert meta["input_names"] == ["input_ids", "attention_mask", "token_type_ids"]
        assert meta["source_model"]["path"] == str(model.resolve()) and len(meta["source_model"]["sha256"]) == 64
        assert meta["size_bytes"] > 0 and "onnxruntime" in meta["versions"]
    onnx_meta = read_json(out / "onnx" / META)
    assert onnx_meta["fused_ops"]["Attention"] == 1 and onnx_meta["fused_ops"]["EmbedLayerNormalization"] == 1
    assert onnx_meta["dynamic_axes"]["input_ids"] == {"0": "batch", "1": "sequence"}
    assert (out / "ort" / "required_operators.config").read_text().count("com.microsoft") >= 1  # fused contrib ops
    assert (out / "torchscript" / "model.ptl").is_file()
    assert (out / "coreml" / "model.mlpackage" / "Manifest.json").is_file()
    manifest = read_json(out / "manifest.json")
    assert manifest["stage"] == "export" and set(manifest["formats"]) == set(FORMATS)


def test_onnx_runs_with_dynamic_shapes(exported):
    import numpy as np

    from mobilebert_kit.graph.onnx_tools import session

    _, out = exported
    sess = session(out / "ort" / "model.ort")
    for b, s in ((1, 5), (3, 40)):
        feeds = {n: np.ones((b, s), dtype=np.int64) for n in ("input_ids", "attention_mask")}
        feeds["token_type_ids"] = np.zeros((b, s), dtype=np.int64)
        assert sess.run(None, feeds)[0].shape == (b, 2)


def test_int8_export(tiny_classifier_dir, tmp_path, cli):
    r = cli("export", "-f", "onnx,torchscript", "--int8", "--model", tiny_classifier_dir, "-o", tmp_path / "e", "-q")
    assert r.exit_code == 0, r.output
    meta = read_json(tmp_path / "e" / "onnx" / META)
    assert meta["int8"] is True and meta["quantization"]["mode"] == "dynamic"
    ops = meta["fused_ops_after_quantization"]
    assert ops.get("DynamicQuantizeLinear", 0) + ops.get("MatMulInteger", 0) + ops.get("QAttention", 0) > 0
    assert read_json(tmp_path / "e" / "torchscript" / META)["quantization"]["method"].startswith("torch.ao")
    assert not (tmp_path / "e" / "ort").exists()


def test_compression_onnx_graph_is_copied(tiny_classifier_dir, tmp_path, cli):
    from mobilebert_kit.compression.ort_quant import Int8Dynamic, quantize
    from mobilebert_kit.graph import onnx_tools as ot

    model = tmp_path / "compressed"
    shutil.copytree(tiny_classifier_dir, model)
    (model / "onnx").mkdir()
    ot.export_onnx(model, tmp_path / "fp32.onnx")
    ot.optimize_onnx(tmp_path / "fp32.onnx", tmp_path / "fused.onnx", 2, 32)
    quantize(tmp_path / "fused.onnx", model / "onnx" / "model.onnx", Int8Dynamic())
    (model / "compression.json").write_text(
        json.dumps(
            {
                "int8": True,
                "int8_mode": "dynamic",
                "per_channel": False,
                "weight_type": "qint8",
                "nodes_excluded": [],
                "onnx_model": "onnx/model.onnx",
            }
        )
    )
    r = cli("export", "-f", "onnx", "-f", "ort", "--model", model, "-o", tmp_path / "e", "-q")
    assert r.exit_code == 0, r.output
    assert sha256_file(tmp_path / "e" / "onnx" / "model.onnx") == sha256_file(model / "onnx" / "model.onnx")
    meta = read_json(tmp_path / "e" / "onnx" / META)
    assert meta["int8"] is True and meta["onnx_source"].startswith("compression")
    assert read_json(tmp_path / "e" / "ort" / META)["int8"] is True


def test_unknown_format_lists_known(cli, tmp_path):
    r = cli("export", "--format", "paddle", "-o", tmp_path / "e")
    assert r.exit_code == 1
    assert r.output.strip() == (
        "Error: unknown export format 'paddle'; known formats: onnx, ort, torchscript, coreml, executorch, tflite, all"
    )
    assert not (tmp_path / "e").exists()


def test_model_without_classifier_head(cli, tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(
        BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    ).save_pretrained(tmp_path / "base")
    r = cli("export", "-f", "onnx", "--model", tmp_path / "base", "-o", tmp_path / "e")
    assert r.exit_code == 1
    assert r.output.startswith("Error: ") and "holds no sequence-classification head" in r.output
    assert not (tmp_path / "e" / "onnx").exists()


def test_missing_model_folder(cli, tmp_path):
    r = cli("export", "-f", "onnx", "--model", tmp_path / "nope", "-o", tmp_path / "e")
    assert r.exit_code == 1 and "does not exist" in r.output and r.output.count("\n") == 1


def test_coreml_without_coremltools(cli, tmp_path, tiny_classifier_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "coremltools", None)  # import now raises ImportError
    r = cli("export", "-f", "onnx", "-f", "coreml", "--model", tiny_classifier_dir, "-o", tmp_path / "e")
    assert r.exit_code == 1
    assert "Error: CoreML export needs coremltools; install it with: pip install coremltools==9.0" in r.output
    assert not (tmp_path / "e" / "onnx").exists()


def test_failure_leaves_nothing_half_written(cli, tmp_path, tiny_classifier_dir, monkeypatch):
    from mobilebert_kit import formats
    from mobilebert_kit.errors import ExportError

    def boom(*a, **k):
        raise ExportError("TorchScript export failed (simulated)")

    monkeypatch.setattr(formats.get("torchscript"), "export", boom)
    r = cli("export", "-f", "onnx", "-f", "torchscript", "--model", tiny_classifier_dir, "-o", tmp_path / "e")
    assert r.exit_code == 1 and "simulated" in r.output
    assert not (tmp_path / "e").exists()  # onnx was built, but never moved into place; the new folder is gone
    (tmp_path / "mine").mkdir()  # a folder that existed before stays
    r = cli("export", "-f", "onnx", "-f", "torchscript", "--model", tiny_classifier_dir, "-o", tmp_path / "mine")
    assert r.exit_code == 1 and (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())


def test_refuses_non_empty_output(cli, tmp_path, tiny_classifier_dir):
    (tmp_path / "e" / "onnx").mkdir(parents=True)
    (tmp_path / "e" / "onnx" / "keep.txt").write_text("x")
    r = cli("export", "-f", "onnx", "--model", tiny_classifier_dir, "-o", tmp_path / "e")
    assert r.exit_code == 1 and "pass --overwrite" in r.output
    assert (tmp_path / "e" / "onnx" / "keep.txt").exists()


def test_refuses_a_stage_output_and_a_length_past_the_positions(cli, tmp_path, tiny_classifier_dir):
    """An export into the model's own folder (or any other stage's output) would replace its manifest, the record
    later stages read; a --max-length the model has no positions for is refused, not silently clamped."""
    import shutil

    model = tmp_path / "student"
    shutil.copytree(tiny_classifier_dir, model)
    (model / "manifest.json").write_text('{"stage": "distill"}')
    r = cli("export", "-f", "onnx", "-m", model, "-o", model)
    assert r.exit_code == 1 and "holds the output of `mbk distill` (manifest.json)" in r.output
    assert (model / "manifest.json").read_text() == '{"stage": "distill"}' and not (model / "onnx").exists()
    r = cli("export", "-f", "onnx", "-m", model, "--max-length", "129", "-o", tmp_path / "e")
    assert r.exit_code == 1 and r.output.strip() == (
        f"Error: --max-length 129 is more than {model} can take (128 positions); use --max-length 128 or less"
    )
    assert not (tmp_path / "e").exists()


@pytest.mark.slow
@pytest.mark.integration
def test_real_minilm_exports_fuse_and_verify(tmp_path, sentiment_csv, cli):
    """Shipped MiniLM (2 of its 6 layers, 12 heads, hidden 384): fused attention and parity on every format."""
    from conftest import minilm_path
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from mobilebert_kit.artifacts import write_labels

    m = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=2)
    m.bert.encoder.layer = m.bert.encoder.layer[:2]
    m.config.num_hidden_layers = 2
    m.save_pretrained(tmp_path / "model")
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(tmp_path / "model")
    write_labels(tmp_path / "model", ["neg", "pos"])
    (tmp_path / "model" / "manifest.json").write_text(
        json.dumps({"data": {"data": str(sentiment_csv)}, "max_length": 64})
    )
    assert cli("export", "--model", tmp_path / "model", "-o", tmp_path / "e", "-q").exit_code == 0
    assert read_json(tmp_path / "e" / "onnx" / META)["fused_ops"]["Attention"] == 1
    r = cli("verify", "-e", tmp_path / "e")
    assert r.exit_code == 0, r.output
    report = read_json(tmp_path / "e" / "verify.json")
    assert report["formats"]["onnx"]["max_abs_diff"] < 1e-4 and report["formats"]["onnx"]["agreement"] == 1.0


def test_executorch_without_the_extra(cli, tmp_path, tiny_classifier_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "executorch", None)
    monkeypatch.setitem(sys.modules, "executorch.exir", None)
    r = cli("export", "-f", "executorch", "--model", tiny_classifier_dir, "-o", tmp_path / "e")
    assert r.exit_code == 1
    assert r.output.startswith(
        "Error: ExecuTorch export needs the optional extra: pip install 'mobilebert_kit[executorch]'"
    )
    assert not (tmp_path / "e" / "executorch").exists()


def test_int8_refused_for_a_format_without_an_int8_path(monkeypatch, cli, tmp_path, tiny_classifier_dir):
    from mobilebert_kit import formats

    monkeypatch.setitem(formats.MODULES, "dummy", "dummy_format")
    monkeypatch.setattr(formats.get("dummy"), "supports_int8", False)
    r = cli("export", "-f", "onnx,dummy", "--int8", "--model", tiny_classifier_dir, "-o", tmp_path / "e")
    assert r.exit_code == 1
    assert r.output.strip() == (
        "Error: --int8: the dummy format cannot be exported as INT8; drop --int8 for it (export it separately "
        "with --fp32) or choose from: onnx, ort, torchscript, coreml, executorch, tflite"
    )
    assert not (tmp_path / "e").exists()


def test_coreml_options_without_the_coreml_format_are_refused(cli, tmp_path, tiny_classifier_dir):
    r = cli("export", "-f", "onnx", "--coreml-palettize", "6", "-m", tiny_classifier_dir, "-o", tmp_path / "e")
    assert r.exit_code == 1 and r.output.strip() == (
        "Error: --coreml-palettize: a CoreML option, but -f onnx does not export coreml; add -f coreml or drop it"
    )
    assert not (tmp_path / "e").exists()
