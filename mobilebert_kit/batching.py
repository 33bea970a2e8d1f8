"""Tokenize, sort by length, pad per batch: the one batching path of every stage.

Training (:class:`FeatureDataset` + :class:`Collator` + :func:`batch_order`), PyTorch prediction
(:func:`predict`, :func:`predict_logits`) and ONNX Runtime / calibration / importance passes
(:func:`padded_batches`) all tokenize the same way (:func:`encode`: truncation, no padding) and
pad each batch to its longest row, in length-sorted order, so no two stages disagree about
what a model saw.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids")


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


def make_features(
    tokenizer, texts, pairs, labels, max_length: int, extras: dict[str, Any] | None = None
) -> FeatureDataset:
    """Tokenize once (no padding) into a FeatureDataset; ``extras`` adds per-example fields
    (e.g. cached teacher logits for distillation)."""
    enc = encode(tokenizer, texts, pairs, max_length)
    keys = [k for k in TOKEN_KEYS if k in enc]
    feats = []
    for i in range(len(texts)):
        f = {k: enc[k][i] for k in keys}
        if labels is not None:
            f["labels"] = int(labels[i])
        for name, values in (extras or {}).items():
            f[name] = values[i]
        feats.append(f)
    return FeatureDataset(feats)


class FeatureDataset:
    """A list of pre-tokenized examples (dicts of lists/arrays); index i also yields ``idx``."""

    def __init__(self, features: list[dict[str, Any]]):
        self.features = features
        self.lengths = [len(f["input_ids"]) for f in features]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.features[i]


class Collator:
    """Pads token fields to the batch's longest row (or to ``max_length`` when dynamic padding
    is off). Other fields are stacked; per-token extras (sequence on dim 0) are zero-padded."""

    def __init__(self, pad_id: int, max_length: int, dynamic: bool):
        self.pad_id, self.max_length, self.dynamic = pad_id, max_length, dynamic

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(r["input_ids"]) for r in rows) if self.dynamic else self.max_length
        out: dict[str, Any] = {}
        for key in TOKEN_KEYS:
            if key in rows[0]:
                pad = self.pad_id if key == "input_ids" else 0
                out[key] = torch.tensor([list(r[key]) + [pad] * (width - len(r[key])) for r in rows], dtype=torch.long)
        for key in rows[0]:
            if key in TOKEN_KEYS:
                continue
            values = [r[key] for r in rows]
            if key in ("labels", "idx"):
                out[key] = torch.tensor(values, dtype=torch.long)
                continue
            arrays = [torch.as_tensor(np.asarray(v)) for v in values]
            if arrays[0].dim() >= 1 and arrays[0].shape[0] == len(rows[0]["input_ids"]) and arrays[0].dim() > 1:
                padded = torch.zeros((len(arrays), width, *arrays[0].shape[1:]), dtype=torch.float32)
                for i, a in enumerate(arrays):
                    padded[i, : a.shape[0]] = a.float()
                out[key] = padded
            else:
                out[key] = torch.stack([a.float() for a in arrays])
        return out


def batch_order(
    lengths: list[int], batch_size: int, seed: int, epoch: int, group_by_length: bool, longest_first: bool = False
) -> list[list[int]]:
    """Deterministic batches for one epoch (same seed + epoch = same batches, which is what
    makes exact resume possible). Length grouping sorts inside mega-batches of 50 batches,
    like HF's LengthGroupedSampler, then shuffles the batch order."""
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(len(lengths)).tolist()
    if group_by_length:
        mega = batch_size * 50
        perm = [i for s in range(0, len(perm), mega) for i in sorted(perm[s : s + mega], key=lambda j: -lengths[j])]
    batches = [perm[s : s + batch_size] for s in range(0, len(perm), batch_size)]
    order = rng.permutation(len(batches)).tolist()
    batches = [batches[i] for i in order]
    if longest_first and batches:  # surface out-of-memory on the first step, not mid-epoch
        k = max(range(len(batches)), key=lambda b: max(lengths[i] for i in batches[b]))
        batches.insert(0, batches.pop(k))
    return batches


def length_sorted(lengths: Sequence[int], batch_size: int) -> Iterator[np.ndarray]:
    """Index arrays of consecutive batches in ascending length order (stable)."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def padded_batches(
    tokenizer,
    texts: Sequence[str],
    pairs: Sequence[str] | None = None,
    max_length: int = 128,
    batch_size: int = 32,
    return_tensors: str = "np",
) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """Yield ``(indices, {name: array})`` in length-sorted, per-batch padded order."""
    yield from pad_encoded(tokenizer, encode(tokenizer, texts, pairs, max_length), batch_size, return_tensors)


def pad_encoded(
    tokenizer, enc: dict[str, list[list[int]]], batch_size: int, return_tensors: str = "np"
) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """:func:`padded_batches` of an :func:`encode` result (for callers that need the lengths first)."""
    for idx in length_sorted([len(x) for x in enc["input_ids"]], batch_size):
        feats = [{k: enc[k][i] for k in enc.keys()} for i in idx]
        yield idx, dict(tokenizer.pad(feats, return_tensors=return_tensors))


def text_progress(total: int, desc: str | None):
    """A tqdm bar on stderr counting texts for a long inference pass; ``desc`` None: no bar."""
    import sys

    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc=desc, unit="text", disable=desc is None, file=sys.stderr, dynamic_ncols=True, mininterval=1.0
    )


def predict(
    model, dataset: FeatureDataset, collator: Collator, batch_size: int, device, progress: str | None = None
) -> np.ndarray:
    """Logits for every example, computed in length-sorted batches, returned in dataset order
    (``progress``: the label of a progress bar, for passes long enough to need one)."""
    import torch

    out = np.zeros((len(dataset), model.config.num_labels), dtype=np.float32)
    was_training = model.training
    model.eval()
    with torch.inference_mode(), text_progress(len(dataset), progress) as bar:
        for idx in length_sorted(dataset.lengths, batch_size):
            batch = collator([dataset[i] for i in idx])
            inputs = {k: batch[k].to(device) for k in TOKEN_KEYS if k in batch}
            out[idx] = model(**inputs).logits.float().cpu().numpy()
            bar.update(len(idx))
    model.train(was_training)
    return out


def predict_logits(
    model,
    tokenizer,
    texts: Sequence[str],
    pairs: Sequence[str] | None = None,
    *,
    max_length: int = 128,
    batch_size: int = 64,
    device=None,
    progress: str | None = None,
) -> np.ndarray:
    """Run a PyTorch classifier over texts in length-sorted batches; returns logits in input order.
    Raw-text front end of :func:`predict`, the one PyTorch prediction loop."""
    features = make_features(tokenizer, texts, pairs, None, max_length)
    collator = Collator(tokenizer.pad_token_id or 0, max_length, dynamic=True)
    return predict(model, features, collator, batch_size, device or next(model.parameters()).device, progress)
