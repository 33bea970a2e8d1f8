"""Golden vectors: the phone's self-test data, their tolerances, and the one rule that judges them.

**The rule** (:func:`check_vector`; ``GoldenRule.java`` in the Android app and ``checkVector`` in the
iOS ``ContentView.swift`` implement the same lines, and tests/phone/test_golden.py runs the Java one): for every vector, the device tokenizer's ids equal ``input_ids`` exactly, every
logit is within the vector's ``atol`` of ``logits``, and when ``check_label`` is true the top logit is
``label``. The self-test passes only if every vector passes.

**The tolerances** come from measured spread, not a guess. The golden logits are computed in one
runtime version (for Android the one the app pins, with 1 thread as the app runs it); the same ids
are run in every other configuration we can reach (host and side onnxruntime versions x 1/2/4
intra-op threads, plus anything a caller adds through :func:`widen`, e.g. ARM64 under emulation).
Per vector, ``spread`` = the largest |logit - golden logit| over those configurations, and

* fp32: ``atol = max(1e-4, K * spread)``
* INT8: ``atol = K * max(spread, drift)``. Dynamic INT8 moves a logit whenever an activation crosses a
  quantization step, so a handful of golden vectors under-samples it: on the default run's model the
  six default texts agree to 4e-7 between onnxruntime 1.22 and 1.32, while 205 of 1,276 test texts
  differ by more than 1e-3 (up to 0.032). ``drift`` is therefore the model's own cross-version drift
  measured by ``mbk verify`` on the whole test split (``max_abs_diff_vs_host``), and never less than
  ``INT8_DRIFT``, measured for the app-pinned runtime on ARM64 (which x86 cannot show).

``K = 3``: the configurations measured are a sample of what phones run; three times the largest
deviation seen keeps a correct model passing on a CPU we did not measure, while a wrong model
(logits off by O(0.1-1)) or a broken tokenizer (ids compared exactly) still fails.

**Labels** are checked where they must hold: ``check_label`` is true when the golden top-2 margin is
over ``MARGIN_FACTOR * atol`` (each logit moving by at most atol changes the margin by at most
2 x atol, so the label cannot flip on a correct runtime). Vectors too close to call still check ids
and logits; when fewer than ``MIN_LABEL_VECTORS`` qualify, texts from ``LABEL_CANDIDATES`` with a
clear margin are added.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

K_SPREAD = 3.0
FP32_FLOOR = 1e-4
# ARM64 onnxruntime 1.22 vs x86 onnxruntime 1.32 on the default run's INT8 model: max|Δ| 0.020 over
# 300 test texts, the same on cortex-a53/a76/max (qemu-user, FACTS 2026-11-24).
INT8_DRIFT = 0.02
MARGIN_FACTOR = 2.0
MIN_LABEL_VECTORS = 2
LABEL_CANDIDATES = [
    "an excellent, joyful film i loved every minute of",
    "a dull, boring, painful waste of time",
    "the best movie of the year",
    "the worst movie of the year",
    "brilliant acting and a great story",
    "terrible acting and a bad script",
]
RULE = (
    "for every vector: device token ids == input_ids; |logit - logits[i]| <= atol for every i; "
    "if check_label: argmax(logits) == label"
)


@dataclass
class Measured:
    """Logits of the golden ids in one runtime configuration (rows = vectors)."""

    provenance: dict
    logits: np.ndarray


@dataclass
class Measurement:
    """The golden logits (``reference``) and every other configuration they were compared with."""

    reference: Measured
    others: list[Measured] = field(default_factory=list)


def spread(reference: np.ndarray, others: Sequence[np.ndarray]) -> np.ndarray:
    """Per vector: the largest |logit - reference logit| over every other configuration (0 without any)."""
    out = np.zeros(len(reference))
    for logits in others:
        out = np.maximum(out, np.abs(np.asarray(logits, dtype=np.float64) - reference).max(axis=1))
    return out


@dataclass
class Spec:
    """How tolerances are derived: INT8 or not, a user's minimum (``floor``), the INT8 ``drift`` measured
    for this model (raised to at least INT8_DRIFT), and the safety factor ``k``."""

    int8: bool
    floor: float | None = None
    drift: float = INT8_DRIFT
    drift_from: str = "ARM64 onnxruntime 1.22 vs x86 1.32, default run (FACTS 2026-11-24)"
    k: float = K_SPREAD


def tolerances(spreads: np.ndarray, spec: Spec) -> np.ndarray:
    """Per-vector atol from the measured spread (module doc); ``spec.floor`` raises every value."""
    drift = max(spec.drift, INT8_DRIFT)
    base = spec.k * np.maximum(spreads, drift) if spec.int8 else np.maximum(FP32_FLOOR, spec.k * spreads)
    return np.maximum(base, spec.floor or 0.0)


def margin(logits: Sequence[float]) -> float:
    """Top-1 minus top-2 logit (inf with a single output)."""
    top = sorted((float(x) for x in logits), reverse=True)
    return top[0] - top[1] if len(top) > 1 else float("inf")


def label_checked(logits: Sequence[float], atol: float) -> bool:
    return margin(logits) > MARGIN_FACTOR * atol


def vectors(texts, ids, m: Measurement, labels: list[str], spec: Spec) -> list[dict]:
    """The golden.json vectors: ids, golden logits, label, and their measured spread and tolerance."""
    ref = m.reference.logits
    spreads = spread(ref, [o.logits for o in m.others])
    atols = tolerances(spreads, spec)
    out = []
    for text, vid, logits, s, atol in zip(texts, ids, ref, spreads, atols):
        values = [float(x) for x in logits]
        out.append(
            {
                "text": text,
                "input_ids": [int(i) for i in vid],
                "logits": values,
                "label": labels[int(np.argmax(logits))],
                "atol": float(atol),
                "check_label": label_checked(values, float(atol)),
                "margin": margin(values),
                "spread": float(s),
            }
        )
    return out


def label_candidates_needed(vecs: list[dict]) -> int:
    """How many label-checked vectors are missing to reach MIN_LABEL_VECTORS."""
    return max(0, MIN_LABEL_VECTORS - sum(v["check_label"] for v in vecs))


def tolerance_info(m: Measurement, spec: Spec) -> dict:
    """golden.json's ``tolerance``: how the per-vector atol was derived, and from what."""
    return {
        "k": spec.k,
        "formula": f"k*max(spread, {max(spec.drift, INT8_DRIFT):.3g})" if spec.int8 else "max(1e-4, k*spread)",
        "int8": spec.int8,
        "fp32_floor": FP32_FLOOR,
        "int8_drift": max(spec.drift, INT8_DRIFT) if spec.int8 else None,
        "int8_drift_from": spec.drift_from if spec.int8 else None,
        "user_floor": spec.floor,
        "margin_factor": MARGIN_FACTOR,
        "measured_in": [_config_name(o.provenance) for o in m.others],
    }


def _config_name(p: dict) -> str:
    cpu = (p.get("cpu") or {}).get("arch", "?")
    emulated = " emulated" if p.get("emulated") else ""
    return f"{p.get('runtime')} {p.get('version')}, {cpu}{emulated}, {p.get('threads')} thread(s)"


def widen(golden: dict, extra: dict[str, Sequence[Sequence[float]]], k: float = K_SPREAD) -> dict:
    """The hook for configurations measured elsewhere (ARM64, emulated CPUs, a phone): ``extra`` maps a
    configuration name to its logits for every vector (golden order). Each vector's atol becomes
    ``max(atol, k * |extra - logits|)`` and its ``check_label`` is re-decided; returns a new dict."""
    out = {**golden, "vectors": [dict(v) for v in golden["vectors"]]}
    ref = np.array([v["logits"] for v in out["vectors"]], dtype=np.float64)
    added = spread(ref, [np.asarray(x, dtype=np.float64) for x in extra.values()])
    for v, s in zip(out["vectors"], added):
        v["spread"] = max(float(v.get("spread", 0.0)), float(s))
        v["atol"] = max(float(v["atol"]), k * float(s))
        v["check_label"] = label_checked(v["logits"], v["atol"])
    out["atol"] = max(v["atol"] for v in out["vectors"])
    info = dict(out.get("tolerance") or {})
    info["measured_in"] = [*info.get("measured_in", []), *extra]
    out["tolerance"] = info
    return out


# --------------------------------------------------------------------------- the rule


def check_vector(vector: dict, ids: Sequence[int], logits: Sequence[float], labels: Sequence[str]) -> str | None:
    """Why ``vector`` fails for a device that tokenized to ``ids`` and computed ``logits`` (None: it passes)."""
    if [int(i) for i in ids] != [int(i) for i in vector["input_ids"]]:
        return "token ids differ"
    want = vector["logits"]
    if len(logits) != len(want):
        return f"{len(logits)} logits, expected {len(want)}"
    diffs = (abs(float(a) - float(b)) for a, b in zip(logits, want))
    worst = max((d if d == d else math.inf for d in diffs), default=0.0)  # NaN fails, as in Java/Swift
    if not worst <= vector["atol"]:
        return f"max |logit diff| {worst:.2e} > atol {vector['atol']:.1e}"
    best = max(range(len(logits)), key=lambda i: logits[i])
    if vector.get("check_label") and labels[best] != vector["label"]:
        return f"label {labels[best]} != {vector['label']}"
    return None


def check_golden(golden: dict, labels: Sequence[str], run: Callable[[list[int]], Sequence[float]]) -> list[str]:
    """The self-test in Python: failures (empty when every vector passes) for a runtime ``run(ids) -> logits``.
    Token ids are taken from the vectors (the Java tokenizer's ids are tested in test_java_tokenizer)."""
    failures = []
    for n, v in enumerate(golden["vectors"]):
        why = check_vector(v, v["input_ids"], list(run(v["input_ids"])), labels)
        if why:
            failures.append(f"golden #{n}: {why}")
    return failures


# --------------------------------------------------------------------------- measuring


THREADS = (1, 2, 4)  # intra-op thread counts the spread is measured over (the apps run 1)


def reference_runtime(fmt, log=None):
    """The side runtime the golden logits are computed in: the version the app pins, when it is not the
    host's and can be installed. None means the host runtime (with a warning when the app pins another)."""
    from mobilebert_kit.errors import RuntimeVersionError, warn
    from mobilebert_kit.phone.side_runtime import SideRuntime
    from mobilebert_kit.runtimes import host_ort_version

    pinned = getattr(fmt, "app_runtime_version", None)
    if not pinned or pinned == host_ort_version():
        return None
    try:
        return SideRuntime(pinned).ensure(log)
    except RuntimeVersionError as e:
        warn(
            f"golden logits are computed in onnxruntime {host_ort_version()}, not in {pinned} that "
            f"{fmt.demo_app} runs ({e}); run `make setup` or `python -m mobilebert_kit.phone.side_runtime install` online"
        )
        return None


def other_runtime(runtime) -> bool:
    """Whether a bundle runtime is not an onnxruntime session (LiteRT names itself: ``runtime_name``)."""
    return hasattr(runtime, "runtime_name")


def measure(runtime, ids: list[list[int]], pad_id: int, side=None) -> Measurement:
    """Logits of every golden ``ids`` in the host onnxruntime and, when given, the ``side`` runtime, at each of
    THREADS; the reference is the side runtime at 1 thread (what the app runs), else the host's."""
    from mobilebert_kit.formats.ort import BundleRuntime
    from mobilebert_kit.runtimes import ORT, host_ort_version, provenance

    if other_runtime(runtime):  # LiteRT: its own logits, as the app runs it
        prov = provenance(runtime.runtime_name, runtime.runtime_version, 1)
        return Measurement(Measured(prov, np.array([runtime.logits(i, pad_id) for i in ids])))
    host = []
    for t in THREADS:
        rt = runtime if t == getattr(runtime, "threads", 1) else BundleRuntime(runtime.path, threads=t)
        host.append(Measured(provenance(ORT, host_ort_version(), t), np.array([rt.logits(i, pad_id) for i in ids])))
    if side is None:
        return Measurement(host[0], host[1:])
    measured = _side_measure(side, runtime, ids, pad_id)
    return Measurement(measured[0], measured[1:] + host)


def _side_measure(side, runtime, ids: list[list[int]], pad_id: int) -> list[Measured]:
    from mobilebert_kit.formats.ort import bundle_feeds
    from mobilebert_kit.runtimes import ORT, provenance

    feeds = [bundle_feeds(i, pad_id, runtime.fixed_length) for i in ids]
    outs = side.run(runtime.path, feeds, THREADS)
    return [
        Measured(
            provenance(ORT, side.version, t, environment=str(side.path)),
            np.array([np.asarray(o).reshape(-1) for o in outs[t]], dtype=np.float64),
        )
        for t in THREADS
    ]
