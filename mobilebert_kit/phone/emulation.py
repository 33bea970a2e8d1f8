"""The phone's CPU, emulated: ``.onnx`` / ``.ort`` files in the Linux aarch64 onnxruntime under QEMU.

Phones run ONNX Runtime's ARM64 kernels, which differ from the x86 ones a desktop verifies with, and
between ARM CPUs: plain NEON (Cortex-A53), NEON with dot product (Cortex-A76), i8mm/SVE2
(Cortex-A710), and SME (QEMU's ``max``), where onnxruntime >= 1.23 moves dynamically quantized
MatMuls to KleidiAI kernels. ``QEMU_CPU`` picks the CPU model; QEMU user mode (>= 8: it fakes an
ARM ``/proc/cpuinfo``) makes onnxruntime see that CPU's features and choose its kernels.

``make arm-emu`` (``scripts/setup_arm64.sh``) caches qemu-user, an arm64 Debian user space and the
aarch64 wheels under ``$MBK_ARM_CACHE`` (default ``~/.cache/mobilebert_kit/arm64``). The worker
(``resources/arm_ort_worker.py``) runs inside the emulated python: npz feeds in, npz logits out.
Emulation is slow and its timing means nothing: numerics only.

``mbk verify --arm auto|on|off`` runs :class:`ArmParity` for every ONNX Runtime format: per CPU
model and onnxruntime version, logits on a seeded subset of the test split vs PyTorch, gated like
the x86 run, with the label flips named and the x86 onnxruntime logits on the same batches beside.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mobilebert_kit.artifacts import scratch_dir
from mobilebert_kit.config import StageConfig, check_choice, check_range
from mobilebert_kit.errors import DeviceError
from mobilebert_kit.runtimes import ANDROID_ORT_VERSION

NOT_INSTALLED = "ARM64 emulation not installed; run `make arm-emu`"
MIN_QEMU_MAJOR = 8
# What `qemu-aarch64 -cpu help` lists (QEMU 8-10); the first four pick different int8 kernel paths.
CPU_KERNELS = {
    "cortex-a53": "NEON, no dot product",
    "cortex-a76": "NEON + dot product (sdot/udot)",
    "cortex-a710": "dot product + i8mm, SVE2",
    "max": "every feature QEMU emulates, SME included (KleidiAI kernels in onnxruntime >= 1.23)",
    "a64fx": "SVE",
    "cortex-a35": "NEON, no dot product",
    "cortex-a55": "NEON + dot product",
    "cortex-a57": "NEON, no dot product",
    "cortex-a72": "NEON, no dot product",
    "neoverse-n1": "NEON + dot product",
    "neoverse-n2": "dot product + i8mm, SVE2",
    "neoverse-v1": "dot product + i8mm, SVE",
}
DEFAULT_CPUS = ("cortex-a53", "cortex-a76", "max")
WORKER = Path(__file__).parent / "resources" / "arm_ort_worker.py"
ARM_PYTHON = "usr/bin/python3.11"


def cache_dir() -> Path:
    """Where ``make arm-emu`` puts the arm64 root and wheels: ``$MBK_ARM_CACHE``, else ``arm64/`` under the
    project's cache root (``$MBK_CACHE``, default ``~/.cache/mobilebert_kit``)."""
    if os.environ.get("MBK_ARM_CACHE"):
        return Path(os.environ["MBK_ARM_CACHE"]).expanduser()
    return Path(os.environ.get("MBK_CACHE") or Path.home() / ".cache" / "mobilebert_kit").expanduser() / "arm64"


def host_ort_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxruntime")
    except PackageNotFoundError:
        return ANDROID_ORT_VERSION


@dataclass
class ArmConfig(StageConfig):
    """``verify.arm``: which emulated CPUs and onnxruntime versions, on how many test examples."""

    mode: str = "auto"  # auto: when `make arm-emu` was run | on: required | off
    cpus: list[str] = field(default_factory=lambda: list(DEFAULT_CPUS))
    # seeded subset of the test split (emulation costs 0.3-1 s per text); None: the fewest texts whose 0 label
    # flips bound the flip rate below flip_bound at 95% (99 texts for 3%, 299 for 1%; flip_bound.py)
    examples: int | None = None
    flip_bound: float = 0.03
    # empty: the Android app's pinned version, the onnxruntime a phone runs (add this host's, or others, to see
    # how kernels move between versions)
    ort_versions: list[str] = field(default_factory=list)
    seed: int = 0
    parallel: int | None = None  # emulator processes at once (None: one per available core)

    def validate(self) -> list[str]:
        p: list[str] = []
        check_choice(p, "mode", self.mode, ("auto", "on", "off"))
        for cpu in self.cpus:
            check_choice(p, "cpus", cpu, CPU_KERNELS)
        if not self.cpus:
            p.append(f"cpus must name at least one CPU model (e.g. {','.join(DEFAULT_CPUS)})")
        check_range(p, "examples", self.examples, 1)
        check_range(p, "flip_bound", self.flip_bound, 0, 1, lo_open=True)
        check_range(p, "parallel", self.parallel, 1)
        for v in self.ort_versions:
            if not re.fullmatch(r"\d+\.\d+(\.\d+)?", str(v)):
                p.append(f"ort_versions: '{v}' is not an onnxruntime version like {ANDROID_ORT_VERSION}")
        return p

    def versions(self) -> list[str]:
        return list(dict.fromkeys(self.ort_versions or [ANDROID_ORT_VERSION]))

    def sample_size(self) -> int:
        """``examples``, else as many as a 0-flip run needs to bound the flip rate below ``flip_bound``."""
        from mobilebert_kit.phone.flip_bound import texts_for_bound

        return self.examples or texts_for_bound(self.flip_bound)


@dataclass
class Emulator:
    """qemu-aarch64 plus the cached arm64 root and per-version onnxruntime wheel folders."""

    qemu: str
    qemu_version: str
    cache: Path

    def wheels(self, ort_version: str) -> Path:
        return self.cache / "wheels" / f"onnxruntime-{ort_version}"

    def missing(self, ort_version: str) -> str:
        """Why this onnxruntime version cannot run ("" when it can)."""
        if (self.wheels(ort_version) / ".complete").exists():
            return ""
        default = ort_version in (host_ort_version(), ANDROID_ORT_VERSION)  # what plain `make arm-emu` fetches
        make = "make arm-emu" if default else f"make arm-emu ARM_ORT_VERSIONS={ort_version}"
        return f"no aarch64 onnxruntime {ort_version} in {self.cache / 'wheels'}; run `{make}`"

    def run(self, model: Path, batches: list[dict], ort_version: str, cpu: str) -> tuple[list[np.ndarray], dict]:
        """Logits of ``model`` for each feed batch in onnxruntime ``ort_version`` on the emulated ``cpu``."""
        if cpu not in CPU_KERNELS:
            raise DeviceError(f"unknown QEMU CPU model '{cpu}'; known: {', '.join(CPU_KERNELS)}")
        with scratch_dir("arm") as tmp:
            t = Path(tmp)
            np.savez(
                t / "feeds.npz", **{f"{i}/{k}": np.asarray(v) for i, b in enumerate(batches) for k, v in b.items()}
            )
            files = {"model": str(model.resolve()), "feeds": str(t / "feeds.npz")}
            files.update(out=str(t / "out.npz"), info=str(t / "info.json"))
            (t / "request.json").write_text(json.dumps(files))
            self._call(
                t / "request.json", ort_version, cpu, timeout=600 + 10 * sum(len(b["input_ids"]) for b in batches)
            )
            with np.load(t / "out.npz") as out:
                logits = [out[str(i)] for i in range(len(batches))]
            return logits, json.loads((t / "info.json").read_text())

    def _call(self, request: Path, ort_version: str, cpu: str, timeout: float) -> None:
        root = self.cache / "root"
        env = {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "QEMU_CPU": cpu,
            "PYTHONPATH": str(self.wheels(ort_version)),
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            # one thread for numpy's BLAS and OpenMP in the guest: their idle workers spin, and under QEMU a
            # spinning guest thread burns a whole host core (one emulator used 1.9 cores for a 1-thread job)
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
        }
        cmd = [self.qemu, "-L", str(root), str(root / ARM_PYTHON), str(WORKER), str(request)]
        what = f"onnxruntime {ort_version} on emulated {cpu}"
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise DeviceError(f"{what} did not finish in {timeout:.0f} s; pass fewer --arm-examples") from e
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.strip().splitlines() if "cpuid_info warning" not in ln]
            raise DeviceError(f"{what} failed (exit {proc.returncode}): {(lines or ['no output'])[-1][:200]}")


def find_emulator(cache: Path | None = None) -> Emulator:
    """The installed emulator; :class:`DeviceError` saying what is missing (and ``make arm-emu``) otherwise."""
    cache = cache or cache_dir()
    qemu = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
    if not qemu:
        raise DeviceError(f"{NOT_INSTALLED} (no qemu-aarch64 on PATH)")
    version = _qemu_version(qemu)
    major = int(version.split(".")[0]) if version[:1].isdigit() else 0
    if major < MIN_QEMU_MAJOR:
        raise DeviceError(
            f"{NOT_INSTALLED} (qemu-aarch64 {version or '?'} is older than {MIN_QEMU_MAJOR}: it passes the host "
            "/proc/cpuinfo through and onnxruntime crashes; install qemu-user from bookworm-backports)"
        )
    if not (cache / "root" / ARM_PYTHON).exists():
        raise DeviceError(f"{NOT_INSTALLED} (no arm64 root in {cache})")
    return Emulator(qemu, version, cache)


def _qemu_version(qemu: str) -> str:
    try:
        out = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    m = re.search(r"version (\d+\.\d+(\.\d+)?)", out)
    return m.group(1) if m else ""


# --------------------------------------------------------------------------- verify's check


class ArmParity:
    """verify's ARM64 check of one ``.onnx`` / ``.ort`` file: every (onnxruntime version, CPU model)
    on a seeded subset of the test split, judged by the format's own tolerance (``parity.compare``).

    Looked up once per verify run: ``mode="on"`` raises :class:`DeviceError` here, before any work,
    when the emulator or a requested onnxruntime version is missing; ``auto`` reports a SKIP row.
    """

    name = "arm64 parity (QEMU user mode)"

    def __init__(self, config: ArmConfig, log=print):
        self.config, self.log = config, log
        self.emulator: Emulator | None = None
        self.reason = "disabled (--arm off)" if config.mode == "off" else ""
        if config.mode == "off":
            return
        try:
            self.emulator = find_emulator()
        except DeviceError as e:
            if config.mode == "on":
                raise
            self.reason = str(e)
            return
        missing = [m for m in map(self.emulator.missing, config.versions()) if m]
        if missing and config.mode == "on":
            raise DeviceError(f"ARM64 emulation incomplete: {missing[0]}")

    def check(self, model_path: Path, parity, runner) -> list[dict]:
        """Rows for verify (gated like the x86 run) and ``parity.entry["arm64"]`` with the numbers."""
        return self.begin(model_path, parity, runner)()

    def begin(self, model_path: Path, parity, runner):
        """Start the emulated runs now and return the function that waits for them and gives :meth:`check`'s rows.

        The (onnxruntime version, CPU model) runs are emulator processes started together (as many at once as
        there are cores, :meth:`workers`), so the caller's x86 checks run while they do; the x86 logits on the
        ARM leg's own batches are computed in the meantime too."""
        if self.emulator is None:
            parity.entry["arm64"] = f"skipped: {self.reason}"
            return lambda: [parity.row(self.name, None, detail=f"SKIP: {self.reason}")]
        idx, ref = subset_ref(parity.ref, self.config.sample_size(), self.config.seed)
        # batched as --batch-size (batch 1 under QEMU costs minutes): this check is about ARM kernels vs x86
        # kernels on identical batches; the batch-1 (phone) numerics are the x86 run's
        batches = feed_batches(ref, runner.static_batch or parity.batch_size)
        configs = [(v, c) for v in self.config.versions() for c in self.config.cpus]
        pool = ThreadPoolExecutor(max_workers=self.workers(len(configs)))
        pending = {vc: self._launch(pool, model_path, batches, *vc) for vc in configs}

        def finish() -> list[dict]:
            try:
                x86 = assemble(batches, [np.asarray(runner.logits(b)) for _, b in batches], len(idx))
                done = {vc: _outcome(p) for vc, p in pending.items()}
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
            return self._finish(parity, ref, idx, batches, configs, x86, done)

        return finish

    def _finish(self, parity, ref: dict, idx, batches: list, configs: list, x86: np.ndarray, done: dict) -> list:
        judge = replace(parity, ref=ref, entry={})  # the same compare, on the subset's PyTorch reference
        rows, runs, logits = [], [], {}
        for version, cpu in configs:
            run_rows, record, got = self._judge_one(judge, batches, version, cpu, (idx, x86), done[(version, cpu)])
            rows.extend(run_rows)
            runs.append(record)
            if got is not None:
                logits[(version, cpu)] = got
        parity.entry["arm64"] = self._summary(ref, idx, x86, runs, logits, len(parity.ref["texts"]))
        return rows

    def workers(self, jobs: int) -> int:
        """Emulator processes at once: ``parallel``, else one per core this process may use (each is single-threaded)."""
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, min(jobs, self.config.parallel or cores))

    def _launch(self, pool, model_path: Path, batches: list, version: str, cpu: str):
        """A running emulator job (a future), or why this version cannot run (a string)."""
        missing = self.emulator.missing(version)
        if missing:
            return missing
        n = sum(len(b["input_ids"]) for _, b in batches)
        self.log(f"  arm64 {cpu} onnxruntime {version} (QEMU user mode) on {n} examples ...")
        return pool.submit(self.emulator.run, model_path, [b for _, b in batches], version, cpu)

    def _judge_one(self, judge, batches: list, version: str, cpu: str, x86: tuple, outcome) -> tuple:
        label = f"arm64 {cpu} onnxruntime {version}"
        if isinstance(outcome, str):
            return [judge.row(label, None, detail=f"SKIP: {outcome}")], {"cpu": cpu, "skipped": outcome}, None
        if isinstance(outcome, DeviceError):
            error = str(outcome)
            return [judge.row(label, False, detail=error)], {"cpu": cpu, "onnxruntime": version, "error": error}, None
        outs, info = outcome
        got = assemble(batches, outs, len(x86[0]))
        rows = judge.compare("logits", got, prefix=f"{label}: ")
        record = run_record(cpu, info, self.emulator, got, judge.ref, x86)
        record["passed"] = all(r["passed"] is not False for r in rows)
        rows.append(
            judge.row(f"{label}: vs x86 onnxruntime {host_ort_version()}", None, None, None, flips_note(record))
        )
        return rows, record, got

    def _summary(self, ref: dict, idx: np.ndarray, x86: np.ndarray, runs: list, logits: dict, total: int) -> dict:
        want = ref["logits"]
        return {
            "n": len(idx),
            "of": total,
            "seed": self.config.seed,
            "config": self.config.to_dict(),
            "x86": {
                "runtime": {"name": "onnxruntime", "version": host_ort_version()},
                "max_abs_diff": float(np.abs(x86 - want).max()) if len(idx) else 0.0,
                "agreement": float((x86.argmax(-1) == want.argmax(-1)).mean()) if len(idx) else 1.0,
            },
            "runs": runs,
            "across_cpus": across_cpus(logits, idx),
            "bound": self._bound(runs, len(idx)),
        }

    def _bound(self, runs: list, n: int) -> dict:
        """What the leg showed, worst run first: its label flips vs x86 as a 95% bound on the flip rate, its max |Δ|;
        logged in one line. Every configuration ran: CPU models differ in the features (and CPU part numbers)
        onnxruntime selects kernels by, so none is provably a repeat of another; identical results are reported
        afterwards (``across_cpus.identical_logits``), not assumed."""
        from mobilebert_kit.phone.flip_bound import bound_line, flip_rate_upper

        ran = [r for r in runs if "flips_vs_x86" in r]
        flips = max((len(r["flips_vs_x86"]) for r in ran), default=0)
        worst = {
            "n": n,
            "sized_for_flip_bound": None if self.config.examples else self.config.flip_bound,
            "configurations_run": len(ran),
            "max_label_flips_vs_x86": flips,
            "flip_rate_upper_95": flip_rate_upper(flips, n),
            "max_abs_diff_vs_x86": max((r["max_abs_diff_vs_x86"] for r in ran), default=0.0),
            "repeated_work_skipped": "none (no two CPU models here select provably the same kernels)",
        }
        if ran:
            self.log(
                f"  arm64: worst of {len(ran)} configuration(s): {bound_line(flips, n)}, "
                f"max|Δ| {worst['max_abs_diff_vs_x86']:.3g} vs x86"
            )
        return worst


def subset_ref(ref: dict, n: int, seed: int) -> tuple[np.ndarray, dict]:
    """A seeded subset of verify's PyTorch reference (its metrics recomputed on the subset)."""
    from mobilebert_kit.metrics import classification_metrics

    total = len(ref["texts"])
    idx = np.arange(total) if n >= total else np.sort(np.random.default_rng(seed).choice(total, n, replace=False))
    sub = dict(ref)
    sub["texts"] = [ref["texts"][i] for i in idx]
    sub["pairs"] = [ref["pairs"][i] for i in idx] if ref["pairs"] else ref["pairs"]
    sub["labels"] = [ref["labels"][i] for i in idx]
    sub["logits"] = ref["logits"][idx]
    sub["metrics"] = classification_metrics(sub["logits"], sub["labels"], ref["num_labels"])
    return idx, sub


def feed_batches(ref: dict, batch_size: int) -> list[tuple[np.ndarray, dict]]:
    """The reference texts as padded int64 batches, exactly as verify batches them for x86."""
    from mobilebert_kit.batching import padded_batches
    from mobilebert_kit.formats import full_feeds

    found = padded_batches(ref["tokenizer"], ref["texts"], ref["pairs"], ref["max_length"], batch_size)
    return [(i, full_feeds(b)) for i, b in found]


def assemble(batches: list, outs: list, n: int) -> np.ndarray:
    """Per-batch logits back in input order."""
    width = np.asarray(outs[0]).shape[-1] if outs else 0
    got = np.zeros((n, width), dtype=np.float32)
    for (i, _), o in zip(batches, outs):
        got[i] = np.asarray(o, dtype=np.float32).reshape(len(i), width)
    return got


def run_record(cpu: str, info: dict, emulator: Emulator, got: np.ndarray, ref: dict, x86: tuple) -> dict:
    """One (onnxruntime, CPU) run for verify.json: provenance, numbers vs PyTorch and vs x86, flips."""
    from mobilebert_kit.phone.flip_bound import flip_rate_upper

    idx, x86_logits = x86
    want = ref["logits"]
    arm, pt, host = got.argmax(-1), want.argmax(-1), x86_logits.argmax(-1)
    flipped = np.flatnonzero(arm != pt)
    return {
        "cpu": cpu,
        "cpu_kernels": CPU_KERNELS[cpu],
        "cpu_features": info.get("cpu_features", []),
        "runtime": {"name": "onnxruntime", "version": info.get("onnxruntime"), "build": "PyPI aarch64 wheel"},
        "emulated": True,
        "emulator": f"qemu-aarch64 {emulator.qemu_version} user mode",
        "n": len(got),
        "max_abs_diff": float(np.abs(got - want).max()) if len(got) else 0.0,
        "agreement": float((arm == pt).mean()) if len(got) else 1.0,
        "max_abs_diff_vs_x86": float(np.abs(got - x86_logits).max()) if len(got) else 0.0,
        "flips_vs_x86": [int(idx[i]) for i in np.flatnonzero(arm != host)],
        "flip_rate_upper_95_vs_x86": flip_rate_upper(int((arm != host).sum()), len(got)),
        "flipped": [
            {
                "index": int(idx[i]),
                "pytorch": int(pt[i]),
                "x86": int(host[i]),
                "arm64": int(arm[i]),
                "text": ref["texts"][i][:100],
            }
            for i in flipped
        ],
    }


def flips_note(record: dict) -> str:
    """The kernel path's own effect: max |Δ| and label flips against x86 onnxruntime on the same batches, and the
    flip rate those flips bound at 95% ("0 flip(s) in 99 texts -> < 3.0% at 95%")."""
    from mobilebert_kit.phone.flip_bound import bound_line

    flips = record["flips_vs_x86"]
    which = (
        f" (test example {', '.join(f'#{i}' for i in flips[:10])}{', ...' if len(flips) > 10 else ''})" if flips else ""
    )
    return (
        f"max|Δ| {record['max_abs_diff_vs_x86']:.3g}, {len(flips)} label flip(s) of {record['n']}{which}; "
        f"{bound_line(len(flips), record['n'])}"
    )


def _outcome(pending):
    """A launched job's result: (logits, info), the DeviceError it raised, or the skip reason it already was."""
    if isinstance(pending, str):
        return pending
    try:
        return pending.result()
    except DeviceError as e:
        return e


def across_cpus(logits: dict, idx: np.ndarray) -> dict:
    """Per onnxruntime version: how far the CPU models disagree with each other (the kernels' spread)."""
    out = {}
    for version in dict.fromkeys(v for v, _ in logits):
        cpus = [c for v, c in logits if v == version]
        stack = np.stack([logits[(version, c)] for c in cpus])
        labels = stack.argmax(-1)
        split = np.flatnonzero((labels != labels[0]).any(axis=0))
        out[version] = {
            "cpus": cpus,
            "max_abs_diff": float((stack.max(0) - stack.min(0)).max()) if stack.size else 0.0,
            "examples_labelled_differently": [int(idx[i]) for i in split],
            "identical_logits": identical_groups(cpus, stack),
        }
    return out


def identical_groups(cpus: list[str], stack: np.ndarray) -> list[list[str]]:
    """CPU models whose logits are bit-identical, grouped: one group per kernel path that matters."""
    groups: list[list[int]] = []
    for i in range(len(cpus)):
        home = next((g for g in groups if np.array_equal(stack[g[0]], stack[i])), None)
        if home is None:
            groups.append([i])
        else:
            home.append(i)
    return [[cpus[i] for i in g] for g in groups]
