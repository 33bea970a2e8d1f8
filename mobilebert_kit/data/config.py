"""The data a stage trains or evaluates on: :class:`DataConfig` (a built-in name or the user's files,
columns, splits, caps) and the loaded :class:`TextDataset` of :class:`Split` s.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from mobilebert_kit.config import StageConfig, check_range

BUILTIN_DATASETS = {
    "rotten_tomatoes": "Rotten Tomatoes review snippets (fresh/rotten), 12.7k rows, split by movie 80/10/10",
}


SPLITS = ("train", "validation", "test")


@dataclass
class DataConfig(StageConfig):
    """Where the text and labels come from."""

    data: str = "rotten_tomatoes"  # built-in name, or a .csv/.tsv/.jsonl file, or a saved datasets folder
    text_column: str = "text"
    label_column: str = "label"
    text_pair_column: str | None = None
    validation_data: str | None = None
    test_data: str | None = None
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 42
    max_train_examples: int | None = None  # take a seeded subset (smoke runs, tests)
    max_eval_examples: int | None = None
    # merge label spellings that are the same label (Pos/pos, 01/1, NFC/NFKC forms) instead of refusing them
    normalize_labels: bool = False
    # say what each label spelling is: {spelling: class, spelling: null (drop its rows)}, a .json/.yaml file
    # of that mapping, or inline "Pos=pos,POS=pos"; applied before the checks (your own files only)
    label_map: dict[str, str | None] | str | None = None

    def validate(self) -> list[str]:
        p: list[str] = []
        check_range(p, "validation_fraction", self.validation_fraction, 0, 1, lo_open=True, hi_open=True)
        check_range(p, "test_fraction", self.test_fraction, 0, 1, lo_open=True, hi_open=True)
        if self.validation_fraction + self.test_fraction >= 0.9:
            p.append("validation_fraction + test_fraction must leave at least 10% for training")
        check_range(p, "max_train_examples", self.max_train_examples, 1)
        check_range(p, "max_eval_examples", self.max_eval_examples, 1)
        if self.text_column == self.label_column:
            p.append(
                f"text_column and label_column are both '{self.text_column}': the model would read its answer; "
                "set --text-column to the column with the text"
            )
        if self.label_map is not None and self.data in BUILTIN_DATASETS:
            p.append(f"label_map applies to your own files; the built-in {self.data} has fixed labels: drop it")
        for role, col in (("text_column", self.text_column), ("label_column", self.label_column)):
            if self.text_pair_column == col:
                p.append(f"text_pair_column is '{col}', the same as {role}; pair a different column or leave it unset")
        return p


@dataclass
class Split:
    texts: list[str]
    labels: list[int]
    pairs: list[str] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, n: int | None, seed: int) -> Split:
        if n is None or n >= len(self):
            return self
        idx = sorted(random.Random(seed).sample(range(len(self)), n))
        return Split(
            [self.texts[i] for i in idx],
            [self.labels[i] for i in idx],
            [self.pairs[i] for i in idx] if self.pairs else None,
        )

    def joined(self, other: Split) -> Split:
        """This split's rows, then ``other``'s (both with or both without text pairs)."""
        if bool(self.pairs) != bool(other.pairs) and len(self) and len(other):
            raise ValueError("cannot join a split of text pairs with a split of single texts")
        pairs = (self.pairs or []) + (other.pairs or []) if (self.pairs or other.pairs) else None
        return Split(self.texts + other.texts, self.labels + other.labels, pairs)


@dataclass
class TextDataset:
    splits: dict[str, Split]
    label_names: list[str]
    source: str
    unlabeled: list[str] = field(default_factory=list)  # raw text the teacher may label (distill --unlabeled)
    notes: list[str] = field(default_factory=list)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def summary(self) -> dict:
        return {
            "source": self.source,
            "labels": self.label_names,
            "sizes": {k: len(v) for k, v in self.splits.items()},
            "label_counts": {k: dict(Counter(self.label_names[i] for i in v.labels)) for k, v in self.splits.items()},
            "unlabeled": len(self.unlabeled),
            "notes": self.notes,
        }
