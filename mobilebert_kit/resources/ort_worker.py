"""Run one model in whatever onnxruntime is first on ``sys.path``: JSON in, JSON + .npz out.

Started by :mod:`mobilebert_kit.runtimes` in a subprocess whose PYTHONPATH puts a side onnxruntime
version (installed with ``pip install --target``) before the host's. Standalone on purpose: it must
not import mobilebert_kit (or anything that imports the host onnxruntime first).

    python ort_worker.py REQUEST.json

REQUEST: {"model": path, "inputs": feeds.npz, "batches": n, "threads": [1, 2], "output": out.npz}
feeds.npz holds ``"<batch>/<input name>"`` int64 arrays; out.npz gets ``"<threads>/<batch>"`` logits.
stdout: one JSON line, {"version", "file", "input_names"} or {"error": "import"|"load"|"run", "message"}.
"""

import json
import sys


def _fail(kind: str, e: BaseException) -> None:
    message = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
    print(json.dumps({"error": kind, "message": f"{type(e).__name__}: {message}"}))
    sys.exit(2)


def _session(ort, model: str, threads: int):
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if model.endswith(".ort"):
        so.add_session_config_entry("session.load_model_format", "ORT")
    return ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])


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
            sess = _session(ort, req["model"], threads)
        except BaseException as e:  # noqa: BLE001
            _fail("load", e)
        names = [i.name for i in sess.get_inputs()]
        try:
            for b in range(req["batches"]):
                batch = {n: feeds[f"{b}/{n}"] for n in names}
                out[f"{threads}/{b}"] = sess.run(None, batch)[0]
        except BaseException as e:  # noqa: BLE001
            _fail("run", e)
    np.savez(req["output"], **out)
    print(json.dumps({"version": ort.__version__, "file": ort.__file__, "input_names": names}))


if __name__ == "__main__":
    main(sys.argv[1])
