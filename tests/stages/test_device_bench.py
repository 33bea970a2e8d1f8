"""mbk device-bench: skip without adb/phone, errors for unauthorized/offline, parsing of recorded
adb/logcat output, and the whole flow against a fake adb that replays a recorded session."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from mobilebert_kit.artifacts import read_json, write_json
from mobilebert_kit.errors import DeviceError
from mobilebert_kit.stages.device_bench import (
    DeviceBenchConfig,
    DeviceSkip,
    parse_bench_line,
    parse_devices,
    pick_device,
    run,
)

SHA = "b5289ae5cbd9ca038fb4bc0c278d3b0d8f268e90885fdbce6d57a9d6ced167f0"

# Recorded from real adb sessions (serials anonymised).
DEVICES_OK = """* daemon not running; starting now at tcp:5037
* daemon started successfully
List of devices attached
R58N12ABCDE            device usb:1-1 product:a52qnsxx model:SM_A525F device:a52q transport_id:1

"""
DEVICES_UNAUTHORIZED = "List of devices attached\nR58N12ABCDE            unauthorized usb:1-1 transport_id:2\n\n"
DEVICES_OFFLINE = "List of devices attached\nemulator-5554\toffline\n\n"
DEVICES_NONE = "List of devices attached\n\n"
DEVICES_TWO = (
    "List of devices attached\nR58N12ABCDE device usb:1-1 model:SM_A525F transport_id:1\n"
    "emulator-5554 device product:sdk_gphone64_x86_64 model:sdk_gphone64_x86_64 transport_id:3\n"
)
LOGCAT = f"""--------- beginning of main
I/MBK_BENCH(12873): {{"warmup":10,"runs":50,"p50_ms":4.12,"p90_ms":5.87,"mean_ms":4.40,"tokens":11,"model_sha256":"{SHA}","ort":"1.22.0","label":"positive"}}
"""
LOGCAT_THREADTIME = (
    f"""11-24 03:20:01.123 12873 12890 I MBK_BENCH: {{"p50_ms":3.5,"p90_ms":4.0,"model_sha256":"{SHA}"}}"""
)


def test_parse_devices_recorded_output():
    devs = parse_devices(DEVICES_OK)
    assert [(d.serial, d.state) for d in devs] == [("R58N12ABCDE", "device")]
    assert devs[0].props["model"] == "SM_A525F"
    assert parse_devices(DEVICES_NONE) == []
    assert [d.state for d in parse_devices(DEVICES_UNAUTHORIZED)] == ["unauthorized"]
    assert [(d.serial, d.state) for d in parse_devices(DEVICES_OFFLINE)] == [("emulator-5554", "offline")]


def test_pick_device_errors_and_skips():
    with pytest.raises(DeviceError, match=r"^device R58N12ABCDE is unauthorized; unlock the phone, accept"):
        pick_device(parse_devices(DEVICES_UNAUTHORIZED), None)
    with pytest.raises(
        DeviceError, match=r"^device emulator-5554 is offline; replug the USB cable or run `adb reconnect`"
    ):
        pick_device(parse_devices(DEVICES_OFFLINE), None)
    with pytest.raises(DeviceSkip, match="no Android device attached"):
        pick_device([], None)
    with pytest.raises(DeviceError, match=r"2 devices attached .* pick one with --serial"):
        pick_device(parse_devices(DEVICES_TWO), None)
    assert pick_device(parse_devices(DEVICES_TWO), "emulator-5554").serial == "emulator-5554"


def test_parse_bench_line_recorded_logcat():
    r = parse_bench_line(LOGCAT)
    assert (r["p50_ms"], r["p90_ms"], r["model_sha256"], r["tokens"]) == (4.12, 5.87, SHA, 11)
    assert parse_bench_line(LOGCAT_THREADTIME)["p50_ms"] == 3.5
    with pytest.raises(DeviceError, match="no MBK_BENCH line in logcat"):
        parse_bench_line("--------- beginning of main\n")
    with pytest.raises(DeviceError, match="benchmark failed on the device: model.ort: ORT format version 7"):
        parse_bench_line('I/MBK_BENCH( 1): {"error": "model.ort: ORT format version 7 not supported"}')
    with pytest.raises(DeviceError, match="lacks p90_ms"):
        parse_bench_line(f'I/MBK_BENCH( 1): {{"p50_ms": 1, "model_sha256": "{SHA}"}}')


@pytest.fixture()
def bundle(tmp_path) -> Path:
    b = tmp_path / "pkg" / "android"
    b.mkdir(parents=True)
    (b / "model.ort").write_bytes(b"fake")
    write_json(b / "model_meta.json", {"target": "android", "model_file": "model.ort", "model_sha256": SHA})
    return b


def _fake_adb(tmp_path: Path, devices: str, logcat: str = LOGCAT) -> Path:
    """An adb that replays recorded output and logs every call."""
    script = tmp_path / "adb"
    script.write_text(f"""#!{sys.executable}
import json, sys
args = sys.argv[1:]
with open({str(tmp_path / "adb_calls.jsonl")!r}, "a") as f:
    f.write(json.dumps(args) + "\\n")
if args[:1] == ["-s"]:
    args = args[2:]
if args[:1] == ["devices"]:
    sys.stdout.write({devices!r})
elif args[:2] == ["shell", "getprop"]:
    print({{"ro.product.model": "SM-A525F", "ro.product.cpu.abi": "arm64-v8a", "ro.build.version.sdk": "34"}}[args[2]])
elif args[:3] == ["shell", "pm", "list"]:
    print("package:ai.mbk.demo")
elif args[:1] == ["logcat"] and "-d" in args:
    sys.stdout.write({logcat!r})
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_full_flow_with_recorded_adb_session(bundle, tmp_path):
    adb = _fake_adb(tmp_path, DEVICES_OK)
    out = run(
        DeviceBenchConfig(bundle=str(bundle), adb=str(adb), output=str(tmp_path / "bench.json"), runs=50, timeout_s=5)
    ).output
    r = read_json(out)
    assert r["device"] == {"serial": "R58N12ABCDE", "model": "SM-A525F", "abi": "arm64-v8a", "sdk": "34"}
    assert (r["p50_ms"], r["p90_ms"], r["model_sha256"]) == (4.12, 5.87, SHA)
    calls = [json.loads(line) for line in (tmp_path / "adb_calls.jsonl").read_text().splitlines()]
    assert any("push" in c and c[-1].endswith("/bundle/model.ort") for c in calls)
    start = next(c for c in calls if "am" in c)
    assert start[start.index("--es") + 1 : start.index("--es") + 3] == ["mode", "bench"]
    assert start[start.index("runs") + 1] == "50"


def test_hash_mismatch_is_an_error(bundle, tmp_path):
    adb = _fake_adb(tmp_path, DEVICES_OK, LOGCAT.replace(SHA, "0" * 64))
    with pytest.raises(DeviceError, match=r"ran a model with sha256 000000000000, not this bundle's b5289ae5cbd9"):
        run(DeviceBenchConfig(bundle=str(bundle), adb=str(adb), output=str(tmp_path / "b.json"), timeout_s=2))
    assert not (tmp_path / "b.json").exists()


def test_cli_skip_without_adb_and_without_device(cli, bundle, tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(bindir))
    r = cli("device-bench", "--bundle", bundle, "-o", tmp_path / "b.json")
    assert r.exit_code == 0
    assert [line for line in r.output.splitlines() if line.startswith("SKIP:")] == [
        "SKIP: adb not found ('adb' is not on PATH); install Android platform-tools or `apt-get install adb`"
    ]
    r = cli("device-bench", "--bundle", bundle, "--require-device")
    assert r.exit_code != 0 and r.output.count("Error:") == 1 and "--require-device is set" in r.output
    _fake_adb(bindir, DEVICES_NONE)
    r = cli("device-bench", "--bundle", bundle, "-o", tmp_path / "b.json")
    assert r.exit_code == 0 and "SKIP: no Android device attached (adb devices lists none)" in r.output
    assert not (tmp_path / "b.json").exists()


@pytest.mark.parametrize(
    "devices, message",
    [
        (
            DEVICES_UNAUTHORIZED,
            "Error: device R58N12ABCDE is unauthorized; unlock the phone, accept the 'Allow USB debugging' "
            "prompt, then retry (or run `adb kill-server` and replug)",
        ),
        (
            DEVICES_OFFLINE,
            "Error: device emulator-5554 is offline; replug the USB cable or run `adb reconnect`, then retry",
        ),
    ],
)
def test_cli_unauthorized_or_offline_is_one_error_line(cli, bundle, tmp_path, monkeypatch, devices, message):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    _fake_adb(bindir, devices)
    monkeypatch.setenv("PATH", str(bindir))
    r = cli("device-bench", "--bundle", bundle, "-q", "-o", tmp_path / "b.json")
    assert r.exit_code != 0
    assert r.output.strip() == message
    assert not (tmp_path / "b.json").exists()


def test_help(cli):
    r = cli("device-bench", "--help")
    assert r.exit_code == 0 and "--require-device" in r.output
