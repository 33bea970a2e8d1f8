"""Classification metrics and batched prediction, shared by every stage that evaluates."""

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


def encode(tokenizer, texts: Sequence[str], pairs: Sequence[str] | None, max_length: int) -> dict[str, list[list[int]]]:
    """Tokenize without padding (dynamic padding happens per batch)."""
    return tokenizer(
        list(texts),
        list(pairs) if pairs else None,
        truncation=True,
        max_length=max_length,
        padding=False,
        return_attention_mask=True,
    )


def predict_logits(
    model,
    tokenizer,
    texts: Sequence[str],
    pairs: Sequence[str] | None = None,
    *,
    max_length: int = 128,
    batch_size: int = 64,
    device=None,
) -> np.ndarray:
    """Run a PyTorch classifier over texts in length-sorted batches; returns logits in input order.
    Raw-text front end of :func:`mobilebert_kit.engine.predict`, the one prediction loop."""
    from mobilebert_kit.engine import Collator, make_features, predict

    features = make_features(tokenizer, texts, pairs, None, max_length)
    collator = Collator(tokenizer.pad_token_id or 0, max_length, dynamic=True)
    return predict(model, features, collator, batch_size, device or next(model.parameters()).device)
