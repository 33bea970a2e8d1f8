"""Run one model in whatever onnxruntime is first on ``sys.path``: JSON in, JSON + .npz out.

Started by :mod:`mobilebert_kit.runtimes` in a subprocess whose PYTHONPATH puts a side onnxruntime
version (installed with ``pip install --target``) before the host's. Standalone on purpose: it must
not import mobilebert_kit (or anything that imports the host onnxruntime first).

    python ort_worker.py REQUEST.json

REQUEST: {"model": path, "inputs": feeds.npz, "batches": n, "threads": [1, 2], "output": out.npz}, and
optionally "time": {"warmup": w, "runs": r, "rounds": k} to time the feeds instead (``mbk bench``).
feeds.npz holds ``"<batch>/<input name>"`` int64 arrays; out.npz gets ``"<threads>/<batch>"`` logits, or
with "time" the milliseconds of each timed call: every feed warmed up ``w`` times, then ``r`` calls per
feed split over ``k`` interleaved rounds (round 1 of every feed, then round 2, ...), as bench times the host.
stdout: one JSON line, {"version", "file", "input_names"} or {"error": "import"|"load"|"run", "message"}.
"""

import json
import sys
import time


def _fail(kind: str, e: BaseException) -> None:
    message = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
    print(json.dumps({"error": kind, "message": f"{type(e).__name__}: {message}"}))
    sys.exit(2)


def session(ort, model: str, threads: int):
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if model.endswith(".ort"):
        so.add_session_config_entry("session.load_model_format", "ORT")
    return ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])


def interleaved_times(calls: list, warmup: int, runs: int, rounds: int, done=None) -> list:
    """ms of every timed call of each zero-argument callable: ``warmup`` untimed calls each, then ``runs``
    calls each split over ``rounds`` interleaved rounds (round 1 of every callable, then round 2, ...), so
    slow drift of a shared machine spreads over all of them. ``mbk bench`` times the host this way too.
    ``done(n)``: told after each block of ``n`` timed calls (a progress bar; never inside a timed call)."""
    for call in calls:
        for _ in range(warmup):
            call()
    per_round = [runs // rounds + (1 if r < runs % rounds else 0) for r in range(rounds)]
    times = [[] for _ in calls]
    for n in per_round:
        for i, call in enumerate(calls):
            for _ in range(n):
                t0 = time.perf_counter()
                call()
                times[i].append((time.perf_counter() - t0) * 1e3)
            if done is not None:
                done(n)
    return times


def main(request_path: str) -> None:
    req = json.load(open(request_path))
    try:
        import numpy as np
        import onnxruntime as ort
    except BaseException as e:  # noqa: BLE001 - an old wheel may fail to import against this numpy
        _fail("import", e)
    feeds = np.load(req["inputs"])
    out, names = {}, []
    for threads in req["threads"]:
        try:
            sess = session(ort, req["model"], threads)
        except BaseException as e:  # noqa: BLE001
            _fail("load", e)
        names = [i.name for i in sess.get_inputs()]
        batches = [{n: feeds[f"{b}/{n}"] for n in names} for b in range(req["batches"])]
        try:
            if req.get("time"):
                calls = [lambda batch=batch, sess=sess: sess.run(None, batch) for batch in batches]
                for b, times in enumerate(interleaved_times(calls, **req["time"])):
                    out[f"{threads}/{b}"] = np.asarray(times)
            else:
                for b, batch in enumerate(batches):
                    out[f"{threads}/{b}"] = sess.run(None, batch)[0]
        except BaseException as e:  # noqa: BLE001
            _fail("run", e)
    np.savez(req["output"], **out)
    print(json.dumps({"version": ort.__version__, "file": ort.__file__, "input_names": names}))


if __name__ == "__main__":
    main(sys.argv[1])
