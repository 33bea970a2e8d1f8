"""first_token: the last layer run for the first token only gives the same logits, in PyTorch, in the
fused ONNX graph, and through the INT8 paths; models it does not fit are left as they are."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import make_tiny_classifier

from mobilebert_kit.graph import first_token
from mobilebert_kit.graph import onnx_tools as ot
from mobilebert_kit.models import load_classifier_folder

TEXTS = ["a wonderful film", "a dull, boring mess that never ends and never ends", "ok", "[CLS] great fun! [SEP]"]


def _tiny(folder, **kw):
    """A tiny BERT classifier with large random weights and biases (a fresh one's biases are zero and its
    attention nearly uniform: a dropped bias or scale would pass unnoticed)."""
    make_tiny_classifier(folder, **kw)
    model, _, _ = load_classifier_folder(folder)
    torch.manual_seed(kw.get("seed", 0))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" not in name and "embeddings" not in name:
                p.add_(torch.randn_like(p) * 0.3)
    model.save_pretrained(folder)
    return folder


def _logits(model, tok, texts=TEXTS):
    enc = tok(texts, padding=True, return_tensors="pt")  # padded: the mask matters
    with torch.no_grad():
        return model(**enc).logits


@pytest.mark.parametrize("layers,heads", [(1, 2), (3, 4)])
def test_same_logits_as_the_full_model(tmp_path, layers, heads):
    model, tok, _ = load_classifier_folder(_tiny(tmp_path / "m", layers=layers, heads=heads, seed=3))
    model.eval()
    ref = _logits(model, tok)
    rewritten = copy.deepcopy(model)
    assert first_token.rewrite(rewritten)
    assert isinstance(rewritten.bert.encoder.layer[-1], first_token.FirstTokenLayer)
    assert torch.allclose(_logits(rewritten, tok), ref, atol=1e-5)
    assert first_token.supported(rewritten) == "already rewritten"
    assert not first_token.rewrite(rewritten)
    # the unused key/value weights are gone, the rest of the model is untouched
    names = dict(rewritten.named_parameters())
    assert not any(".self.key." in n or ".self.value." in n for n in names if f".layer.{layers - 1}." in n)


def test_same_logits_after_head_pruning(tmp_path):
    model, tok, _ = load_classifier_folder(_tiny(tmp_path / "m", layers=2, heads=4, seed=1))
    model.eval()
    model.prune_heads({1: [0, 2]})  # the last layer keeps 2 of 4 heads: its head count differs from the config
    ref = _logits(model, tok)
    first_token.rewrite(model)
    assert torch.allclose(_logits(model, tok), ref, atol=1e-5)


def test_roberta_is_rewritten_distilbert_is_not():
    from transformers import (
        DistilBertConfig,
        DistilBertForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    torch.manual_seed(0)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    roberta = RobertaForSequenceClassification(RobertaConfig(vocab_size=100, **small)).eval()
    with torch.no_grad():
        for name, p in roberta.named_parameters():
            if "LayerNorm" not in name and "embeddings" not in name:
                p.add_(torch.randn_like(p) * 0.3)
    ids = torch.randint(3, 100, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    with torch.no_grad():
        ref = roberta(input_ids=ids, attention_mask=mask).logits
        assert first_token.rewrite(roberta)
        assert torch.allclose(roberta(input_ids=ids, attention_mask=mask).logits, ref, atol=1e-5)
    distil = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=2))
    assert "not one whose head reads the first token" in first_token.supported(distil)
    assert not first_token.rewrite(distil)


def test_relative_positions_and_other_heads_are_left_alone(tmp_path):
    from transformers import BertConfig, BertForTokenClassification

    model, _, _ = load_classifier_folder(make_tiny_classifier(tmp_path / "m"))
    model.config.position_embedding_type = "relative_key"
    assert "relative" in first_token.supported(model)
    tagger = BertForTokenClassification(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2))
    assert "not a sequence classifier" in first_token.supported(tagger)


@pytest.mark.parametrize("layers", [1, 2])
def test_onnx_graph_fuses_the_other_layers_and_matches_pytorch(tmp_path, layers):
    folder = _tiny(tmp_path / "m", layers=layers, seed=2)
    raw = ot.export_onnx(folder, tmp_path / "raw.onnx")
    fused = ot.optimize_onnx(raw, tmp_path / "fused.onnx", num_heads=0, hidden_size=0)  # 1 layer: nothing to fuse
    assert fused.get("Attention", 0) == layers - 1
    assert ot.op_counts(tmp_path / "fused.onnx").get("Softmax") == 1  # the first-token layer's own
    model, tok, _ = load_classifier_folder(folder)
    ref = _logits(model.eval(), tok).numpy()
    for path in (raw, tmp_path / "fused.onnx"):
        got = ot.onnx_predict_logits(ot.session(path), tok, TEXTS, max_length=64, batch_size=4)
        assert np.abs(got - ref).max() < 1e-4
    full = ot.export_onnx(folder, tmp_path / "full.onnx", first_token=False)
    assert ot.op_counts(full).get("Softmax") == layers  # the switch really turns it off


def test_int8_paths_quantize_the_rewritten_layer(tmp_path):
    from mobilebert_kit.compression.ort_quant import Int8Dynamic, candidate_nodes, quantize
    from mobilebert_kit.devices import int8_linear

    folder = _tiny(tmp_path / "m", layers=2, seed=4)
    raw = ot.export_onnx(folder, tmp_path / "raw.onnx")
    ot.optimize_onnx(raw, tmp_path / "fused.onnx", num_heads=0, hidden_size=0)
    names = candidate_nodes(tmp_path / "fused.onnx", Int8Dynamic())
    assert any(ot.FIRST_TOKEN_NODE in n for n in names)  # the folded key weight is an ordinary INT8 candidate
    model, tok, _ = load_classifier_folder(folder)
    model.eval()
    ref = _logits(model, tok).numpy()
    err = {}  # INT8's error against fp32, with and without the rewrite (tiny random models round coarsely)
    for rewrite in (True, False):
        raw = ot.export_onnx(folder, tmp_path / f"raw-{rewrite}.onnx", first_token=rewrite)
        ot.optimize_onnx(raw, tmp_path / f"fused-{rewrite}.onnx", num_heads=0, hidden_size=0)
        quantize(tmp_path / f"fused-{rewrite}.onnx", tmp_path / f"int8-{rewrite}.onnx", Int8Dynamic(per_channel=True))
        sess = ot.session(tmp_path / f"int8-{rewrite}.onnx")
        err[rewrite] = np.abs(ot.onnx_predict_logits(sess, tok, TEXTS, max_length=64, batch_size=1) - ref).max()
    assert 0 < err[True] < 2 * err[False] + 0.02
    ao = {}  # the same for torch.ao's INT8 Linear layers (the traced formats' INT8 path)
    for rewrite in (True, False):
        copied = copy.deepcopy(model)
        if rewrite:
            assert first_token.rewrite(copied)
        q = int8_linear(copied)  # swaps every Linear, the rewritten layer's own included
        if rewrite:
            assert type(q.bert.encoder.layer[-1].key_t).__module__.startswith("torch.ao")
        ao[rewrite] = max(np.abs(_logits(q, tok, [t]).numpy() - ref[i]).max() for i, t in enumerate(TEXTS))
    assert 0 < ao[True] < 2 * ao[False] + 0.02
