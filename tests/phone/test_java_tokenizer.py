"""The Android app's pure-Java WordPiece tokenizer against HF BertTokenizerFast: zero mismatches on a
nasty text set and on every Unicode code point, then Java ids -> packaged .ort -> PyTorch logits.

Runs in the default suite when a JDK is on PATH (skips with the reason otherwise)."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import build_ort_export

ROOT = Path(__file__).resolve().parents[2]
JAVA_MAIN = ROOT / "android_demo/app/src/main/java/ai/mbk/demo/tokenizer"
JAVA_TEST = ROOT / "android_demo/app/src/test/java/ai/mbk/demo/tokenizer"
JUNIT_JARS = [Path("/usr/share/java/junit4.jar"), Path("/usr/share/java/hamcrest-core.jar")]

pytestmark = pytest.mark.skipif(
    not (shutil.which("javac") and shutil.which("java")),
    reason="no JDK (javac/java) on PATH; install default-jdk-headless to run the Java tokenizer parity",
)

NASTY = [
    "",
    " ",
    "\t\n\r ",
    "hello world",
    "Hello, World!",
    "UPPER lower MiXeD",
    # special tokens written literally, in every position and case
    "[CLS]",
    "[SEP] starts",
    "ends [SEP]",
    "a[SEP]b",
    "[CLS][SEP][PAD][MASK][UNK]",
    "[cls] [Sep] [ MASK ]",
    "[[CLS]]",
    "[UNK]nown",
    "x[MASK]y[PAD]z",
    "[SEP[SEP]]",
    "[",
    "]",
    "[]",
    "##",
    "##ing",
    "[UNK",
    # accents and case folding
    "Café naïve résumé Ångström façade coöperate",
    "ÀÉÎÕÜ àéîõü ÇÑ çñ",
    "İstanbul ıi İI",
    "ΣΊΣΥΦΟΣ ὈΔΥΣΣΕΎΣ ςσΣ",
    "Straße STRASSE ß ẞ",
    "Tiếng Việt có dấu",
    "Ǆ ǅ ǆ Ǉ ǈ ǉ",
    "Ⅻ ⅻ Ⓐ ⓐ",
    "ﬁ ﬂ ﬀ ﬃ",
    "Å Å Å",
    "e\u0301 e\u0300\u0323",
    "ＡＢＣ！ｆｕｌｌｗｉｄｔｈ",
    "Ｈｅｌｌｏ，ｗｏｒｌｄ",
    "ⅰⅱⅲ",
    "𝐀𝐁𝐂 𝒜 𝔄 𝕬",
    "Ĳsselmeer ĳ",
    "Ωmega ohm Ω",
    # CJK, Korean, Japanese, RTL, Indic, Thai
    "电影很好看",
    "我爱北京天安门。",
    "日本語のテキスト、カタカナ。",
    "한국어 텍스트입니다",
    "𠀀𠀁 𪜀 𫝀 𬺰 丽",
    "العربية نص",
    "עברית טקסט",
    "हिन्दी पाठ",
    "ภาษาไทย",
    "ᄀ ᅡ ᆨ",
    "mixed中文and英文words",
    # emoji: plain, ZWJ sequences, skin tones, flags, keycaps, variation selectors
    "😀",
    "I ❤️ this movie 😀😃😄!!!",
    "👨‍👩‍👧‍👦 family",
    "👍🏽 👍🏿",
    "🇺🇸🇫🇷 flags",
    "1️⃣ #️⃣",
    "🥰🥲🫠🫶 new emoji",
    "a😀b",
    "☺︎ ☺️",
    "🏳️‍🌈",
    # control and format characters, odd whitespace
    "x\x00y",
    "a\x07b\x1bc",
    "zero\u200bwidth",
    "soft\u00adhyphen",
    "bom\ufeffhere",
    "rtl\u200emark\u200f",
    "repl\ufffdchar",
    "tab\tsep\vvt\fff",
    "nbsp\u00a0thin\u2009ideo\u3000end",
    "line\u2028para\u2029",
    "nel\u0085x",
    "\x1c\x1d\x1e\x1f unit seps",
    "\u2060word\u2061joiner",
    "\U000e0041tag\U000e007f",
    "\ue000private\U000f0000",
    "\u0378unassigned\U0001fffe",
    "\u1680ogham space",
    # punctuation, symbols, digits
    "don't stop-believing... (really?) [yes]!",
    "$100 & 50% @home #tag ^_^ `~` |pipe| \\slash/",
    "“smart quotes” ‘single’ «guillemets» — dash – en-dash… ¿¡",
    "§¶†‡•·° ±×÷ ≤≥≠ ∞ √ ∑",
    "1,234.56 3.14159 1e-10",
    "12345678901234567890123456789",
    "x² x³ ½ ¼ ¾",
    "<html><b>bold</b></html>",
    "e-mail: a.b+c@d.co.uk http://x.y/z?q=1&r=2",
    "C++ C# F# .NET",
    "¥€£₹₿ prices",
    "©®™ ℠",
    "⚽️⚾️ sports",
    "♠♥♦♣",
    # very long words and truncation
    "a" * 99,
    "a" * 100,
    "a" * 101,
    "b" * 250,
    "supercalifragilisticexpialidocious" * 3,
    "un" * 50,
    "un" * 51,
    "😀" * 100,
    "😀" * 101,
    "é" * 101,
    "antidisestablishmentarianism",
    " ".join(["word"] * 200),
    " ".join(["[SEP]"] * 200),
    "x " * 126,
    "x " * 127,
    "x " * 128,
    "a, " * 100,
    "中" * 300,
    "hello\n" * 60,
]


def _fuzz(n: int, seed: int = 0) -> list[str]:
    """Random strings mixing ASCII, Latin-1, combining marks, CJK, emoji and any code point."""
    rng = random.Random(seed)
    pools = [
        (0x20, 0x7E),
        (0xA0, 0x24F),
        (0x300, 0x36F),
        (0x370, 0x3FF),
        (0x400, 0x4FF),
        (0x4E00, 0x9FFF),
        (0x1F300, 0x1FAFF),
        (0x0, 0x1F),
        (0x2000, 0x206F),
        (0x0, 0x10FFFF),
    ]
    out = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randint(1, 60)):
            lo, hi = rng.choice(pools)
            cp = rng.randint(lo, hi)
            if not 0xD800 <= cp <= 0xDFFF:
                chars.append(chr(cp))
            if rng.random() < 0.15:
                chars.append(rng.choice([" ", "[SEP]", "[CLS]", "##", "\n"]))
        out.append("".join(chars))
    return out


# JDK 17's java.text.Normalizer lacks the Unicode 13 canonical decomposition of U+11938 (DIVES AKURU
# VOWEL SIGN O -> U+11935 U+11930); Rust decomposes it. It tokenizes to [UNK] either way (same ids), only
# the intermediate word differs, so it is the one code point left out of the word-level comparison.
KNOWN_JDK_NFD_GAPS = {0x11938}


def _all_code_points(chunk: int = 4000) -> list[str]:
    """Every Unicode scalar value once, space-separated, in texts of ``chunk`` code points."""
    cps = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF and cp not in KNOWN_JDK_NFD_GAPS]
    return [" ".join(chr(c) for c in cps[i : i + chunk]) for i in range(0, len(cps), chunk)]


@pytest.fixture(scope="module")
def java_classes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("javac")
    srcs = [str(p) for p in sorted(JAVA_MAIN.glob("*.java"))] + [str(JAVA_TEST / "TokenizerParityMain.java")]
    r = subprocess.run(["javac", "-encoding", "UTF-8", "-d", str(out), *srcs], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def _java_tokenize(
    classes: Path, vocab: Path, texts: list[str], lower: bool, strip: bool | None, max_length: int, tmp: Path
) -> list[tuple[list[int], list[str]]]:
    inp = tmp / "texts.hex"
    inp.write_text("\n".join(t.encode("utf-8").hex() for t in texts) + "\n", encoding="ascii")
    r = subprocess.run(
        [
            "java",
            "-Xss8m",
            "-cp",
            str(classes),
            "ai.mbk.demo.tokenizer.TokenizerParityMain",
            str(vocab),
            str(lower).lower(),
            "null" if strip is None else str(strip).lower(),
            str(max_length),
            str(inp),
        ],
        capture_output=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr.decode()
    rows = []
    for line in r.stdout.decode("utf-8").split("\n")[: len(texts)]:
        ids, _, words = line.partition("\t")
        rows.append(
            ([int(x) for x in ids.split(",")], [bytes.fromhex(w).decode("utf-8") for w in words.split(" ") if w])
        )
    assert len(rows) == len(texts)
    return rows


def _compare(tok, java_rows, texts, max_length) -> tuple[int, int, list[str]]:
    """(texts compared, total tokens, mismatch descriptions) for ids and pre-tokenized words."""
    backend = tok.backend_tokenizer
    hf_ids = tok(texts, truncation=True, max_length=max_length)["input_ids"]
    bad, n_tokens = [], 0
    for text, want, (ids, words) in zip(texts, hf_ids, java_rows):
        n_tokens += len(want)
        if ids != want:
            k = next((i for i, (a, b) in enumerate(zip(ids, want)) if a != b), min(len(ids), len(want)))
            bad.append(
                f"ids differ for {text[:60]!r} at {k}: java {ids[k : k + 5]} hf {want[k : k + 5]} "
                f"({tok.convert_ids_to_tokens(want[k : k + 5])})"
            )
        rust_words = [w for w, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(text))]
        if words != rust_words:
            k = next((i for i, (a, b) in enumerate(zip(words, rust_words)) if a != b), min(len(words), len(rust_words)))
            bad.append(f"words differ for {text[:60]!r} at {k}: java {words[k : k + 3]!r} hf {rust_words[k : k + 3]!r}")
    return len(texts), n_tokens, bad


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from conftest import minilm_path
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


@pytest.fixture(scope="module")
def vocab_file() -> Path:
    from conftest import minilm_path

    return Path(minilm_path()) / "vocab.txt"


def test_java_matches_hf_on_nasty_and_fuzzed_texts(java_classes, minilm_tokenizer, vocab_file, tmp_path):
    texts = NASTY + _fuzz(400)
    rows = _java_tokenize(java_classes, vocab_file, texts, True, None, 128, tmp_path)
    n, n_tokens, bad = _compare(minilm_tokenizer, rows, texts, 128)
    assert n == len(NASTY) + 400 and n_tokens > 5_000
    assert not bad, f"{len(bad)} mismatches out of {n} texts:\n" + "\n".join(bad[:10])


def test_java_matches_hf_on_every_code_point(java_classes, minilm_tokenizer, vocab_file, tmp_path):
    texts = _all_code_points()
    rows = _java_tokenize(java_classes, vocab_file, texts, True, None, 10_000, tmp_path)
    n, n_tokens, bad = _compare(minilm_tokenizer, rows, texts, 10_000)
    assert n_tokens > 900_000
    assert not bad, f"{len(bad)} mismatches out of {n} texts:\n" + "\n".join(bad[:10])


@pytest.mark.parametrize("lower, strip", [(False, None), (True, False), (False, True)])
def test_java_matches_hf_for_other_normalization_rules(java_classes, vocab_file, tmp_path, lower, strip):
    from transformers import BertTokenizerFast

    tok = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=lower, strip_accents=strip)
    texts = NASTY + _fuzz(100, seed=lower * 2 + bool(strip))
    rows = _java_tokenize(java_classes, vocab_file, texts, lower, strip, 64, tmp_path)
    _, _, bad = _compare(tok, rows, texts, 64)
    assert not bad, f"{len(bad)} mismatches (lower={lower}, strip={strip}):\n" + "\n".join(bad[:10])


@pytest.mark.skipif(not all(p.exists() for p in JUNIT_JARS), reason="JUnit 4 not installed (apt-get install junit4)")
def test_junit_suite_passes(tmp_path):
    cp = ":".join(str(p) for p in JUNIT_JARS)
    srcs = [str(p) for p in sorted(JAVA_MAIN.glob("*.java"))] + [str(p) for p in sorted(JAVA_TEST.glob("*.java"))]
    r = subprocess.run(
        ["javac", "-encoding", "UTF-8", "-cp", cp, "-d", str(tmp_path), *srcs], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [
            "java",
            "-cp",
            f"{tmp_path}:{cp}",
            "org.junit.runner.JUnitCore",
            "ai.mbk.demo.tokenizer.WordPieceTokenizerTest",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "OK (5 tests)" in r.stdout, r.stdout + r.stderr


def test_java_ids_through_packaged_ort_match_pytorch(java_classes, tiny_classifier_dir, tmp_path_factory, tmp_path):
    """The device path end to end minus the phone: Java ids -> bundle's model.ort in ORT == PyTorch logits."""
    import onnxruntime as ort
    import torch

    from mobilebert_kit.artifacts import read_json
    from mobilebert_kit.models import load_classifier_folder
    from mobilebert_kit.stages.package import PackageConfig, run

    export = build_ort_export(tmp_path_factory.mktemp("export"), tiny_classifier_dir)
    bundle = run(
        PackageConfig(
            target="android", export_dir=str(export), output=str(tmp_path / "pkg" / "android"), make_zip=False
        )
    ).output
    meta = read_json(bundle / "model_meta.json")
    texts = NASTY[::2] + _fuzz(30, seed=7)
    rows = _java_tokenize(
        java_classes,
        bundle / "vocab.txt",
        texts,
        meta["tokenizer"]["do_lower_case"],
        meta["tokenizer"]["strip_accents"],
        meta["max_length"],
        tmp_path,
    )
    so = ort.SessionOptions()
    so.add_session_config_entry("session.load_model_format", "ORT")
    sess = ort.InferenceSession(str(bundle / "model.ort"), so, providers=["CPUExecutionProvider"])
    model, tok, _ = load_classifier_folder(tiny_classifier_dir)
    worst = 0.0
    for text, (ids, _) in zip(texts, rows):
        assert ids == tok(text, truncation=True, max_length=meta["max_length"])["input_ids"], text
        x = np.array([ids], dtype=np.int64)
        feeds = {"input_ids": x, "attention_mask": np.ones_like(x), "token_type_ids": np.zeros_like(x)}
        got = sess.run(None, {k: v for k, v in feeds.items() if k in meta["input_names"]})[0][0]
        with torch.no_grad():
            ref = model(input_ids=torch.tensor([ids])).logits[0].numpy()
        worst = max(worst, float(np.abs(got - ref).max()))
        assert int(np.argmax(got)) == int(np.argmax(ref)), text
    assert worst < 1e-4, f"max |ort - torch| = {worst}"
    # The golden vectors in the bundle are exactly what the Java tokenizer produces on the device.
    golden = read_json(bundle / "golden.json")["vectors"]
    g_rows = _java_tokenize(
        java_classes, bundle / "vocab.txt", [v["text"] for v in golden], True, None, meta["max_length"], tmp_path
    )
    assert [ids for ids, _ in g_rows] == [v["input_ids"] for v in golden]
