"""Data labels are matched to a model's by name: the same names in another order are renumbered (a user's
CSV of the built-in reviews sorts "fresh" before "rotten"), other names are refused, placeholder names
(LABEL_0, LABEL_1) take the data's labels by position."""

from __future__ import annotations

import pytest

from mobilebert_kit.data import Split, TextDataset
from mobilebert_kit.errors import DataError
from mobilebert_kit.label_map import align_labels


def _ds(names, labels):
    return TextDataset({"train": Split(["a", "b", "c"], labels), "test": Split(["d"], [labels[0]])}, names, "x.csv")


def test_same_names_in_another_order_are_renumbered():
    ds = _ds(["fresh", "rotten"], [0, 1, 1])
    got = align_labels(ds, ["rotten", "fresh"], "the model m", "pass its data")
    assert got.label_names == ["rotten", "fresh"]
    assert got.splits["train"].labels == [1, 0, 0] and got.splits["test"].labels == [1]
    assert [got.label_names[i] for i in got.splits["train"].labels] == ["fresh", "rotten", "rotten"]
    assert "renumbered to the model's order" in got.notes[-1]
    assert ds.splits["train"].labels == [0, 1, 1]  # the input is not modified


def test_same_order_and_placeholder_names_pass_unchanged():
    ds = _ds(["neg", "pos"], [0, 1, 0])
    assert align_labels(ds, ["neg", "pos"], "m", "fix") is ds
    assert align_labels(ds, ["LABEL_0", "LABEL_1"], "m", "fix") is ds


def test_other_names_are_refused_with_both_sets_and_the_fix():
    ds = _ds(["fresh", "rotten"], [0, 1, 1])
    with pytest.raises(DataError, match=r"the data's labels \['fresh', 'rotten'\] are not the labels of the model m "
                       r"\['neg', 'pos'\] \(matched by name\); pass its data"):  # fmt: skip
        align_labels(ds, ["neg", "pos"], "the model m", "pass its data")
    with pytest.raises(DataError):
        align_labels(ds, ["LABEL_1", "LABEL_0"], "m", "fix")  # not transformers' placeholder order


def test_integral_float_names_match_their_integer_form():
    """A model saved when CSV labels kept their ".0" still matches the data read as "0"/"1"."""
    ds = _ds(["0", "1"], [0, 1, 1])
    assert align_labels(ds, ["0.0", "1.0"], "m", "fix") is ds
    got = align_labels(ds, ["1.0", "0.0"], "m", "fix")
    assert got.splits["train"].labels == [1, 0, 0] and got.label_names == ["1.0", "0.0"]
