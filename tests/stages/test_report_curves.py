"""Per-step curves stay legible on long runs: bucketed to a few hundred points, spikes kept; phases found."""

from mobilebert_kit.stages.report_curves import MAX_POINTS, downsample, phase_spans, summary


def test_a_long_run_is_bucketed_and_a_spike_survives_in_the_band():
    xs = list(range(1, 100_001))
    ys = [1.0] * len(xs)
    ys[54_321] = 50.0  # one loss spike
    x, mean, lo, hi = downsample(xs, ys)
    assert len(x) <= MAX_POINTS and x[0] < x[-1]
    assert max(hi) == 50.0 and min(lo) == 1.0 and max(mean) < 2.0  # the mean smooths it, the band keeps it
    short = downsample([1, 2, 3], [0.5, float("nan"), 0.4])
    assert short == ([1, 3], [0.5, 0.4], [0.5, 0.4], [0.5, 0.4])  # NaN dropped, short curves untouched


def test_phases_and_summary():
    lines = [{"kind": "step", "step": s, "loss": 1.0 / s, "loss_soft": 0.5 / s} for s in range(1, 5)]
    lines += [{"kind": "step", "step": s, "loss": 0.1, "phase": "recovery"} for s in range(1, 4)]
    lines.append({"kind": "eval", "step": 3, "epoch": 1, "val_accuracy": 0.8, "phase": "recovery"})
    assert phase_spans(lines) == [("recovery", 1, 3)]
    s = summary(lines)
    assert (s["logged_steps"], s["last_step"], s["loss_terms"], s["eval_points"], s["phases"]) == (
        7,
        3,
        ["soft"],
        1,
        ["recovery"],
    )
