"""The user's own files: CSV / TSV / JSON / JSONL (and a local ``datasets`` folder) read by one validating
reader: encodings, quoting, columns, labels and splits checked, every problem named with its line.
"""

from __future__ import annotations

import csv
import gzip
import json
import random
import re
import zlib
from collections import defaultdict
from pathlib import Path

from mobilebert_kit.config import did_you_mean
from mobilebert_kit.data.config import BUILTIN_DATASETS, SPLITS, DataConfig, Split, TextDataset
from mobilebert_kit.data.label_hygiene import hygienic_labels
from mobilebert_kit.errors import DataError, warn


def user_dataset(cfg: DataConfig) -> TextDataset:
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
    raw_train, extra, label_notes = hygienic_labels(
        raw_train, extra, _files(main, cfg), cfg.normalize_labels, cfg.label_map
    )
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
    return TextDataset(splits, label_names, str(main), notes=label_notes + notes)


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


def require_columns(path: Path, columns: list[str], needed: list[tuple[str, str]]) -> None:
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
    require_columns(path, columns, needed)
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
    text = cell_text(cell(row, cfg.text_column, "text", where))
    label = _label(cell(row, cfg.label_column, "label", where), where)
    pair = cell_text(cell(row, cfg.text_pair_column, "text pair", where)) if cfg.text_pair_column else None
    if not text or not label or pair == "":
        return None
    return text, label, pair


def cell(row: dict, column: str, what: str, where: str) -> object:
    """One cell of a row (None when missing); a JSON array or object is an error, not its Python repr."""
    value = row.get(column)
    if isinstance(value, (list, dict)):
        kind = "array" if isinstance(value, list) else "object"
        allowed = "strings or integers" if what == "label" else "strings"
        raise DataError(f"{where}: the {what} is a JSON {kind}; {what}s must be {allowed} (column '{column}')")
    return value


def cell_text(value: object) -> str:
    return "" if value is None else str(value).strip()


_INTEGRAL_FLOAT = re.compile(r"[+-]?\d+\.0*")


def _label(value: object, where: str) -> str:
    """The class name of a label cell: integral floats become integers in every format, so CSV "1.0",
    JSON 1.0 and JSON 1 are one class."""
    if isinstance(value, bool) or (isinstance(value, float) and value.is_integer()):
        value = int(value)  # JSON 1.0 / true -> "1"
    label = cell_text(value)
    if any(ord(c) < 32 for c in label):
        raise DataError(f"{where}: the label {label!r} contains a control character (NUL?); clean the file")
    if _INTEGRAL_FLOAT.fullmatch(label):
        label = str(int(label.partition(".")[0]))
    return label


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
    from mobilebert_kit.artifacts import scratch_dir

    with scratch_dir("ds") as tmp:  # the splits as JSONL for the one reader; removed once read
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
        ds = user_dataset(sub)
    names = getattr(feature, "names", None)
    if names and all(_is_int(n) for n in ds.label_names):  # ClassLabel: show its names
        ds.label_names = [names[int(n)] for n in ds.label_names]
    ds.source = str(path)
    return ds
