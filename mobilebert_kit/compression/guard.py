"""The accuracy guard: how far a compressed graph may drift from the uncompressed input."""

from __future__ import annotations

from dataclasses import dataclass

from mobilebert_kit.errors import CompressError

GUARD_METRICS = ("accuracy", "agreement")


@dataclass(frozen=True)
class Guard:
    """``metric``: ``accuracy`` (drop in validation accuracy) or ``agreement`` (1 - label agreement);
    ``samples``: validation examples used to rank node sensitivity; ``base``: the input's scores."""

    metric: str
    max_drop: float
    samples: int
    base: dict

    def drop(self, scores: dict) -> float:
        if self.metric == "agreement":
            return 1.0 - scores["agreement_with_input"]
        return self.base["accuracy"] - scores["accuracy"]

    def check(self, scores: dict, what: str) -> dict:
        """The guard's record for ``metrics.json`` when ``scores`` (of ``what``) pass.

        Raises:
            CompressError: the drop is over the bound (the message carries the numbers).
        """
        drop = self.drop(scores)
        if drop > self.max_drop:
            raise CompressError(self.failure(scores, drop, what))
        return {
            "metric": self.metric,
            "max_drop": self.max_drop,
            "drop": drop,
            "checked": what,
            "input_accuracy": self.base["accuracy"],
            "final_accuracy": scores["accuracy"],
            "agreement_with_input": scores.get("agreement_with_input"),
            "passed": True,
        }

    def failure(self, scores: dict, drop: float, what: str) -> str:
        base = self.base
        measure = "label disagreement with the input" if self.metric == "agreement" else "validation accuracy drop"
        return (
            f"accuracy guard failed: {measure} {drop:.4f} > --max-drop {self.max_drop:g} ({what}); "
            f"validation accuracy {base['accuracy']:.4f} -> {scores['accuracy']:.4f}, macro-F1 "
            f"{base['macro_f1']:.4f} -> {scores['macro_f1']:.4f}, agreement "
            f"{scores.get('agreement_with_input', float('nan')):.4f}. "
            "Nothing was written; relax --max-drop or compress less"
        )
