"""ARM64 parity under QEMU (``mbk verify --arm``): SKIP and error paths, the worker protocol through a
stand-in qemu that runs the worker on the host (fast), and the real emulator on the tiny model (slow)."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_model_with_lineage

from mobilebert_kit.artifacts import read_json
from mobilebert_kit.errors import ConfigError, DeviceError
from mobilebert_kit.phone import emulation

HOST_ORT = version("onnxruntime")


@pytest.fixture(scope="module")
def tiny_export(tiny_classifier_dir, sentiment_csv, tmp_path_factory):
    """The tiny classifier exported to onnx and ort (fp32), verified on its 16 test examples."""
    from mobilebert_kit.stages.export import ExportConfig, run

    root = tmp_path_factory.mktemp("arm")
    model = tiny_model_with_lineage(tiny_classifier_dir, sentiment_csv, root / "model")
    return run(ExportConfig(model=str(model), output=str(root / "export"), formats=["onnx", "ort"])).output


@pytest.fixture()
def export_dir(tiny_export, tmp_path):
    dst = tmp_path / "export"
    shutil.copytree(tiny_export, dst)
    return dst


def fake_qemu(tmp_path: Path, monkeypatch, body: str = "", qemu_version: str = "10.0.2") -> Path:
    """A stand-in ``qemu-aarch64`` on PATH that runs the worker with this (host) python, logging QEMU_CPU,
    and a cache that looks installed for the host's onnxruntime version."""
    cache = tmp_path / "cache"
    (cache / "arm64" / "root" / "usr" / "bin").mkdir(parents=True)
    (cache / "arm64" / "root" / emulation.ARM_PYTHON).touch()
    (cache / "arm64" / "wheels" / f"onnxruntime-{HOST_ORT}").mkdir(parents=True)
    (cache / "arm64" / "wheels" / f"onnxruntime-{HOST_ORT}" / ".complete").touch()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "qemu-aarch64"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "--version" ]; then echo "qemu-aarch64 version {qemu_version}"; exit 0; fi\n'
        f'echo "$QEMU_CPU" >> "{tmp_path / "cpus.log"}"\n'
        f"{body}\n"
        "shift 3  # -L ROOT ARM_PYTHON\n"
        f'exec "{sys.executable}" "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MBK_ARM_CACHE", str(cache / "arm64"))
    return tmp_path / "cpus.log"


def verify(cli, export_dir, *args):
    return cli("verify", "--export-dir", export_dir, "-f", "onnx", "--no-node", *args)


def test_worker_protocol_same_kernels_same_logits(export_dir, cli, tmp_path, monkeypatch):
    """Host onnxruntime behind a fake qemu: identical batches must give identical logits (|Δ| exactly 0)."""
    cpus_log = fake_qemu(tmp_path, monkeypatch)
    r = verify(cli, export_dir, "--arm", "on", "--arm-cpus", "cortex-a53,max", "--arm-ort-versions", HOST_ORT)
    assert r.exit_code == 0, r.output
    assert sorted(cpus_log.read_text().split()) == ["cortex-a53", "max"]  # QEMU_CPU picks the emulated CPU
    arm = read_json(export_dir / "verify.json")["formats"]["onnx"]["arm64"]
    assert arm["n"] == arm["of"] == 16 and [run["cpu"] for run in arm["runs"]] == ["cortex-a53", "max"]
    for run in arm["runs"]:
        assert run["emulated"] is True and run["emulator"] == "qemu-aarch64 10.0.2 user mode"
        assert run["runtime"] == {"name": "onnxruntime", "version": HOST_ORT, "build": "PyPI aarch64 wheel"}
        assert run["max_abs_diff_vs_x86"] == 0.0 and run["flips_vs_x86"] == [] and run["passed"] is True
        assert run["max_abs_diff"] < 1e-4 and run["agreement"] == 1.0 and run["flipped"] == []
    assert arm["across_cpus"][HOST_ORT]["max_abs_diff"] == 0.0
    assert arm["across_cpus"][HOST_ORT]["identical_logits"] == [["cortex-a53", "max"]]
    assert f"✓ arm64 max onnxruntime {HOST_ORT}: logits label agreement: 100.00% >= 99.50%" in r.output
    assert f"arm64 cortex-a53 onnxruntime {HOST_ORT}: vs x86 onnxruntime {HOST_ORT}: max|Δ| 0, 0 label flip" in r.output
    assert "0 label flip(s) of 16; 0 flip(s) in 16 texts -> < 17.1% at 95%" in r.output
    bound = arm["bound"]
    assert bound["flip_rate_upper_95"] == pytest.approx(1 - 0.05 ** (1 / 16)) and bound["configurations_run"] == 2
    assert bound["max_abs_diff_vs_x86"] == 0.0 and bound["sized_for_flip_bound"] == 0.03
    assert arm["runs"][0]["flip_rate_upper_95_vs_x86"] == bound["flip_rate_upper_95"]


def test_guest_threads_are_pinned_to_one(export_dir, cli, tmp_path, monkeypatch):
    """The emulated python gets one BLAS/OpenMP thread: an idle guest worker spins, and under QEMU that burned a
    whole host core per emulator (user 45 s for 24 s wall), so two emulators on 2 cores ran no faster than one."""
    fake_qemu(tmp_path, monkeypatch, f'echo "$OPENBLAS_NUM_THREADS $OMP_NUM_THREADS" >> "{tmp_path / "env.log"}"')
    r = verify(cli, export_dir, "--arm", "on", "--arm-cpus", "cortex-a53", "--arm-ort-versions", HOST_ORT)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "env.log").read_text().split() == ["1", "1"]


def test_emulated_runs_go_in_parallel_up_to_the_cores(export_dir, cli, tmp_path, monkeypatch):
    """The (version, CPU) runs are processes started together: with parallel 3 all three are alive at once;
    with parallel 1 never two; the default follows the cores this process may use."""
    running = tmp_path / "running"
    running.mkdir()
    body = (
        f'touch "{running}/$QEMU_CPU"; ls "{running}" | wc -l >> "{tmp_path}/overlap.log"; sleep 1; '
        f'rm "{running}/$QEMU_CPU"'
    )
    fake_qemu(tmp_path, monkeypatch, body)
    three = ("--arm-cpus", "cortex-a53,cortex-a76,max", "--arm-ort-versions", HOST_ORT)
    r = cli("verify", "--export-dir", export_dir, "-f", "onnx", "--no-node", "--arm", "on", *three)
    assert r.exit_code == 0, r.output
    assert emulation.ArmParity(emulation.ArmConfig(mode="off")).workers(99) == len(os.sched_getaffinity(0))
    assert emulation.ArmParity(emulation.ArmConfig(mode="off", parallel=4)).workers(3) == 3
    from mobilebert_kit.stages.verify import VerifyConfig, run

    overlap = tmp_path / "overlap.log"
    overlap.unlink()
    cfg = {"export_dir": str(export_dir), "formats": ["onnx"], "node": "off", "runtime_versions": ["none"]}
    arm = {"mode": "on", "cpus": ["cortex-a53", "cortex-a76", "max"], "ort_versions": [HOST_ORT]}
    run(VerifyConfig.from_dict({**cfg, "arm": {**arm, "parallel": 3}}))
    assert max(map(int, overlap.read_text().split())) == 3
    overlap.unlink()
    run(VerifyConfig.from_dict({**cfg, "arm": {**arm, "parallel": 1}}))
    assert max(map(int, overlap.read_text().split())) == 1


def test_flip_bound_is_the_exact_clopper_pearson_upper_limit():
    from mobilebert_kit.phone.flip_bound import bound_line, flip_rate_upper, texts_for_bound

    assert texts_for_bound(0.03) == 99 and texts_for_bound(0.01) == 299
    assert flip_rate_upper(0, 99) < 0.03 <= flip_rate_upper(0, 98)
    # scipy.stats.beta.ppf(0.95, k + 1, n - k), the exact one-sided limit
    assert flip_rate_upper(1, 300) == pytest.approx(0.0157146, abs=1e-6)
    assert flip_rate_upper(5, 300) == pytest.approx(0.0347222, abs=1e-6)
    assert flip_rate_upper(0, 0) == flip_rate_upper(3, 3) == 1.0
    assert bound_line(0, 99) == "0 flip(s) in 99 texts -> < 3.0% at 95%"


def test_seeded_subset_is_gated_on_its_own_reference(export_dir, cli, tmp_path, monkeypatch):
    fake_qemu(tmp_path, monkeypatch)
    versions = f"{HOST_ORT},{emulation.ANDROID_ORT_VERSION}"
    r = verify(
        cli,
        export_dir,
        "--arm",
        "auto",
        "--arm-cpus",
        "cortex-a76",
        "--arm-examples",
        "5",
        "--arm-ort-versions",
        versions,
    )
    assert r.exit_code == 0, r.output
    arm = read_json(export_dir / "verify.json")["formats"]["onnx"]["arm64"]
    assert arm["n"] == 5 and arm["of"] == 16 and arm["runs"][0]["n"] == 5
    assert arm["bound"]["sized_for_flip_bound"] is None  # --arm-examples asked for the size
    # the Android app's onnxruntime is not in the fake cache: a SKIP row naming the fix, not a failure
    skipped = [run for run in arm["runs"] if "skipped" in run]
    if HOST_ORT != emulation.ANDROID_ORT_VERSION:
        assert skipped and skipped[0]["skipped"].endswith("; run `make arm-emu`")
        assert f"– arm64 cortex-a76 onnxruntime {emulation.ANDROID_ORT_VERSION}: SKIP: no aarch64" in r.output


def test_crash_under_emulation_fails_the_check(export_dir, cli, tmp_path, monkeypatch):
    fake_qemu(tmp_path, monkeypatch, body='echo "Segmentation fault" >&2; exit 139')
    r = verify(cli, export_dir, "--arm", "auto", "--arm-cpus", "max", "--arm-ort-versions", HOST_ORT)
    assert r.exit_code == 1
    assert f"onnxruntime {HOST_ORT} on emulated max failed (exit 139): Segmentation fault" in r.output
    assert read_json(export_dir / "verify.json")["formats"]["onnx"]["arm64"]["runs"][0]["error"]


def test_not_installed_auto_skips_on_errors(export_dir, cli):
    r = verify(cli, export_dir)  # the suite's cache is empty: auto skips
    assert r.exit_code == 0, r.output
    assert f"– arm64 parity (QEMU user mode): SKIP: {emulation.NOT_INSTALLED}" in r.output
    assert read_json(export_dir / "verify.json")["formats"]["onnx"]["arm64"].startswith("skipped: ARM64 emulation")
    before = (export_dir / "verify.json").read_bytes()
    r = verify(cli, export_dir, "--arm", "on")
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert r.exit_code == 1 and len(errors) == 1 and "Traceback" not in r.output
    assert errors[0].startswith(f"Error: {emulation.NOT_INSTALLED}")
    assert (export_dir / "verify.json").read_bytes() == before  # nothing written
    r = verify(cli, export_dir, "--arm", "off")
    assert r.exit_code == 0 and "SKIP: disabled (--arm off)" in r.output


def test_missing_onnxruntime_version_with_arm_on(export_dir, cli, tmp_path, monkeypatch):
    fake_qemu(tmp_path, monkeypatch)
    r = verify(cli, export_dir, "--arm", "on", "--arm-ort-versions", "1.17.3")
    assert r.exit_code == 1 and r.output.count("Error:") == 1
    assert (
        "Error: ARM64 emulation incomplete: no aarch64 onnxruntime 1.17.3" in r.output
        and "make arm-emu ARM_ORT_VERSIONS=1.17.3" in r.output
    )


def test_old_qemu_is_not_installed(tmp_path, monkeypatch):
    fake_qemu(tmp_path, monkeypatch, qemu_version="7.2.9")
    with pytest.raises(DeviceError, match="qemu-aarch64 7.2.9 is older than 8.*bookworm-backports"):
        emulation.find_emulator()
    monkeypatch.setattr(emulation.shutil, "which", lambda name: None)
    with pytest.raises(DeviceError, match="no qemu-aarch64 on PATH"):
        emulation.find_emulator()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arm-cpus", "cortex-a99"], "got 'cortex-a99'"),
        (["--arm-cpus", "cortex-a53,Max"], "got 'Max' (did you mean 'max'?)"),
        (["--arm-examples", "0"], "examples must be in [1, inf)"),
        (["--arm-ort-versions", "latest"], "'latest' is not an onnxruntime version"),
        (["--arm", "sometimes"], "Invalid value for '--arm'"),
    ],
)
def test_bad_arm_options(cli, tmp_path, args, message):
    r = cli("verify", "--export-dir", tmp_path, *args)
    assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output


def test_recipe_section_reaches_arm_config():
    from mobilebert_kit.stages.verify import VerifyConfig

    cfg = VerifyConfig.from_dict({"arm": {"mode": "on", "cpus": "cortex-a710,max", "examples": 50}})
    assert cfg.arm.mode == "on" and cfg.arm.cpus == ["cortex-a710", "max"] and cfg.arm.examples == 50
    assert VerifyConfig().arm.cpus == list(emulation.DEFAULT_CPUS) and VerifyConfig().arm.mode == "auto"
    with pytest.raises(ConfigError, match="unknown key 'arm.cpu' \\(did you mean 'arm.cpus'"):
        VerifyConfig.from_dict({"arm": {"cpu": ["max"]}})


def test_unknown_cpu_model_refused_by_runner(tmp_path):
    emulator = emulation.Emulator("qemu-aarch64", "10.0.2", tmp_path)
    with pytest.raises(DeviceError, match="unknown QEMU CPU model 'pentium'"):
        emulator.run(tmp_path / "m.onnx", [], "1.22.0", "pentium")
    with pytest.raises(ConfigError, match="did you mean 'cortex-a76'"):
        emulation.ArmConfig(cpus=["cortex-a67"])


def test_across_cpus_names_the_examples_that_flip():
    a = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.1]], dtype=np.float32)
    b = a.copy()
    b[2] = [0.1, 0.2]  # the third example flips on the second CPU
    out = emulation.across_cpus({("1.32.0", "cortex-a53"): a, ("1.32.0", "max"): b}, np.array([4, 7, 9]))
    assert out["1.32.0"]["examples_labelled_differently"] == [9]
    assert out["1.32.0"]["max_abs_diff"] == pytest.approx(0.1)
    assert out["1.32.0"]["identical_logits"] == [["cortex-a53"], ["max"]]
    same = emulation.across_cpus({("1.22.0", c): a for c in ("cortex-a53", "cortex-a76", "max")}, np.arange(3))
    assert same["1.22.0"]["identical_logits"] == [["cortex-a53", "cortex-a76", "max"]]


@pytest.mark.slow
def test_real_emulation_on_tiny_model(real_arm_emulation, export_dir, cli):
    """The tiny fp32 .ort in the aarch64 onnxruntime on two emulated CPUs: features differ, logits agree."""
    r = cli(
        "verify", "--export-dir", export_dir, "-f", "ort", "--no-node", "--arm", "on", "--arm-cpus", "cortex-a53,max"
    )
    assert r.exit_code == 0, r.output
    arm = read_json(export_dir / "verify.json")["formats"]["ort"]["arm64"]
    runs = {(run["runtime"]["version"], run["cpu"]): run for run in arm["runs"]}
    assert set(runs) == {(emulation.ANDROID_ORT_VERSION, c) for c in ("cortex-a53", "max")}  # the app's pin
    for (_, cpu), run in runs.items():
        assert run["emulated"] and run["n"] == 16 and run["max_abs_diff"] < 1e-3 and run["agreement"] == 1.0
        assert ("sme" in run["cpu_features"]) == (cpu == "max")  # QEMU_CPU decides what onnxruntime sees
        assert ("asimddp" in run["cpu_features"]) == (cpu == "max")
