"""Unlabelled text for distillation's transfer set: the built-in sources or the user's file."""

from __future__ import annotations

from pathlib import Path

from mobilebert_kit.data.config import DataConfig, TextDataset
from mobilebert_kit.data.readers import cell, cell_text, read_rows, require_columns
from mobilebert_kit.errors import DataError


def read_unlabeled(source: str, ds: TextDataset, data: DataConfig) -> list[str]:
    """Raw text for the teacher to label: ``builtin`` (the dataset's own) or a .txt file (one text
    per line) or a .csv / .tsv / .jsonl file with ``data.text_column``. Empty texts are dropped."""
    if source == "builtin":
        if not ds.unlabeled:
            raise DataError(
                f"the dataset {ds.source} has no built-in unlabeled text; pass --unlabeled FILE "
                "(.txt one text per line, or .csv/.tsv/.jsonl with the text column)"
            )
        return list(ds.unlabeled)
    path = Path(source).expanduser()
    if path.is_dir():
        raise DataError(f"--unlabeled {source} is a folder; pass a .txt/.csv/.tsv/.jsonl file or 'builtin'")
    if not path.is_file():
        raise DataError(f"unlabeled text file {source} does not exist; pass a .txt/.csv/.tsv/.jsonl file or 'builtin'")
    if path.stat().st_size == 0:
        raise DataError(f"unlabeled text file {source} is empty; it needs one text per line (or a header and rows)")
    if path.suffix in (".txt", ""):
        try:
            # one text per line; read_text already turns CRLF (and CR) into "\n". Not str.splitlines(): it also
            # breaks a text at U+2028, U+0085 (NEL, common in text converted from cp1252) and form feeds inside it
            texts = path.read_text(encoding="utf-8-sig").split("\n")
        except UnicodeDecodeError as e:
            raise DataError(f"{path} is not UTF-8 text; re-save it as UTF-8") from e
    elif path.suffix in (".csv", ".tsv", ".jsonl", ".json"):
        rows, columns = read_rows(path)
        require_columns(path, columns, [(data.text_column, "--text-column")])
        texts = [cell_text(cell(r, data.text_column, "text", f"{path} row {i}")) for i, r in enumerate(rows, 1)]
    else:
        raise DataError(f"{path}: unsupported unlabeled file type '{path.suffix}'; use .txt, .csv, .tsv or .jsonl")
    texts = [t.strip() for t in texts if t and t.strip()]
    if not texts:
        raise DataError(f"unlabeled text file {path} holds no text")
    return texts
