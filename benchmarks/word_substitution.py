"""TinyBERT-style word-substitution augmentation, offline: write augmented copies of the training texts for
``mbk distill --unlabeled FILE`` (the teacher labels them).

TinyBERT draws similar words from BERT's MLM and GloVe; neither ships offline here, so the neighbours are the
nearest whole-word pieces (cosine) in the teacher's own input embeddings. Each word is replaced with
probability ``--p`` by a random one of its ``--k`` neighbours. Measured in benchmarks/results/heads_recovery.md
("Word substitution instead").

    python benchmarks/word_substitution.py --teacher artifacts/runs/default/teacher --copies 2 --out aug.txt
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORD = re.compile(r"[a-z]{3,}")


def neighbours(embeddings: np.ndarray, vocab: dict[str, int], k: int) -> dict[str, list[str]]:
    """Each lower-case alphabetic whole-word piece of 3+ letters -> its k nearest such pieces (cosine)."""
    words = sorted((w for w in vocab if WORD.fullmatch(w)), key=vocab.get)  # get_vocab()'s order varies by process
    v = embeddings[[vocab[w] for w in words]]
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    out = {}
    for start in range(0, len(words), 2048):
        sim = v[start : start + 2048] @ v.T
        for r, row in enumerate(sim):
            row[start + r] = -1.0
            top = np.argpartition(-row, k)[:k]
            out[words[start + r]] = [words[j] for j in top[np.argsort(-row[top])]]
    return out


def substitute(text: str, nbr: dict[str, list[str]], p: float, rng: random.Random) -> str:
    parts = re.split(r"([A-Za-z]+)", text)
    return "".join(rng.choice(nbr[w.lower()]) if w.lower() in nbr and rng.random() < p else w for w in parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="artifacts/runs/default/teacher")
    ap.add_argument("--data", default="rotten_tomatoes")
    ap.add_argument("--copies", type=int, default=2)
    ap.add_argument("--p", type=float, default=0.4)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    from mobilebert_kit.data import DataConfig, load_dataset
    from mobilebert_kit.models import load_classifier_folder

    model, tok, _ = load_classifier_folder(args.teacher)
    nbr = neighbours(model.get_input_embeddings().weight.detach().numpy(), tok.get_vocab(), args.k)
    texts = load_dataset(DataConfig(data=args.data)).splits["train"].texts
    rng = random.Random(args.seed)
    lines = [" ".join(substitute(t, nbr, args.p, rng).split()) for _ in range(args.copies) for t in texts]
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(lines)} texts -> {args.out}; e.g. good -> {', '.join(nbr.get('good', [])[:4])}")


if __name__ == "__main__":
    main()
