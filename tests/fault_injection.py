"""Fault injection across every stage of a run (issue 29), shared by tests/edge/test_fault_injection.py
(a seeded slice) and benchmarks/fault_campaign.py (the long campaign, recorded).

A tiny recipe runs every stage (finetune, distill, compress, export, verify, bench, package, report) in a
run folder that sits, with ``MBK_CACHE`` and ``TMPDIR``, on a tmpfs of its own. A case is

* **kill**: ``mbk run`` killed with SIGKILL a random moment into its target step, or
* **disk-full**: when the target step starts, the tmpfs filled up to a random few KB or MB, so a write of that
  step fails wherever it lands,

then ``mbk run`` again (the filler deleted first). The target step is each step in turn, by seed. The invariants: a disk-full attempt ends in one clean
``Error:`` line (no traceback, no "internal error"); the next attempt finishes; every published folder's
files match its manifest; no temp, retired, lock or checkpoint entry is left; and the trained weights equal
the uninterrupted run's (training is seeded: a resumed or restarted stage gives the same bits).

Mounting a tmpfs needs root (CAP_SYS_ADMIN); without it the cases are skipped, and say so.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

MBK = [sys.executable, "-m", "mobilebert_kit"]
ROOT = Path(__file__).resolve().parents[1]
FAST = {"epochs": 2, "lr": 1e-2, "batch_size": 16, "max_length": 32, "early_stopping_patience": 0}
TEMP_MARKS = (".tmp", ".old-", ".lock", ".ckpt", ".partial")


def recipe(model: Path, data: Path, run_dir: Path) -> dict:
    """Every stage, each as small as it goes (the ARM leg and node off: minutes, and no bearing here)."""
    return {
        "name": "faults",
        "run_dir": str(run_dir),
        "stages": ["finetune", "distill", "compress", "export", "verify", "bench", "package", "report"],
        "data": {"data": str(data)},
        "finetune": {"model": str(model), "train": {**FAST, "checkpoint_every": 3}},
        "distill": {"layers": [0], "train": {**FAST, "checkpoint_every": 3}},
        "compress": {"int8": True, "max_drop": 1.0, "latency_runs": 0, "guard_samples": 16},
        "export": {"formats": ["onnx", "ort", "torchscript"]},
        "verify": {
            "node": "off",
            "arm": {"mode": "off"},  # the app's onnxruntime 1.22 stays: package needs it
            "int8": {"min_agreement": 0.0, "max_accuracy_drop": 1.0},
        },  # fmt: skip
        "bench": {
            "formats": ["onnx"],
            "seq_lengths": [16],
            "threads": [1],
            "runs": 2,
            "rounds": 1,
            "warmup": 1,
            "runtime_versions": ["none"],
        },  # fmt: skip
        "package": {"target": ["android"]},  # ios needs the coreml export: ~1 min of conversion
        "report": {},
    }


@dataclass
class Outcome:
    kind: str
    seed: int
    at: str  # how far into its target step the kill came, or how many bytes the disk had left
    first_code: int
    first_error: str | None
    stage: str  # the stage the fault landed in (its recipe state said "running"), or "-" before/after every stage
    resumed_code: int
    problems: list[str]

    def to_json(self) -> dict:
        return self.__dict__


def can_mount(scratch: Path) -> str | None:
    """None when a tmpfs can be mounted here, else why not."""
    probe = scratch / "probe"
    probe.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)], capture_output=True, text=True)
    if r.returncode:
        return f"cannot mount a tmpfs here ({(r.stderr or r.stdout).strip()[:120]}): needs root"
    subprocess.run(["umount", str(probe)], check=False)
    return None


@contextlib.contextmanager
def tmpfs(folder: Path, size: int):
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def env_for(disk: Path) -> dict:
    (disk / "cache").mkdir(exist_ok=True)
    (disk / "tmp").mkdir(exist_ok=True)
    # the side onnxruntime installs stay where setup put them (MBK_CACHE_DIR): they are the user's, not the run's
    side = (
        os.environ.get("MBK_CACHE_DIR") or os.environ.get("MBK_CACHE") or str(Path.home() / ".cache" / "mobilebert_kit")
    )
    return {**os.environ, "PYTHONHASHSEED": "0", "MBK_CACHE": str(disk / "cache"), "TMPDIR": str(disk / "tmp"),
            "MBK_CACHE_DIR": side,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}  # fmt: skip


def write_recipe(disk: Path, model: Path, data: Path) -> Path:
    path = disk.parent / f"{disk.name}.yaml"  # off the tmpfs: the user's recipe is never on the full disk
    path.write_text(yaml.safe_dump(recipe(model, data, disk / "run"), sort_keys=False))
    return path


def run(recipe_file: Path, env: dict, kill_after: float | None = None) -> tuple[int, str]:
    p = subprocess.Popen([*MBK, "run", str(recipe_file), "-q"], env=env, text=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        _, err = p.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        _, err = p.communicate()
    return p.returncode, err


def clean_error(code: int, err: str) -> str | None:
    """What is wrong with a failed attempt's stderr (None: one clean Error: line, or killed)."""
    if code == -signal.SIGKILL:
        return None
    if "Traceback" in err or "internal error" in err:
        return f"unclean ending: {err[-600:]}"
    errors = [ln for ln in err.splitlines() if ln.startswith("Error:")]
    if code and len(errors) != 1:
        return f"exit {code} with {len(errors)} Error: lines: {err[-600:]}"
    return None


def integrity(run_dir: Path, disk: Path) -> list[str]:
    """Published folders whose files do not match their manifest, and leftovers anywhere on the disk."""
    from mobilebert_kit.artifacts import sha256_file

    problems = []
    for manifest in run_dir.rglob("manifest.json"):
        folder = manifest.parent
        if any(m in part for part in folder.relative_to(run_dir).parts for m in TEMP_MARKS):
            continue  # reported below as a leftover
        files = json.loads(manifest.read_text()).get("files", {})
        for name, digest in files.items():
            f = folder / name
            if not f.is_file():
                problems.append(f"{folder.relative_to(run_dir)}: {name} named by the manifest is missing")
            elif sha256_file(f) != digest:
                problems.append(f"{folder.relative_to(run_dir)}: {name} does not match its manifest")
    for p in disk.rglob("*"):
        if any(m in p.name for m in TEMP_MARKS) and not p.name.endswith(".lock.json"):
            problems.append(f"leftover {p.relative_to(disk)}")
    # mbk's temp entries (mkdtemp's tmp*, mbk-*); not mbk-logs (crash logs are kept for the user), nor what
    # libraries leave on import (onnxruntime's .ses, torchinductor_<user>)
    leftover_tmp = (
        [p.name for p in (disk / "tmp").iterdir() if p.name.startswith(("tmp", "mbk-")) and p.name != "mbk-logs"]
        if (disk / "tmp").is_dir()
        else []
    )
    if leftover_tmp:
        problems.append(f"TMPDIR holds {len(leftover_tmp)} leftover entries: {sorted(leftover_tmp)[:5]}")
    return problems


def running_stage(run_dir: Path) -> str:
    """The step the recipe runner had started and not finished (the fault's stage), else "-"."""
    for f in sorted((run_dir / ".state").glob("*.json")) if (run_dir / ".state").is_dir() else []:
        try:
            if json.loads(f.read_text()).get("status") == "running":
                return f.stem
        except (OSError, ValueError):
            return f"{f.stem} (state unreadable)"
    return "-"


def weights(run_dir: Path) -> dict[str, bytes]:
    """The trained weights, by stage folder (compare with the uninterrupted run's)."""
    return {name: (run_dir / name / "model.safetensors").read_bytes() for name in ("teacher", "student")
            if (run_dir / name / "model.safetensors").is_file()}  # fmt: skip


def reference(scratch: Path, model: Path, data: Path) -> dict:
    """An uninterrupted run: its seconds, its disk use, each step's seconds (from the recipe state), and its weights."""
    disk = scratch / "ref"
    with tmpfs(disk, 2 << 30):
        env, recipe_file = env_for(disk), write_recipe(disk, model, data)
        t0 = time.monotonic()
        code, err = run(recipe_file, env)
        if code:
            raise RuntimeError(f"the uninterrupted run failed: {err[-2000:]}")
        seconds = time.monotonic() - t0
        used = sum(p.stat().st_size for p in disk.rglob("*") if p.is_file())
        steps = {
            f.stem: json.loads(f.read_text()).get("seconds", 1.0) for f in (disk / "run" / ".state").glob("*.json")
        }
        return {"seconds": seconds, "bytes": used, "steps": steps, "weights": weights(disk / "run"),
                "problems": integrity(disk / "run", disk)}  # fmt: skip


def target_step(ref: dict, seed: int) -> str:
    """The step a case aims at: every step in turn, by seed (each stage gets its share of the faults)."""
    steps = sorted(ref["steps"])
    return steps[seed % len(steps)]


def _wait_running(proc: subprocess.Popen, state: Path, timeout: float) -> bool:
    """Wait until the runner marks the step running (True), or the run ends / time runs out (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        try:
            if json.loads(state.read_text()).get("status") == "running":
                return True
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    return False


def _fill(disk: Path, leave: int) -> None:
    """Take all the tmpfs's free space but ``leave`` bytes (a file the case deletes before the rerun)."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(disk / "filler", "wb") as f:
        with contextlib.suppress(OSError):  # ENOSPC: full
            chunk = b"\0" * (1 << 20)
            left = max(0, free - leave)
            while left > 0:
                left -= f.write(chunk[: min(len(chunk), left)])


def fault(kind: str, rng: random.Random, recipe_file: Path, env: dict, disk: Path, step: str, ref: dict):
    """Start the run, wait for ``step`` to start, then kill it a random moment into the step (``kill``) or
    leave it a random few bytes to write with (``disk-full``). Returns (exit code, stderr, detail)."""
    p = subprocess.Popen([*MBK, "run", str(recipe_file), "-q"], env=env, text=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    started = _wait_running(p, disk / "run" / ".state" / f"{step}.json", timeout=20 * ref["seconds"] + 60)
    if kind == "kill":
        delay = rng.uniform(0.0, 1.2) * ref["steps"].get(step, 1.0)
        time.sleep(delay if started else 0)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        detail = f"{delay:.2f} s into {step}"
    else:
        leave = int(rng.uniform(0, 1) * rng.choice([64 << 10, 1 << 20, 8 << 20]))  # a few KB .. a few MB
        if started:
            _fill(disk, leave)
        detail = f"{leave} bytes left when {step} started"
    _, err = p.communicate()
    return p.returncode, err, detail if started else f"{step} never started"


def one_case(kind: str, seed: int, scratch: Path, model: Path, data: Path, ref: dict) -> Outcome:
    rng = random.Random(f"{kind}-{seed}")
    disk = scratch / f"{kind}-{seed}"
    step = target_step(ref, seed)
    with tmpfs(disk, 2 << 30):
        env, recipe_file = env_for(disk), write_recipe(disk, model, data)
        code, err, detail = fault(kind, rng, recipe_file, env, disk, step, ref)
        stage = running_stage(disk / "run")
        problems = [p for p in [clean_error(code, err)] if p]
        if code == 0:
            problems += integrity(disk / "run", disk)  # the fault came too late: the run must be whole
        (disk / "filler").unlink(missing_ok=True)
        resumed, err2 = run(recipe_file, env)
        if resumed:
            problems.append(f"the run after the fault failed (exit {resumed}): {err2[-600:]}")
        else:
            problems += integrity(disk / "run", disk)
            got = weights(disk / "run")
            problems += [f"{k}: weights differ from the uninterrupted run's" for k in ref["weights"]
                         if got.get(k) != ref["weights"][k]]  # fmt: skip
        first_error = next((ln for ln in err.splitlines() if ln.startswith("Error:")), None)
        return Outcome(kind, seed, detail, code, first_error, stage, resumed, problems)
