"""The LiteRT (tflite) format: length buckets, the optional extra's clean errors, and, with
litert-torch installed, export (fp32 + INT8 with its guard) -> verify -> bench -> package on the tiny BERT."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys

import pytest

from mobilebert_kit.artifacts import META, read_json
from mobilebert_kit.formats import tflite

HAS_LITERT = importlib.util.find_spec("litert_torch") is not None
needs_litert = pytest.mark.skipif(not HAS_LITERT, reason=f"litert-torch is an optional extra: {tflite.EXTRA}")


@pytest.mark.parametrize(
    "max_length, buckets",
    [(128, [16, 32, 64, 128]), (48, [16, 32, 48]), (16, [16]), (8, [8]), (200, [16, 32, 64, 128, 200])],
)
def test_bucket_lengths(max_length, buckets):
    assert tflite.bucket_lengths(max_length) == buckets


def test_export_without_the_extra(cli, tmp_path, tiny_classifier_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "litert_torch", None)
    r = cli("export", "-f", "tflite", "--model", tiny_classifier_dir, "-o", tmp_path / "e")
    assert r.exit_code == 1
    assert r.output.startswith(
        "Error: LiteRT (tflite) export needs the optional extra: pip install 'mobilebert_kit[litert]'"
    )
    assert "Traceback" not in r.output and not (tmp_path / "e" / "tflite").exists()


def test_bench_tflite_without_the_extra(cli, tmp_path, monkeypatch):
    model = tmp_path / "model.tflite"
    model.write_bytes(b"not a model")
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    r = cli("bench", "--model", model, "--no-pytorch", "-o", tmp_path / "b")
    assert r.exit_code == 1 and "needs the optional extra: pip install 'mobilebert_kit[litert]'" in r.output


def test_package_runtime_choices(cli, tmp_path):
    r = cli("package", "-t", "android", "--runtime", "tflite", "--export-dir", tmp_path)
    assert r.exit_code == 1
    assert (
        r.output.strip() == "Error: --runtime 'tflite' is not available for --target android; use one of: ort, litert"
    )
    r = cli("package", "-t", "ios", "--runtime", "litert", "--export-dir", tmp_path)
    assert r.output.strip() == "Error: --runtime 'litert' is not available for --target ios; use one of: coreml"


# --------------------------------------------------------------------------- with litert-torch


def tiny_with_data(src, folder, data_csv, max_length):
    """A copy of the read-only tiny classifier recording its training data (for verify and the INT8 guard)."""
    shutil.copytree(src, folder)
    manifest = {"stage": "finetune", "data": {"data": str(data_csv)}, "max_length": max_length}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def export_and_verify(model, out, int8: bool):
    from mobilebert_kit.stages.export import ExportConfig
    from mobilebert_kit.stages.export import run as export
    from mobilebert_kit.stages.verify import VerifyConfig
    from mobilebert_kit.stages.verify import run as verify

    export(ExportConfig(model=str(model), output=str(out), formats=["tflite"], int8=int8))
    verify(VerifyConfig(export_dir=str(out), node="off"))
    return out


@pytest.fixture(scope="module")
def tflite_export(tiny_classifier_dir, sentiment_csv, tmp_path_factory):
    """The tiny BERT (with recorded training data, max length 32: buckets 16 and 32) exported to an fp32
    .tflite and verified: <root>/model, <root>/fp32. (One conversion: ~10 s CPU with the import.)"""
    pytest.importorskip("litert_torch")
    root = tmp_path_factory.mktemp("tflite")
    model = tiny_with_data(tiny_classifier_dir, root / "model", sentiment_csv, max_length=32)
    export_and_verify(model, root / "fp32", int8=False)
    return root


@needs_litert
def test_fp32_export_meta_and_verify(tflite_export):
    meta = read_json(tflite_export / "fp32" / "tflite" / META)
    assert meta["int8"] is False and meta["quantization"] is None and meta["int8_guard"] is None
    assert meta["sequence_buckets"] == [16, 32] and meta["signatures"] == {"seq_16": 16, "seq_32": 32}
    assert meta["dynamic_axes"] == {} and meta["dtypes"]["input_ids"] == "int32"
    assert meta["runtime"]["name"] == "ai-edge-litert" and meta["converter"].startswith("litert-torch ")
    entry = read_json(tflite_export / "fp32" / "verify.json")["formats"]["tflite"]
    assert entry["passed"] is True and entry["n"] > 0 and entry["runtime"]["version"]
    assert entry["max_abs_diff"] < 1e-4 and entry["agreement"] == 1.0


@needs_litert
def test_export_drops_internal_tensor_names_and_keeps_signatures(tflite_export):
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(tflite_export / "fp32" / "tflite" / "model.tflite"))
    assert all(not t.name for sg in model.subgraphs for t in sg.tensors)
    names = {s.signatureKey.decode(): sorted(t.name.decode() for t in s.inputs) for s in model.signatureDefs}
    assert names == {f"seq_{n}": ["attention_mask", "input_ids", "token_type_ids"] for n in (16, 32)}


@needs_litert
@pytest.mark.slow
def test_int8_export_guard_verify_and_package(tflite_export, cli, tmp_path):
    out = export_and_verify(tflite_export / "model", tmp_path / "int8", int8=True)
    meta = read_json(out / "tflite" / META)
    assert meta["int8"] is True and meta["quantization"]["mode"] == "dynamic"
    guard = meta["int8_guard"]
    assert guard["passed"] is True and guard["agreement_with_fp32"] >= 0.97 and guard["max_drop"] == 0.01
    assert meta["size_bytes"] < 0.8 * read_json(tflite_export / "fp32" / "tflite" / META)["size_bytes"]
    entry = read_json(out / "verify.json")["formats"]["tflite"]
    assert entry["passed"] is True and entry["int8"] is True and entry["agreement"] >= 0.97
    r = cli("package", "-t", "android", "--runtime", "litert", "--export-dir", out, "-o", tmp_path / "p")
    assert r.exit_code == 0, r.output
    assert read_json(tmp_path / "p" / META)["verify"]["int8"] is True


@needs_litert
def test_runner_pads_to_buckets_and_refuses_longer(tflite_export):
    import numpy as np

    from mobilebert_kit.errors import ModelError

    runner = tflite.FORMAT.load(tflite_export / "fp32" / "tflite" / "model.tflite", {"pad_token_id": 0})
    assert runner.buckets == [16, 32]
    ids = np.array([[101, 2307, 2143, 102]])
    one = runner.logits({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": 0 * ids})
    padded = np.pad(ids, ((0, 0), (0, 20)))
    mask = np.pad(np.ones_like(ids), ((0, 0), (0, 20)))
    two = runner.logits({"input_ids": padded, "attention_mask": mask, "token_type_ids": 0 * padded})
    assert one.shape == (1, 2) and np.abs(one - two).max() < 1e-5  # 16 vs 32 bucket, same masked input
    with pytest.raises(ModelError, match="longer than the longest signature"):
        runner.row_logits([101] * 33, [1] * 33, [0] * 33)


def source(folder, max_length: int = 32):
    from mobilebert_kit.formats import Source
    from mobilebert_kit.models import load_classifier_folder

    model, tokenizer, labels = load_classifier_folder(folder)
    return Source(folder, model, tokenizer, labels, max_length, True, {}, "")


@needs_litert
def test_int8_guard_numbers_refusal_and_skip(tflite_export, tiny_classifier_dir, monkeypatch):
    from mobilebert_kit.errors import ExportError

    src = source(tflite_export / "model")
    model = tflite_export / "fp32" / "tflite" / "model.tflite"
    record = tflite.int8_guard(src, model)  # the fp32 file: nothing lost, every example agrees
    assert record["passed"] is True and record["drop"] == 0.0 and record["agreement_with_fp32"] == 1.0
    monkeypatch.setattr(tflite, "INT8_MAX_DROP", -1.0)  # any drop, even none, is over the bound
    with pytest.raises(
        ExportError, match=r"LiteRT INT8 accuracy guard failed: validation accuracy .* export with --fp32"
    ):
        tflite.int8_guard(src, model)
    skipped = tflite.int8_guard(source(tiny_classifier_dir), model)  # no recorded data: said, not guessed
    assert skipped["passed"] is None and "records no training data" in skipped["skipped"]


@needs_litert
def test_bench_times_the_tflite(cli, tflite_export, tmp_path):
    args = ["--no-pytorch", "--seq-lengths", "16,20", "--runs", "2", "--rounds", "1", "--warmup", "0"]
    r = cli("bench", "-e", tflite_export / "fp32", "-f", "tflite", *args, "--threads", "1", "-o", tmp_path / "b", "-q")
    assert r.exit_code == 0, r.output
    rows = read_json(tmp_path / "b" / "bench.json")["rows"]
    assert {(x["runtime"], x["seq_len"]) for x in rows} == {("ai-edge-litert", 16), ("ai-edge-litert", 20)}


@needs_litert
def test_package_android_litert_bundle(cli, tflite_export, tmp_path):
    r = cli(
        "package", "-t", "android", "--runtime", "litert", "--export-dir", tflite_export / "fp32", "-o", tmp_path / "p"
    )
    assert r.exit_code == 0, r.output
    meta = read_json(tmp_path / "p" / META)
    assert meta["package_runtime"] == "litert" and meta["format"] == "tflite" and meta["model_file"] == "model.tflite"
    assert meta["runtime"]["name"] == "ai-edge-litert" and meta["runtime"]["verified"] is True
    assert meta["sequence_buckets"] == [16, 32] and meta["fixed_length"] is None
    assert (tmp_path / "p" / "model.tflite").is_file() and (tmp_path / "p" / "vocab.txt").is_file()
    golden = read_json(tmp_path / "p" / "golden.json")["vectors"]
    assert len(golden) == 6 and all(len(v["logits"]) == 2 for v in golden)
    r = cli("package", "-t", "android", "--runtime", "litert", "--export-dir", tflite_export / "fp32",
            "-o", tmp_path / "q", "--install-into", tmp_path)  # fmt: skip
    assert r.exit_code == 1 and "Error: no demo app runs the 'litert' runtime" in r.output


@needs_litert
def test_unsupported_model_is_one_error_line(cli, tmp_path):
    from conftest import minilm_path
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification

    cfg = DistilBertConfig(vocab_size=30522, dim=32, n_layers=1, n_heads=2, hidden_dim=64, max_position_embeddings=64)
    DistilBertForSequenceClassification(cfg).save_pretrained(tmp_path / "m")
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(tmp_path / "m")
    r = cli("export", "-f", "tflite", "--model", tmp_path / "m", "-o", tmp_path / "e")
    assert r.exit_code == 1
    last = r.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: LiteRT conversion of {tmp_path / 'm'} failed (TypeError: ")
    assert "Traceback" not in r.output and not (tmp_path / "e" / "tflite").exists()


def test_recipe_packaging_litert_needs_the_tflite_export(tmp_path, cli):
    import yaml

    body = {
        "stages": ["export", "verify", "package"],
        "export": {"model": str(tmp_path), "formats": ["ort"]},
        "package": {"target": "android", "runtime": "litert"},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(body))
    r = cli("validate", tmp_path / "r.yaml")
    assert r.exit_code == 1
    assert "package target 'android' needs the 'tflite' export: add it to export.formats" in r.output
