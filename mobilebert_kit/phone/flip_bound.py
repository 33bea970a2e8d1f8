"""What a parity check on N texts can show about label flips: the exact (Clopper-Pearson) one-sided upper
bound on the flip rate at 95% confidence, and the N a wanted bound needs ("0 flips in N texts -> < X%").

For 0 flips the bound is ``1 - 0.05 ** (1 / N)`` (about 3/N, the "rule of three"): 99 texts bound the rate
below 3%, 299 below 1%. Pure Python: the binomial CDF in log space and a bisection.
"""

from __future__ import annotations

import math

CONFIDENCE = 0.95


def flip_rate_upper(flips: int, n: int, confidence: float = CONFIDENCE) -> float:
    """The exact one-sided upper bound on the flip rate after ``flips`` flips in ``n`` texts."""
    if n <= 0:
        return 1.0
    if flips >= n:
        return 1.0
    alpha = 1.0 - confidence
    if flips == 0:
        return 1.0 - alpha ** (1.0 / n)
    lo, hi = flips / n, 1.0
    for _ in range(60):  # P(X <= flips | p) falls as p rises: find where it crosses alpha
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _binom_cdf(flips, n, mid) > alpha else (lo, mid)
    return hi


def texts_for_bound(bound: float, confidence: float = CONFIDENCE) -> int:
    """The fewest texts whose 0 flips bound the flip rate below ``bound`` at ``confidence``."""
    return max(1, math.ceil(math.log(1.0 - confidence) / math.log(1.0 - bound)))


def bound_line(flips: int, n: int, confidence: float = CONFIDENCE) -> str:
    """``0 flips in 99 texts -> < 3.0% at 95%``."""
    return f"{flips} flip(s) in {n} texts -> < {flip_rate_upper(flips, n, confidence):.1%} at {confidence:.0%}"


def _binom_cdf(k: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0 if k < n else 1.0
    logs = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)
        for i in range(k + 1)
    ]
    top = max(logs)
    return math.exp(top) * sum(math.exp(v - top) for v in logs)
