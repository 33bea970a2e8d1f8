"""mbk bench on the tiny BERT: a short real run, the outputs it writes, and bad input."""

from __future__ import annotations

import pytest

from mobilebert_kit.artifacts import read_json


@pytest.fixture(scope="module")
def exported(tiny_classifier_dir, tmp_path_factory):
    from mobilebert_kit.stages.export import ExportConfig, run

    return run(
        ExportConfig(
            model=str(tiny_classifier_dir),
            output=str(tmp_path_factory.mktemp("bench") / "export"),
            formats=["onnx", "ort"],
            max_length=64,
        )
    ).output


def test_help(cli):
    r = cli("bench", "--help")
    assert r.exit_code == 0 and "p50/p90/p99" in r.output and "mbk bench --seq-lengths" in r.output


def test_short_run_writes_json_and_markdown(exported, cli, tmp_path):
    r = cli(
        "bench",
        "-e",
        exported,
        "--seq-lengths",
        "8,32,128",
        "--threads",
        "1",
        "--batch-sizes",
        "1,2",
        "--runs",
        "4",
        "--rounds",
        "2",
        "--warmup",
        "1",
        "--runtime-version",
        "none",  # this environment's onnxruntime only (side versions: test_runtimes.py)
        "-o",
        tmp_path / "b",
    )
    assert r.exit_code == 0, r.output
    result = read_json(tmp_path / "b" / "bench.json")
    rows = result["rows"]
    models = {row["model"] for row in rows}
    assert models == {"onnx fp32", "ort fp32", "pytorch fp32 (source)"}
    ort_rows = [row for row in rows if row["runtime"] == "onnxruntime"]
    assert len(ort_rows) == 2 * 2 * 2  # seq 128 > max_length 64 is skipped for the exports
    assert any("seq 128 > max_length 64" in s for s in result["skipped"])
    for row in rows:
        assert 0 < row["min_ms"] <= row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["runs"] == 4 and row["size_mb"] > 0
    assert result["peak_rss_mb"] > 0
    md = (tmp_path / "b" / "bench.md").read_text()
    assert md.startswith("# mbk bench") and "| onnx fp32 | onnxruntime | 1 | 2 | 32 |" in md


def test_missing_file(cli, tmp_path):
    r = cli("bench", "--model", tmp_path / "missing.onnx", "-o", tmp_path / "b")
    assert r.exit_code == 1
    assert r.output.strip() == f"Error: model file {tmp_path / 'missing.onnx'} does not exist; check the path"
    assert not (tmp_path / "b").exists()
    r = cli("bench", "-e", tmp_path / "noexport", "-o", tmp_path / "b")
    assert r.exit_code == 1
    assert f"Error: export folder {tmp_path / 'noexport'} does not exist; run `mbk export` first" in r.output
    (tmp_path / "e" / "onnx").mkdir(parents=True)  # a folder that holds no exported default format
    r = cli("bench", "-e", tmp_path / "e", "-o", tmp_path / "b")
    assert r.exit_code == 1 and "holds none of the formats bench times by default (onnx, ort)" in r.output
    r = cli("bench", "-e", tmp_path / "e", "-f", "ort", "-o", tmp_path / "b")  # asked for: named
    assert r.exit_code == 1 and "run `mbk export --format ort` first" in r.output


def test_bad_options(cli, tmp_path, exported):
    r = cli("bench", "-e", exported, "--runs", "2", "--rounds", "3", "-o", tmp_path / "b")
    assert r.exit_code == 1 and "runs (2) must be >= rounds (3)" in r.output
    r = cli("bench", "-e", exported, "--seq-lengths", "a,b", "-o", tmp_path / "b")
    assert r.exit_code == 2 and "expected comma-separated integers" in r.output


def test_pte_without_executorch(cli, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "executorch.runtime", None)
    (tmp_path / "m.pte").write_bytes(b"\0")
    r = cli("bench", "--model", tmp_path / "m.pte", "-o", tmp_path / "b")
    assert r.exit_code == 1 and "needs the optional extra: pip install 'mobilebert_kit[executorch]'" in r.output
    assert not (tmp_path / "b").exists()


def test_only_impossible_lengths_is_an_error_not_an_empty_result(cli, tmp_path, exported):
    r = cli("bench", "-e", exported, "--seq-lengths", "512", "-o", tmp_path / "b")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "Error: nothing to time: every case was skipped (" in r.output and "seq 512 > max_length 64" in r.output
    assert not (tmp_path / "b").exists()


def test_a_bare_model_file_takes_its_exports_vocabulary_and_garbage_is_named(cli, tmp_path, exported):
    """`mbk bench -m export/onnx/model.onnx` reads the model_meta.json beside it (a trimmed vocabulary refuses
    the default token ids); a file that is not what its suffix says is one clear line."""
    from mobilebert_kit.artifacts import read_json
    from mobilebert_kit.stages.bench import _sibling_meta

    onnx = exported / "onnx" / "model.onnx"
    meta = _sibling_meta(onnx)
    assert meta == read_json(exported / "onnx" / "model_meta.json") and meta["vocab_size"] == 30522
    copy = tmp_path / "alone.onnx"
    copy.write_bytes(onnx.read_bytes())
    assert _sibling_meta(copy) == {}  # no meta beside it, or one describing another file: the defaults
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a torchscript archive")
    r = cli("bench", "-m", garbage, "--no-pytorch", "--runs", "3", "-o", tmp_path / "b")
    assert r.exit_code == 1 and r.output.startswith(f"Error: could not load {garbage} as torchscript (")
    assert "internal error" not in r.output and not (tmp_path / "b").exists()
