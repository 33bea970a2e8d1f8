"""Classification metrics and batched prediction, shared by every stage that evaluates."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Run a PyTorch classifier over texts in length-sorted batches; returns logits in input order."""
    import torch

    device = device or next(model.parameters()).device
    enc = encode(tokenizer, texts, pairs, max_length)
    order = np.argsort([len(x) for x in enc["input_ids"]], kind="stable")
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            feats = [{k: enc[k][i] for k in enc.keys()} for i in idx]
            batch = tokenizer.pad(feats, return_tensors="pt")
            batch = {k: v.to(device) for k, v in batch.items()}
            out[idx] = model(**batch).logits.float().cpu().numpy()
            if progress:
                progress(len(idx))
    model.train(was_training)
    return out
