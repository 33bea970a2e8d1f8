"""``mbk device-bench``: run the Android demo's benchmark mode on a phone attached over adb.

Flow: find adb and exactly one usable device -> read its model/ABI -> install the demo APK (when
built) -> push the bundle to the app's external files dir (so a model variant can be benchmarked
without rebuilding the APK) -> start ``MainActivity`` with the benchmark intent extras -> wait for
the one machine-readable ``MBK_BENCH {json}`` logcat line -> write JSON with device, ABI, p50/p90
and the model hash (which must match the bundle's).

No adb or no device is not an error on a build machine: :class:`DeviceSkip` carries the reason and
the CLI prints one ``SKIP:`` line and exits 0, unless ``require_device`` is set. A device that is
present but unauthorized/offline is always an error (the user can fix it).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from mobilebert_kit.artifacts import META, read_json, write_json
from mobilebert_kit.config import StageConfig
from mobilebert_kit.errors import DeviceError
from mobilebert_kit.stages.base import RunContext, StageResult

APP_ID = "ai.mbk.demo"
ACTIVITY = f"{APP_ID}/.MainActivity"
BENCH_TAG = "MBK_BENCH"
DEVICE_BUNDLE_DIR = f"/sdcard/Android/data/{APP_ID}/files/bundle"
DEFAULT_APK = "android_demo/app/build/outputs/apk/debug/app-debug.apk"
# "I/MBK_BENCH(12873): {...}" (brief) or "... I MBK_BENCH: {...}" (threadtime)
_BENCH_RE = re.compile(rf"{BENCH_TAG}(?:\(\s*\d+\))?\s*:\s*(\{{.*\}})\s*$")


class DeviceSkip(Exception):
    """No adb or no device: nothing to benchmark here (not a failure unless a device is required)."""


@dataclass
class DeviceBenchConfig(StageConfig):
    bundle: str = "artifacts/package/android"
    apk: str | None = None  # default: android_demo's debug APK when it has been built
    serial: str | None = None
    warmup: int = 10
    runs: int = 50
    text: str = "a wonderful, moving film with a clever script"
    output: str = "artifacts/device_bench.json"
    require_device: bool = False
    adb: str = "adb"
    timeout_s: float = 180.0
    push_bundle: bool = True

    def validate(self) -> list[str]:
        p = []
        if self.warmup < 0:
            p.append(f"--warmup must be >= 0, got {self.warmup}")
        if self.runs < 1:
            p.append(f"--runs must be >= 1, got {self.runs}")
        if not self.timeout_s > 0:
            p.append(f"--timeout must be > 0, got {self.timeout_s}")
        return p


@dataclass
class Device:
    serial: str
    state: str  # device | unauthorized | offline | ...
    props: dict[str, str]


def parse_devices(output: str) -> list[Device]:
    """Parse ``adb devices -l``; ignores the header and daemon start-up chatter."""
    devices = []
    for line in output.splitlines():
        line = line.strip()
        if not line or line.startswith(("List of devices", "*", "adb server", "daemon")):
            continue
        parts = line.split()
        if len(parts) < 2:
            continue
        props = dict(p.split(":", 1) for p in parts[2:] if ":" in p)
        devices.append(Device(parts[0], parts[1], props))
    return devices


def parse_bench_line(logcat: str) -> dict:
    """The last ``MBK_BENCH {json}`` result in logcat output (``-v brief``/``threadtime`` both work)."""
    result = None
    for line in logcat.splitlines():
        m = _BENCH_RE.search(line.rstrip())
        if m:
            try:
                result = json.loads(m.group(1))
            except json.JSONDecodeError as e:
                raise DeviceError(
                    f"the app's {BENCH_TAG} line is not valid JSON ({e.msg}): {line.strip()[:200]}; "
                    "rebuild android_demo from this repository"
                ) from e
    if result is None:
        raise DeviceError(
            f"no {BENCH_TAG} line in logcat; the app did not finish its benchmark. "
            f"Check `adb logcat -s MBK:* {BENCH_TAG}:*` for its error, or raise --timeout"
        )
    if "error" in result:
        raise DeviceError(f"the app's benchmark failed on the device: {result['error']}")
    missing = [k for k in ("p50_ms", "p90_ms", "model_sha256") if k not in result]
    if missing:
        raise DeviceError(f"the {BENCH_TAG} line lacks {', '.join(missing)}; rebuild android_demo from this repository")
    return result


def pick_device(devices: list[Device], serial: str | None) -> Device:
    if serial:
        chosen = [d for d in devices if d.serial == serial]
        if not chosen:
            raise DeviceSkip(
                f"device {serial} is not attached (attached: {', '.join(d.serial for d in devices) or 'none'})"
            )
        dev = chosen[0]
    else:
        if not devices:
            raise DeviceSkip("no Android device attached (adb devices lists none)")
        ready = [d for d in devices if d.state == "device"]
        if len(ready) > 1:
            raise DeviceError(
                f"{len(ready)} devices attached ({', '.join(d.serial for d in ready)}); pick one with --serial"
            )
        dev = ready[0] if ready else devices[0]
    if dev.state == "unauthorized":
        raise DeviceError(
            f"device {dev.serial} is unauthorized; unlock the phone, accept the 'Allow USB debugging' prompt, "
            "then retry (or run `adb kill-server` and replug)"
        )
    if dev.state != "device":
        raise DeviceError(
            f"device {dev.serial} is {dev.state}; replug the USB cable or run `adb reconnect`, then retry"
        )
    return dev


class Adb:
    def __init__(self, adb: str, serial: str | None = None, timeout: float = 60.0):
        self.adb, self.serial, self.timeout = adb, serial, timeout

    def __call__(self, *args: str, check: bool = True) -> str:
        cmd = [self.adb, *(["-s", self.serial] if self.serial else []), *args]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout)
        except subprocess.TimeoutExpired as e:
            raise DeviceError(
                f"`{' '.join(cmd[:6])}` timed out after {self.timeout:.0f}s; check the USB connection"
            ) from e
        if check and r.returncode != 0:
            msg = (r.stderr or r.stdout).strip().splitlines()
            raise DeviceError(f"`adb {' '.join(args[:3])}` failed: {msg[-1] if msg else f'exit {r.returncode}'}")
        return r.stdout


def run(config: DeviceBenchConfig, ctx: RunContext | None = None) -> StageResult:
    """Benchmark the bundle on the attached phone; the result's output is the JSON result file.

    Raises:
        DeviceSkip: no adb or no device (the CLI prints ``SKIP:``), unless ``require_device``.
        DeviceError: device unauthorized/offline, app failure, or hash mismatch.
    """
    (ctx or RunContext()).log(f"benchmarking {config.bundle} on the attached phone ...")
    try:
        out = _run(config)
    except DeviceSkip as e:
        if config.require_device:
            raise DeviceError(f"{e}; connect a phone with USB debugging enabled (--require-device is set)") from e
        raise
    r = read_json(out)
    line = (
        f"{r['device']['model']} ({r['device']['abi']}): p50 {r['p50_ms']:.2f} ms, "
        f"p90 {r['p90_ms']:.2f} ms, model {r['model_sha256'][:12]} -> {out}"
    )
    return StageResult(out, r, [line])


def _run(config: DeviceBenchConfig) -> Path:
    bundle = Path(config.bundle)
    if not (bundle / META).is_file():
        raise DeviceError(
            f"{bundle} is not a packaged bundle (no {META}); run `mbk package --target android` first or pass --bundle"
        )
    meta = read_json(bundle / META)
    if meta.get("target") != "android":
        raise DeviceError(f"{bundle} is a '{meta.get('target')}' bundle; run `mbk package --target android` first")
    adb, dev = _connect(config)
    device = {
        "serial": dev.serial,
        "model": adb("shell", "getprop", "ro.product.model").strip() or dev.props.get("model", "unknown"),
        "abi": adb("shell", "getprop", "ro.product.cpu.abi").strip(),
        "sdk": adb("shell", "getprop", "ro.build.version.sdk").strip(),
    }
    _install_app(adb, config)
    extras = ["--ei", "warmup", str(config.warmup), "--ei", "runs", str(config.runs), "--es", "text", config.text]
    if config.push_bundle:
        extras += _push_bundle(adb, bundle)
    result = _bench_on_device(adb, extras, config.timeout_s)
    if result["model_sha256"] != meta["model_sha256"]:
        raise DeviceError(
            f"the phone ran a model with sha256 {result['model_sha256'][:12]}, not this bundle's "
            f"{meta['model_sha256'][:12]}; re-run with the bundle pushed (default) or reinstall the app"
        )
    return _write_result(config, bundle, device, result)


def _connect(config: DeviceBenchConfig) -> tuple[Adb, Device]:
    """adb bound to the one usable device (DeviceSkip without adb or a device)."""
    adb_path = shutil.which(config.adb)
    if adb_path is None:
        raise DeviceSkip(
            f"adb not found ('{config.adb}' is not on PATH); install Android platform-tools or `apt-get install adb`"
        )
    devices = parse_devices(Adb(adb_path, timeout=30)("devices", "-l"))
    dev = pick_device(devices, config.serial)
    return Adb(adb_path, dev.serial, timeout=config.timeout_s), dev


def _install_app(adb: Adb, config: DeviceBenchConfig) -> None:
    """Install the demo APK when built; otherwise the app must already be on the phone."""
    apk = Path(config.apk or DEFAULT_APK)
    if apk.exists():
        adb("install", "-r", "-g", str(apk))
    elif config.apk:
        raise DeviceError(f"APK {apk} does not exist; build it with `cd android_demo && ./gradlew assembleDebug`")
    elif APP_ID not in adb("shell", "pm", "list", "packages", APP_ID, check=False):
        raise DeviceError(
            f"the demo app ({APP_ID}) is not installed and {apk} is not built; build it with "
            "`cd android_demo && ./gradlew assembleDebug` or install it from Android Studio"
        )


def _push_bundle(adb: Adb, bundle: Path) -> list[str]:
    """Copy the bundle to the app's files dir; returns the intent extras pointing the app at it."""
    adb("shell", "mkdir", "-p", DEVICE_BUNDLE_DIR)
    for f in sorted(bundle.iterdir()):
        if f.is_file():
            adb("push", str(f), f"{DEVICE_BUNDLE_DIR}/{f.name}")
    return ["--es", "bundle_dir", DEVICE_BUNDLE_DIR]


def _bench_on_device(adb: Adb, extras: list[str], timeout_s: float) -> dict:
    """Start the app in benchmark mode and wait for its MBK_BENCH logcat line."""
    adb("logcat", "-c", check=False)
    adb("shell", "am", "start", "-W", "-S", "-n", ACTIVITY, "--es", "mode", "bench", *extras)
    deadline = time.monotonic() + timeout_s
    while True:
        logcat = adb("logcat", "-d", "-v", "brief", "-s", f"{BENCH_TAG}:I")
        try:
            return parse_bench_line(logcat)
        except DeviceError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _write_result(config: DeviceBenchConfig, bundle: Path, device: dict, result: dict) -> Path:
    out = Path(config.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(
        out,
        {
            "device": device,
            "p50_ms": result["p50_ms"],
            "p90_ms": result["p90_ms"],
            "model_sha256": result["model_sha256"],
            "warmup": config.warmup,
            "runs": config.runs,
            "text": config.text,
            "app": result,
            "bundle": str(bundle),
        },
    )
    return out
