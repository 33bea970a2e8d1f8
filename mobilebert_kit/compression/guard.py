"""The accuracy guard: how far a compressed graph may drift from the uncompressed input."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mobilebert_kit.errors import CompressError

GUARD_METRICS = ("accuracy", "agreement")


def ci_text(lo: float, hi: float) -> str:
    """A drop's 95% interval in points, as every report writes it: "-0.2 … +1.1"."""
    return f"{100 * lo:+.1f} … {100 * hi:+.1f}"


@dataclass(frozen=True)
class Guard:
    """``metric``: ``accuracy`` (drop in validation accuracy) or ``agreement`` (1 - label agreement);
    ``samples``: validation examples used to rank node sensitivity; ``base``: the input's scores."""

    metric: str
    max_drop: float
    samples: int
    base: dict
    min_agreement: float | None = None  # INT8 vs its fp32 graph, at the 95% lower bound (verify's promise)

    def fidelity(self, agree: float, n: int) -> tuple[float, bool]:
        """(lower 95% Wilson bound of the INT8 graph's label agreement with its fp32 graph over ``n``
        validation examples, whether it clears ``min_agreement``). On the same data distribution
        verify's test-split agreement then clears it too, unless that split is much smaller."""
        low = wilson_lower(agree, n)
        if self.min_agreement is None:
            return low, True
        if not self.resolves(n):  # too few examples to bound anything: the observed value decides
            return low, agree >= self.min_agreement
        return low, low >= self.min_agreement

    def resolves(self, n: int) -> bool:
        """Whether ``n`` validation examples can bound agreement at ``min_agreement`` at all (even 100%
        agreement on few examples leaves a wide interval)."""
        return self.min_agreement is None or wilson_lower(1.0, n) >= self.min_agreement

    def drop(self, scores: dict) -> float:
        if self.metric == "agreement":
            return 1.0 - scores["agreement_with_input"]
        return self.base["accuracy"] - scores["accuracy"]

    def interval(self, scores: dict) -> tuple[float, float]:
        """95% interval of the drop. Accuracy: paired bootstrap over the same validation examples
        (only the discordant ones move it); agreement: Wilson interval of the disagreement."""
        n = int(scores.get("n") or 0)
        if self.metric == "agreement":
            dis = 1.0 - scores["agreement_with_input"]
            return wilson_lower(dis, n), 1.0 - wilson_lower(1.0 - dis, n)
        if "discordant" not in scores or n == 0:
            d = self.drop(scores)
            return d, d
        return paired_drop_interval(*scores["discordant"], n)

    def refuses(self, scores: dict) -> bool:
        """Refuse only a drop that is real: its whole 95% interval lies above ``max_drop``."""
        return self.interval(scores)[0] > self.max_drop

    def unresolved(self, scores: dict) -> bool:
        """Whether the 95% interval is wider than ``max_drop`` on either side (too few examples to tell a
        drop at the bound from none)."""
        lo, hi = self.interval(scores)
        return (hi - lo) / 2 > self.max_drop

    def interval_text(self, scores: dict, unit: str = "examples") -> str:
        """ "drop +0.47 pt (95% CI -0.2 … +1.1) on 1279 examples" (``unit`` names what was counted)."""
        lo, hi = self.interval(scores)
        n = int(scores.get("n") or 0)
        return f"drop {100 * self.drop(scores):+.2f} pt (95% CI {ci_text(lo, hi)}) on {n} {unit}"

    def describe(self, scores: dict) -> str:
        """:meth:`interval_text`, plus a word when n cannot resolve the bound."""
        text = self.interval_text(scores)
        if self.unresolved(scores):
            text += f"; too few to resolve --max-drop {self.max_drop:g}: only a drop that is real at 95% is refused"
        return text

    def check(self, scores: dict, what: str) -> dict:
        """The guard's record for ``metrics.json`` when ``scores`` (of ``what``) pass.

        Raises:
            CompressError: the drop is over the bound (the message carries the numbers).
        """
        drop = self.drop(scores)
        if self.refuses(scores):
            raise CompressError(self.failure(scores, drop, what))
        return {
            "metric": self.metric,
            "max_drop": self.max_drop,
            "drop": drop,
            "drop_ci95": list(self.interval(scores)),
            "summary": self.describe(scores),
            "checked": what,
            "input_accuracy": self.base["accuracy"],
            "final_accuracy": scores["accuracy"],
            "agreement_with_input": scores.get("agreement_with_input"),
            "agreement_with_fp32": scores.get("agreement_with_fp32"),
            "agreement_with_fp32_low95": scores.get("agreement_with_fp32_low95"),
            "agreement_n": scores.get("agreement_n"),
            "min_agreement": self.min_agreement,
            "passed": True,
        }

    def failure(self, scores: dict, drop: float, what: str) -> str:
        base = self.base
        measure = "label disagreement with the input" if self.metric == "agreement" else "validation accuracy drop"
        return (
            f"accuracy guard failed: {measure} {drop:.4f} > --max-drop {self.max_drop:g} ({what}; 95% CI "
            f"{self.interval(scores)[0]:.4f} … {self.interval(scores)[1]:.4f}: a real drop); "
            f"validation accuracy {base['accuracy']:.4f} -> {scores['accuracy']:.4f}, macro-F1 "
            f"{base['macro_f1']:.4f} -> {scores['macro_f1']:.4f}, agreement "
            f"{scores.get('agreement_with_input', float('nan')):.4f}. "
            "Nothing was written; relax --max-drop or compress less"
        )


def wilson_lower(p: float, n: int, z: float = 1.96) -> float:
    """Lower end of the Wilson score interval of a proportion ``p`` observed on ``n`` examples."""
    if n == 0:
        return 0.0
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def paired_drop_interval(worse: int, better: int, n: int, draws: int = 4000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of an accuracy drop measured on the same ``n`` examples,
    ``worse`` of which the compressed model gets wrong and the input right, ``better`` the reverse.
    Resampling examples is resampling these three kinds (worse, better, unchanged)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    p = np.array([worse, better, n - worse - better], dtype=float) / n
    counts = rng.multinomial(n, p, size=draws)
    drops = (counts[:, 0] - counts[:, 1]) / n
    lo, hi = np.percentile(drops, [2.5, 97.5])
    return float(lo), float(hi)
