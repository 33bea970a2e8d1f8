"""Label values that are the same label written differently, and class counts that look like a mistake.

A user file's labels become classes by their spelling. ``Pos`` beside ``pos``, ``01`` beside ``1``,
`` pos`` beside ``pos`` or a decomposed ``é`` beside a composed one would each train as separate classes,
so a binary task silently becomes a 3- or 4-way one. Labels are grouped by a normal form (Unicode NFKC,
surrounding whitespace, case, numeric value) and a group with two spellings is refused, the groups
listed, unless the user asks for them to be merged (``normalize_labels: true`` in the data config,
``--normalize-labels`` on the command line): each group then becomes one class, named by its most
frequent spelling (a number by its plain value: ``01``/``1.0`` -> ``1``).

Before training, a class with a handful of rows, or data that looks binary but has more classes,
is called out (a warning: a rare class can be real, but the user should decide).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict

from mobilebert_kit.errors import DataError, warn

RARE_ROWS = 5  # a class with fewer training rows cannot be learned, and a stratified split can miss it
BINARY_SHARE = 0.99  # two classes with this share of the rows: the data is binary, the rest strays
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_SHOWN_GROUPS = 5
FIX = (
    "fix the labels in the file, or pass --normalize-labels (data config: normalize_labels: true) "
    "to merge each group into one class"
)


def label_key(label: str) -> str:
    """The normal form two spellings of one label share: NFKC, no surrounding space, case-folded,
    and a number by its value (``01``, ``1``, ``1.0``, ``+1`` are all ``1``)."""
    text = unicodedata.normalize("NFKC", label).strip()
    if _NUMBER.fullmatch(text):
        value = float(text)
        return str(int(value)) if value.is_integer() else repr(value)
    return text.casefold()


def canonical_spellings(counts: Counter, where: str, normalize: bool) -> dict[str, str]:
    """Map every label spelling to the class it belongs to.

    Args:
        counts: rows per label spelling (training and evaluation files together).
        where: the file(s), for the message.
        normalize: merge each group of spellings into one class instead of refusing it.

    Raises:
        DataError: two spellings share a normal form and ``normalize`` is off; lists the groups.
    """
    groups: dict[str, list[str]] = defaultdict(list)
    for spelling in sorted(counts):
        groups[label_key(spelling)].append(spelling)
    clashes = [g for g in groups.values() if len(g) > 1]
    if clashes and not normalize:
        shown = "; ".join(" / ".join(repr(s) for s in g) for g in clashes[:_SHOWN_GROUPS])
        more = f"; +{len(clashes) - _SHOWN_GROUPS} more groups" if len(clashes) > _SHOWN_GROUPS else ""
        raise DataError(
            f"{where}: labels that are the same label written differently would train as separate classes: "
            f"{shown}{more}; {FIX}"
        )
    mapping = {}
    for key, group in groups.items():
        name = key if _NUMBER.fullmatch(key) and len(group) > 1 else max(group, key=lambda s: (counts[s], s))
        mapping.update({s: name for s in group})
    return mapping


def call_out_class_counts(counts: Counter, where: str) -> None:
    """Warn (before training) about a class with a handful of rows and about binary-looking data with
    more than two classes."""
    total = sum(counts.values())
    if len(counts) > 2:
        top = counts.most_common(2)
        rest = [(label, n) for label, n in counts.most_common()[2:]]
        if (top[0][1] + top[1][1]) >= BINARY_SHARE * total:
            strays = ", ".join(f"{label!r} ({n} rows)" for label, n in rest[:_SHOWN_GROUPS])
            warn(
                f"{where}: the data looks binary ({top[0][0]!r} {top[0][1]} rows, {top[1][0]!r} {top[1][1]} rows) "
                f"but has {len(counts)} classes; the others are {strays}: the model will be a {len(counts)}-way "
                "classifier. If they are typos or strays, fix or drop those rows"
            )
            return
    rare = [(label, n) for label, n in sorted(counts.items(), key=lambda x: (x[1], x[0])) if n < RARE_ROWS]
    if rare:
        shown = ", ".join(f"{label!r} ({n} rows)" for label, n in rare[:_SHOWN_GROUPS])
        warn(
            f"{where}: {len(rare)} class(es) with fewer than {RARE_ROWS} rows of {total}: {shown}; the model "
            "cannot learn a class from so few rows and a split may leave it out of evaluation: add rows, "
            "or fix or drop them if they are typos"
        )


def hygienic_labels(train: list, extra: dict[str, list], where: str, normalize: bool) -> tuple[list, dict[str, list]]:
    """``(text, label, pair)`` records of the training file and the evaluation files with every label
    spelling mapped to its class (see :func:`canonical_spellings`)."""
    counts = Counter(str(r[1]) for r in train)
    for recs in extra.values():
        counts.update(str(r[1]) for r in recs)
    mapping = canonical_spellings(counts, where, normalize)

    def relabel(recs: list) -> list:
        return [(r[0], mapping[str(r[1])], *r[2:]) for r in recs]

    return relabel(train), {name: relabel(recs) for name, recs in extra.items()}
