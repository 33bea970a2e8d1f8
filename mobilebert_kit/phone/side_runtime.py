"""Side runtimes: ``onnxruntime==X`` installed beside the host's, run in a subprocess.

The host venv has one onnxruntime (1.32); the Android app runs another (1.22), and INT8 kernels
differ between them. A *side runtime* is ``onnxruntime==X`` installed with ``pip install --target``
into a cache folder once, and run in a subprocess (``resources/ort_worker.py``) whose PYTHONPATH puts it
before the host's copy: verify and package get that version's logits for the same model and feeds,
without a second venv.

Cache: ``$MBK_CACHE_DIR`` (or ``$MBK_CACHE``, the project's cache root, or ``~/.cache/mobilebert_kit``)
``/runtimes/onnxruntime-X-cpXY-<machine>/``; a second call installs nothing.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mobilebert_kit.artifacts import scratch_dir
from mobilebert_kit.errors import IndexUnreachableError, RuntimeModelError, RuntimeVersionError
from mobilebert_kit.runtimes import ANDROID_ORT_VERSION, ORT, runtime_key

MARKER = "mbk-runtime.json"
VERSION_RE = re.compile(r"^\d+\.\d+(\.\d+)?([.\-+]?[0-9A-Za-z.]+)?$")
PIP_TIMEOUT_S = 20  # per connection attempt; an offline machine must not hang verify for minutes


def cache_root() -> Path:
    base = os.environ.get("MBK_CACHE_DIR") or os.environ.get("MBK_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "mobilebert_kit") / "runtimes"


def check_version(version: str) -> None:
    if not VERSION_RE.match(version or ""):
        raise RuntimeVersionError(f"'{version}' is not an onnxruntime version (expected e.g. {ANDROID_ORT_VERSION})")


class SideRuntime:
    """``onnxruntime==version`` in its own cached folder, run in a subprocess."""

    def __init__(self, version: str, root: Path | None = None):
        check_version(version)
        self.version = version
        tag = f"cp{sys.version_info.major}{sys.version_info.minor}-{platform.machine()}"
        self.path = (root or cache_root()) / f"{ORT}-{version}-{tag}"

    @property
    def key(self) -> str:
        return runtime_key(ORT, self.version)

    def installed(self) -> bool:
        return (self.path / MARKER).is_file() and (self.path / ORT / "__init__.py").is_file()

    def ensure(self, log=None) -> SideRuntime:
        """Install on first use (quietly); a cached install is reused as is."""
        if not self.installed():
            if log:
                log(f"installing {ORT} {self.version} into {self.path} (once) ...")
            install(self.version, self.path)
        return self

    def run(self, model: Path, batches: Sequence[dict], threads: Sequence[int] = (1,)) -> dict[int, list[np.ndarray]]:
        """Logits of ``model`` for each feed dict in ``batches``, per intra-op thread count."""
        return self._results(model, batches, threads, None)

    def time(
        self, model: Path, batches: Sequence[dict], threads: Sequence[int], warmup: int, runs: int, rounds: int
    ) -> dict[int, list[np.ndarray]]:
        """Milliseconds of each timed call of ``model`` on each feed dict, per intra-op thread count
        (warm-up, then ``runs`` calls per feed over ``rounds`` interleaved rounds, as ``mbk bench``)."""
        return self._results(model, batches, threads, {"warmup": warmup, "runs": runs, "rounds": rounds})

    def _results(self, model: Path, batches: Sequence[dict], threads: Sequence[int], timing: dict | None) -> dict:
        self.ensure()
        with scratch_dir("ort") as tmp:
            req = _write_request(Path(tmp), model, batches, threads, timing)
            info = self._call_worker(req, model)
            with np.load(Path(tmp) / "out.npz") as out:
                results = {t: [out[f"{t}/{b}"] for b in range(len(batches))] for t in threads}
        if info.get("version") != self.version:
            raise RuntimeVersionError(
                f"the side environment {self.path} runs {ORT} {info.get('version')}, not {self.version}; "
                f"delete that folder and re-run"
            )
        return results

    def _call_worker(self, req: Path, model: Path) -> dict:
        script = Path(__file__).parent / "resources" / "ort_worker.py"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(self.path), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.run([sys.executable, str(script), str(req)], capture_output=True, text=True, env=env)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        info = json.loads(lines[-1]) if lines else {}
        if proc.returncode == 0 and "version" in info:
            return info
        why = info.get("message") or (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1][:300]
        if info.get("error") == "import":
            raise RuntimeVersionError(f"{ORT} {self.version} cannot be imported here ({why}); use a newer version")
        raise RuntimeModelError(
            f"{ORT} {self.version} cannot {'load' if info.get('error') == 'load' else 'run'} {model} ({why})"
        )


def _write_request(
    tmp: Path, model: Path, batches: Sequence[dict], threads: Sequence[int], timing: dict | None = None
) -> Path:
    arrays = {f"{b}/{k}": np.asarray(v, dtype=np.int64) for b, feeds in enumerate(batches) for k, v in feeds.items()}
    np.savez(tmp / "in.npz", **arrays)
    req = {
        "model": str(Path(model).resolve()),
        "inputs": str(tmp / "in.npz"),
        "output": str(tmp / "out.npz"),
        "batches": len(batches),
        "threads": [int(t) for t in threads],
        "time": timing,
    }
    (tmp / "req.json").write_text(json.dumps(req))
    return tmp / "req.json"


def install(version: str, dest: Path) -> None:
    """``pip install --target`` ``onnxruntime==version`` (wheel only, no dependencies: the worker uses
    this venv's numpy) into a temp folder renamed to ``dest``: nothing half-installed is ever used."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is shared like pip's
    try:
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--only-binary=:all:", "--target", str(tmp)]
        cmd += ["--disable-pip-version-check", "--timeout", str(PIP_TIMEOUT_S), "--retries", "1", f"{ORT}=={version}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise _install_error(version, proc.stdout + proc.stderr)
        (tmp / MARKER).write_text(json.dumps({"runtime": ORT, "version": version, "python": sys.version.split()[0]}))
        try:
            os.replace(tmp, dest)
        except OSError:  # another process installed it meanwhile: keep theirs
            if not (dest / MARKER).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


NETWORK_SIGNS = (
    "connection broken",
    "failed to establish a new connection",
    "could not fetch url",
    "temporary failure in name resolution",
    "name or service not known",
    "network is unreachable",
    "max retries exceeded",
    "connecttimeout",
    "read timed out",
    "proxyerror",
)


def _install_error(version: str, output: str) -> RuntimeVersionError:
    """pip's failure as one sentence: unknown version (with the ones that exist), no index, or other."""
    lower = output.lower()
    found = re.search(r"\(from versions: ([^)]*)\)", output)
    available = [v.strip() for v in found.group(1).split(",")] if found and found.group(1) != "none" else []
    stable = [v for v in available if re.fullmatch(r"\d+\.\d+(\.\d+)?", v)]
    if any(sign in lower for sign in NETWORK_SIGNS) and version not in available:
        return IndexUnreachableError(
            f"cannot install {ORT} {version}: the package index is not reachable (no network?); connect and retry"
        )
    if found:
        shown = ", ".join(stable) or "none for this Python/platform"
        return RuntimeVersionError(f"{ORT} {version} is not on the package index; available: {shown}")
    last = [ln for ln in output.strip().splitlines() if ln.strip()][-1:] or ["no output"]
    return RuntimeVersionError(f"pip could not install {ORT}=={version}: {last[0][:300]}")


def main(argv: list[str] | None = None) -> int:
    """``python -m mobilebert_kit.phone.side_runtime install [VERSION]``: what ``make setup`` runs (quietly)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "install":
        print("usage: python -m mobilebert_kit.phone.side_runtime install [VERSION]", file=sys.stderr)
        return 2
    version = args[1] if len(args) > 1 else ANDROID_ORT_VERSION
    try:
        rt = SideRuntime(version).ensure()
    except RuntimeVersionError as e:
        print(f"note: {e}", file=sys.stderr)
        return 1
    print(f"side runtime ready: {ORT} {version} in {rt.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
