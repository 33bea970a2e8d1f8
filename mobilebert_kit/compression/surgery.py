"""PyTorch-side compression of a BERT classifier: what really shrinks it, and what only writes zeros.

* :func:`prune_unstructured` — L1 magnitude pruning of the encoder's Linear weights (global or per
  layer) with ``torch.nn.utils.prune``, made permanent with ``prune.remove``. Exact sparsity, but the
  tensors stay dense: no size or speed gain on dense kernels (FACTS.md). Reported as such.
* :func:`prune_structured` — removes whole attention heads and FFN neurons ranked by first-order
  Taylor importance ``|sum(activation * dLoss/dactivation)|`` (Michel et al. 2019, Molchanov et al.
  2019) measured on training batches. The tensors really get smaller and the result reloads with
  ``from_pretrained``.
* :func:`trim_vocabulary` — keeps only the word pieces the training corpus uses (plus special tokens),
  slicing the word-embedding table: the table is most of a small student's size.

Every function mutates the model in place and returns a JSON-able report.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from mobilebert_kit.errors import CompressError, ConfigError

PRUNE_SCOPES = ("global", "layer")
DENSE_NOTE = (
    "unstructured pruning stores zeros in dense tensors: the model file, its parameter count and its "
    "latency on dense CPU kernels (PyTorch, ONNX Runtime) do not change; only a sparse format or a "
    "sparse kernel could turn these zeros into gains"
)


# --------------------------------------------------------------------------- helpers


def encoder_linears(model) -> list[tuple[str, object]]:
    """``(qualified name, nn.Linear)`` for every Linear inside the encoder (attention, FFN), in order."""
    import torch

    encoder = bert_layers(model)[1]
    prefix = encoder
    return [
        (f"{prefix}.{name}", mod)
        for name, mod in _get(model, encoder).named_modules()
        if isinstance(mod, torch.nn.Linear)
    ]


def _get(model, dotted: str):
    obj = model
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def bert_layers(model):
    """The encoder's layer list and its attribute path; fails clearly for non-BERT layouts."""
    base = getattr(model, "base_model_prefix", "bert")
    try:
        layers = _get(model, f"{base}.encoder.layer")
    except AttributeError as e:
        raise CompressError(
            f"{type(model).__name__} has no BERT-style encoder ({base}.encoder.layer); "
            "pruning supports BERT-family classifiers (BERT, MiniLM)"
        ) from e
    return layers, f"{base}.encoder"


def sparsity(tensor) -> float:
    return float((tensor == 0).sum().item()) / max(1, tensor.numel())


# --------------------------------------------------------------------------- unstructured


def prune_unstructured(model, amount: float, scope: str = "global") -> dict:
    """L1-magnitude-prune the encoder's Linear weights and make it permanent (no masks left).

    Args:
        model: a BERT-family ``*ForSequenceClassification`` (modified in place).
        amount: fraction of weights to zero, in [0, 1).
        scope: ``global`` ranks all encoder Linear weights together (layers end up with different
            sparsity); ``layer`` zeroes exactly ``amount`` of every Linear.

    Returns:
        ``{"amount", "scope", "overall_sparsity", "zeros", "weights", "layers": {name: sparsity}, "note"}``
        with the sparsity measured on the final tensors (count of exact zeros).
    """
    import torch.nn.utils.prune as tprune

    problems: list[str] = []
    if not 0 <= amount < 1:
        problems.append(f"--prune must be in [0, 1), got {amount}")
    if scope not in PRUNE_SCOPES:
        problems.append(f"--prune-scope must be one of {', '.join(PRUNE_SCOPES)}; got '{scope}'")
    if problems:
        raise ConfigError(problems)
    linears = encoder_linears(model)
    if amount > 0:
        if scope == "global":
            tprune.global_unstructured(
                [(m, "weight") for _, m in linears], pruning_method=tprune.L1Unstructured, amount=amount
            )
        else:
            for _, m in linears:
                tprune.l1_unstructured(m, "weight", amount=amount)
        for _, m in linears:
            tprune.remove(m, "weight")  # bake the mask into the weight: plain dense tensors, no hooks
    layers = {name: round(sparsity(m.weight), 6) for name, m in linears}
    zeros = sum(int((m.weight == 0).sum().item()) for _, m in linears)
    total = sum(m.weight.numel() for _, m in linears)
    return {
        "amount": amount,
        "scope": scope,
        "weights": total,
        "zeros": zeros,
        "overall_sparsity": zeros / max(1, total),
        "layers": layers,
        "note": DENSE_NOTE,
    }


# --------------------------------------------------------------------------- structured


def taylor_importance(model, batches: Iterable[dict]) -> tuple[list[list[float]], list[list[float]]]:
    """First-order Taylor importance of every attention head and FFN neuron.

    For each layer, the input of ``attention.output.dense`` (the per-head context) and of
    ``output.dense`` (the FFN activation) is recorded; the importance of a head / neuron is
    ``sum over examples of |sum over its positions of activation * gradient|`` of the cross-entropy
    loss. This equals the gradient of a head mask (Michel et al.) without needing ``head_mask``.

    Args:
        model: a BERT-family classifier.
        batches: dicts of tensors (``input_ids``, ``attention_mask``, ..., ``labels``).

    Returns:
        ``(heads[layer][head], neurons[layer][neuron])`` as nested lists of floats.
    """
    layers, _ = bert_layers(model)
    head_imp: list = [None] * len(layers)
    ffn_imp: list = [None] * len(layers)
    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.attention.output.dense.register_forward_pre_hook(_importance_hook(head_imp, i, layer)))
        handles.append(layer.output.dense.register_forward_pre_hook(_importance_hook(ffn_imp, i, None)))
    try:
        seen = _backward_all(model, batches)
    finally:
        for h in handles:
            h.remove()
    if seen == 0 or any(x is None for x in head_imp + ffn_imp):
        raise CompressError(
            "no training batch reached the encoder, so head/neuron importance could not be measured; "
            "check that the training split is not empty"
        )
    return [h.tolist() for h in head_imp], [f.tolist() for f in ffn_imp]


def _importance_hook(store: list, i: int, layer):
    """Forward pre-hook accumulating ``|sum(activation * grad)|`` into ``store[i]``: per head of
    ``layer``'s attention when ``layer`` is given, else per FFN neuron."""

    def fwd(_mod, inputs):
        act = inputs[0]
        if not act.requires_grad:
            return

        def bwd(grad):
            prod = (act.detach() * grad).float()  # [B, T, D]
            if layer is not None:
                att = layer.attention.self
                per = prod.view(prod.shape[0], prod.shape[1], att.num_attention_heads, att.attention_head_size)
                score = per.sum(dim=(1, 3)).abs().sum(0)
            else:
                score = prod.sum(dim=1).abs().sum(0)
            store[i] = score if store[i] is None else store[i] + score

        act.register_hook(bwd)

    return fwd


def _backward_all(model, batches: Iterable[dict]) -> int:
    """Forward + backward every batch in eval mode (no dropout); returns how many ran."""
    import torch

    was_training = model.training
    model.eval()  # no dropout: importance of the deterministic network
    seen = 0
    try:
        with torch.enable_grad():
            for batch in batches:
                model(**batch).loss.backward()
                seen += 1
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return seen


def count_to_remove(fraction: float, total: int, what: str, flag: str) -> int:
    """Same number removed in every layer: ``round(fraction * total)``, refusing 0 < k and k == total."""
    if not 0 <= fraction < 1:
        raise ConfigError(f"{flag} must be in [0, 1), got {fraction}")
    k = int(round(fraction * total))
    if fraction > 0 and k == 0:
        raise ConfigError(
            f"{flag} {fraction:g} removes no {what} (each layer has {total}); "
            f"use at least {math.ceil(50 / total) / 100:.2f}"
        )
    if k >= total:
        raise ConfigError(
            f"{flag} {fraction:g} would remove all {total} {what}s of every layer; "
            "a layer needs at least one: use a smaller fraction"
        )
    return k


def prune_structured(
    model,
    heads_fraction: float,
    ffn_fraction: float,
    batches: Iterable[dict] | None,
    importance: tuple[list, list] | None = None,
    heads_scope: str = "layer",
) -> dict:
    """Remove the least important attention heads and FFN neurons; the tensors really shrink.

    The same number of heads / neurons is removed from every layer. For heads this is a choice
    (``config.pruned_heads`` can describe any per-layer set); for FFN neurons it is required:
    ``BertConfig`` has one ``intermediate_size`` for all layers and ``from_pretrained`` builds every
    layer from it, so a per-layer width would not reload. Uniform removal keeps the folder a plain
    HF checkpoint (``config.intermediate_size`` shrinks, ``config.pruned_heads`` lists the heads).

    Args:
        model: BERT-family classifier (modified in place).
        heads_fraction: fraction of each layer's heads to remove, [0, 1).
        ffn_fraction: fraction of each layer's FFN neurons to remove, [0, 1).
        batches: labelled training batches for :func:`taylor_importance` (unused if ``importance`` given).
        importance: precomputed ``(heads, neurons)`` importance.
        heads_scope: ``layer``: the same number of heads from every layer; ``global``: the same total,
            ranked across layers (see :func:`_remove_heads`).

    Returns:
        Report with the removed heads per layer, the new shapes and parameter counts.
    """
    from mobilebert_kit.models import count_parameters

    layers, _ = bert_layers(model)
    cfg = model.config
    if cfg.pruned_heads:
        n_heads = min(layer.attention.self.num_attention_heads for layer in layers)
    else:
        n_heads = cfg.num_attention_heads
    n_ffn = layers[0].intermediate.dense.out_features
    k_heads = count_to_remove(heads_fraction, n_heads, "attention head", "--prune-heads") if heads_fraction else 0
    k_ffn = count_to_remove(ffn_fraction, n_ffn, "FFN neuron", "--prune-ffn") if ffn_fraction else 0
    before = count_parameters(model)
    report: dict = {
        "heads_fraction": heads_fraction,
        "ffn_fraction": ffn_fraction,
        "importance": "taylor",
        "heads_scope": heads_scope,
        "params_before": before,
    }
    if not (k_heads or k_ffn):
        report.update(params_after=before, heads_removed={}, ffn_removed_per_layer=0)
        return report
    head_imp, ffn_imp = importance if importance is not None else taylor_importance(model, batches or [])
    to_prune = _remove_heads(model, head_imp, k_heads, heads_scope) if k_heads else {}
    if k_ffn:
        _remove_neurons(layers, ffn_imp, n_ffn - k_ffn)
        cfg.intermediate_size = n_ffn - k_ffn
    after = count_parameters(model)
    report.update(
        heads_removed={str(k): v for k, v in to_prune.items()},
        heads_per_layer=[layer.attention.self.num_attention_heads for layer in layers],
        ffn_removed_per_layer=k_ffn,
        intermediate_size=cfg.intermediate_size,
        params_after=after,
        params_removed=before - after,
    )
    return report


def _remove_heads(model, head_imp: list[list[float]], k: int, scope: str = "layer") -> dict[int, list[int]]:
    """Prune ``k`` heads per layer, least important first; returns them as original head indices.

    ``scope="global"`` removes the same total (``k`` x layers) ranked across layers, each layer keeping at
    least one head: scores are first divided by their layer's L2 norm, as Michel et al. (2019) do, since
    raw Taylor scores are not comparable between layers."""
    cfg = model.config
    already = {int(i): set(v) for i, v in (cfg.pruned_heads or {}).items()}
    if scope == "global":
        norms = [max(sum(x * x for x in row) ** 0.5, 1e-12) for row in head_imp]
        ranked = sorted((v / norms[i], i, j) for i, row in enumerate(head_imp) for j, v in enumerate(row))
        picked: dict[int, list[int]] = {i: [] for i in range(len(head_imp))}
        left = k * len(head_imp)
        for _, i, j in ranked:
            if left == 0:
                break
            if len(picked[i]) < len(head_imp[i]) - 1:
                picked[i].append(j)
                left -= 1
    else:
        picked = {i: sorted(range(len(row)), key=lambda j, row=row: row[j])[:k] for i, row in enumerate(head_imp)}
    to_prune: dict[int, list[int]] = {}
    for i, current in picked.items():
        # current head j of layer i maps to an original head index: skip already-pruned ones
        original = [h for h in range(cfg.num_attention_heads) if h not in already.get(i, set())]
        if current:
            to_prune[i] = sorted(original[j] for j in current)
    model.prune_heads(to_prune)
    return to_prune


def _remove_neurons(layers, ffn_imp: list[list[float]], keep_count: int) -> None:
    """Keep the ``keep_count`` most important FFN neurons of every layer (in their original order)."""
    import torch
    from transformers.pytorch_utils import prune_linear_layer

    for i, layer in enumerate(layers):
        scores = torch.tensor(ffn_imp[i])
        keep = torch.sort(torch.argsort(scores, descending=True)[:keep_count]).values
        layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, keep, dim=0)
        layer.output.dense = prune_linear_layer(layer.output.dense, keep, dim=1)


def training_batches(
    model,
    tokenizer,
    texts: Sequence[str],
    labels: Sequence[int],
    pairs: Sequence[str] | None,
    max_length: int,
    batch_size: int = 32,
):
    """Yield padded, labelled tensor batches (length-sorted) for importance scoring."""
    import torch

    from mobilebert_kit.batching import padded_batches

    for idx, batch in padded_batches(tokenizer, texts, pairs, max_length, batch_size, return_tensors="pt"):
        batch["labels"] = torch.tensor([labels[i] for i in idx], dtype=torch.long)
        yield batch


# --------------------------------------------------------------------------- vocabulary


def normalizer_settings(tokenizer) -> dict:
    from mobilebert_kit.models import bert_normalizer, tokenizer_model_type, tokenizer_spec

    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise CompressError("--trim-vocab needs a fast (tokenizer.json) WordPiece tokenizer")
    spec = tokenizer_spec(tokenizer)
    if tokenizer_model_type(spec) != "WordPiece":
        raise CompressError(
            f"--trim-vocab supports WordPiece (BERT) tokenizers; this one is {tokenizer_model_type(spec)}"
        )
    norm = bert_normalizer(spec)
    if norm is None:
        raise CompressError(
            "--trim-vocab supports BERT tokenizers (BertNormalizer); this tokenizer normalizes differently"
        )
    return {
        "do_lower_case": norm["lowercase"],
        "strip_accents": norm["strip_accents"],
        "tokenize_chinese_chars": norm["handle_chinese_chars"],
    }


def trim_vocabulary(
    model, tokenizer, corpus: Sequence[str], out_dir: str | os.PathLike, eval_texts: Sequence[str] = ()
) -> tuple[object, dict]:
    """Keep only the word pieces ``corpus`` uses (plus special tokens); slice the embedding rows.

    The new WordPiece vocabulary is a subset of the old one, so text made of corpus words tokenizes
    to exactly the same pieces (greedy longest-match picks the same piece when every piece it picked
    before is still there); other words fall back to shorter kept pieces or ``[UNK]``.

    Args:
        model: BERT-family classifier (modified in place: word embeddings, ``config.vocab_size``,
            ``config.pad_token_id``).
        tokenizer: its fast BERT tokenizer.
        corpus: training texts (and pairs) whose pieces are kept.
        out_dir: where the new tokenizer files are written (vocab.txt, tokenizer.json, ...).
        eval_texts: texts to report coverage on (e.g. the validation split).

    Returns:
        ``(new_tokenizer, report)``; the report has vocab sizes, bytes and parameters saved, and the
        share of ``eval_texts`` tokens the kept vocabulary covers.
    """
    settings = normalizer_settings(tokenizer)
    vocab = tokenizer.get_vocab()
    emb = model.get_input_embeddings()
    if emb.num_embeddings < len(vocab):
        raise CompressError(
            f"the tokenizer has {len(vocab)} tokens but the embedding table only {emb.num_embeddings} rows"
        )
    # ascending: [PAD]=0 stays 0, relative order is preserved
    keep = sorted(_piece_ids(tokenizer, corpus) | set(tokenizer.all_special_ids))
    id_to_token = {i: t for t, i in vocab.items()}
    new_tok = _write_wordpiece(tokenizer, [id_to_token[i] for i in keep], Path(out_dir), settings)
    _slice_embeddings(model, emb, keep)
    covered, total = _coverage(tokenizer, eval_texts, set(keep))
    saved_rows = emb.num_embeddings - len(keep)
    report = {
        "vocab_before": len(vocab),
        "vocab_after": len(keep),
        "kept_fraction": len(keep) / len(vocab),
        "embedding_params_saved": saved_rows * emb.embedding_dim,
        "bytes_saved_fp32": saved_rows * emb.weight.element_size() * emb.embedding_dim,
        "eval_token_coverage": (covered / total) if total else None,
        "eval_tokens": total,
        "note": "coverage = share of validation word pieces (original tokenizer) still in the vocabulary; "
        "words built from uncovered pieces re-split into kept pieces or [UNK]",
    }
    return new_tok, report


def _piece_ids(tokenizer, texts: Sequence[str], chunk: int = 512) -> set[int]:
    used: set[int] = set()
    for start in range(0, len(texts), chunk):
        for ids in tokenizer(list(texts[start : start + chunk]), add_special_tokens=False)["input_ids"]:
            used.update(ids)
    return used


def _write_wordpiece(tokenizer, tokens: list[str], out_dir: Path, settings: dict):
    """Write ``tokens`` as ``vocab.txt`` in ``out_dir`` and build a fast BERT tokenizer on it with
    ``tokenizer``'s special tokens and ``settings`` (its normalisation)."""
    from transformers import BertTokenizerFast

    out_dir.mkdir(parents=True, exist_ok=True)
    vocab_file = out_dir / "vocab.txt"
    vocab_file.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return BertTokenizerFast(
        vocab_file=str(vocab_file),
        unk_token=tokenizer.unk_token,
        sep_token=tokenizer.sep_token,
        pad_token=tokenizer.pad_token,
        cls_token=tokenizer.cls_token,
        mask_token=tokenizer.mask_token,
        model_max_length=tokenizer.model_max_length,
        **settings,
    )


def _slice_embeddings(model, emb, keep: list[int]) -> None:
    """Replace the word embeddings by the rows ``keep`` (in order); fix vocab size and pad id."""
    import torch

    new_emb = torch.nn.Embedding(len(keep), emb.embedding_dim, padding_idx=None)
    with torch.no_grad():
        new_emb.weight.copy_(emb.weight[torch.tensor(keep, dtype=torch.long)])
    pad_old = model.config.pad_token_id
    new_pad = keep.index(pad_old) if pad_old is not None and pad_old in keep else None
    new_emb.padding_idx = new_pad
    model.set_input_embeddings(new_emb)
    model.config.vocab_size = len(keep)
    model.config.pad_token_id = new_pad


def _coverage(tokenizer, texts: Sequence[str], kept: set[int]) -> tuple[int, int]:
    """``(covered, total)`` word pieces of ``texts`` (original tokenizer) whose id is in ``kept``."""
    covered = total = 0
    if texts:
        for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
            total += len(ids)
            covered += sum(1 for i in ids if i in kept)
    return covered, total
