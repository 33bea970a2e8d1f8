"""Label hygiene: spellings of one label (case, whitespace, numbers, Unicode forms) are refused with the
groups listed, or merged on request; rare classes and binary-looking data with strays are called out."""

from __future__ import annotations

import json
import unicodedata
from collections import Counter

import pytest

from mobilebert_kit.data import DataConfig, load_dataset, warn_about_splits
from mobilebert_kit.data.label_hygiene import canonical_spellings, label_key
from mobilebert_kit.errors import DataError


def _csv(path, labels):
    path.write_text("text,label\n" + "".join(f"text number {i},{lab}\n" for i, lab in enumerate(labels)), "utf-8")
    return path


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("1", "01"),
        ("1", "1.0"),
        ("1", "+1"),
        ("1.5", "1.50"),
        ("pos", "POS"),
        (unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")),
        ("ｐｏｓ", "pos"),  # fullwidth letters: NFKC
    ],
)
def test_same_label_spellings_share_a_key(a, b):
    assert label_key(a) == label_key(b)


def test_different_labels_keep_their_keys():
    keys = {label_key(x) for x in ["1", "10", "-1", "0.5", "pos", "positive", "neg"]}
    assert len(keys) == 7


def test_numeric_spellings_are_refused_naming_the_groups(tmp_path):
    p = _csv(tmp_path / "d.csv", ["0", "1", "01", "00"] * 20)
    with pytest.raises(DataError) as e:
        load_dataset(DataConfig(data=str(p)))
    msg = str(e.value)
    assert msg.startswith(f"{p}: labels that are the same label written differently would train as separate classes:")
    assert "'0' / '00'; '01' / '1'" in msg and "--normalize-labels" in msg and "normalize_labels: true" in msg


def test_unicode_forms_are_refused(tmp_path):
    nfc, nfd = unicodedata.normalize("NFC", "négatif"), unicodedata.normalize("NFD", "négatif")
    p = _csv(tmp_path / "d.csv", [nfc, nfd, "positif"] * 20)
    with pytest.raises(DataError, match="would train as separate classes"):
        load_dataset(DataConfig(data=str(p)))


def test_normalize_merges_each_group_into_one_class(tmp_path):
    p = _csv(tmp_path / "d.csv", ["1"] * 30 + ["01"] * 3 + ["1.0"] * 2 + ["0"] * 35)
    ds = load_dataset(DataConfig(data=str(p), normalize_labels=True))
    assert ds.label_names == ["0", "1"]
    labels = [ds.label_names[i] for s in ds.splits.values() for i in s.labels]
    assert Counter(labels) == {"0": 35, "1": 35}


def test_a_collision_across_the_training_and_test_files_is_refused(tmp_path):
    train = _csv(tmp_path / "train.csv", ["pos", "neg"] * 30)
    test = _csv(tmp_path / "test.csv", ["Pos", "neg"] * 5)
    with pytest.raises(DataError, match=r"'Pos' / 'pos'"):
        load_dataset(DataConfig(data=str(train), test_data=str(test)))
    ds = load_dataset(DataConfig(data=str(train), test_data=str(test), normalize_labels=True))
    assert ds.label_names == ["neg", "pos"] and len(set(ds.splits["test"].labels)) == 2


def test_merged_name_is_the_most_frequent_spelling():
    mapping = canonical_spellings(Counter({"Pos": 3, "pos": 10, "neg": 9}), "f", normalize=True)
    assert mapping == {"Pos": "pos", "pos": "pos", "neg": "neg"}


def test_cli_refuses_with_one_error_line_and_accepts_the_switch(cli, tmp_path, tiny_classifier_dir):
    p = _csv(tmp_path / "d.csv", ["pos", "neg", "Pos"] * 30)
    out = tmp_path / "o"
    args = ["finetune", "--model", tiny_classifier_dir, "--data", p, "-o", out, "--max-steps", "1", "--epochs", "1"]
    r = cli(*args)
    assert r.exit_code == 1 and r.output.count("Error:") == 1 and "Traceback" not in r.output
    assert "'Pos' / 'pos'" in r.output and not out.exists()
    r = cli(*args, "--normalize-labels", "-q", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads((out / "labels.json").read_text())["labels"] == ["neg", "pos"]


def test_binary_looking_data_with_a_stray_class_is_called_out(tmp_path, capsys):
    p = _csv(tmp_path / "d.csv", ["pos", "neg"] * 100 + ["posx"])
    cfg = DataConfig(data=str(p))
    ds = load_dataset(cfg)
    warn_about_splits(ds, cfg)
    err = capsys.readouterr().err
    assert "the data looks binary ('neg' " in err and "but has 3 classes; the others are 'posx' (1 rows)" in err


def test_a_class_with_a_handful_of_rows_is_called_out(tmp_path, capsys):
    p = _csv(tmp_path / "d.csv", ["a", "b"] * 40 + ["c"] * 10 + ["d"] * 6)
    cfg = DataConfig(data=str(p))
    warn_about_splits(load_dataset(cfg), cfg)
    err = capsys.readouterr().err
    assert "1 class(es) with fewer than 5 rows of" in err and "'d' (4 rows)" in err


def test_balanced_data_gets_no_class_warning(tmp_path, capsys):
    p = _csv(tmp_path / "d.csv", ["a", "b", "c"] * 40)
    cfg = DataConfig(data=str(p))
    warn_about_splits(load_dataset(cfg), cfg)
    err = capsys.readouterr().err
    assert "looks binary" not in err and "fewer than" not in err


# --------------------------------------------------------------------------- --label-map: the explicit fix


def test_a_label_map_file_says_what_each_spelling_is(tmp_path):
    p = _csv(tmp_path / "d.csv", ["pos", "Pos", "neg", "NEG", "junk"] * 20)
    m = tmp_path / "map.json"
    m.write_text(json.dumps({"Pos": "pos", "NEG": "neg", "junk": None}))
    ds = load_dataset(DataConfig(data=str(p), label_map=str(m)))
    assert ds.label_names == ["neg", "pos"]
    labels = Counter(ds.label_names[i] for s in ds.splits.values() for i in s.labels)
    assert labels == {"pos": 40, "neg": 40}  # the 20 'junk' rows are dropped
    assert "label map: 40 rows relabelled, 20 rows dropped" in ds.notes


def test_a_yaml_label_map_and_inline_pairs_work_alike(tmp_path):
    p = _csv(tmp_path / "d.csv", ["1", "01", "0", "00"] * 20)
    y = tmp_path / "map.yaml"
    y.write_text("'01': '1'\n'00': '0'\n")
    for spec in (str(y), "01=1,00=0", {"01": "1", "00": "0"}):
        ds = load_dataset(DataConfig(data=str(p), label_map=spec))
        assert ds.label_names == ["0", "1"], spec


def test_a_label_map_that_leaves_a_clash_is_still_refused(tmp_path):
    p = _csv(tmp_path / "d.csv", ["pos", "Pos", "POS", "neg"] * 20)
    with pytest.raises(DataError, match=r"'POS' / 'pos'"):
        load_dataset(DataConfig(data=str(p), label_map="Pos=pos"))


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        ("01: one\n", r"the key 1 is a int, so its spelling is lost .*quote it"),
        ("- pos\n- neg\n", "holds a list, not a mapping"),
        ("{}\n", "is empty"),
        ("pos: [a, b]\n", "maps to \\['a', 'b'\\]; map each spelling to a class name"),
        ("pos: a\npos: b\n", "duplicate key 'pos'"),
        ("a: &x [*x]\n", "label map"),
    ],
)
def test_a_bad_label_map_file_is_one_clear_error(tmp_path, content, expect):
    p = _csv(tmp_path / "d.csv", ["pos", "neg"] * 20)
    m = tmp_path / "map.yaml"
    m.write_text(content)
    with pytest.raises(DataError, match=expect):
        load_dataset(DataConfig(data=str(p), label_map=str(m)))


def test_a_label_map_naming_no_row_is_refused_and_a_typo_warned(tmp_path, capsys):
    p = _csv(tmp_path / "d.csv", ["pos", "neg", "Pos"] * 20)
    with pytest.raises(DataError, match="no row has any label the label map names; the labels are"):
        load_dataset(DataConfig(data=str(p), label_map="Poss=pos"))
    with pytest.raises(DataError, match="is not a file and not inline pairs"):
        load_dataset(DataConfig(data=str(p), label_map=str(tmp_path / "missing.json")))
    load_dataset(DataConfig(data=str(p), label_map="Pos=pos,Negg=neg"))
    assert "the label map names 1 spelling(s) no row has: 'Negg'" in capsys.readouterr().err


def test_label_map_is_refused_for_the_built_in_data():
    from mobilebert_kit.errors import ConfigError

    with pytest.raises(ConfigError, match="label_map applies to your own files"):
        DataConfig.from_dict({"data": "rotten_tomatoes", "label_map": "a=b"})


def test_cli_label_map_is_the_named_fix(cli, tmp_path, tiny_classifier_dir):
    p = _csv(tmp_path / "d.csv", ["pos", "neg", "Pos"] * 30)
    out = tmp_path / "o"
    args = ["finetune", "--model", tiny_classifier_dir, "--data", p, "-o", out, "--max-steps", "1", "--epochs", "1"]
    r = cli(*args)
    assert r.exit_code == 1 and "--label-map FILE" in r.output
    r = cli(*args, "--label-map", "Pos=pos", "-q", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads((out / "labels.json").read_text())["labels"] == ["neg", "pos"]
