"""cpu_paths: fast dropout, eager attention, sparse word-embedding Adam and the CLS-only last layer compute
what the stock paths compute, are undone after training, and survive a checkpoint."""

import copy

import pytest
import torch
from conftest import make_tiny_classifier
from transformers import get_linear_schedule_with_warmup

from mobilebert_kit.batching import make_features
from mobilebert_kit.models import load_classifier_folder
from mobilebert_kit.training import cpu_paths
from mobilebert_kit.training.engine import TrainConfig, TrainModule, train


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_fast_dropout_drops_p_and_keeps_the_mean(p):
    torch.manual_seed(0)
    x = torch.ones(1000, 1000)
    y = cpu_paths.fast_dropout(x, p)
    dropped = (y == 0).float().mean().item()
    # 1M Bernoulli(p) draws: sd <= 0.0005, so 0.003 is > 6 sd
    assert abs(dropped - p) < 0.003
    assert abs(y.mean().item() - 1.0) < 0.01
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - p)))


def test_fast_dropout_is_seeded_and_identity_in_eval():
    d = cpu_paths.FastDropout(0.1)
    x = torch.randn(64, 48)
    torch.manual_seed(3)
    a = d(x)
    torch.manual_seed(3)
    assert torch.equal(a, d(x))
    assert not torch.equal(a, x)
    d.eval()
    assert d(x) is x
    assert torch.equal(cpu_paths.fast_dropout(x, 1.0), torch.zeros_like(x))


def _tiny(tmp_path):
    return load_classifier_folder(make_tiny_classifier(tmp_path / "tiny"))


def test_enable_then_restore_leaves_the_model_as_it_was(tmp_path):
    model, tok, _ = _tiny(tmp_path)
    before = {n: type(m) for n, m in model.named_modules()}
    impl = model.config._attn_implementation
    batch = tok(["a fine film", "bad"], padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        ref = model(**batch).logits
    paths = cpu_paths.enable(model, TrainConfig(sparse_embeddings=True), "cpu", 1)
    assert "fast dropout" in paths.names and "sparse word-embedding Adam" in paths.names
    assert model.bert.embeddings.word_embeddings.sparse
    assert any(isinstance(m, cpu_paths.FastDropout) for m in model.modules())
    assert impl == "sdpa" and "eager attention" in paths.names
    assert type(model.bert.encoder.layer[0].attention.self).__name__ == "BertSelfAttention"
    with torch.no_grad():  # the eager attention gives the same logits, padding mask included
        torch.testing.assert_close(model(**batch).logits, ref, atol=1e-5, rtol=1e-5)
    paths.restore()
    assert {n: type(m) for n, m in model.named_modules()} == before
    assert model.config._attn_implementation == impl
    assert not model.bert.embeddings.word_embeddings.sparse


def test_switches_off_and_other_devices_enable_nothing(tmp_path):
    model, _, _ = _tiny(tmp_path)
    off = TrainConfig(attention="sdpa", fast_dropout=False, sparse_embeddings=False, cls_only_last_layer=False)
    assert cpu_paths.enable(model, off, "cpu", 1).names == []
    assert cpu_paths.enable(model, TrainConfig(), "cuda", 1).names == []
    default = cpu_paths.enable(model, TrainConfig(), "cpu", 1)
    assert default.sparse_param is None and "fast dropout" in default.names  # sparse is opt-in
    assert "CLS-only last layer" in default.names
    default.restore()
    paths = cpu_paths.enable(model, TrainConfig(sparse_embeddings=True), "cpu", 2)  # DDP: no sparse gradients
    assert "sparse word-embedding Adam" not in paths.names
    paths.restore()
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)  # frozen: nothing to make sparse
    assert cpu_paths.enable(model, TrainConfig(sparse_embeddings=True), "cpu", 1).sparse_param is None


def _logits_and_grads(model, batch, labels):
    model.zero_grad()
    logits = model(**batch).logits
    torch.nn.functional.cross_entropy(logits, labels).backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("attention", ["auto", "sdpa"])  # eager, and SDPA's cross-attention branch
def test_cls_only_last_layer_gives_the_same_logits_and_gradients(tmp_path, attention):
    model, tok, _ = _tiny(tmp_path)
    model.eval()  # no dropout: the two runs would draw different masks
    batch = tok(["a fine film , truly", "bad", "not my kind of movie at all"], padding=True, return_tensors="pt")
    labels = torch.tensor([1, 0, 0])
    eager = cpu_paths.enable(model, TrainConfig(cls_only_last_layer=False, fast_dropout=False), "cpu", 1)
    ref_logits, ref_grads = _logits_and_grads(model, batch, labels)
    eager.restore()
    paths = cpu_paths.enable(model, TrainConfig(attention=attention, fast_dropout=False), "cpu", 1)
    assert "CLS-only last layer" in paths.names
    calls = []
    hook = model.bert.encoder.layer[-1].intermediate.register_forward_hook(lambda m, i, o: calls.append(o.shape))
    logits, grads = _logits_and_grads(model, batch, labels)
    assert calls[-1][1] == 1  # the last layer's feed-forward ran for one token, padding mask included
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    assert grads.keys() == ref_grads.keys()
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], atol=1e-5, rtol=1e-4, msg=name)
    with torch.no_grad():  # asked for states (intermediate KD): the layer runs in full, shapes intact
        out = model(**batch, output_hidden_states=True, output_attentions=True)
    width = batch["input_ids"].shape[1]
    assert out.hidden_states[-1].shape[1] == width and out.attentions[-1].shape[-2] == width
    assert calls[-1][1] == width
    torch.testing.assert_close(out.logits, ref_logits, atol=1e-5, rtol=1e-5)
    hook.remove()
    paths.restore()
    assert "forward" not in vars(model.bert.encoder.layer[-1]) and not model.bert.encoder._forward_pre_hooks


def _loss(model, batch):
    return torch.nn.functional.cross_entropy(model(input_ids=batch).logits, torch.tensor([0, 1, 1]))


def test_sparse_clip_matches_torch_on_the_dense_gradient(tmp_path):
    model, _, _ = _tiny(tmp_path)
    dense = copy.deepcopy(model)
    model.bert.embeddings.word_embeddings.sparse = True
    batch = torch.tensor([[1, 5, 7, 2], [1, 9, 9, 2], [1, 5, 3, 2]])
    for m in (model, dense):
        m.eval()
        _loss(m, batch).backward()
    assert model.bert.embeddings.word_embeddings.weight.grad.is_sparse
    ref = torch.nn.utils.clip_grad_norm_(dense.parameters(), 0.01)
    got = cpu_paths.clip_grad_norm(list(model.parameters()), 0.01)
    torch.testing.assert_close(got, ref)
    for (n, a), b in zip(model.named_parameters(), dense.parameters(), strict=True):
        ga = a.grad.to_dense() if a.grad.is_sparse else a.grad
        torch.testing.assert_close(ga, b.grad, msg=n)


def test_dense_and_sparse_adam_steps_schedules_and_round_trips(tmp_path):
    model, _, _ = _tiny(tmp_path)
    emb = model.bert.embeddings.word_embeddings
    emb.sparse = True
    rest = [p for p in model.parameters() if p is not emb.weight]
    opt = cpu_paths.DenseAndSparseAdam(torch.optim.AdamW(rest, lr=1e-2), torch.optim.SparseAdam([emb.weight], lr=1e-2))
    sched = get_linear_schedule_with_warmup(opt, 0, 4)
    batch = torch.tensor([[1, 5, 7, 2], [1, 9, 9, 2], [1, 5, 3, 2]])
    untouched = emb.weight[20].clone()
    touched = emb.weight[5].clone()
    _loss(model, batch).backward()
    opt.step()
    opt.zero_grad()
    sched.step()
    assert not torch.equal(emb.weight[5], touched)  # a row in the batch moved
    assert torch.equal(emb.weight[20], untouched)  # lazy Adam: a row outside it did not
    assert opt.dense.param_groups[0]["lr"] == opt.sparse.param_groups[0]["lr"] == pytest.approx(0.75e-2)
    saved = copy.deepcopy(opt.state_dict())
    opt2 = cpu_paths.DenseAndSparseAdam(torch.optim.AdamW(rest, lr=1e-2), torch.optim.SparseAdam([emb.weight], lr=1e-2))
    opt2.load_state_dict(saved)
    assert opt2.param_groups[-1] is opt2.sparse.param_groups[0]  # the scheduler still drives the inner groups
    torch.testing.assert_close(opt2.sparse.state[emb.weight]["exp_avg"], opt.sparse.state[emb.weight]["exp_avg"])


def test_training_uses_the_paths_and_hands_back_a_stock_model(tmp_path):
    model, tok, _ = _tiny(tmp_path)
    texts, labels = ["great movie", "awful film", "loved it", "dull"] * 4, [1, 0, 1, 0] * 4
    feats = make_features(tok, texts, None, labels, 16)
    cfg = TrainConfig(
        epochs=1, lr=1e-2, batch_size=4, checkpoint_every=0, early_stopping_patience=0, sparse_embeddings=True
    )
    before = {n: type(m) for n, m in model.named_modules()}
    emb0 = model.bert.embeddings.word_embeddings.weight.detach().clone()
    result = train(
        TrainModule(model), feats, feats, cfg, workdir=tmp_path / "w", pad_id=tok.pad_token_id, num_labels=2, quiet=True
    )
    assert "sparse word-embedding Adam" in result.cpu_paths and "fast dropout" in result.cpu_paths
    assert "CLS-only last layer" in result.cpu_paths and "forward" not in vars(model.bert.encoder.layer[-1])
    assert {n: type(m) for n, m in model.named_modules()} == before
    assert not model.bert.embeddings.word_embeddings.sparse
    assert not torch.equal(model.bert.embeddings.word_embeddings.weight, emb0)  # the embeddings did train
