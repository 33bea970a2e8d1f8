"""Time ONNX Runtime models in a chosen onnxruntime version (the host's, or a side install such as the
version the Android app pins), in a subprocess running ``ort_timing_worker.py``.

One process can import only one onnxruntime, so the phone's runtime (``runtimes.ANDROID_ORT_VERSION``)
is timed in its own process, installed on first use as :class:`mobilebert_kit.phone.side_runtime.SideRuntime`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

WORKER = Path(__file__).with_name("ort_timing_worker.py")
HOST = "host"


def expand_versions(spec: str) -> list[str]:
    """A comma-separated list of onnxruntime versions, ``android`` standing for the version the Android
    app pins and ``host`` for this environment's; duplicates dropped, order kept ("none" or "": [])."""
    from mobilebert_kit.runtimes import ANDROID_ORT_VERSION

    if spec.strip() in ("", "none"):
        return []
    return list(dict.fromkeys(ANDROID_ORT_VERSION if v.strip() == "android" else v.strip() for v in spec.split(",")))


def runtime_path(version: str) -> str | None:
    """The folder to put first on PYTHONPATH for ``version`` (None: the host's onnxruntime)."""
    if version == HOST:
        return None
    from mobilebert_kit.phone.side_runtime import SideRuntime

    return str(SideRuntime(version).ensure().path)


def time_in_runtime(
    version: str,
    paths: dict[str, Path],
    feeds: dict[str, dict[str, list[dict]]],
    timed: dict[str, list[int]],
    rounds: int,
    warmup: int = 5,
    logits_set: str | None = None,
) -> dict:
    """Times (ms per call, every model on the same input in turn) of each model in ``paths``.

    ``feeds[model][set]``: that model's feed dicts (its own tokenizer); ``timed[set]``: the indices
    timed, ``rounds`` times each. Returns ``{"version", "times_ms": {set: {model: [ms]}}, "logits":
    {model: [[...]]}}`` (logits of every feed in ``logits_set``, when given)."""
    with tempfile.TemporaryDirectory(prefix="mbk-timing-") as tmp:
        tmp = Path(tmp)
        arrays = {
            f"{n}/{s}/{i}/{k}": np.asarray(v, dtype=np.int64)
            for n, sets in feeds.items()
            for s, items in sets.items()
            for i, f in enumerate(items)
            for k, v in f.items()
        }
        np.savez(tmp / "feeds.npz", **arrays)
        req = {
            "models": list(paths),
            "paths": {n: str(p) for n, p in paths.items()},
            "feeds": str(tmp / "feeds.npz"),
            "counts": {n: {s: len(items) for s, items in sets.items()} for n, sets in feeds.items()},
            "timed": {s: [int(i) for i in idx] for s, idx in timed.items()},
            "rounds": rounds,
            "warmup": warmup,
            "logits_set": logits_set,
            "output": str(tmp / "out.json"),
        }
        (tmp / "req.json").write_text(json.dumps(req))
        env = dict(os.environ)
        side = runtime_path(version)
        if side:
            env["PYTHONPATH"] = side + os.pathsep + env.get("PYTHONPATH", "")
        proc = subprocess.run(
            [sys.executable, str(WORKER), str(tmp / "req.json")], env=env, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise RuntimeError(f"timing in onnxruntime {version} failed: {proc.stderr.strip()[-600:]}")
        return json.loads((tmp / "out.json").read_text())


def p50_by_version(
    spec: str, paths: dict[str, Path], feeds: dict[str, dict[str, list[dict]]], timed: dict[str, list[int]], rounds: int
) -> dict[str, dict[str, dict[str, float]]]:
    """:func:`time_in_runtime` in every version of ``spec`` (:func:`expand_versions`), reduced to the median:
    ``{version: {set: {model: p50 ms}}}``, keyed by each runtime's own version string."""
    out = {}
    for version in expand_versions(spec):
        t = time_in_runtime(version, paths, feeds, timed, rounds)
        out[t["version"]] = {s: {n: float(np.median(ms)) for n, ms in per.items()} for s, per in t["times_ms"].items()}
    return out
