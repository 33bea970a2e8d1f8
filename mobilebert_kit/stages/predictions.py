"""Per-example test predictions a stage leaves beside its metrics (``test_predictions.json``; verify keeps
one list per format in ``verify.json``), so that ``mbk report RUN_A RUN_B`` can pair two runs' answers
text by text: a paired accuracy difference needs to know which texts each model got right.

A record: ``{"split": "test", "text_ids": [...], "labels": [...], "predicted": [...]}``. A text id is the
first 16 hex digits of the sha256 of the text (and its pair), so runs are matched on the texts themselves,
whatever order they were read in, and no text is copied into the artifact.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mobilebert_kit.artifacts import PREDICTIONS, write_json


def text_id(text: str, pair: str | None = None) -> str:
    raw = text if pair is None else f"{text}\u241e{pair}"
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:16]


def text_ids(texts: list[str], pairs: list[str] | None = None) -> list[str]:
    return [text_id(t, pairs[i] if pairs else None) for i, t in enumerate(texts)]


def record(texts: list[str], pairs: list[str] | None, labels, logits) -> dict[str, Any]:
    """The test predictions of one model: ``logits`` (``[n, classes]``) or predicted labels (``[n]``)."""
    import numpy as np

    arr = np.asarray(logits)
    predicted = arr.argmax(-1) if arr.ndim == 2 else arr
    return {
        "split": "test",
        "text_ids": text_ids(list(texts), list(pairs) if pairs else None),
        "labels": [int(x) for x in labels],
        "predicted": [int(x) for x in predicted],
    }


def write(folder: Path, rec: dict[str, Any]) -> None:
    write_json(Path(folder) / PREDICTIONS, rec)


def read(folder: Path) -> dict[str, Any] | None:
    """A stage folder's predictions record, or None (missing, unreadable or inconsistent)."""
    try:
        rec = json.loads((Path(folder) / PREDICTIONS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if valid(rec) else None


def valid(rec: Any) -> bool:
    if not isinstance(rec, dict):
        return False
    ids, labels, predicted = rec.get("text_ids"), rec.get("labels"), rec.get("predicted")
    return all(isinstance(x, list) for x in (ids, labels, predicted)) and len(ids) == len(labels) == len(predicted)
