"""The last encoder layer for the first token alone: an exact inference rewrite of a classifier.

A BERT-style sequence classifier reads one position of the last layer: the first token ([CLS] / <s>)
goes through the pooler or the classification head, the other positions are thrown away. Yet the
last layer computes its query, attention, output projection and FFN for every position. This rewrite
runs that layer for the first token only:

* the query and the attention output are computed for one row instead of ``L``;
* the keys and values are never formed: with ``W_k``/``W_v`` split per head, ``q_h · (h W_k,h + b_k,h)ᵀ``
  is ``(q_h W_k,h) · hᵀ`` plus a constant that softmax cancels, and ``softmax · (h W_v,hᵀ + b_v,h)`` is
  ``(softmax · h) W_v,hᵀ + b_v,h`` (the weights sum to one). That turns two ``L x H x H`` projections
  into ``heads x L x H`` products;
* the FFN and both LayerNorms run on one row.

The logits are the same function of the inputs (fp32 reassociation only: ~1e-7). On the default
3-layer student's INT8 graph in the Android app's onnxruntime it takes a quarter off the time at 128 tokens
and a fifth at real lengths (benchmarks/results/graph_variants.md).
Nothing in the library does this for us: ONNX Runtime's transformer optimizer and Optimum export
what the model computes, and HF's BERT has no "these positions are unused" switch; so the rewrite is
ours, applied to the PyTorch model before any export (ONNX, and the traced torch formats).

It applies to the layer structure HF's BERT family shares (bert, roberta, xlm-roberta, electra, camembert:
``layer.attention.self.query`` ...), absolute positions, encoder only, with a head that reads the
first token; any other model is exported unchanged (:func:`supported` says why not).
"""

from __future__ import annotations

import math

import torch  # only export paths import this module

# Model types whose classification head reads position 0 of the last hidden state, and whose layers are
# HF's BertLayer shape (the attention / intermediate / output submodules this rewrite calls).
FIRST_TOKEN_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "electra", "camembert")


def supported(model) -> str | None:
    """``None`` when :func:`rewrite` applies to ``model``, else the reason it does not."""
    cfg = model.config
    if not type(model).__name__.endswith("ForSequenceClassification"):
        return f"{type(model).__name__} is not a sequence classifier"
    if getattr(cfg, "model_type", None) not in FIRST_TOKEN_MODEL_TYPES:
        return f"model type {getattr(cfg, 'model_type', None)!r} is not one whose head reads the first token only"
    if getattr(cfg, "is_decoder", False) or getattr(cfg, "add_cross_attention", False):
        return "a decoder / cross-attention model"
    if getattr(cfg, "position_embedding_type", "absolute") != "absolute":
        return f"position_embedding_type {cfg.position_embedding_type!r} (relative scores need every query)"
    layers = _layers(model)
    if not layers:
        return "no encoder layers found"
    last = layers[-1]
    if isinstance(last, FirstTokenLayer):
        return "already rewritten"
    if not all(hasattr(last, n) for n in ("attention", "intermediate", "output")) or not hasattr(
        getattr(last.attention, "self", None), "query"
    ):
        return f"the last layer ({type(last).__name__}) is not a BERT-style layer"
    return None


def rewrite(model) -> bool:
    """Replace ``model``'s last encoder layer by :class:`FirstTokenLayer` (in place, for inference).

    The model's last hidden state then has one position (the first); the logits are unchanged.
    Returns False (model untouched) when :func:`supported` gives a reason.
    """
    if supported(model) is not None:
        return False
    layers = _layers(model)
    layers[-1] = FirstTokenLayer(layers[-1])
    # Eager attention: the encoder then hands its layers a [batch, 1, 1, length] additive mask built from the
    # 2-D mask with four small ops, where SDPA's path expands a [batch, 1, length, length] one (Expand, Where,
    # ...) that only this layer reads once the others are fused (~25 us per call at 27 tokens in ORT 1.22).
    base = getattr(model, model.base_model_prefix, None)
    if getattr(base, "attn_implementation", None) == "sdpa":  # BertModel reads this attribute to build its mask
        base.attn_implementation = "eager"
    return True


def _layers(model):
    base = getattr(model, getattr(model, "base_model_prefix", ""), None) or getattr(model, "base_model", None)
    encoder = getattr(base, "encoder", None)
    return getattr(encoder, "layer", None)


class FirstTokenLayer(torch.nn.Module):
    """A BERT-style layer that outputs the first position only (see the module docstring).

    The per-head products are plain matrix products with 2-D weights held in Linear modules (the key
    weight transposed, the value weight without its bias), so every INT8 path (ORT's quantizer on the
    ONNX graph, ``torch.ao`` on the traced formats) quantizes them like any other Linear; the layer's own
    key/value modules are dropped (their weights live on in those two).
    """

    def __init__(self, layer):
        super().__init__()
        sa = layer.attention.self
        heads, size = sa.num_attention_heads, sa.attention_head_size
        width, hidden = heads * size, sa.key.in_features
        with torch.no_grad():
            # x @ W_k; its name marks a rewritten layer in ONNX graphs (onnx_tools.FIRST_TOKEN_NODE)
            self.key_t = torch.nn.Linear(width, hidden, bias=False)
            self.key_t.weight.copy_(sa.key.weight.t())
            self.value_heads = torch.nn.Linear(hidden, width, bias=False)  # x @ W_vᵀ
            self.value_heads.weight.copy_(sa.value.weight)
            self.value_bias = torch.nn.Parameter(sa.value.bias.detach().clone())
        # blocks[i] is 1 on head i's d columns: a block-diagonal query, and the per-head pick of the context
        self.register_buffer("blocks", torch.block_diag(*[torch.ones(1, size)] * heads), persistent=False)
        sa.key = sa.value = None
        self.layer, self.heads, self.size = layer, heads, size

    def forward(self, hidden_states, attention_mask=None, *args, **kwargs):
        return (self.first_token(hidden_states, attention_mask),)

    def first_token(self, h, attention_mask=None):
        """``layer(h)[:, :1]`` for the first row only. ``h``: ``[batch, length, hidden]``; ``attention_mask``:
        the additive mask the encoder passes its layers (``[batch, 1, 1 or length, length]``)."""
        layer, blocks = self.layer, self.blocks.to(h.dtype)
        first = h[:, :1]  # [B, 1, H]
        q = layer.attention.self.query(first).reshape(-1, 1, self.heads * self.size) * blocks  # [B, n, n*d]
        q_keys = self.key_t(q)  # [B, n, H]: q_i W_k,i (q_i . b_k,i is the same for every key: softmax drops it)
        scores = torch.matmul(q_keys, h.transpose(1, 2)) / math.sqrt(self.size)  # [B, n, L]
        if attention_mask is not None:  # [B, 1, 1, L] by Slice + Squeeze: a Gather here would be calibrated by static
            # INT8, whose histograms fail on HF's float32-min mask ("Too many bins"); BERT's own -10000 instead of
            # that min (exp() gives 0 either way) keeps the sum finite in fp16 runtimes too
            scores = scores + attention_mask[:, :, :1, :].squeeze(1).clamp(min=-10000.0)
        mixed = torch.matmul(torch.softmax(scores, dim=-1), h)  # [B, n, H]: sum_j p_ij h_j
        context = (self.value_heads(mixed) * blocks).sum(dim=1, keepdim=True) + self.value_bias  # [B, 1, n*d]
        attended = layer.attention.output(context, first)
        return layer.output(layer.intermediate(attended), attended)
