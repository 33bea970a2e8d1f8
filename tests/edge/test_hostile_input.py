"""Hostile but realistic input files: each is one exact ``Error:`` line (or a warning), exit code 1,
no traceback, and nothing written."""

from __future__ import annotations

import json

import pytest

ROWS = [("a wonderful film", "pos"), ("a dull mess", "neg")] * 40


def _csv(rows) -> str:
    return "text,label\n" + "".join(f'"{t}",{label}\n' for t, label in rows)


def _jsonl(objs) -> str:
    return "".join(json.dumps(o) + "\n" for o in objs)


GOOD = [{"text": t, "label": label} for t, label in ROWS]

CASES = [
    (
        "d.csv",
        _csv(ROWS) + "a film, sadly, without,neg\n",
        "Error: {path} line 82 has more fields than the header (2); a text with an unquoted comma? "
        'Quote such texts ("...") or use .jsonl',
    ),
    (
        "d.jsonl",
        _jsonl(GOOD) + "[1, 2]\n",
        "Error: {path} line 81 is not a JSON object; JSONL needs one object per line",
    ),
    ("d.jsonl", _jsonl(GOOD) + "42\n", "Error: {path} line 81 is not a JSON object; JSONL needs one object per line"),
    (
        "d.jsonl",
        _jsonl([*GOOD, {"text": "x", "label": ["pos"]}]),
        "Error: {path} row 81: the label is a JSON array; labels must be strings or integers",
    ),
    (
        "d.jsonl",
        _jsonl([*GOOD, {"text": "x", "label": {"v": 1}}]),
        "Error: {path} row 81: the label is a JSON object; labels must be strings or integers",
    ),
    (
        "d.jsonl",
        _jsonl([*GOOD, {"text": "x", "label": "pos\u0000"}]),
        "Error: {path} row 81: the label 'pos\\x00' contains a control character (NUL?); clean the file",
    ),
    ("d.json", json.dumps([1, 2]), "Error: {path} must hold a JSON array of objects"),
    ("d.json", "[{", "Error: {path} is not valid JSON (Expecting property name enclosed in double quotes at line 1)"),
    ("d.txt", "hello", "Error: {path}: unsupported file type '.txt'; use .csv, .tsv, .jsonl or .json"),
]


@pytest.mark.parametrize("name,content,message", CASES, ids=[c[2][7:40] for c in CASES])
def test_bad_data_file(cli, tiny_classifier_dir, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    r = cli("finetune", "--model", tiny_classifier_dir, "--data", path, "-o", out, "--max-steps", "1")
    assert r.exit_code == 1 and "Traceback" not in r.output
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(message.format(path=path)), errors
    assert not out.exists() and not (tmp_path / "out.ckpt").exists()


def test_good_variants_train(cli, tiny_classifier_dir, tmp_path):
    """A .json array file and a CSV field longer than csv's default limit (131,072 characters) both work."""
    (tmp_path / "a.json").write_text(json.dumps(GOOD))
    long = [(("very " * 30000) + "good", "pos"), *ROWS]
    (tmp_path / "b.csv").write_text(_csv(long))
    for name in ("a.json", "b.csv"):
        r = cli("finetune", "--model", tiny_classifier_dir, "--data", tmp_path / name, "-o", tmp_path / name[0],
                "--max-steps", "1", "--epochs", "1", "--max-length", "32", "-q")  # fmt: skip
        assert r.exit_code == 0, r.output


def test_careful_user_warnings(cli, tiny_classifier_dir, tmp_path):
    """Leakage (the training file as test file), tiny splits, text the vocabulary cannot represent."""
    texts = [("ሰላም ለዓለም ሰላም " * 3 + str(i), "pos" if i % 2 else "neg") for i in range(80)]  # Ethiopic: all [UNK]
    (tmp_path / "d.csv").write_text(_csv(texts))
    r = cli("finetune", "--model", tiny_classifier_dir, "--data", tmp_path / "d.csv", "--test-data",
            tmp_path / "d.csv", "-o", tmp_path / "o", "--max-steps", "1", "--epochs", "1", "-q")  # fmt: skip
    assert r.exit_code == 0, r.output
    err = r.stderr
    assert "warning: --test-data is the training file itself: evaluation on it says nothing about new text" in err
    assert "warning: small splits after cleaning (train " in err
    assert "of the training text's tokens are unknown ([UNK])" in err
