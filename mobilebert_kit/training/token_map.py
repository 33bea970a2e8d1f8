"""Token-level distillation across tokenizers that segment text the same way.

The hidden-state and attention losses compare teacher and student position by position, so they
need both models to see the same tokens at the same positions. Two tokenizers with the same
normalizer and pre-tokenizer and the same WordPiece dictionary, differing only in their ids and
special tokens, give exactly that: MPNet (all-mpnet-base-v2) was pre-trained on BERT's uncased
dictionary, and its tokenizer is BERT's lower-casing BasicTokenizer + WordPiece with ``<s>``/``</s>``
in place of ``[CLS]``/``[SEP]`` (FACTS.md: identical pieces on 16,835 Rotten Tomatoes and IMDB
texts). Then ``<s> pieces </s>`` and ``[CLS] pieces [SEP]`` have the same length and line up.

:func:`compatible` is the cheap static check (same normalizer, pre-tokenizer and WordPiece prefix);
:func:`id_map` maps every teacher id to the student's id for the same piece (specials through
:func:`special_map`: cls/bos, sep/eos, pad, unk, mask); :func:`misaligned` encodes the run's texts
with both and says which ones do not map id for id. Distillation checks every text it trains on, so a
text whose segmentation differs is refused, never silently compared at shifted positions.
"""

from __future__ import annotations

import numpy as np

from mobilebert_kit.errors import ModelError

SPECIALS = ("cls_token", "sep_token", "pad_token", "unk_token", "mask_token")


def _spec(tokenizer) -> dict | None:
    from mobilebert_kit.models import tokenizer_spec

    d = tokenizer_spec(tokenizer)
    if not d:
        return None
    model = d.get("model") or {}
    return {
        "normalizer": d.get("normalizer"),
        "pre_tokenizer": d.get("pre_tokenizer"),
        "model": model.get("type"),
        "prefix": model.get("continuing_subword_prefix"),
    }


def compatible(teacher_tok, student_tok) -> bool:
    """Same normalizer, pre-tokenizer and WordPiece subword prefix (fast tokenizers only): the
    segmentation can be the same, pending :func:`misaligned` on the actual texts."""
    a, b = _spec(teacher_tok), _spec(student_tok)
    return a is not None and a == b and a["model"] == "WordPiece"


def special_map(teacher_tok, student_tok) -> dict[int, int]:
    """Teacher special-token id -> the student's id for the same role (``<s>`` -> ``[CLS]``, ...)."""
    out = {}
    for role in SPECIALS:
        t, s = getattr(teacher_tok, f"{role}_id", None), getattr(student_tok, f"{role}_id", None)
        if t is not None and s is not None:
            out[int(t)] = int(s)
    return out


def id_map(teacher_tok, student_tok) -> np.ndarray:
    """``[teacher vocab size]`` int64: the student's id for each teacher id's piece (specials by
    role), ``-1`` where the student's vocabulary lacks the piece."""
    student_vocab = student_tok.get_vocab()
    teacher_vocab = teacher_tok.get_vocab()
    out = np.full(max(teacher_vocab.values()) + 1, -1, dtype=np.int64)
    for piece, i in teacher_vocab.items():
        out[i] = student_vocab.get(piece, -1)
    for t, s in special_map(teacher_tok, student_tok).items():
        out[t] = s
    return out


def misaligned(
    teacher_tok, student_tok, texts: list[str], max_length: int, pairs: list[str] | None = None
) -> list[int]:
    """Indices of ``texts`` (with their ``pairs``) whose teacher tokens, mapped through :func:`id_map`,
    differ from the student's tokens (length or any id), both truncated at ``max_length``. (Pairs
    rarely line up: MPNet puts two separators between the texts, BERT one.)"""
    mapping = id_map(teacher_tok, student_tok)
    kwargs = {"truncation": True, "max_length": max_length, "verbose": False}
    t_ids = teacher_tok(texts, pairs, **kwargs)["input_ids"]
    s_ids = student_tok(texts, pairs, **kwargs)["input_ids"]
    return [i for i, (t, s) in enumerate(zip(t_ids, s_ids)) if len(t) != len(s) or mapping[t].tolist() != s]


def check_aligned(
    teacher_tok, student_tok, texts: list[str], max_length: int, pairs: list[str] | None, student_name: str | None
) -> str:
    """Refuse (one ModelError) when any text does not line up; else the line to log."""
    bad = misaligned(teacher_tok, student_tok, texts, max_length, pairs)
    if bad:
        raise ModelError(
            f"the student's tokenizer ({student_name}) splits {len(bad)} of {len(texts)} training texts "
            f"differently from the teacher's (first: {texts[bad[0]][:60]!r}); hidden-state and attention losses "
            "compare token by token: drop --hidden-weight/--attention-weight or pick a student with the teacher's vocabulary"
        )
    return f"token map: teacher and student tokens line up on all {len(texts)} training texts (ids and specials mapped)"
