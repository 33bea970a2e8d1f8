"""Side onnxruntime versions: the app pin, install/cache/errors, verify --runtime-version with provenance,
and the packaged .ort's golden self-test in the version the Android app pins (pass when right, fail when wrong).

Tests that need the pinned side runtime skip with the reason when it cannot be installed (offline);
`make setup` installs it, so CI runs them."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import build_int8_ort_export, build_ort_export, copy_export, runtime_records

from mobilebert_kit.artifacts import read_json, write_json
from mobilebert_kit.errors import IndexUnreachableError, PackageError, RuntimeModelError, RuntimeVersionError
from mobilebert_kit.phone import golden as g
from mobilebert_kit.phone.side_runtime import SideRuntime
from mobilebert_kit.runtimes import ANDROID_ORT_VERSION, cpu_info, host_ort_version

ROOT = Path(__file__).resolve().parents[2]
PINNED_KEY = f"onnxruntime {ANDROID_ORT_VERSION}"


@pytest.fixture(scope="module")
def pinned() -> SideRuntime:
    try:
        return SideRuntime(ANDROID_ORT_VERSION).ensure()
    except RuntimeVersionError as e:
        pytest.skip(f"the app-pinned side runtime cannot be installed here ({e}); `make setup` installs it")


@pytest.fixture()
def offline(monkeypatch, tmp_path):
    """No package index reachable (a closed local port) and an empty runtime cache."""
    for k, v in {
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_CONFIG_FILE": "/dev/null",
        "PIP_EXTRA_INDEX_URL": "",
        "PIP_FIND_LINKS": "",
        "MBK_CACHE_DIR": str(tmp_path / "cache"),
    }.items():
        monkeypatch.setenv(k, v)
    return tmp_path / "cache" / "runtimes"


def test_android_pin_matches_build_gradle():
    from mobilebert_kit.formats import for_target

    gradle = (ROOT / "android_demo/app/build.gradle").read_text()
    pins = re.findall(r"com\.microsoft\.onnxruntime:onnxruntime-android:([0-9.]+)", gradle)
    assert pins == [ANDROID_ORT_VERSION]
    assert for_target("android").app_runtime_version == ANDROID_ORT_VERSION


def test_cpu_info_names_the_isa():
    import platform

    info = cpu_info()
    assert info["arch"] == platform.machine() and isinstance(info["isa"], list)
    if platform.machine() == "x86_64":
        flags = Path("/proc/cpuinfo").read_text()
        assert ("avx2" in info["isa"]) == (" avx2" in flags)


def test_unknown_version_lists_the_available_ones(tmp_path):
    with pytest.raises(RuntimeVersionError) as e:
        SideRuntime("9.9.9", root=tmp_path).ensure()
    if isinstance(e.value, IndexUnreachableError):
        pytest.skip("no package index reachable: the unknown-version message needs one")
    assert re.fullmatch(r"onnxruntime 9\.9\.9 is not on the package index; available: .*\d+\.\d+\.\d+", str(e.value))
    assert list(tmp_path.iterdir()) == []  # nothing half-installed


def test_unreachable_index_is_one_clear_error(offline):
    with pytest.raises(IndexUnreachableError, match=r"cannot install onnxruntime 1\.22\.0: the package index is not"):
        SideRuntime("1.22.0").ensure()
    assert not offline.exists() or list(offline.iterdir()) == []
    with pytest.raises(RuntimeVersionError, match=r"'1\.22; rm' is not an onnxruntime version"):
        SideRuntime("1.22; rm")


def test_second_call_installs_nothing(pinned, monkeypatch):
    import mobilebert_kit.phone.side_runtime as rt

    monkeypatch.setattr(rt, "install", lambda *a: pytest.fail("installed again"))
    again = SideRuntime(ANDROID_ORT_VERSION).ensure()
    assert again.installed() and again.path == pinned.path


def test_a_model_the_runtime_cannot_load(pinned, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, 1])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, [1, 1])
    graph = helper.make_graph([helper.make_node("Identity", ["input_ids"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 99)])
    onnx.save(model, tmp_path / "future.onnx")
    with pytest.raises(RuntimeModelError, match=rf"onnxruntime {ANDROID_ORT_VERSION} cannot load .*future\.onnx"):
        pinned.run(tmp_path / "future.onnx", [{"input_ids": np.zeros((1, 1), dtype=np.int64)}])


# --------------------------------------------------------------------------- verify --runtime-version


@pytest.fixture(scope="module")
def exported(tiny_classifier_dir, sentiment_csv, tmp_path_factory) -> Path:
    from mobilebert_kit.stages.export import ExportConfig, run

    root = tmp_path_factory.mktemp("rtverify")
    model = Path(shutil.copytree(tiny_classifier_dir, root / "model"))
    (model / "manifest.json").write_text(json.dumps({"stage": "finetune", "data": {"data": str(sentiment_csv)}}))
    return run(ExportConfig(model=str(model), output=str(root / "export"), formats=["onnx", "ort"])).output


@pytest.fixture()
def export_copy(exported, tmp_path) -> Path:
    return Path(shutil.copytree(exported, tmp_path / "export"))


def test_verify_in_the_pinned_version_records_provenance(pinned, export_copy, cli):
    r = cli("verify", "-e", export_copy, "--runtime-version", ANDROID_ORT_VERSION, "--no-node")
    assert r.exit_code == 0, r.output
    report = read_json(export_copy / "verify.json")
    for fmt in ("onnx", "ort"):
        runtimes = report["formats"][fmt]["runtimes"]
        assert set(runtimes) == {f"onnxruntime {host_ort_version()}", PINNED_KEY}
        side = runtimes[PINNED_KEY]
        assert side["passed"] is True and side["agreement"] == 1.0 and side["max_abs_diff"] < 1e-4
        assert side["n"] == report["pytorch"]["n"] and side["max_abs_diff_vs_host"] < 1e-4
        p = side["provenance"]
        assert (p["runtime"], p["version"], p["threads"], p["emulated"]) == (
            "onnxruntime",
            ANDROID_ORT_VERSION,
            2,
            False,
        )
        assert p["cpu"] == cpu_info() and p["environment"] == str(pinned.path)
        assert report["formats"][fmt]["provenance"]["version"] == host_ort_version()
    assert f"✓ onnxruntime {ANDROID_ORT_VERSION}: logits label agreement" in r.output
    assert re.search(rf"✓ ort +onnxruntime {re.escape(ANDROID_ORT_VERSION)} +{cpu_info()['arch']}", r.output)
    assert "What was proved" in r.output


BENCH_SHORT = ("--seq-lengths", "8,24", "--threads", "1,2", "--runs", "4", "--rounds", "2", "--warmup", "1")


def test_bench_times_the_ort_in_the_pinned_version(pinned, exported, cli, tmp_path):
    r = cli("bench", "-e", exported, "--no-pytorch", *BENCH_SHORT, "-o", tmp_path / "b")  # auto
    assert r.exit_code == 0, r.output
    result = read_json(tmp_path / "b" / "bench.json")
    side = [row for row in result["rows"] if row["runtime"] == PINNED_KEY]
    # only the .ort is the Android app's model; the .onnx stays host-only under auto
    assert {row["model"] for row in side} == {f"ort fp32 @ {PINNED_KEY}"}
    assert sorted((row["threads"], row["seq_len"]) for row in side) == [(1, 8), (1, 24), (2, 8), (2, 24)]
    host = {(row["threads"], row["seq_len"]): row for row in result["rows"] if row["model"] == "ort fp32"}
    for row in side:
        assert row["runs"] == 4 and 0 < row["min_ms"] <= row["p50_ms"] <= row["p99_ms"]
        assert row["memory_mb"] is None and row["size_mb"] == host[(row["threads"], row["seq_len"])]["size_mb"]
    assert f"| ort fp32 @ {PINNED_KEY} | {PINNED_KEY} | 2 | 1 | 24 |" in (tmp_path / "b" / "bench.md").read_text()
    r = cli(
        "bench",
        "-e",
        exported,
        "-f",
        "onnx",
        "--no-pytorch",
        *BENCH_SHORT,
        "--runtime-version",
        ANDROID_ORT_VERSION,
        "-o",
        tmp_path / "c",
    )  # asked for: the .onnx too
    assert r.exit_code == 0, r.output
    models = {row["model"] for row in read_json(tmp_path / "c" / "bench.json")["rows"]}
    assert models == {"onnx fp32", f"onnx fp32 @ {PINNED_KEY}"}


def test_bench_offline_auto_skips_explicit_fails(offline, exported, cli, tmp_path):
    r = cli("bench", "-e", exported, "-f", "ort", "--no-pytorch", *BENCH_SHORT, "-o", tmp_path / "b")
    assert r.exit_code == 0, r.output
    result = read_json(tmp_path / "b" / "bench.json")
    assert {row["runtime"] for row in result["rows"]} == {"onnxruntime"}
    assert any(
        s.startswith(f"ort fp32 in onnxruntime {ANDROID_ORT_VERSION}: cannot install") for s in result["skipped"]
    )
    r = cli(
        "bench",
        "-e",
        exported,
        "-f",
        "ort",
        *BENCH_SHORT,
        "--runtime-version",
        ANDROID_ORT_VERSION,
        "-o",
        tmp_path / "c",
    )
    assert r.exit_code == 1 and r.output.count("Error:") == 1 and "Traceback" not in r.output
    assert r.output.strip().splitlines()[-1].startswith(f"Error: cannot install onnxruntime {ANDROID_ORT_VERSION}")
    assert not (tmp_path / "c").exists()


def test_verify_offline_auto_skips_explicit_fails(offline, export_copy, cli):
    r = cli("verify", "-e", export_copy, "-f", "ort", "--no-node")  # auto: the app-pinned version, not installable
    assert r.exit_code == 0, r.output
    assert f"– onnxruntime {ANDROID_ORT_VERSION}: parity: skipped: cannot install" in r.output
    rec = read_json(export_copy / "verify.json")["formats"]["ort"]["runtimes"][PINNED_KEY]
    assert rec["passed"] is None and "not reachable" in rec["skipped"]
    r = cli("verify", "-e", export_copy, "-f", "ort", "--no-node", "--runtime-version", ANDROID_ORT_VERSION)
    assert r.exit_code == 1 and r.output.count("Error:") == 1
    assert r.output.strip().splitlines()[-1] == (
        f"Error: cannot install onnxruntime {ANDROID_ORT_VERSION}: the package index is not reachable "
        "(no network?); connect and retry"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--runtime-version", "latest"], "--runtime-version: 'latest' is not an onnxruntime version"),
        (["--runtime-version", "none", "--runtime-version", "1.22.0"], "none cannot be combined with other versions"),
    ],
)
def test_verify_bad_runtime_versions(export_copy, cli, args, message):
    before = (export_copy / "verify.json").exists()
    r = cli("verify", "-e", export_copy, *args)
    assert r.exit_code != 0 and r.output.count("Error:") == 1 and message in r.output
    assert (export_copy / "verify.json").exists() == before


def test_verify_nonexistent_version(export_copy, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("MBK_CACHE_DIR", str(tmp_path / "cache"))
    r = cli("verify", "-e", export_copy, "--runtime-version", "9.9.9", "--no-node")
    if "not reachable" in r.output:
        pytest.skip("no package index reachable")
    last = r.output.strip().splitlines()[-1]
    assert r.exit_code == 1 and r.output.count("Error:") == 1
    assert last.startswith("Error: onnxruntime 9.9.9 is not on the package index; available: ") and "1.22.0" in last
    assert not (export_copy / "verify.json").exists()


# --------------------------------------------------------------------------- package + golden self-test


def _package(export: Path, out: Path, **kw) -> Path:
    from mobilebert_kit.stages.package import PackageConfig, run

    return run(PackageConfig(target="android", export_dir=str(export), output=str(out), make_zip=False, **kw)).output


def _scaled_classifier(src: Path, dest: Path, scale: float) -> Path:
    """``src`` with its classifier head multiplied by ``scale``: a random tiny BERT's logits are ~0.05, a
    trained one's ~1-3; scale 60 gives realistic margins, -60 the same model with its labels swapped."""
    import torch
    from transformers import BertForSequenceClassification

    shutil.copytree(src, dest)
    model = BertForSequenceClassification.from_pretrained(src)
    with torch.no_grad():
        model.classifier.weight.mul_(scale)
        model.classifier.bias.mul_(scale)
    model.save_pretrained(dest)
    return dest


@pytest.fixture(scope="module")
def confident(tiny_classifier_dir, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("confident")
    return (
        _scaled_classifier(tiny_classifier_dir, root / "right", 60.0),
        _scaled_classifier(tiny_classifier_dir, root / "swapped", -60.0),
    )


@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
def test_packaged_ort_self_test_in_the_pinned_version(pinned, confident, tmp_path, int8):
    """The bundle names 1.22.0; its golden vectors pass in 1.22.0 (and 1.32) and fail for a wrong model
    or perturbed golden logits, by the rule the apps apply (golden.check_golden)."""
    from mobilebert_kit.formats.ort import BundleRuntime, bundle_feeds

    right, swapped = confident
    build = build_int8_ort_export if int8 else build_ort_export
    bundle = _package(build(tmp_path / "e", right), tmp_path / "pkg")
    meta, golden = read_json(bundle / "model_meta.json"), read_json(bundle / "golden.json")
    assert meta["runtime"]["version"] == golden["runtime"]["version"] == ANDROID_ORT_VERSION
    assert meta["runtime"]["verified"] is True and golden["tolerance"]["int8"] is int8
    assert all(v["atol"] >= (g.K_SPREAD * g.INT8_DRIFT if int8 else g.FP32_FLOOR) for v in golden["vectors"])
    for v in golden["vectors"]:  # labels are checked exactly where the margin makes them certain
        assert v["check_label"] == (v["margin"] > g.MARGIN_FACTOR * v["atol"])
    assert sum(v["check_label"] for v in golden["vectors"]) >= g.MIN_LABEL_VECTORS

    def in_pinned(model: Path):
        """The app's call per vector (batch 1, unpadded, 1 thread), all vectors in one worker process."""
        ids = [v["input_ids"] for v in golden["vectors"]]
        outs = pinned.run(model, [bundle_feeds(i, golden["pad_id"], golden["fixed_length"]) for i in ids])[1]
        table = {tuple(i): o[0] for i, o in zip(ids, outs)}
        return lambda i: table[tuple(i)]

    assert g.check_golden(golden, meta["labels"], in_pinned(bundle / "model.ort")) == []  # 1.22 reads 1.32's .ort
    host = BundleRuntime(bundle / "model.ort")
    assert g.check_golden(golden, meta["labels"], lambda ids: host.logits(ids, 0)) == []
    # Perturbed golden logits: one vector off by twice its tolerance fails, and only that one.
    bad = json.loads(json.dumps(golden))
    bad["vectors"][1]["logits"][0] += 2 * bad["vectors"][1]["atol"]
    assert g.check_golden(bad, meta["labels"], in_pinned(bundle / "model.ort")) == [
        f"golden #1: max |logit diff| {2 * bad['vectors'][1]['atol']:.2e} > atol {bad['vectors'][1]['atol']:.1e}"
    ]
    # A deliberately wrong model (labels swapped) fails every vector whose label is certain.
    wrong = build(tmp_path / "w", swapped) / "ort" / "model.ort"
    failures = g.check_golden(golden, meta["labels"], in_pinned(wrong))
    assert len(failures) >= sum(v["check_label"] for v in golden["vectors"]) and "max |logit diff|" in failures[0]


def test_package_refuses_an_unverified_runtime(tiny_classifier_dir, tmp_path, cli):
    export = copy_export(build_ort_export(tmp_path / "e", tiny_classifier_dir), tmp_path / "export")
    v = read_json(export / "verify.json")
    v["formats"]["ort"]["runtimes"] = {}
    write_json(export / "verify.json", v)
    with pytest.raises(PackageError) as e:
        _package(export, tmp_path / "pkg")
    version = re.search(r"in onnxruntime (\S+),", str(e.value)).group(1)
    assert version in (ANDROID_ORT_VERSION, host_ort_version())
    assert str(e.value).startswith(f"the 'ort' export was never verified in onnxruntime {version}, the runtime")
    assert str(e.value).endswith(
        f"run `mbk verify --runtime-version {version}` first (or pass --allow-unverified-runtime)"
    )
    assert not (tmp_path / "pkg").exists()
    r = cli("package", "-t", "android", "--export-dir", export, "-o", tmp_path / "pkg", "--no-zip")
    assert r.exit_code == 1 and r.output.count("Error:") == 1 and "--allow-unverified-runtime" in r.output
    r = cli("package", "-t", "android", "--export-dir", export, "-o", tmp_path / "pkg", "--no-zip", "-q", "--json",
            "--allow-unverified-runtime")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert read_json(tmp_path / "pkg" / "model_meta.json")["runtime"]["verified"] is False
    # a failed record is refused too, naming the failure
    v["formats"]["ort"]["runtimes"] = runtime_records()
    for rec in v["formats"]["ort"]["runtimes"].values():
        rec["passed"] = False
    write_json(export / "verify.json", v)
    with pytest.raises(PackageError, match=r"the 'ort' export failed in onnxruntime \S+, the runtime"):
        _package(export, tmp_path / "pkg2")


@pytest.mark.parametrize("edit", ["golden", "model"])
def test_tampered_bundle_is_caught(tiny_classifier_dir, tmp_path, edit):
    from mobilebert_kit.stages.package import verify_bundle

    bundle = _package(build_ort_export(tmp_path / "e", tiny_classifier_dir), tmp_path / "pkg")
    assert verify_bundle(bundle) == []
    if edit == "golden":
        golden = read_json(bundle / "golden.json")
        golden["vectors"][0]["atol"] = 10.0  # loosening the self-test is tampering too
        write_json(bundle / "golden.json", golden)
        assert verify_bundle(bundle) == ["golden.json: sha256 differs"]
    else:
        with open(bundle / "model.ort", "ab") as f:
            f.write(b"\0")
        assert verify_bundle(bundle) == ["model.ort: sha256 differs"]
