"""golden.py: per-vector tolerances from measured spread, the widen hook, and the self-test rule, with
the Android app's Java copy of the rule (GoldenRule.java) compiled and run on the same cases."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mobilebert_kit.phone import golden as g

ROOT = Path(__file__).resolve().parents[2]
JAVA = ROOT / "android_demo/app/src"
LABELS = ["neg", "pos"]


def _measurement(ref, *others) -> g.Measurement:
    prov = {"runtime": "onnxruntime", "version": "x", "cpu": {"arch": "x86_64"}, "threads": 1}
    return g.Measurement(
        g.Measured(prov, np.array(ref, dtype=np.float64)),
        [g.Measured({**prov, "threads": t}, np.array(o, dtype=np.float64)) for t, o in enumerate(others, 2)],
    )


def test_fp32_tolerance_is_k_times_spread_with_a_floor():
    ref = [[1.0, -1.0], [0.2, 0.1], [3.0, -3.0]]
    m = _measurement(ref, [[1.0, -1.0], [0.2 + 1e-3, 0.1], [3.0, -3.0 + 1e-6]])
    vecs = g.vectors(["a", "b", "c"], [[1], [2], [3]], m, LABELS, g.Spec(int8=False))
    assert [v["spread"] for v in vecs] == pytest.approx([0.0, 1e-3, 1e-6], abs=1e-12)
    assert [v["atol"] for v in vecs] == pytest.approx([g.FP32_FLOOR, g.K_SPREAD * 1e-3, g.FP32_FLOOR])
    # The label is checked only where the margin exceeds MARGIN_FACTOR x atol (b: margin 0.1 > 0.006: yes)
    assert [v["check_label"] for v in vecs] == [True, True, True]
    assert [v["label"] for v in vecs] == ["neg", "neg", "neg"]
    tight = g.vectors(["b"], [[2]], _measurement([[0.2, 0.1]], [[0.2 + 0.03, 0.1]]), LABELS, g.Spec(False))
    assert tight[0]["atol"] == pytest.approx(0.09) and tight[0]["check_label"] is False  # 0.1 < 2 x 0.09


def test_int8_tolerance_never_below_the_measured_arm_drift():
    m = _measurement([[1.0, -1.0], [0.5, -0.5]], [[1.0, -1.0], [0.5 + 0.04, -0.5]])
    vecs = g.vectors(["a", "b"], [[1], [2]], m, LABELS, g.Spec(int8=True))
    assert [v["atol"] for v in vecs] == pytest.approx([g.K_SPREAD * g.INT8_DRIFT, g.K_SPREAD * 0.04])
    # the model's own drift measured by verify on the test split raises every vector (never lowers it)
    vecs = g.vectors(["a", "b"], [[1], [2]], m, LABELS, g.Spec(int8=True, drift=0.035))
    assert [v["atol"] for v in vecs] == pytest.approx([g.K_SPREAD * 0.035, g.K_SPREAD * 0.04])
    assert g.vectors(["a"], [[1]], m, LABELS, g.Spec(True, drift=0.001))[0]["atol"] == g.K_SPREAD * g.INT8_DRIFT
    assert g.vectors(["a"], [[1]], _measurement([[1.0, -1.0]]), LABELS, g.Spec(True, floor=0.5))[0]["atol"] == 0.5


def test_widen_hook_takes_extra_measured_logits():
    m = _measurement([[1.0, -1.0], [0.1, 0.0]], [[1.0, -1.0], [0.1, 0.0]])
    golden = {"atol": 1e-4, "tolerance": {"measured_in": ["x"]}}
    golden["vectors"] = g.vectors(["a", "b"], [[1], [2]], m, LABELS, g.Spec(int8=False))
    wider = g.widen(golden, {"onnxruntime 1.22.0, arm64 emulated (cortex-a76)": [[1.0, -1.01], [0.1, 0.02]]})
    assert [v["atol"] for v in wider["vectors"]] == pytest.approx([0.03, 0.06])
    assert wider["vectors"][1]["check_label"] is False  # margin 0.1 < 2 x 0.06: no longer certain
    assert wider["atol"] == pytest.approx(0.06) and len(wider["tolerance"]["measured_in"]) == 2
    assert golden["vectors"][0]["atol"] == g.FP32_FLOOR  # the input is not modified


CASES = [  # (vector, device ids, device logits) -> expected failure (None = passes)
    ({"input_ids": [1, 2], "logits": [0.5, -0.5], "label": "neg", "atol": 0.01, "check_label": True}, [1, 2], [0.5, -0.5], None),
    ({"input_ids": [1, 2], "logits": [0.5, -0.5], "label": "neg", "atol": 0.01, "check_label": True}, [1, 3], [0.5, -0.5], "token ids differ"),
    ({"input_ids": [1], "logits": [0.5, -0.5], "label": "neg", "atol": 0.01, "check_label": True}, [1], [0.53, -0.5], "max |logit diff| 3.00e-02 > atol 1.0e-02"),
    ({"input_ids": [1], "logits": [0.5, -0.5], "label": "neg", "atol": 0.01, "check_label": True}, [1], [float("nan"), -0.5], "max |logit diff| inf > atol 1.0e-02"),
    ({"input_ids": [1], "logits": [0.01, 0.0], "label": "neg", "atol": 0.02, "check_label": True}, [1], [0.0, 0.01], "label pos != neg"),
    ({"input_ids": [1], "logits": [0.01, 0.0], "label": "neg", "atol": 0.02, "check_label": False}, [1], [0.0, 0.01], None),
    ({"input_ids": [1], "logits": [0.5, -0.5, 0.0], "label": "neg", "atol": 0.02, "check_label": False}, [1], [0.5, -0.5], "2 logits, expected 3"),
]  # fmt: skip


@pytest.mark.parametrize("vector, ids, logits, want", CASES)
def test_the_rule(vector, ids, logits, want):
    assert g.check_vector(vector, ids, logits, LABELS) == want


def test_check_golden_names_the_failing_vectors():
    golden = {"vectors": [CASES[0][0], {**CASES[0][0], "logits": [0.6, -0.5]}]}
    assert g.check_golden(golden, LABELS, lambda ids: [0.5, -0.5]) == [
        "golden #1: max |logit diff| 1.00e-01 > atol 1.0e-02"
    ]


@pytest.mark.skipif(not shutil.which("javac"), reason="no JDK (javac) on PATH; the Java copy of the rule is not run")
def test_java_rule_is_the_same_rule(tmp_path):
    srcs = [JAVA / "main/java/ai/mbk/demo/GoldenRule.java", JAVA / "test/java/ai/mbk/demo/GoldenRuleMain.java"]
    r = subprocess.run(["javac", "-encoding", "UTF-8", "-d", str(tmp_path), *map(str, srcs)], capture_output=True)
    assert r.returncode == 0, r.stderr.decode()

    def csv(xs) -> str:
        return ",".join("NaN" if x != x else repr(float(x)) if isinstance(x, float) else str(x) for x in xs)

    lines = [
        "\t".join([csv(v["input_ids"]), csv(v["logits"]), v["label"], repr(v["atol"]), str(v["check_label"]).lower(), csv(ids), csv(lg)])
        for v, ids, lg, _ in CASES
    ]  # fmt: skip
    r = subprocess.run(
        ["java", "-cp", str(tmp_path), "ai.mbk.demo.GoldenRuleMain", *LABELS],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    java = r.stdout.splitlines()
    python = [g.check_vector(v, ids, lg, LABELS) or "OK" for v, ids, lg, _ in CASES]
    assert java == [w.replace("inf", "Infinity") for w in python]
