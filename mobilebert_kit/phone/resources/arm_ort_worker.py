"""Runs inside the emulated arm64 python (``qemu-aarch64``): one model, many batches, logits out.

Usage: python3.11 arm_ort_worker.py REQUEST.json
REQUEST: {"model": path, "feeds": npz path (keys "<batch>/<input>"), "out": npz path, "info": json path}.
Writes the logits as "<batch>" arrays into ``out`` and what ran them (onnxruntime version, the CPU
features the emulated /proc/cpuinfo reports) into ``info``. Only the standard library, numpy and
onnxruntime are available here: this file imports nothing from mobilebert_kit.
"""

import json
import platform
import sys

import numpy as np
import onnxruntime as ort


def cpu_features():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("features"):
                    return line.split(":", 1)[1].split()
    except OSError:
        pass
    return []


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1  # emulated threads only cost time; the kernels are the same
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if path.endswith(".ort"):
        so.add_session_config_entry("session.load_model_format", "ORT")
    return ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])


def main(request_path):
    with open(request_path) as f:
        req = json.load(f)
    sess = session(req["model"])
    names = [i.name for i in sess.get_inputs()]
    feeds = np.load(req["feeds"])
    batches = sorted({k.split("/", 1)[0] for k in feeds.files}, key=int)
    out = {}
    for b in batches:
        inputs = {n: feeds[f"{b}/{n}"] for n in names if f"{b}/{n}" in feeds.files}
        out[b] = sess.run(None, inputs)[0]
    np.savez(req["out"], **out)
    info = {
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpu_features": cpu_features(),
    }
    with open(req["info"], "w") as f:
        json.dump(info, f)


if __name__ == "__main__":
    main(sys.argv[1])
