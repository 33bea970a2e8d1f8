"""Time ONNX Runtime models in whatever onnxruntime is first on ``sys.path``: JSON in, JSON out.

Started by :mod:`ort_timing` in a subprocess whose PYTHONPATH may put a side onnxruntime version (a
``pip install --target`` folder, :class:`mobilebert_kit.phone.side_runtime.SideRuntime`) before the host's,
so the phone's pinned runtime can be timed beside this environment's. Standalone on purpose: it
must not import mobilebert_kit or anything that imports the host onnxruntime first.

    python ort_timing_worker.py REQUEST.json

REQUEST: {"models": [name, ...], "paths": {name: file}, "feeds": feeds.npz, "counts": {name: {set: n}},
"timed": {set: [index, ...]}, "rounds": r, "warmup": w, "logits_set": set or null, "output": out.json}.
feeds.npz holds ``"<name>/<set>/<i>/<input name>"`` int64 arrays. Every model is timed on the same
input before the next input, in alternating order, batch 1, one intra-op thread.
"""

import json
import sys
import time
from pathlib import Path

# the session options of mbk's own side-runtime worker (standalone too: it imports no mobilebert_kit)
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "mobilebert_kit" / "phone" / "resources"))
from ort_worker import session  # noqa: E402


def main(request_path: str) -> None:
    import numpy as np
    import onnxruntime as ort

    req = json.load(open(request_path))
    names = req["models"]
    data = np.load(req["feeds"])
    sessions = {n: session(ort, req["paths"][n], 1) for n in names}
    inputs = {n: [i.name for i in sessions[n].get_inputs()] for n in names}

    def feed(n: str, s: str, i: int) -> dict:
        return {k: data[f"{n}/{s}/{i}/{k}"] for k in inputs[n]}

    feeds = {n: {s: [feed(n, s, i) for i in range(c)] for s, c in req["counts"][n].items()} for n in names}
    out = {"version": ort.__version__, "file": ort.__file__, "times_ms": {}, "logits": {}}
    if req.get("logits_set"):
        s = req["logits_set"]
        out["logits"] = {n: [sessions[n].run(None, f)[0][0].tolist() for f in feeds[n][s]] for n in names}
    for s, idx in req["timed"].items():
        for n in names:
            for i in idx[: req["warmup"]]:
                sessions[n].run(None, feeds[n][s][i])
        times = {n: [] for n in names}
        for r in range(req["rounds"]):
            for j, i in enumerate(idx):
                for n in names if (j + r) % 2 == 0 else names[::-1]:
                    t0 = time.perf_counter()
                    sessions[n].run(None, feeds[n][s][i])
                    times[n].append((time.perf_counter() - t0) * 1e3)
        out["times_ms"][s] = times
    json.dump(out, open(req["output"], "w"))


if __name__ == "__main__":
    main(sys.argv[1])
