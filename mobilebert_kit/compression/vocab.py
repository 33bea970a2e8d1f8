"""``trim_vocab``: keep only the word pieces the training corpus uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mobilebert_kit.compression.base import Method, Outcome, Work


@dataclass
class TrimVocab(Method):
    """Slice the embedding table to the pieces of the training split (plus special tokens); the new
    tokenizer files go to the output folder."""

    name: ClassVar[str] = "trim_vocab"
    label: ClassVar[str] = "trim_vocab"
    record: ClassVar[str | None] = "trim_vocab"

    def preflight(self, work: Work) -> None:
        from mobilebert_kit.compression import surgery as prune

        prune.normalizer_settings(work.tokenizer)  # a WordPiece BERT tokenizer, or a clear error

    def apply(self, work: Work) -> Outcome:
        from mobilebert_kit.compression import surgery as prune

        corpus = list(work.train.texts) + list(work.train.pairs or [])
        work.log(f"trimming the vocabulary to the pieces of {len(work.train)} training examples")
        work.tokenizer, report = prune.trim_vocabulary(
            work.model, work.tokenizer, corpus, work.out, eval_texts=work.val.texts
        )
        return Outcome(report, {"trim_vocab": report})
