"""Pruning steps: L1 unstructured (``prune``: zeros only) and structured (``prune_heads``,
``prune_ffn``: the tensors shrink). The work itself is in :mod:`mobilebert_kit.compression.surgery`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mobilebert_kit.compression.base import Method, Outcome, Work
from mobilebert_kit.config import check_choice, check_range

HEAD_SCOPES = ("layer", "global")


def _check_fraction(problems: list[str], value: float | None, what: str) -> None:
    if value is None:
        problems.append(f"fraction is required: the share of {what} to remove, in [0, 1)")
    check_range(problems, "fraction", value, 0, 1, hi_open=True)


@dataclass
class L1Unstructured(Method):
    """Zero ``fraction`` of the encoder's Linear weights by L1 magnitude (``scope``: global or per layer)."""

    fraction: float | None = None
    scope: str = "global"

    name: ClassVar[str] = "prune"
    label: ClassVar[str] = "unstructured"
    record: ClassVar[str | None] = "prune"
    timed: ClassVar[bool] = False

    def validate(self) -> list[str]:
        p: list[str] = []
        _check_fraction(p, self.fraction, "encoder Linear weights")
        check_choice(p, "scope", self.scope, ("global", "layer"))
        return p

    def apply(self, work: Work) -> Outcome:
        from mobilebert_kit.compression import surgery as prune

        report = prune.prune_unstructured(work.model, self.fraction, self.scope)
        entry = {
            "sparsity": report["overall_sparsity"],
            "sparsity_per_layer": report["layers"],
            "latency_ms_pytorch_fp32": work.torch_latency(),
        }
        work.note(prune.DENSE_NOTE)
        return Outcome(report, entry)


@dataclass
class PruneStructured(Method):
    """Remove the least important heads and FFN neurons of every layer, ranked together on one
    Taylor-importance pass over ``importance_samples`` training examples."""

    heads: float = 0.0
    ffn: float = 0.0
    importance_samples: int = 256
    heads_scope: str = "layer"  # layer: as many heads from every layer; global: ranked across layers

    name: ClassVar[str] = "prune_heads+prune_ffn"  # what PruneHeads and PruneFfn fuse into
    label: ClassVar[str] = "structured"
    record: ClassVar[str | None] = "structured"

    def validate(self) -> list[str]:
        p: list[str] = []
        check_range(p, "heads", self.heads, 0, 1, hi_open=True)
        check_range(p, "ffn", self.ffn, 0, 1, hi_open=True)
        check_range(p, "importance_samples", self.importance_samples, 1)
        check_choice(p, "scope", self.heads_scope, HEAD_SCOPES)
        return p

    def preflight(self, work: Work) -> None:
        from mobilebert_kit.compression import surgery as prune

        layers, _ = prune.bert_layers(work.model)
        if self.heads:
            heads_now = min(layer.attention.self.num_attention_heads for layer in layers)
            prune.count_to_remove(self.heads, heads_now, "attention head", "--prune-heads")
        if self.ffn:
            neurons = layers[0].intermediate.dense.out_features
            prune.count_to_remove(self.ffn, neurons, "FFN neuron", "--prune-ffn")

    def apply(self, work: Work) -> Outcome:
        from mobilebert_kit.compression import surgery as prune

        sub = work.train.subset(self.importance_samples, work.seed)
        work.log(f"structured pruning: measuring head/neuron importance on {len(sub)} training examples")
        batches = prune.training_batches(work.model, work.tokenizer, sub.texts, sub.labels, sub.pairs, work.max_length)
        report = prune.prune_structured(work.model, self.heads, self.ffn, batches, heads_scope=self.heads_scope)
        entry = {
            "structured": {k: v for k, v in report.items() if k != "importance"},
            "latency_ms_pytorch_fp32": work.torch_latency(),
        }
        return Outcome(report, entry)


@dataclass
class _OneStructured(Method):
    fraction: float | None = None
    importance_samples: int = 256

    label: ClassVar[str] = "structured"
    record: ClassVar[str | None] = "structured"
    seeded: ClassVar[bool] = True  # importance is measured on a seeded training subset
    what: ClassVar[str] = ""

    def validate(self) -> list[str]:
        p: list[str] = []
        _check_fraction(p, self.fraction, self.what)
        check_range(p, "importance_samples", self.importance_samples, 1)
        return p

    def structured(self) -> PruneStructured:
        raise NotImplementedError

    def preflight(self, work: Work) -> None:
        self.structured().preflight(work)

    def apply(self, work: Work) -> Outcome:
        return self.structured().apply(work)

    def fuse(self, following: Method) -> Method | None:
        """Heads then neurons (or the reverse) on one importance pass, as ``mbk compress`` does."""
        if not isinstance(following, _OneStructured) or type(following) is type(self):
            return None
        if following.importance_samples != self.importance_samples:
            return None
        a, b = self.structured(), following.structured()
        scope = a.heads_scope if a.heads else b.heads_scope
        return PruneStructured(a.heads + b.heads, a.ffn + b.ffn, self.importance_samples, scope)


@dataclass
class PruneHeads(_OneStructured):
    """Remove ``fraction`` of the attention heads, least important first: of every layer (``scope: layer``),
    or the same total ranked across layers (``scope: global``, each layer keeps one)."""

    scope: str = "layer"

    name: ClassVar[str] = "prune_heads"
    what: ClassVar[str] = "attention heads of every layer"

    def validate(self) -> list[str]:
        p = super().validate()
        check_choice(p, "scope", self.scope, HEAD_SCOPES)
        return p

    def structured(self) -> PruneStructured:
        return PruneStructured(heads=self.fraction, importance_samples=self.importance_samples, heads_scope=self.scope)


@dataclass
class PruneFfn(_OneStructured):
    """Remove ``fraction`` of every layer's FFN neurons, least important first."""

    name: ClassVar[str] = "prune_ffn"
    what: ClassVar[str] = "FFN neurons of every layer"

    def structured(self) -> PruneStructured:
        return PruneStructured(ffn=self.fraction, importance_samples=self.importance_samples)
