"""CoreML for the Neural Engine on the tiny BERT: enumerated sequence lengths, int8 and palettized
weights, the spec checks that can fail, the "numerics NOT run" statement, and bad options."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import tiny_model_with_lineage

from mobilebert_kit.artifacts import META, read_json

pytest.importorskip("coremltools")

NOT_RUN = "coreml: spec checked; numerics NOT run: Core ML runs only on Apple OSes"


@pytest.fixture(scope="module")
def bucketed(tiny_classifier_dir, sentiment_csv, tmp_path_factory):
    """Enumerated lengths 16,32,64 and 4-bit uniform palettes (uniform: no scikit-learn needed)."""
    from mobilebert_kit.stages.export import ExportConfig, run

    root = tmp_path_factory.mktemp("coreml")
    model = tiny_model_with_lineage(tiny_classifier_dir, sentiment_csv, root / "model")
    config = ExportConfig(
        model=str(model),
        output=str(root / "export"),
        formats=["coreml"],
        coreml_lengths=[16, 32, 64],
        coreml_palettize_bits=4,
        coreml_palettize_mode="uniform",
    )
    return run(config).output


def test_enumerated_lengths_and_palettes_are_in_the_spec(bucketed, cli, tmp_path):
    meta = read_json(bucketed / "coreml" / META)
    assert meta["sequence_lengths"] == [16, 32, 64] and "sequence_range" not in meta
    assert meta["minimum_deployment_target"] == "iOS18"  # enumerated shapes on 3 inputs need iOS 18
    assert meta["quantization"]["mode"] == "palettization" and meta["quantization"]["nbits"] == 4
    assert meta["int8"] is False and meta["lossy_weights"] is True and meta["weights"] == "palettized 4-bit uniform"
    out = tmp_path / "e"
    shutil.copytree(bucketed, out)
    r = cli("verify", "-e", out, "--no-node")
    assert r.exit_code == 0, r.output
    assert NOT_RUN in r.output  # in the summary, not only in the check list
    assert "✓ coreml (palettized 4-bit uniform): spec checked; numerics NOT run" in r.output
    e = read_json(out / "verify.json")["formats"]["coreml"]
    assert e["numeric_parity"] == "NOT run: Core ML runs only on Apple OSes"
    assert e["summary"] == "spec checked; numerics NOT run: Core ML runs only on Apple OSes"
    assert e["coreml_spec"]["inputs"]["input_ids"]["enumerated"] == [[1, 16], [1, 32], [1, 64]]
    assert e["coreml_spec"]["inputs"]["input_ids"]["shape"] == [1, 64]  # default = the largest bucket
    assert e["coreml_spec"]["weights"]["palette_ops"] == {"16": 2}  # word + position embeddings (>= 2048 values)
    names = {c["name"]: c["passed"] for c in e["checks"]}
    assert names["CoreML enumerated sequence lengths in the spec"] is True
    assert names["CoreML 4-bit palettized weights"] is True


def test_spec_checks_catch_a_model_that_is_not_what_meta_says(bucketed, cli, tmp_path):
    out = tmp_path / "e"
    shutil.copytree(bucketed, out)
    meta = read_json(out / "coreml" / META)  # model_meta.json is not in its own sha256 list
    meta["sequence_lengths"] = [32, 64]
    meta["quantization"]["nbits"] = 6
    (out / "coreml" / META).write_text(json.dumps(meta))
    r = cli("verify", "-e", out, "--no-node")
    assert r.exit_code == 1
    err = r.output.strip().splitlines()[-1]
    assert err.startswith("Error: 2 check(s) failed: coreml: CoreML enumerated sequence lengths in the spec")
    assert "coreml: CoreML 6-bit palettized weights (found palettes of sizes [16]" in err
    meta.pop("quantization")
    meta["lossy_weights"], meta["sequence_lengths"] = False, [16, 32, 64]
    (out / "coreml" / META).write_text(json.dumps(meta))
    r = cli("verify", "-e", out, "--no-node")
    assert r.exit_code == 1 and "coreml: CoreML fp weights" in r.output.strip().splitlines()[-1]


def test_int8_weights_on_ios18_are_int8_in_the_program(tiny_classifier_dir, sentiment_csv, tmp_path, cli):
    model = tiny_model_with_lineage(tiny_classifier_dir, sentiment_csv, tmp_path / "model")
    args = ("export", "-f", "coreml", "-m", model, "-o", tmp_path / "e", "--int8", "-q")
    r = cli(*args, "--coreml-lengths", "32,64")
    assert r.exit_code == 0, r.output
    meta = read_json(tmp_path / "e" / "coreml" / META)
    assert meta["int8"] is True and meta["weights"] == "int8" and meta["minimum_deployment_target"] == "iOS18"
    r = cli("verify", "-e", tmp_path / "e", "--no-node")
    assert r.exit_code == 0, r.output
    e = read_json(tmp_path / "e" / "verify.json")["formats"]["coreml"]
    assert e["coreml_spec"]["weights"]["dequantize_ops"] == {"INT8": 2}  # constexpr_blockwise_shift_scale (iOS18)


def test_kmeans_palettes(tiny_classifier_dir, tmp_path, cli):
    pytest.importorskip("sklearn")
    r = cli("export", "-f", "coreml", "-m", tiny_classifier_dir, "-o", tmp_path / "e", "--coreml-palettize", "6", "-q")
    assert r.exit_code == 0, r.output
    assert read_json(tmp_path / "e" / "coreml" / META)["quantization"]["algorithm"] == "kmeans"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--coreml-lengths", "64,32"], "coreml_lengths must be strictly increasing (e.g. 32,64,128); got 64,32"),
        (["--coreml-lengths", "32,32,64"], "coreml_lengths must be strictly increasing (e.g. 32,64,128); got 32,32,64"),
        (["--coreml-lengths", "1,64"], "coreml_lengths must be >= 2 (a text is at least [CLS] [SEP]); got 1,64"),
        (["--coreml-lengths", "32,x"], "coreml_lengths[1]: expected an integer, got 'x'"),
        (
            ["--coreml-lengths", "32,64", "--coreml-target", "iOS17"],
            "coreml_lengths needs coreml_target iOS18 (Core ML accepts enumerated shapes on several inputs only "
            "from iOS 18); got 'iOS17'",
        ),
        (
            ["--coreml-palettize", "5"],
            "coreml_palettize_bits must be one of 1, 2, 3, 4, 6, 8 (coremltools palettization); got 5",
        ),
        (
            ["--coreml-lengths", "64,512"],
            "coreml_lengths 512 exceed the model's max_position_embeddings (128); the model cannot read texts that long",
        ),
        (
            ["--coreml-lengths", "32,128", "--max-length", "64"],
            "coreml_lengths 128 exceed the export's max_length (64); drop them or pass --max-length 128",
        ),
        (
            ["--coreml-lengths", "16,32", "--max-length", "64"],
            "the largest coreml_lengths bucket (32) must equal the export's max_length (64) so every text fits a "
            "bucket; add 64 or pass --max-length 32",
        ),
    ],
)
def test_bad_coreml_options(tiny_classifier_dir, tmp_path, cli, args, message):
    r = cli("export", "-f", "coreml", "-m", tiny_classifier_dir, "-o", tmp_path / "e", *args)
    assert r.exit_code == 1
    assert r.output.strip() == f"Error: {message}"
    assert not (tmp_path / "e").exists()


def test_kmeans_without_scikit_learn(tiny_classifier_dir, tmp_path, cli, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a))
    r = cli("export", "-f", "coreml", "-m", tiny_classifier_dir, "-o", tmp_path / "e", "--coreml-palettize", "6")
    assert r.exit_code == 1
    assert r.output.strip() == (
        "Error: k-means palettization (coreml_palettize_mode kmeans) needs scikit-learn: pip install scikit-learn; "
        "or use --coreml-palettize-mode uniform"
    )
    assert not (tmp_path / "e").exists()
