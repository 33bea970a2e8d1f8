"""The INT8 guard's promise to verify: agreement with the fp32 graph, judged at its lower 95% bound."""

from __future__ import annotations

import pytest

from mobilebert_kit.compression.guard import Guard, wilson_lower


def test_wilson_lower_bound():
    assert wilson_lower(0.972, 1279) == pytest.approx(0.9614, abs=5e-4)  # the default run's case
    assert wilson_lower(1.0, 16) == pytest.approx(0.8064, abs=5e-4)
    assert wilson_lower(0.5, 0) == 0.0


def test_guard_passes_only_what_verify_will_pass():
    g = Guard("accuracy", 0.01, 128, {"accuracy": 0.8}, min_agreement=0.97)
    assert g.fidelity(0.972, 1279)[1] is False  # 97.2% observed, lower bound 96.1%: verify may well fail
    assert g.fidelity(0.985, 1279)[1] is True
    # 16 examples cannot bound anything at 97%: the observed agreement decides, and it says so
    assert not g.resolves(16) and g.fidelity(1.0, 16)[1] is True and g.fidelity(0.9375, 16)[1] is False
    assert Guard("accuracy", 0.01, 128, {"accuracy": 0.8}).fidelity(0.5, 10)[1] is True  # no promise asked


def test_verify_and_compress_share_one_number():
    from mobilebert_kit.compression.ort_quant import INT8_MIN_AGREEMENT
    from mobilebert_kit.phone.parity import Int8Tolerance
    from mobilebert_kit.stages.compress import CompressConfig

    assert CompressConfig(int8=True).min_agreement == Int8Tolerance().min_agreement == INT8_MIN_AGREEMENT


def test_accuracy_drop_interval_is_paired_and_knows_its_resolution():
    from mobilebert_kit.compression.guard import paired_drop_interval

    assert paired_drop_interval(0, 0, 500) == (0.0, 0.0)  # nothing changed: no uncertainty
    g = Guard("accuracy", 0.01, 128, {"accuracy": 0.8, "macro_f1": 0.79}, min_agreement=0.97)
    # issue 12's case: 80 validation examples, one net flipped example = 1.25 pt over the 1-pt bound
    small = {"accuracy": 0.7875, "n": 80, "discordant": [2, 1]}
    lo, hi = g.interval(small)
    assert lo < 0 < hi and not g.refuses(small)
    assert "too few to resolve --max-drop 0.01: only a drop that is real at 95% is refused" in g.describe(small)
    # the same net loss on the default run's 1,279 examples, with many more changed predictions: still noise
    assert not g.refuses({"accuracy": 0.7875, "n": 1279, "discordant": [30, 14]})
    # a real drop: 40 lost, 5 gained on 1,279 (-2.7 pt): refused, and the message says it is real
    big = {"accuracy": 0.773, "macro_f1": 0.77, "agreement_with_input": 0.96, "n": 1279, "discordant": [40, 5]}
    assert g.interval(big)[0] > 0.01 and g.refuses(big)
    with pytest.raises(
        Exception, match=r"accuracy guard failed: .* \(int8; 95% CI 0\.01\d\d … 0\.0\d\d\d: a real drop\)"
    ):
        g.check(big, "int8")
