"""Four CPU training paths: three for what a small BERT's step spends its non-GEMM time on, one that skips
GEMMs whose results nothing reads. Each is a switch in :class:`~mobilebert_kit.training.engine.TrainConfig`
and each is undone when training ends.

Profiled on a 3-layer H384 student (batch 32, ~36 tokens, bf16 autocast, 2 cores, torch 2.13): the
matrix products are ~50% of a step; dropout's ``bernoulli_`` was 14%, the dense 30,522 x 384 word-embedding
gradient (zero-fill + fused AdamW over 11.7M values that a batch of ~1,000 tokens barely touches) ~10%, and
PyTorch's SDPA kernel for these short rows was slower than the eager softmax(QK^T)V. Speed, each path off
alone and all off, against an HF Trainer: benchmarks/results/trainer_peer-cpu-paths.md; accuracy over 3 seeds:
benchmarks/results/cpu_paths.md.

* ``attention: auto | eager | sdpa`` -- ``auto`` trains with the eager attention on CPU (the model keeps
  its own implementation for inference and export).
* ``fast_dropout`` -- on CPU, :class:`FastDropout` replaces ``nn.Dropout`` while training. torch's CPU
  ``bernoulli_`` draws one Mersenne-Twister number per element; here one 64-bit draw gives four
  15-bit uniforms, so ``p`` is rounded to a multiple of 1/32,768 (0.1 -> 0.100006). Same distribution
  otherwise, from torch's seeded generator, so resume stays bit-identical. No library offers a cheaper
  dropout mask on CPU, hence this one function.
* ``sparse_embeddings`` (opt-in; the default recipe turns it on) -- on one CPU process, the word embeddings return a sparse gradient (only the
  batch's rows) and are stepped by ``torch.optim.SparseAdam`` (lazy Adam: no weight decay, and a row's
  moments move only when it is in a batch), beside fused AdamW for the rest, in one
  :class:`DenseAndSparseAdam` the scheduler and checkpoints see as a single optimizer.
* ``cls_only_last_layer`` -- a BERT sequence classifier reads only the first token of the last layer (its
  pooler takes ``hidden[:, 0]``), so that layer's query, attention output and feed-forward are computed for
  that token alone; keys and values still see every token. The logits and every gradient are the same
  computation (exact up to float summation order); the last layer's GEMMs shrink by ~83% (1 of 6 layers of
  a MiniLM-L6 teacher, 1 of 3 of the default student). Whenever a caller asks for hidden states or
  attention maps (intermediate-layer KD), that forward runs the full layer. No library offers this: HF's
  BERT computes every position of every layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

KEEP_BITS = 15  # each int64 draw (63 random bits) yields four 15-bit uniforms


def fast_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout with keep-masks cut from 64-bit random words (see the module docstring)."""
    if p >= 1.0:
        return x * 0.0
    n = x.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_()
    chunks = words.view(torch.int16)[:n].view(x.shape) & ((1 << KEEP_BITS) - 1)
    keep = chunks >= round(p * (1 << KEEP_BITS))
    return x * (keep.to(x.dtype) * (1.0 / (1.0 - p)))


class FastDropout(torch.nn.Dropout):
    """``nn.Dropout`` with :func:`fast_dropout` in training (identity in eval, like its parent)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return fast_dropout(x, self.p)


@dataclass
class Paths:
    """What :func:`enable` switched on, and how to undo it."""

    names: list[str] = field(default_factory=list)
    sparse_param: torch.nn.Parameter | None = None
    _undo: list = field(default_factory=list)

    def restore(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    def describe(self) -> str:
        return ", ".join(self.names) if self.names else "none"


def enable(model, cfg, device_type: str, world: int) -> Paths:
    """Switch on the paths ``cfg`` asks for that apply to ``model`` on this device."""
    paths = Paths()
    if device_type != "cpu":
        return paths
    if cfg.attention in ("auto", "eager") and _eager_attention(model, paths):
        paths.names.append("eager attention")
    if cfg.fast_dropout and _swap_dropout(model, paths):
        paths.names.append("fast dropout")
    if cfg.sparse_embeddings and world == 1 and not cfg.compile and _sparse_embeddings(model, paths):
        paths.names.append("sparse word-embedding Adam")
    if cfg.cls_only_last_layer and not cfg.compile and _cls_only_last_layer(model, paths):
        paths.names.append("CLS-only last layer")
    return paths


def _eager_attention(model, paths: Paths) -> bool:
    """Swap SDPA self-attention modules to their eager parent class (transformers picks the class at
    construction for BERT-family models and cannot switch it later; the eager class is the SDPA class's
    base, with the same attributes), and the model's attention implementation to eager."""
    swapped = []
    for module in model.modules():
        cls = type(module)
        if "Sdpa" in cls.__name__ and cls.__bases__ and "Sdpa" not in cls.__bases__[0].__name__:
            module.__class__ = cls.__bases__[0]
            swapped.append((module, cls))
    holders = [m for m in model.modules() if getattr(m, "attn_implementation", None) == "sdpa"]
    config = getattr(model, "config", None)
    old = getattr(config, "_attn_implementation", None)
    if not swapped and old != "sdpa":
        return False
    for m in holders:
        m.attn_implementation = "eager"  # BertModel builds the additive (eager) mask from this
    if old == "sdpa":
        config._attn_implementation = "eager"  # AttentionInterface models read it per call

    def undo():
        for module, cls in swapped:
            module.__class__ = cls
        for m in holders:
            m.attn_implementation = "sdpa"
        if old == "sdpa":
            config._attn_implementation = old

    paths._undo.append(undo)
    return True


def _swap_dropout(model, paths: Paths) -> bool:
    swapped = [m for m in model.modules() if type(m) is torch.nn.Dropout and m.p > 0]
    for m in swapped:
        m.__class__ = FastDropout

    def undo():
        for m in swapped:
            m.__class__ = torch.nn.Dropout

    paths._undo.append(undo)
    return bool(swapped)


def _word_embeddings(model):
    base = getattr(model, "base_model", model)
    emb = getattr(getattr(base, "embeddings", None), "word_embeddings", None)
    return emb if isinstance(emb, torch.nn.Embedding) else None


def _sparse_embeddings(model, paths: Paths) -> bool:
    if not hasattr(torch.nn.utils, "get_total_norm"):  # torch < 2.6: no norm helper for the sparse clip
        return False
    emb = _word_embeddings(model)
    if emb is None or not emb.weight.requires_grad or emb.sparse or emb.max_norm is not None:
        return False
    if sum(p is emb.weight for _, p in model.named_parameters(remove_duplicate=False)) != 1:
        return False  # tied to another layer: that layer's dense gradient would meet this sparse one
    emb.sparse = True
    paths.sparse_param = emb.weight

    def undo():
        emb.sparse = False

    paths._undo.append(undo)
    return True


class DenseAndSparseAdam(torch.optim.Optimizer):
    """Fused AdamW for the dense parameters and SparseAdam for the sparse-gradient one, stepped,
    zeroed, scheduled and checkpointed as one optimizer. The inner optimizers share their group dicts
    with :attr:`param_groups`, so the LR scheduler drives both."""

    def __init__(self, dense: torch.optim.Optimizer, sparse: torch.optim.Optimizer):
        params = [p for g in dense.param_groups + sparse.param_groups for p in g["params"]]
        super().__init__(params, {})
        self.dense, self.sparse = dense, sparse
        self._bind()

    def _bind(self) -> None:
        self.param_groups = self.dense.param_groups + self.sparse.param_groups

    @torch.no_grad()
    def step(self, closure=None):
        loss = self.dense.step(closure)
        self.sparse.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.dense.zero_grad(set_to_none=set_to_none)
        self.sparse.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"dense": self.dense.state_dict(), "sparse": self.sparse.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.dense.load_state_dict(state_dict["dense"])
        self.sparse.load_state_dict(state_dict["sparse"])
        self._bind()  # loading gives the inner optimizers new group dicts


def clip_grad_norm(params, max_norm: float) -> torch.Tensor:
    """``clip_grad_norm_`` for a parameter list that includes sparse gradients (torch's refuses them):
    the norm over dense gradients and the sparse ones' coalesced values, then the same scale on both."""
    with_grad = [p for p in params if p.grad is not None]
    sparse = [p for p in with_grad if p.grad.is_sparse]
    dense = [p for p in with_grad if not p.grad.is_sparse]
    for p in sparse:
        p.grad = p.grad.coalesce()
    total = torch.nn.utils.get_total_norm([p.grad for p in dense] + [p.grad._values() for p in sparse])
    torch.nn.utils.clip_grads_with_norm_(dense, max_norm, total)
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for p in sparse:
        p.grad._values().mul_(scale)
    return total


def _cls_only_last_layer(model, paths: Paths) -> bool:
    """Run the last encoder layer of a BERT sequence classifier for the first token only (module docstring).

    Applies to ``BertForSequenceClassification`` with its pooler, absolute positions and no decoder; an
    encoder forward pre-hook records whether the caller asked for hidden states or attentions, and then the
    layer runs in full so every returned state keeps its shape."""
    bert = getattr(model, "bert", None)
    config = getattr(model, "config", None)
    if type(model).__name__ != "BertForSequenceClassification" or bert is None or bert.pooler is None:
        return False
    if getattr(config, "position_embedding_type", "absolute") != "absolute" or config.is_decoder:
        return False
    layers = getattr(bert.encoder, "layer", None)
    if not layers:
        return False
    layer, want_full = layers[-1], [False]

    def note_outputs(_module, _args, kwargs):
        want_full[0] = bool(kwargs.get("output_hidden_states") or kwargs.get("output_attentions"))

    full_forward = layer.forward

    def forward(hidden_states, attention_mask=None, head_mask=None, encoder_hidden_states=None, *args, **kwargs):
        if want_full[0] or encoder_hidden_states is not None or args or kwargs.get("output_attentions"):
            return full_forward(hidden_states, attention_mask, head_mask, encoder_hidden_states, *args, **kwargs)
        first = hidden_states[:, :1]
        if attention_mask is not None and attention_mask.dim() == 4:
            attention_mask = attention_mask[:, :, :1, :]  # the first token's row of a [B, 1, L, L] mask
        # BertSelfAttention takes its query from its input and its keys/values from encoder_hidden_states
        context = layer.attention.self(
            first, attention_mask=attention_mask, head_mask=head_mask, encoder_hidden_states=hidden_states
        )[0]
        attention_output = layer.attention.output(context, first)
        return (layer.feed_forward_chunk(attention_output),)

    hook = bert.encoder.register_forward_pre_hook(note_outputs, with_kwargs=True)
    layer.forward = forward  # an instance attribute: nn.Module.__call__ finds it before the class's

    def undo():
        hook.remove()
        del layer.forward  # back to the class's forward

    paths._undo.append(undo)
    return True
