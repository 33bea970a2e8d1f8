"""A dataset's labels matched to a model's by name.

A model's class ``i`` is ``label_names[i]`` (its ``labels.json`` / ``id2label``); a dataset numbers its labels
in its own order (a user file's are sorted). The same names in another order are the same task: the data is
renumbered to the model's order, never compared by position, where "fresh"/"rotten" against a model's
"rotten"/"fresh" would score every correct answer as wrong.
"""

from __future__ import annotations

import dataclasses
import re

from mobilebert_kit.errors import DataError

_GENERIC = re.compile(r"LABEL_(\d+)")  # transformers' names for classes that were never named


def align_labels(ds, model_labels: list[str], model: str, fix: str):
    """``ds`` with its labels numbered as ``model_labels`` (the same object when they already are).

    A model whose classes carry transformers' placeholder names (``LABEL_0``, ``LABEL_1``, ...) takes the
    data's labels by position, as before any names existed. Otherwise the names must be the same set;
    raises :class:`DataError` naming both sets and ``fix`` when they are not."""
    data_labels = list(ds.label_names)
    model_labels = list(model_labels)
    if data_labels == model_labels or (_generic(model_labels) and len(data_labels) == len(model_labels)):
        return ds
    data_keys, model_keys = [_key(n) for n in data_labels], [_key(n) for n in model_labels]
    if sorted(data_keys) != sorted(model_keys) or len(set(model_keys)) != len(model_keys):
        raise DataError(
            f"the data's labels {data_labels} are not the labels of {model} {model_labels} (matched by name); {fix}"
        )
    if data_keys == model_keys:
        return ds
    new_index = [model_keys.index(k) for k in data_keys]
    splits = {
        name: dataclasses.replace(split, labels=[new_index[i] for i in split.labels])
        for name, split in ds.splits.items()
    }
    note = f"the data's labels renumbered to the model's order {model_labels} (they were {data_labels})"
    return dataclasses.replace(ds, splits=splits, label_names=model_labels, notes=[*ds.notes, note])


def _key(name: str) -> str:
    """A label as data files now read it: an integral number written as a float ("1.0") is "1", so a model
    trained when CSV labels kept their ".0" still matches its data."""
    try:
        value = float(name)
    except ValueError:
        return name
    return str(int(value)) if value.is_integer() else name


def _generic(names: list[str]) -> bool:
    return all((m := _GENERIC.fullmatch(n)) and int(m.group(1)) == i for i, n in enumerate(names))
