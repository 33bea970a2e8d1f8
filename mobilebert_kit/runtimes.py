"""Runtime facts: the onnxruntime version the phone apps pin, and the provenance of every number.

``android_demo/app/build.gradle`` pins the same ONNX Runtime version as :data:`ANDROID_ORT_VERSION`
(a test reads both). Installing and running another onnxruntime version beside the host's is
:mod:`mobilebert_kit.phone.side_runtime`.

Every number mbk reports carries a :func:`provenance`: runtime, version, CPU (architecture, model,
the ISA flags that pick INT8 kernels), emulated or not, intra-op threads.
"""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

ANDROID_ORT_VERSION = "1.22.0"  # com.microsoft.onnxruntime:onnxruntime-android in android_demo
ORT = "onnxruntime"

# ISA features that decide which INT8/fp32 kernels ORT (MLAS, KleidiAI) picks, as /proc/cpuinfo names them.
ISA_FLAGS = (
    "sse4_2 avx avx2 fma f16c avx512f avx512bw avx512vl avx512_vnni avx_vnni avx512_bf16 amx_tile amx_int8 "
    "asimd asimddp asimdhp i8mm bf16 sve sve2 sme sme2"
).split()
# runtime name a Runner reports -> the package whose version it runs
RUNTIME_PACKAGES = {
    "onnxruntime": "onnxruntime",
    "torchscript": "torch",
    "torchscript lite": "torch",
    "pytorch": "torch",
    "executorch": "executorch",
    "coreml": "coremltools",
}


def runtime_key(runtime: str, version: str) -> str:
    """How verify.json and bundles name one runtime version: ``"onnxruntime 1.22.0"``."""
    return f"{runtime} {version}"


def host_ort_version() -> str:
    from importlib import metadata

    return metadata.version(ORT)


# --------------------------------------------------------------------------- provenance


@lru_cache(maxsize=1)
def cpu_info() -> dict:
    """This machine's CPU as INT8 kernels see it: architecture, model name, the ISA flags that matter."""
    model, flags = platform.processor() or "", set()
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features"):
            flags |= set(value.split())
    return {"arch": platform.machine(), "model": model, "isa": [f for f in ISA_FLAGS if f in flags]}


def provenance(runtime: str, version: str | None, threads: int | None, **extra) -> dict:
    """Where a number came from. ``extra`` (e.g. an emulated ``cpu``) overrides the host's facts."""
    return {
        "runtime": runtime,
        "version": version,
        "cpu": cpu_info(),
        "emulated": False,
        "threads": threads,
        **extra,
    }


def provenance_of(runner) -> dict:
    """The provenance of a :class:`~mobilebert_kit.formats.Runner` running in this process."""
    from importlib import metadata

    package = RUNTIME_PACKAGES.get(runner.runtime)
    try:
        version = metadata.version(package) if package else None
    except metadata.PackageNotFoundError:
        version = None
    threads = getattr(runner, "threads", None)
    if threads is None and package == "torch" and not runner.fixed_threads:
        import torch

        threads = torch.get_num_threads()
    return provenance(runner.runtime, version, threads)
