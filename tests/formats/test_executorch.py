"""ExecuTorch (optional extra) on the tiny BERT: fp32 and XNNPACK INT8 ``.pte``, the BundledProgram
``.bpte`` with embedded test vectors, both run by verify on the host ExecuTorch runtime."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import tiny_model_with_lineage

from mobilebert_kit.artifacts import META, read_json

pytest.importorskip("executorch", reason="executorch is an optional extra: pip install 'mobilebert_kit[executorch]'")

BUNDLED = "ExecuTorch bundled test vectors (host runtime)"


@pytest.fixture(scope="module")
def exports(tiny_classifier_dir, sentiment_csv, tmp_path_factory):
    """The tiny model exported fp32 or INT8 (max length 64, from its lineage), each once, when first asked.
    One ExecuTorch export takes ~20 s (XNNPACK lowering passes), so only INT8 runs by default."""
    from mobilebert_kit.stages.export import ExportConfig, run

    root = tmp_path_factory.mktemp("executorch")
    model = tiny_model_with_lineage(tiny_classifier_dir, sentiment_csv, root / "model")
    done: dict = {}

    def export(int8: bool):
        if int8 not in done:
            config = ExportConfig(
                model=str(model), output=str(root / f"e{int(int8)}"), formats=["executorch"], int8=int8
            )
            done[int8] = run(config).output
        return done[int8]

    return export


def _checks(entry: dict) -> dict:
    return {c["name"]: c for c in entry["checks"]}


@pytest.mark.slow
def test_fp32_pte_and_bundled_test_vectors_verify(exports, cli):
    out = exports(False)
    meta = read_json(out / "executorch" / META)
    assert meta["backend"] == "XNNPACK" and meta["sequence_range"] == [2, 64] and meta["int8"] is False
    bundle = meta["bundled_program"]
    assert bundle["file"] == "model.bpte" and (out / "executorch" / "model.bpte").is_file()
    assert "model.bpte" in meta["files"]  # covered by the integrity check
    lengths = [c["length"] for c in bundle["test_cases"]]
    assert min(lengths) == 2 and max(lengths) == 64  # the empty text and one truncated to max_length
    r = cli("verify", "-e", out, "--no-node")
    assert r.exit_code == 0, r.output
    e = read_json(out / "verify.json")["formats"]["executorch"]
    assert e["max_abs_diff"] < 1e-4 and e["agreement"] == 1.0
    assert e["bundled_program"]["cases"] == len(bundle["test_cases"]) and e["bundled_program"]["failed"] == []
    assert _checks(e)[BUNDLED]["passed"] is True and f"✓ {BUNDLED}: 5/5 cases within atol 0.001" in r.output


@pytest.mark.slow
def test_int8_pte_is_smaller_than_fp32(exports):
    fp32, int8 = (read_json(exports(k) / "executorch" / META) for k in (False, True))
    # 2 layers x (4 x 32x32 + 2 x 32x64) Linear weights: int8 saves 3 of 4 bytes of each (scales aside).
    linear_bytes = 2 * (4 * 32 * 32 + 2 * 32 * 64) * 4
    assert int8["size_bytes"] < fp32["size_bytes"] - 0.6 * linear_bytes


def test_int8_pte_and_bundled_test_vectors_verify(exports, cli):
    out = exports(True)
    int8 = read_json(out / "executorch" / META)
    assert int8["int8"] is True and int8["quantization"]["per_channel"] is True
    assert int8["quantization"]["mode"] == "dynamic" and int8["sequence_range"] == [2, 64]
    bundle = int8["bundled_program"]
    assert bundle["file"] == "model.bpte" and "model.bpte" in int8["files"]  # covered by the integrity check
    assert bundle["expected_from"] == "PyTorch fp32" and bundle["atol"] == 0.05
    lengths = [c["length"] for c in bundle["test_cases"]]
    assert min(lengths) == 2 and max(lengths) == 64  # the empty text and one truncated to max_length
    r = cli("verify", "-e", out, "--no-node")
    assert r.exit_code == 0, r.output
    e = read_json(out / "verify.json")["formats"]["executorch"]
    assert e["int8"] is True and 0 < e["max_abs_diff"] < 0.1 and e["agreement"] >= 0.9
    assert _checks(e)[BUNDLED]["passed"] is True
    assert e["bundled_program"]["cases"] == 5 and e["bundled_program"]["failed"] == []
    assert "✓ executorch (int8)" in r.output and f"✓ {BUNDLED}: 5/5 cases within atol 0.05" in r.output


def test_bundled_vectors_can_fail(exports, cli, tmp_path):
    """A tolerance the INT8 program cannot meet: the runtime's own comparison fails, and verify says so."""
    out = tmp_path / "e"
    shutil.copytree(exports(True), out)
    meta = read_json(out / "executorch" / META)  # not in its own sha256 list
    meta["bundled_program"]["atol"] = 1e-12
    (out / "executorch" / META).write_text(json.dumps(meta))
    r = cli("verify", "-e", out, "--no-node")
    assert r.exit_code == 1
    err = r.output.strip().splitlines()[-1]
    assert err.startswith(f"Error: 1 check(s) failed: executorch: {BUNDLED} (0/5 cases within atol 1e-12")
    assert "failed: case(s) 0, 1, 2, 3, 4" in err
