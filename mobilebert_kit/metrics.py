"""Classification metrics, shared by every stage that evaluates (pure numpy: no model code here)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def classification_metrics(logits_or_preds: np.ndarray, labels: Sequence[int], num_labels: int) -> dict[str, float]:
    """Accuracy and macro-F1 (F1 averaged over every class, absent classes count as 0)."""
    arr = np.asarray(logits_or_preds)
    preds = arr.argmax(-1) if arr.ndim == 2 else arr
    y = np.asarray(labels)
    if len(y) == 0:
        return {"accuracy": float("nan"), "macro_f1": float("nan"), "n": 0}
    f1s = []
    for c in range(num_labels):
        tp = int(((preds == c) & (y == c)).sum())
        fp = int(((preds == c) & (y != c)).sum())
        fn = int(((preds != c) & (y == c)).sum())
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float((preds == y).mean()), "macro_f1": float(np.mean(f1s)), "n": int(len(y))}
