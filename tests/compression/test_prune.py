"""Pruning and vocabulary trimming on tiny BERTs: exact sparsity, real shape changes that reload,
importance-ranked removal, tokenization round trips."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_classifier

from mobilebert_kit.compression import surgery as prune
from mobilebert_kit.errors import ConfigError
from mobilebert_kit.models import count_parameters, load_classifier_folder

TEXTS = ["a wonderful, moving film", "a dull, boring mess", "great fun", "terrible acting and a bad script"]


@pytest.fixture()
def tiny4(tmp_path):
    """Fresh 2-layer, hidden-32, 4-head classifier (writable)."""
    return make_tiny_classifier(tmp_path / "m", heads=4)


def _logits(model, tok, texts):
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_unstructured_exact_sparsity_and_permanent(tiny4, scope):
    model, _, _ = load_classifier_folder(tiny4)
    report = prune.prune_unstructured(model, 0.3, scope)
    linears = prune.encoder_linears(model)
    assert len(linears) == 12  # 2 layers x (q, k, v, attn out, ffn in, ffn out)
    total = sum(m.weight.numel() for _, m in linears)
    zeros = sum(int((m.weight == 0).sum()) for _, m in linears)
    per_layer = sum(round(0.3 * m.weight.numel()) for _, m in linears)
    assert zeros == report["zeros"] == (round(0.3 * total) if scope == "global" else per_layer)
    assert report["overall_sparsity"] == zeros / total
    if scope == "layer":
        for name, m in linears:
            assert int((m.weight == 0).sum()) == round(0.3 * m.weight.numel()), name
            assert report["layers"][name] == pytest.approx(0.3, abs=1 / m.weight.numel())
    # permanent: no masks, no re-parametrisation hooks, plain parameters
    assert not any(k.endswith(("weight_orig", "weight_mask")) for k in model.state_dict())
    assert all(not m._forward_pre_hooks for _, m in linears)
    assert "no size or speed gain" in report["note"] or "do not change" in report["note"]


def test_unstructured_zero_amount_is_noop_and_bad_amount_refused(tiny4):
    model, _, _ = load_classifier_folder(tiny4)
    assert prune.prune_unstructured(model, 0.0)["zeros"] == 0
    with pytest.raises(ConfigError, match=r"--prune must be in \[0, 1\), got 1.0"):
        prune.prune_unstructured(model, 1.0)
    with pytest.raises(ConfigError, match="--prune-scope must be one of global, layer"):
        prune.prune_unstructured(model, 0.2, "row")


def test_structured_pruning_shrinks_and_reloads(tiny4, tmp_path):
    model, tok, _ = load_classifier_folder(tiny4)
    before = count_parameters(model)
    batches = prune.training_batches(model, tok, TEXTS * 4, [1, 0, 1, 0] * 4, None, 32, 8)
    report = prune.prune_structured(model, heads_fraction=0.5, ffn_fraction=0.25, batches=batches)
    layer = model.bert.encoder.layer[0]
    assert layer.attention.self.query.weight.shape == (16, 32)  # 2 of 4 heads (head size 8) left
    assert layer.attention.output.dense.weight.shape == (32, 16)
    assert layer.intermediate.dense.weight.shape == (48, 32)  # 64 -> 48 neurons
    assert layer.output.dense.weight.shape == (32, 48)
    assert report["params_after"] == count_parameters(model) < before
    assert all(len(v) == 2 for v in report["heads_removed"].values())
    expected = _logits(model, tok, TEXTS)

    out = tmp_path / "pruned"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "labels.json").write_text((tiny4 / "labels.json").read_text())
    reloaded, tok2, _ = load_classifier_folder(out)
    assert reloaded.config.intermediate_size == 48
    assert {int(k): sorted(v) for k, v in reloaded.config.pruned_heads.items()} == {
        int(k): v for k, v in report["heads_removed"].items()
    }
    assert count_parameters(reloaded) == report["params_after"]
    torch.testing.assert_close(_logits(reloaded, tok2, TEXTS), expected)


def test_structured_removes_least_important(tiny4):
    model, _, _ = load_classifier_folder(tiny4)
    heads = [[5.0, 0.1, 3.0, 4.0], [0.2, 9.0, 8.0, 0.3]]
    neurons = [[float(i) for i in range(64)], [float(-i) for i in range(64)]]  # layer 1: high index = least important
    keep_l1 = model.bert.encoder.layer[1].intermediate.dense.weight[:32].clone()
    report = prune.prune_structured(model, 0.5, 0.5, None, importance=(heads, neurons))
    assert report["heads_removed"] == {"0": [1, 2], "1": [0, 3]}
    # layer 1 kept neurons 0..31 (the highest scores), in order
    torch.testing.assert_close(model.bert.encoder.layer[1].intermediate.dense.weight, keep_l1)


def test_global_head_scope_ranks_across_layers_and_keeps_one_per_layer(tiny4):
    neurons = [[float(i) for i in range(64)]] * 2
    heads = [[5.0, 0.1, 3.0, 4.0], [0.2, 9.0, 0.25, 0.3]]  # layer 1: three heads far below its best
    model, _, _ = load_classifier_folder(tiny4)
    report = prune.prune_structured(model, 0.5, 0.0, None, importance=(heads, neurons), heads_scope="global")
    # same total as per-layer pruning (2 x 2), scores divided by each layer's L2 norm before ranking
    assert report["heads_removed"] == {"0": [1], "1": [0, 2, 3]} and report["heads_scope"] == "global"
    assert report["heads_per_layer"] == [3, 1]
    model, _, _ = load_classifier_folder(tiny4)
    report = prune.prune_structured(model, 0.75, 0.0, None, importance=(heads, neurons), heads_scope="global")
    assert report["heads_per_layer"] == [1, 1]  # 6 of 8: layer 1 may give only 3, so layer 0 gives 3


def test_global_head_scope_as_a_compression_step():
    from mobilebert_kit.compression import plan_problems
    from mobilebert_kit.compression.pruning import PruneFfn, PruneHeads

    fused = PruneHeads(fraction=0.5, scope="global").fuse(PruneFfn(fraction=0.6))
    assert (fused.heads, fused.ffn, fused.heads_scope) == (0.5, 0.6, "global")
    assert PruneFfn(fraction=0.6).fuse(PruneHeads(fraction=0.5, scope="global")).heads_scope == "global"
    assert plan_problems([{"method": "prune_heads", "fraction": 0.5, "scope": "global"}]) == []
    (problem,) = plan_problems([{"method": "prune_heads", "fraction": 0.5, "scope": "row"}])
    assert "scope must be one of layer, global; got 'row'" in problem


def test_pruning_all_heads_refused(tmp_path):
    model, _, _ = load_classifier_folder(make_tiny_classifier(tmp_path / "m2", heads=2))
    with pytest.raises(ConfigError, match="would remove all 2 attention heads of every layer"):
        prune.prune_structured(model, 0.9, 0.0, None)
    with pytest.raises(ConfigError, match="removes no attention head"):
        prune.prune_structured(model, 0.2, 0.0, None)
    with pytest.raises(ConfigError, match=r"--prune-ffn must be in \[0, 1\)"):
        prune.prune_structured(model, 0.0, 1.5, None)


def test_trim_vocab_round_trips_in_vocab_text(tiny4, tmp_path):
    model, tok, _ = load_classifier_folder(tiny4)
    corpus = TEXTS + ["a film with great acting", "unbelievably tedious"]
    expected = _logits(model, tok, corpus)
    old_tokens = [tok.tokenize(t) for t in corpus]
    new_tok, report = prune.trim_vocabulary(model, tok, corpus, tmp_path / "tok", eval_texts=["a great film", "zebra"])
    assert report["vocab_before"] == 30522 and report["vocab_after"] == len(new_tok) < 60
    assert model.config.vocab_size == len(new_tok) == model.bert.embeddings.word_embeddings.num_embeddings
    assert report["bytes_saved_fp32"] == (30522 - len(new_tok)) * 32 * 4
    assert 0 < report["eval_token_coverage"] < 1  # "zebra" is not in the corpus
    for text, old in zip(corpus, old_tokens):  # same pieces, and the same predictions through the sliced table
        assert new_tok.tokenize(text) == old
    torch.testing.assert_close(_logits(model, new_tok, corpus), expected)
    assert tok.tokenize("zebra") == ["zebra"] and new_tok.tokenize("zebra") == ["[UNK]"]  # out of corpus
    assert new_tok.convert_ids_to_tokens(new_tok("great")["input_ids"]) == ["[CLS]", "great", "[SEP]"]
    assert model.config.pad_token_id == new_tok.pad_token_id == 0
    # files a phone tokenizer needs, with the same normalisation
    assert (tmp_path / "tok" / "vocab.txt").read_text().splitlines() == [
        new_tok.convert_ids_to_tokens(i) for i in range(len(new_tok))
    ]
    assert new_tok.tokenize("GREAT Fun") == ["great", "fun"]
