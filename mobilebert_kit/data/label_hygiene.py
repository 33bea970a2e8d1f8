"""Label values that are the same label written differently, and class counts that look like a mistake.

A user file's labels become classes by their spelling. ``Pos`` beside ``pos``, ``01`` beside ``1``,
`` pos`` beside ``pos`` or a decomposed ``é`` beside a composed one would each train as separate classes,
so a binary task silently becomes a 3- or 4-way one. Labels are grouped by a normal form (Unicode NFKC,
surrounding whitespace, case, numeric value) and a group with two spellings is refused, the groups
listed, unless the user asks for them to be merged (``normalize_labels: true`` in the data config,
``--normalize-labels`` on the command line): each group then becomes one class, named by its most
frequent spelling (a number by its plain value: ``01``/``1.0`` -> ``1``). Or the user says exactly what
each spelling means with a label map (``label_map`` in the data config, ``--label-map``): a mapping of
spelling to class, inline or as a .json/.yaml file; a spelling mapped to ``null`` drops its rows. The map
is applied first, so the checks see the classes the user chose.

Before training, a class with a handful of rows, or data that looks binary but has more classes,
is called out (a warning: a rare class can be real, but the user should decide).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

from mobilebert_kit.bounded_input import read_yaml  # JSON is YAML
from mobilebert_kit.errors import ConfigError, DataError, warn

RARE_ROWS = 5  # a class with fewer training rows cannot be learned, and a stratified split can miss it
BINARY_SHARE = 0.99  # two classes with this share of the rows: the data is binary, the rest strays
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_SHOWN_GROUPS = 5
FIX = (
    "fix the labels in the file, or pass --normalize-labels (data config: normalize_labels: true) "
    "to merge each group into one class, or --label-map FILE (data config: label_map) to say what each spelling is"
)
MAP_FORM = "a .json/.yaml file of spelling: class (null drops the rows), or inline 'Pos=pos,POS=pos'"


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


def read_label_map(spec: dict | str | None) -> dict[str, str | None]:
    """The user's label map: a mapping, a .json/.yaml file holding one, or inline ``A=B,C=D``.

    Raises:
        DataError: the file is missing or not a mapping of strings, or a YAML key lost its spelling
            (``01:`` is the number 1 to YAML; the map must say ``'01':``).
    """
    if spec is None:
        return {}
    if isinstance(spec, dict):
        return _checked_map(spec, "label_map")
    path = Path(spec).expanduser()
    try:
        is_file = path.is_file()
    except (OSError, ValueError):  # a name too long or with a NUL: not a file, maybe inline pairs
        is_file = False
    if is_file:
        try:
            data = read_yaml(path, f"label map {path}")
        except ConfigError as e:
            raise DataError(str(e)) from e
        if not isinstance(data, dict):
            raise DataError(f"label map {path} holds a {type(data).__name__}, not a mapping; write {MAP_FORM}")
        return _checked_map(data, f"label map {path}")
    if "=" not in spec:
        raise DataError(f"label map {spec} is not a file and not inline pairs; pass {MAP_FORM}")
    pairs = [item.partition("=") for item in spec.split(",") if item.strip()]
    return _checked_map({k: (v if v not in ("", "null") else None) for k, _, v in pairs}, "--label-map")


def _checked_map(data: dict, where: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise DataError(
                f"{where}: the key {key!r} is a {type(key).__name__}, so its spelling is lost (YAML reads 01 as 1); "
                f"quote it: '{key}': ..."
            )
        if value is not None and (isinstance(value, (dict, list)) or str(value).strip() == ""):
            raise DataError(f"{where}: {key!r} maps to {value!r}; map each spelling to a class name, or null to drop")
        out[key] = None if value is None else str(value)
    if not out:
        raise DataError(f"{where} is empty; write {MAP_FORM}")
    return out


def apply_label_map(
    train: list, extra: dict[str, list], mapping: dict[str, str | None], where: str
) -> tuple[list, dict[str, list], list[str]]:
    """Records with each mapped spelling replaced by its class and the rows of a spelling mapped to
    ``None`` dropped; the note says how many of each. A key no row has is warned about (a typo?)."""
    if not mapping:
        return train, extra, []
    seen = Counter(str(r[1]) for recs in (train, *extra.values()) for r in recs)
    unused = [k for k in mapping if k not in seen]
    if unused:
        shown = ", ".join(repr(k) for k in unused[:_SHOWN_GROUPS])
        warn(f"{where}: the label map names {len(unused)} spelling(s) no row has: {shown}; check them for typos")
    if len(unused) == len(mapping):
        raise DataError(f"{where}: no row has any label the label map names; the labels are {_shown(seen)}")

    drop = {k for k, v in mapping.items() if v is None}

    def mapped(recs: list) -> list:  # a kept spelling maps to a non-empty class name (_checked_map)
        return [(r[0], mapping.get(str(r[1])) or r[1], *r[2:]) for r in recs if str(r[1]) not in drop]

    train, extra = mapped(train), {name: mapped(recs) for name, recs in extra.items()}
    renamed = sum(n for k, n in seen.items() if k in mapping and mapping[k] not in (None, k))
    dropped = sum(seen[k] for k in drop)
    return train, extra, [f"label map: {renamed} rows relabelled, {dropped} rows dropped"]


def _shown(counts: Counter) -> str:
    return ", ".join(repr(k) for k, _ in counts.most_common(_SHOWN_GROUPS)) + (
        f" (+{len(counts) - _SHOWN_GROUPS} more)" if len(counts) > _SHOWN_GROUPS else ""
    )


def hygienic_labels(
    train: list, extra: dict[str, list], where: str, normalize: bool, label_map: dict | str | None = None
) -> tuple[list, dict[str, list], list[str]]:
    """``(text, label, pair)`` records of the training file and the evaluation files with the user's label
    map applied, then every label spelling mapped to its class (see :func:`canonical_spellings`), and the
    notes that say what the map did."""
    train, extra, notes = apply_label_map(train, extra, read_label_map(label_map), where)
    counts = Counter(str(r[1]) for r in train)
    for recs in extra.values():
        counts.update(str(r[1]) for r in recs)
    mapping = canonical_spellings(counts, where, normalize)

    def relabel(recs: list) -> list:
        return [(r[0], mapping[str(r[1])], *r[2:]) for r in recs]

    return relabel(train), {name: relabel(recs) for name, recs in extra.items()}, notes
