"""The inputs benchmarks time and score: a seeded sample of test texts (the same texts every run), texts
tokenized one at a time without padding (batch 1, as the phone runs them), and a fixed random input."""

from __future__ import annotations

import numpy as np


def seeded_sample(n_items: int, n: int, seed: int = 0) -> np.ndarray:
    """``min(n, n_items)`` distinct indices into ``n_items`` items, drawn by a generator seeded with ``seed``."""
    return np.random.default_rng(seed).choice(n_items, size=min(n, n_items), replace=False)


def encode_one(tok, text: str, length: int) -> dict:
    """One text tokenized alone, unpadded, truncated at ``length`` tokens: int64 arrays of batch 1."""
    e = tok(text, truncation=True, max_length=length)
    return {k: np.asarray([e[k]], dtype=np.int64) for k in e.keys()}


def encode_texts(tok, split, max_length: int) -> list[dict]:
    """Each text of ``split`` tokenized alone, unpadded (batch 1, as the phone runs it)."""
    e = tok(split.texts, split.pairs, truncation=True, max_length=max_length)
    return [{k: np.asarray([e[k][j]], dtype=np.int64) for k in e.keys()} for j in range(len(split.texts))]


def encode_sample(tok, split, idx, max_length: int) -> list[dict]:
    """The texts of ``split`` at indices ``idx`` (with their pairs), each tokenized alone, unpadded."""
    e = tok(
        [split.texts[i] for i in idx],
        [split.pairs[i] for i in idx] if split.pairs else None,
        truncation=True,
        max_length=max_length,
    )
    return [{k: np.asarray([e[k][j]], dtype=np.int64) for k in e.keys()} for j in range(len(idx))]


def fixed_inputs(seq: int, vocab: int = 30522) -> dict:
    """One seeded input of ``seq`` random word pieces between [CLS] and [SEP] (BERT's ids 101 and 102)."""
    ids = np.random.default_rng(0).integers(1000, vocab - 1, size=(1, seq), dtype=np.int64)
    ids[0, 0], ids[0, -1] = 101, 102
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
