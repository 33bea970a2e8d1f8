"""mbk package: bundle contents, hashes, golden vectors, and every refusal (one Error: line, nothing written)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import build_ort_export, copy_export, runtime_records, write_meta

from mobilebert_kit.artifacts import file_hashes, read_json, sha256_file, write_json
from mobilebert_kit.errors import ArtifactError, ConfigError, PackageError
from mobilebert_kit.stages.package import PackageConfig, run, verify_bundle


@pytest.fixture(scope="session")
def ort_export(tiny_classifier_dir, tmp_path_factory) -> Path:
    return build_ort_export(tmp_path_factory.mktemp("export"), tiny_classifier_dir)


@pytest.fixture()
def export_copy(ort_export, tmp_path) -> Path:
    return copy_export(ort_export, tmp_path / "export")


def _package(export: Path, tmp_path: Path, **kw) -> Path:
    return run(
        PackageConfig(
            target=kw.pop("target", "android"), export_dir=str(export), output=str(tmp_path / "pkg" / "android"), **kw
        )
    ).output


def _assert_nothing_written(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    assert not pkg.exists() or not any(p for p in pkg.iterdir()), list(pkg.iterdir())


def test_android_bundle_contents_hashes_and_golden(ort_export, tiny_classifier_dir, tmp_path):
    import torch

    from mobilebert_kit.models import load_classifier_folder

    out = _package(ort_export, tmp_path, golden_texts=["a wonderful, moving film", "Café 😀 [SEP] 电影", "x " * 300])
    names = {p.name for p in out.iterdir()}
    assert {
        "model.ort",
        "vocab.txt",
        "tokenizer.json",
        "labels.json",
        "model_meta.json",
        "golden.json",
        "manifest.json",
    } <= names
    meta = read_json(out / "model_meta.json")
    # Every other file's sha256 is recorded and correct; the model hash is the exported (verified) one.
    assert meta["files"] == file_hashes(out, exclude=("model_meta.json", "manifest.json"))
    assert meta["model_sha256"] == sha256_file(ort_export / "ort" / "model.ort")
    assert verify_bundle(out) == []
    assert meta["labels"] == ["neg", "pos"] and meta["num_labels"] == 2
    assert meta["input_names"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert meta["tokenizer"]["special_tokens"] == {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
    assert meta["tokenizer"]["do_lower_case"] is True and meta["tokenizer"]["strip_accents_resolved"] is True
    assert meta["verify"]["passed"] is True and meta["ort_format_version"] == 6
    assert {"onnxruntime", "torch", "mobilebert_kit"} <= set(meta["versions"])
    # Zip beside the folder holds exactly the same bytes.
    with zipfile.ZipFile(out.with_name("android.zip")) as z:
        zipped = {n.split("/", 1)[1]: z.read(n) for n in z.namelist()}
    assert set(zipped) == {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert zipped["model.ort"] == (out / "model.ort").read_bytes()
    # Golden vectors: HF token ids, truncated to max_length, and logits equal to the PyTorch model's.
    model, tok, _ = load_classifier_folder(tiny_classifier_dir)
    golden = read_json(out / "golden.json")
    assert len(golden["vectors"]) == 3
    for v in golden["vectors"]:
        assert v["input_ids"] == tok(v["text"], truncation=True, max_length=128)["input_ids"]
        with torch.no_grad():
            ref = model(input_ids=torch.tensor([v["input_ids"]])).logits[0].numpy()
        np.testing.assert_allclose(v["logits"], ref, atol=1e-4)
        assert v["label"] == meta["labels"][int(np.argmax(ref))]
    assert len(golden["vectors"][2]["input_ids"]) == 128


def test_install_into_android_demo(ort_export, tmp_path):
    app = tmp_path / "android_demo"
    app.mkdir()
    with pytest.raises(
        PackageError, match=r"does not look like the android app \(no app/src/main/AndroidManifest.xml\)"
    ):
        _package(ort_export, tmp_path, install_into=str(app), make_zip=False)
    assert list(app.iterdir()) == [] and not (tmp_path / "pkg" / "android").exists()
    (app / "app/src/main").mkdir(parents=True)
    (app / "app/src/main/AndroidManifest.xml").write_text("<manifest/>")
    _package(ort_export, tmp_path, install_into=str(app), make_zip=False)
    bundle = app / "app/src/main/assets/bundle"
    assert (bundle / "model.ort").exists() and (bundle / "golden.json").exists()
    assert verify_bundle(bundle) == []
    assert not (tmp_path / "pkg" / "android.zip").exists()


def test_refuses_never_verified(export_copy, tmp_path):
    (export_copy / "verify.json").unlink()
    with pytest.raises(PackageError, match=r"was never verified .* run `mbk verify --formats ort` before packaging"):
        _package(export_copy, tmp_path)
    _assert_nothing_written(tmp_path)


def test_refuses_failed_verify(export_copy, tmp_path):
    v = read_json(export_copy / "verify.json")
    v["passed"] = False
    v["formats"]["ort"].update(passed=False, reason="max abs diff 0.3 > atol 1e-4")
    write_json(export_copy / "verify.json", v)
    with pytest.raises(PackageError, match=r"failed `mbk verify` \(max abs diff 0.3 > atol 1e-4\)"):
        _package(export_copy, tmp_path)
    _assert_nothing_written(tmp_path)


def test_refuses_tampered_export(export_copy, tmp_path):
    with open(export_copy / "ort" / "model.ort", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ArtifactError, match=r"was modified after `mbk export` \(changed: model.ort\)"):
        _package(export_copy, tmp_path)
    _assert_nothing_written(tmp_path)


def test_refuses_model_changed_after_verify(export_copy, tmp_path, ort_export):
    # Swap in the (valid, but different) ONNX graph and re-hash the export: only verify.json remembers.
    shutil.copy2(export_copy / "onnx" / "model.onnx", export_copy / "ort" / "model.ort")
    write_meta(export_copy / "ort", "ort", "model.ort")
    with pytest.raises(ArtifactError, match=r"changed after `mbk verify`"):
        _package(export_copy, tmp_path)
    _assert_nothing_written(tmp_path)


def test_refuses_label_count_mismatch(export_copy, tmp_path):
    from mobilebert_kit.artifacts import write_labels

    write_labels(export_copy / "ort", ["neg", "neutral", "pos"])
    write_meta(export_copy / "ort", "ort", "model.ort")
    with pytest.raises(
        PackageError, match=r"labels.json lists 3 labels \(neg, neutral, pos\) but the model has 2 outputs"
    ):
        _package(export_copy, tmp_path)
    _assert_nothing_written(tmp_path)


@pytest.mark.parametrize("change, word", [(-7, "more"), (+3, "fewer")])
def test_refuses_vocab_not_matching_embedding(export_copy, tmp_path, change, word):
    vocab = export_copy / "ort" / "vocab.txt"
    lines = vocab.read_text(encoding="utf-8").splitlines()
    lines = lines[:change] if change < 0 else lines + [f"[extra{i}]" for i in range(change)]
    vocab.write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_meta(export_copy / "ort", "ort", "model.ort")
    with pytest.raises(
        PackageError, match=rf"vocab.txt has {len(lines)} tokens but the model's word embedding has {word} rows"
    ):
        _package(export_copy, tmp_path)
    _assert_nothing_written(tmp_path)


def test_refuses_missing_export_and_unknown_target(tmp_path):
    with pytest.raises(ArtifactError, match=r"no 'ort' export in .* run `mbk export --format ort` first"):
        _package(tmp_path / "nowhere", tmp_path)
    with pytest.raises(ConfigError, match=r"--target 'windows' is not supported; use one of: android, ios"):
        PackageConfig(target="windows")


def test_refuses_non_empty_output_without_overwrite(ort_export, tmp_path):
    (tmp_path / "pkg" / "android").mkdir(parents=True)
    (tmp_path / "pkg" / "android" / "keep.txt").write_text("x")
    with pytest.raises(ArtifactError, match="pass --overwrite"):
        _package(ort_export, tmp_path)
    assert (tmp_path / "pkg" / "android" / "keep.txt").exists()


def test_never_replaces_a_zip_it_did_not_write(ort_export, tmp_path):
    from mobilebert_kit.stages.base import RunContext

    mine = tmp_path / "pkg" / "android.zip"
    mine.parent.mkdir(parents=True)
    mine.write_text("MY PRECIOUS ZIP")
    cfg = PackageConfig(target="android", export_dir=str(ort_export), output=str(tmp_path / "pkg" / "android"))
    with pytest.raises(ArtifactError, match=r"android.zip exists; pass --overwrite"):
        run(cfg)
    with pytest.raises(ArtifactError, match=r"--overwrite refused: .*android.zip was not written by mbk package"):
        run(cfg, RunContext(overwrite=True, quiet=True))
    assert mine.read_text() == "MY PRECIOUS ZIP" and not (tmp_path / "pkg" / "android").exists()
    mine.unlink()
    run(cfg, RunContext(quiet=True))
    run(cfg, RunContext(overwrite=True, quiet=True))  # its own zip is replaced
    with zipfile.ZipFile(mine) as z:
        assert "android/model_meta.json" in z.namelist()


def test_cli_help_and_errors(cli, export_copy, tmp_path):
    r = cli("package", "--help")
    assert r.exit_code == 0 and "--install-into" in r.output
    r = cli("package", "--target", "symbian", "--export-dir", export_copy)
    assert r.exit_code != 0
    assert r.output.strip() == "Error: --target 'symbian' is not supported; use one of: android, ios"
    (export_copy / "verify.json").unlink()
    r = cli("package", "--target", "android", "--export-dir", export_copy, "-o", tmp_path / "pkg" / "android")
    assert r.exit_code != 0 and r.output.count("Error:") == 1 and "never verified" in r.output
    _assert_nothing_written(tmp_path)


def test_cli_package_ok(cli, ort_export, tmp_path):
    r = cli("package", "--target", "android", "--export-dir", ort_export, "-o", tmp_path / "pkg" / "android", "--json")
    assert r.exit_code == 0, r.output
    meta = json.loads(r.stdout[r.stdout.index("{") :])
    assert meta["target"] == "android" and meta["model_file"] == "model.ort"


@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
def test_ios_bundle_from_coreml_export(tiny_classifier_dir, tmp_path, int8):
    pytest.importorskip("coremltools")
    from mobilebert_kit.stages.export import ExportConfig
    from mobilebert_kit.stages.export import run as export_run

    model = tiny_classifier_dir
    if int8:  # int8 weights: the embedding table comes out of a constexpr dequantize op, not a const
        model = Path(shutil.copytree(tiny_classifier_dir, tmp_path / "int8model"))
        write_json(
            model / "compression.json",
            {
                "int8": True,
                "int8_mode": "dynamic",
                "per_channel": False,
                "weight_type": "qint8",
                "nodes_excluded": [],
                "onnx_model": None,
            },
        )
    export = export_run(
        ExportConfig(model=str(model), output=str(tmp_path / "export"), formats=["onnx", "coreml"], max_length=64)
    ).output
    write_json(
        export / "verify.json",
        {
            "passed": True,
            "formats": {
                "coreml": {"passed": True, "checked": "spec only on Linux"},
                "onnx": {"passed": True, "runtimes": runtime_records()},
            },
        },
    )
    out = run(PackageConfig(target="ios", export_dir=str(export), output=str(tmp_path / "pkg" / "ios"))).output
    meta = read_json(out / "model_meta.json")
    assert (out / "model.mlpackage" / "Manifest.json").exists()
    assert meta["model_file"] == "model.mlpackage" and meta["golden_logits_from"] == "onnx/model.onnx"
    spec = meta["coreml_spec"]
    assert spec["model_type"] == "mlProgram" and "input_ids" in spec["inputs"]
    assert spec["embedding_rows"] == 30522 and meta["tokenizer"]["embedding_rows"] == 30522
    assert verify_bundle(out) == []
    assert (tmp_path / "pkg" / "ios.zip").exists()


def test_refuses_failed_verify_reports_failed_checks(export_copy, tmp_path):
    # The shape mbk verify writes: per-format entries with named checks.
    v = read_json(export_copy / "verify.json")
    v["passed"] = False
    v["formats"]["ort"] = {
        "passed": False,
        "model_sha256": v["formats"]["ort"]["model_sha256"],
        "checks": [
            {"name": "files match sha256 in model_meta.json", "passed": True, "detail": ""},
            {"name": "max |logit diff|", "passed": False, "detail": "0.2 > 0.001"},
        ],
    }
    write_json(export_copy / "verify.json", v)
    with pytest.raises(PackageError, match=r"failed `mbk verify` \(max \|logit diff\| \(0.2 > 0.001\)\)"):
        _package(export_copy, tmp_path)
    _assert_nothing_written(tmp_path)


def test_an_edited_model_meta_is_caught(ort_export, tmp_path):
    """model_meta.json cannot hold its own hash; the manifest records it, so an edited max_length shows."""
    out = _package(ort_export, tmp_path, make_zip=False)
    assert verify_bundle(out) == []
    meta = read_json(out / "model_meta.json")
    write_json(out / "model_meta.json", {**meta, "max_length": meta["max_length"] * 4})
    assert verify_bundle(out) == ["model_meta.json: sha256 differs from manifest.json (edited after packaging?)"]
