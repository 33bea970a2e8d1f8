"""Statistics benchmarks report: paired accuracy differences with their interval, latency summaries, per-seed
spreads and two training variants compared over seeds."""

from __future__ import annotations

import numpy as np


def paired_ci(a_correct: np.ndarray, b_correct: np.ndarray) -> tuple:
    """mean(a) - mean(b) over the same examples and its 95% interval: the guard's paired bootstrap
    (compression.guard.paired_drop_interval) of b's drop from a, which is exactly that difference."""
    from mobilebert_kit.compression.guard import paired_drop_interval

    only_a, only_b = int((a_correct & ~b_correct).sum()), int((b_correct & ~a_correct).sum())
    lo, hi = paired_drop_interval(only_a, only_b, len(a_correct))
    return (only_a - only_b) / len(a_correct), lo, hi


def latency_summary(ms) -> dict:
    """p50, p90 and mean of per-call times in ms, and how many calls."""
    a = np.asarray(ms)
    return {
        "p50_ms": float(np.median(a)),
        "p90_ms": float(np.percentile(a, 90)),
        "mean_ms": float(a.mean()),
        "runs": len(a),
    }


def spread(values: list[float]) -> dict:
    """Mean, sample sd (0 for one value), min and max of per-seed results."""
    import statistics

    return {
        "mean": statistics.mean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


NOISE_VERDICT = {True: "within noise (|Δ| <= 2 sd)", False: "OUTSIDE noise (|Δ| > 2 sd)", None: "one seed only"}


def seed_comparison(base: list[dict], other: list[dict]) -> dict:
    """``other``'s per-seed runs against ``base``'s (each run a dict with ``test_accuracy`` and
    ``train_examples_per_second``): both spreads, the mean test-accuracy difference (other - base), whether it
    is within 2 sd of the seeds' spread (None with one seed; :data:`NOISE_VERDICT` words it) and the speedup."""
    acc = [spread([r["test_accuracy"] for r in runs]) for runs in (base, other)]
    eps = [spread([r["train_examples_per_second"] for r in runs]) for runs in (base, other)]
    diff = acc[1]["mean"] - acc[0]["mean"]
    noise = max(acc[0]["sd"], acc[1]["sd"])
    return {
        "accuracy": acc,
        "examples_per_second": eps,
        "difference": diff,
        "within_noise": abs(diff) <= 2 * noise if min(len(base), len(other)) > 1 else None,
        "speedup": eps[1]["mean"] / eps[0]["mean"],
    }
