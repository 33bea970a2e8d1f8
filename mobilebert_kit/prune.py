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
# Recovery after structured pruning distills like `mbk distill` does by default (T=3, soft/hard 50/50).
RECOVERY_TEMPERATURE = 3.0
RECOVERY_ALPHA = 0.5
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
    import json

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise CompressError("--trim-vocab needs a fast (tokenizer.json) WordPiece tokenizer")
    spec = json.loads(backend.to_str())
    if (spec.get("model") or {}).get("type") != "WordPiece":
        raise CompressError(
            f"--trim-vocab supports WordPiece (BERT) tokenizers; this one is {spec.get('model', {}).get('type')}"
        )
    norm = spec.get("normalizer") or {}
    if norm.get("type") != "BertNormalizer":
        raise CompressError(
            "--trim-vocab supports BERT tokenizers (BertNormalizer); this tokenizer normalizes differently"
        )
    return {
        "do_lower_case": bool(norm.get("lowercase", True)),
        "strip_accents": norm.get("strip_accents"),
        "tokenize_chinese_chars": bool(norm.get("handle_chinese_chars", True)),
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


# --------------------------------------------------------------------------- recovery


def recover(
    model,
    tokenizer,
    teacher_dir: str | os.PathLike,
    train_split,
    val_split,
    *,
    max_length: int,
    epochs: int,
    lr: float,
    workdir: str | os.PathLike,
    seed: int = 0,
    log=None,
    hidden_weight: float = 0.0,
    hidden_from: str | os.PathLike | None = None,
    teacher_precision: str = "int8",
    log_every: int = 10,
) -> dict:
    """Short knowledge-distillation recovery of a pruned model from ``teacher_dir``.

    Uses the distillation loss (:func:`mobilebert_kit.losses.distillation_loss`: KL on
    temperature-softened logits plus CE on labels, with distill's default T and alpha) and the
    shared training engine (best epoch by validation macro-F1 is kept).
    The teacher's logits on the training texts are computed once, with the teacher's own tokenizer.
    With ``hidden_weight`` > 0, each layer's output also mimics (MSE, TinyBERT's hidden-state loss) the
    same layer of ``hidden_from``: the model before pruning, same depth and width, cached like distill's
    teacher outputs. Layer distillation to the unpruned model is CoFi's recipe for pruned models.
    ``teacher_precision`` ``int8`` runs the teacher's pass in checked dynamic INT8, as distill can.
    """
    from mobilebert_kit.batching import make_features
    from mobilebert_kit.engine import TrainConfig, TrainModule, train
    from mobilebert_kit.losses import distillation_loss

    t_logits, check = _teacher_logits(model, teacher_dir, train_split, max_length, teacher_precision, log)
    extras = {"teacher_logits": list(t_logits)}
    if hidden_weight > 0:
        extras["teacher_hidden"] = _layer_targets(model, hidden_from, train_split, max_length, log)
    train_cfg = TrainConfig(
        epochs=epochs,
        lr=lr,
        max_length=max_length,
        device="cpu",
        seed=seed,
        early_stopping_patience=0,
        checkpoint_every=0,
        warmup_ratio=0.1,
        log_every=log_every,
    )
    s = train_split
    train_set = make_features(tokenizer, s.texts, s.pairs, s.labels, max_length, extras=extras)
    if hidden_weight > 0:
        _check_aligned(train_set, extras["teacher_hidden"], hidden_from)
    val_set = make_features(tokenizer, val_split.texts, val_split.pairs, val_split.labels, max_length)
    result = train(
        TrainModule(model, distillation_loss(RECOVERY_TEMPERATURE, RECOVERY_ALPHA, hidden_weight, with_terms=True)),
        train_set,
        val_set,
        train_cfg,
        workdir=Path(workdir),
        pad_id=tokenizer.pad_token_id or 0,
        num_labels=model.config.num_labels,
        quiet=log is None,
        log=log,
        log_phase="recovery",
    )
    model.eval()
    return {
        "teacher": str(teacher_dir),
        "epochs": epochs,
        "lr": lr,
        "temperature": RECOVERY_TEMPERATURE,
        "alpha": RECOVERY_ALPHA,
        **({"hidden_weight": hidden_weight, "hidden_from": str(hidden_from)} if hidden_weight > 0 else {}),
        "teacher_precision": check["precision"] if check else "fp32",
        **({"int8_check": check} if check else {}),
        "best_epoch": result.best_epoch,
        "train_seconds": result.train_seconds,
        "history": [{k: v for k, v in h.items() if isinstance(v, (int, float, str))} for h in result.history],
    }


def _teacher_logits(model, teacher_dir, train_split, max_length: int, precision: str = "int8", log=None):
    """(the teacher's logits on the training texts, the INT8 check or None), with the teacher's own
    tokenizer (logits are compared text by text, so it may differ from the model's); the teacher is
    dropped afterwards."""
    from mobilebert_kit.batching import predict_logits
    from mobilebert_kit.devices import teacher_pass_precision
    from mobilebert_kit.int8_teacher import int8_teacher
    from mobilebert_kit.models import load_classifier_folder

    teacher, teacher_tok, _ = load_classifier_folder(teacher_dir)
    if teacher.config.num_labels != model.config.num_labels:
        raise CompressError(
            f"the recovery teacher {teacher_dir} has {teacher.config.num_labels} labels, the model "
            f"{model.config.num_labels}; pass --teacher with the model's teacher"
        )
    check = None
    if teacher_pass_precision(precision, "cpu") == "int8":  # recovery trains on CPU
        teacher, check = int8_teacher(
            teacher,
            teacher_tok,
            train_split.texts,
            train_split.pairs,
            max_length=max_length,
            temperature=RECOVERY_TEMPERATURE,
            log=log or (lambda m: None),
        )
    logits = predict_logits(
        teacher,
        teacher_tok,
        train_split.texts,
        train_split.pairs,
        max_length=max_length,
        progress="recovery: teacher logits" if log is not None else None,
    )
    return logits, check


def _layer_targets(model, source, train_split, max_length: int, log) -> list:
    """Every layer's output of ``source`` (the model before pruning) on the training texts, per example
    ``[tokens, layers, hidden]``, through distill's teacher cache. The pruned model may carry a trimmed
    vocabulary: trimming keeps every piece of the training texts, so they tokenize to the same positions,
    which :func:`_check_aligned` checks."""
    from mobilebert_kit.models import load_classifier_folder
    from mobilebert_kit.teacher_cache import default_cache_dir, teacher_outputs, teacher_weights_sha

    source_model, source_tok, _ = load_classifier_folder(source)
    n_layers = model.config.num_hidden_layers
    got = (source_model.config.num_hidden_layers, source_model.config.hidden_size)
    if got != (n_layers, model.config.hidden_size):
        raise CompressError(
            f"recover hidden_weight needs the model before pruning to have the pruned model's depth and width "
            f"({n_layers} layers, hidden {model.config.hidden_size}); {source} has {got[0]} layers, hidden "
            f"{got[1]}; set hidden_weight: 0"
        )
    outputs = teacher_outputs(
        source_model,
        source_tok,
        train_split.texts,
        train_split.pairs,
        max_length=max_length,
        hidden_layers=list(range(n_layers)),
        attention_layers=[],
        cache_dir=default_cache_dir(),
        slot={"teacher": str(Path(source).resolve()), "role": "recover-hidden"},
        teacher_sha=teacher_weights_sha(source),
        batch_size=64,
        device="cpu",
        log=log or (lambda msg: None),
        progress=log is not None,
    )
    return outputs.hidden


def _check_aligned(train_set, hidden: list, source) -> None:
    if [h.shape[0] for h in hidden] != list(train_set.lengths):
        raise CompressError(
            f"recover hidden_weight: the pruned model's tokenizer splits the training texts differently from "
            f"{source}'s, so their layers cannot be compared token by token; set hidden_weight: 0"
        )
