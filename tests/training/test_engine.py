"""The training engine's switches, each checked for its real effect on a tiny BERT."""

import signal
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_classifier

from mobilebert_kit.batching import Collator, FeatureDataset, batch_order, make_features
from mobilebert_kit.errors import TrainingError
from mobilebert_kit.models import load_classifier_folder
from mobilebert_kit.training.engine import TrainConfig, TrainModule, default_loss, resolve_precision, train

TEXTS = [
    "great movie",
    "awful film, truly bad",
    "a wonderful and moving story about love",
    "boring",
    "the acting was superb and the script sharp",
    "dull dull dull",
    "loved it",
    "a painful, ugly and long slog",
] * 8
LABELS = [1, 0, 1, 0, 1, 0, 1, 0] * 8


@pytest.fixture()
def setup(tmp_path, tiny_classifier_dir):
    def make(**overrides):
        torch.manual_seed(0)
        model, tok, names = load_classifier_folder(tiny_classifier_dir)
        model.config.hidden_dropout_prob = 0.1
        feats = make_features(tok, TEXTS, None, LABELS, 32)
        cfg = TrainConfig(
            **{
                "epochs": 2,
                "lr": 1e-2,
                "batch_size": 8,
                "checkpoint_every": 0,
                "early_stopping_patience": 0,
                **overrides,
            }
        )
        return model, tok, feats, cfg

    return make


def _train(model, tok, feats, cfg, workdir, loss_fn=None, **kw):
    return train(
        TrainModule(model, loss_fn),
        feats,
        feats,
        cfg,
        workdir=workdir,
        pad_id=tok.pad_token_id,
        num_labels=2,
        quiet=True,
        **kw,
    )


def test_batch_order_deterministic_and_grouped():
    lengths = [i % 37 + 1 for i in range(1000)]
    a = batch_order(lengths, 16, seed=1, epoch=0, group_by_length=True)
    assert a == batch_order(lengths, 16, seed=1, epoch=0, group_by_length=True)
    assert a != batch_order(lengths, 16, seed=1, epoch=1, group_by_length=True)
    assert sorted(i for b in a for i in b) == list(range(1000))
    plain = batch_order(lengths, 16, seed=1, epoch=0, group_by_length=False)
    pad = lambda bs: sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in bs)  # noqa: E731
    assert pad(a) < 0.2 * pad(plain)  # length grouping removes most padding
    first = batch_order(lengths, 16, seed=1, epoch=0, group_by_length=True, longest_first=True)[0]
    assert max(lengths[i] for i in first) == max(lengths)


def test_collator_dynamic_vs_fixed_padding():
    rows = [
        {"input_ids": [101, 5, 102], "attention_mask": [1, 1, 1], "labels": 1},
        {"input_ids": [101, 102], "attention_mask": [1, 1], "labels": 0},
    ]
    dyn = Collator(0, 64, dynamic=True)(rows)
    fixed = Collator(0, 64, dynamic=False)(rows)
    assert dyn["input_ids"].shape == (2, 3) and fixed["input_ids"].shape == (2, 64)
    assert dyn["attention_mask"][1].tolist() == [1, 1, 0]
    assert dyn["labels"].tolist() == [1, 0]
    # per-token extras (sequence on dim 0) are padded; per-example extras stacked
    rows[0]["teacher_logits"], rows[1]["teacher_logits"] = [0.1, 0.9], [0.8, 0.2]
    rows[0]["hid"], rows[1]["hid"] = torch.ones(3, 4), torch.ones(2, 4)
    out = Collator(0, 64, dynamic=True)(rows)
    assert out["teacher_logits"].shape == (2, 2) and out["hid"].shape == (2, 3, 4)
    assert out["hid"][1, 2].abs().sum() == 0


def test_precision_resolution_on_cpu(monkeypatch):
    from mobilebert_kit import devices

    monkeypatch.delenv(devices.PRECISION_ENV, raising=False)
    assert resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(TrainingError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16", "cpu")
    # a CPU without native bf16: auto is fp32, and bf16 is refused (emulated, ~20x slower)
    monkeypatch.setattr(devices, "cpu_bf16_flags", lambda: [])
    assert devices.choose_precision("auto", "cpu") == (
        "fp32",
        "CPU has no native bf16 (avx512_bf16/amx_bf16); bf16 autocast would be emulated",
    )
    with pytest.raises(TrainingError, match="bf16 on this CPU .* ~20x slower"):
        resolve_precision("bf16", "cpu")
    # a CPU with avx512_bf16: auto is bf16 autocast, said in one line with the reason
    monkeypatch.setattr(devices, "cpu_bf16_flags", lambda: ["avx512_bf16"])
    choice = devices.choose_precision("auto", "cpu")
    assert choice == ("bf16", "CPU has avx512_bf16")
    assert devices.precision_line(*choice) == "precision: bf16 autocast (CPU has avx512_bf16)"
    assert resolve_precision("bf16", "cpu") == "bf16"
    # the override: MBK_PRECISION=fp32 forces fp32 under auto; an explicit --precision still wins
    monkeypatch.setenv(devices.PRECISION_ENV, "fp32")
    assert devices.choose_precision("auto", "cpu") == ("fp32", "MBK_PRECISION=fp32")
    assert devices.choose_precision("bf16", "cpu") == ("bf16", "requested")
    monkeypatch.setenv(devices.PRECISION_ENV, "fp8")
    with pytest.raises(TrainingError, match="MBK_PRECISION='fp8' is not a precision"):
        devices.choose_precision("auto", "cpu")


def test_cpu_bf16_flags_read_from_cpuinfo(monkeypatch, tmp_path):
    import builtins

    from mobilebert_kit import devices

    real_open = builtins.open
    fake = tmp_path / "cpuinfo"

    def fake_open(path, *a, **k):
        return real_open(fake if path == "/proc/cpuinfo" else path, *a, **k)

    monkeypatch.setattr(builtins, "open", fake_open)
    fake.write_text("flags\t\t: fpu sse avx2 avx512f avx512_vnni\n")
    assert devices.cpu_bf16_flags() == [] and not devices.cpu_has_native_bf16()
    fake.write_text("flags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert devices.cpu_bf16_flags() == ["avx512_bf16", "amx_bf16"]


@pytest.mark.parametrize("bf16", [False, True])
def test_auto_precision_trains_evaluates_and_resumes(setup, tmp_path, monkeypatch, bf16):
    """Both branches of ``auto`` on CPU run through the engine: a step, evaluation, the recorded decision, and an
    interrupted run resumed exactly. The bf16 branch runs real bf16 autocast; without native bf16 it is emulated,
    slow but correct, which is enough for a tiny BERT."""
    from mobilebert_kit import devices

    monkeypatch.delenv(devices.PRECISION_ENV, raising=False)
    monkeypatch.setattr(devices, "cpu_bf16_flags", lambda: ["avx512_bf16"] if bf16 else [])
    lines: list[str] = []
    model, tok, feats, cfg = setup(epochs=2, checkpoint_every=4)
    r = _train(model, tok, feats, cfg, tmp_path / "w", log=lines.append)
    want = ("bf16", "CPU has avx512_bf16") if bf16 else ("fp32", devices.choose_precision("auto", "cpu")[1])
    assert (r.precision, r.precision_reason) == want
    assert devices.precision_line(*want) in lines
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]
    assert all("val_macro_f1" in h for h in r.history)  # evaluated every epoch
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast: the weights stay fp32
    full = {k: v.clone() for k, v in model.state_dict().items()}
    # the same run interrupted (Ctrl-C) after 5 optimizer steps, then resumed: identical weights to the uninterrupted one
    from mobilebert_kit.errors import Interrupted

    model2, tok, feats, cfg2 = setup(epochs=2, checkpoint_every=4)
    monkeypatch.setenv("MBK_INTERRUPT_AT_STEP", "5")
    # Python's Ctrl-C handler, as an interactive run has it (a suite started in the background inherits SIGINT
    # ignored, and then the interrupt would never land)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(Interrupted, match="--resume"):
            _train(model2, tok, feats, cfg2, tmp_path / "w2")
    finally:
        signal.signal(signal.SIGINT, before)
    monkeypatch.delenv("MBK_INTERRUPT_AT_STEP")
    model3, tok, feats, cfg3 = setup(epochs=2, checkpoint_every=4)
    r3 = _train(model3, tok, feats, cfg3, tmp_path / "w2", resume=True)
    assert r3.resumed_from is not None
    assert all(torch.equal(full[k], v) for k, v in model3.state_dict().items())


def test_training_learns_and_keeps_best_epoch(setup, tmp_path):
    model, tok, feats, cfg = setup(epochs=4)
    r = _train(model, tok, feats, cfg, tmp_path / "w")
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]
    assert r.best_metric == max(h["val_macro_f1"] for h in r.history)
    assert r.history[r.best_epoch - 1]["val_macro_f1"] == r.best_metric
    assert r.best_metric > 0.9  # this tiny task is learnable


def test_freeze_layers_freezes_embeddings_and_lower_layers(setup, tmp_path):
    model, tok, feats, cfg = setup(epochs=1, freeze_layers=1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _train(model, tok, feats, cfg, tmp_path / "w")
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert not any(n.startswith(("bert.embeddings", "bert.encoder.layer.0.")) for n in changed)
    assert any(n.startswith("bert.encoder.layer.1.") for n in changed)
    assert "classifier.weight" in changed


def test_freeze_embeddings_alone(setup, tmp_path):
    """--freeze-embeddings keeps the embeddings (and only them) fixed: every encoder layer still trains."""
    model, tok, feats, cfg = setup(epochs=1, freeze_embeddings=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    r = _train(model, tok, feats, cfg, tmp_path / "w")
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert not any(n.startswith("bert.embeddings") for n in changed)
    assert any(n.startswith("bert.encoder.layer.0.") for n in changed) and "classifier.weight" in changed
    assert all(p.requires_grad for p in model.parameters())  # unfrozen again for whoever uses the model next
    assert r.steps == 8


def test_grad_accum_reduces_optimizer_steps(setup, tmp_path):
    model, tok, feats, cfg = setup(epochs=1, grad_accum=4)
    r = _train(model, tok, feats, cfg, tmp_path / "w")
    assert r.steps == 64 // 8 // 4


def test_gradient_checkpointing_same_losses_and_really_used(setup, tmp_path, monkeypatch):
    import transformers.modeling_utils as ckpt  # HF binds torch.utils.checkpoint.checkpoint at import

    model, tok, feats, cfg = setup(epochs=1)
    base = _train(model, tok, feats, cfg, tmp_path / "a")
    calls = []
    real = ckpt.checkpoint
    monkeypatch.setattr(ckpt, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    model, tok, feats, cfg = setup(epochs=1, gradient_checkpointing=True)
    gc = _train(model, tok, feats, cfg, tmp_path / "b")
    assert calls, "gradient checkpointing was not used"
    assert gc.history[0]["train_loss"] == pytest.approx(base.history[0]["train_loss"], rel=1e-5)
    assert not model.is_gradient_checkpointing  # switched off again for saving/inference


def test_num_workers_give_identical_training(setup, tmp_path):
    model, tok, feats, cfg = setup(epochs=1)
    a = _train(model, tok, feats, cfg, tmp_path / "a")
    model, tok, feats, cfg = setup(epochs=1, num_workers=2)
    b = _train(model, tok, feats, cfg, tmp_path / "b")
    assert a.history[0]["train_loss"] == pytest.approx(b.history[0]["train_loss"], rel=1e-6)


def test_auto_batch_size_backs_off_on_oom(setup, tmp_path):
    def oom_above_4(model, batch, extra):
        if batch["input_ids"].shape[0] > 4:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return default_loss(model, batch, extra)

    model, tok, feats, cfg = setup(epochs=1, batch_size=16, auto_batch_size=True)
    r = _train(model, tok, feats, cfg, tmp_path / "w", loss_fn=oom_above_4)
    assert (r.batch_size, r.grad_accum) == (4, 4)
    assert any("out of memory: retrying with batch_size 4 x grad_accum 4" in n for n in r.notes)
    model, tok, feats, cfg = setup(epochs=1, batch_size=16)
    with pytest.raises(RuntimeError, match="out of memory"):  # off: the error propagates
        _train(model, tok, feats, cfg, tmp_path / "x", loss_fn=oom_above_4)


def test_compile_trains_through_dynamo(setup, tmp_path, monkeypatch):
    import torch._dynamo

    compiled = []
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, **k: compiled.append(k) or real(m, **k))
    torch._dynamo.reset()
    model, tok, feats, cfg = setup(epochs=1, compile=True, compile_backend="eager", max_steps=3)
    r = _train(model, tok, feats, cfg, tmp_path / "w")
    assert compiled and compiled[0]["backend"] == "eager"
    assert r.steps == 3 and r.history[0]["train_loss"] > 0


@pytest.mark.slow
def test_compile_inductor_matches_eager_loss(setup, tmp_path):
    model, tok, feats, cfg = setup(epochs=1, max_steps=3)
    a = _train(model, tok, feats, cfg, tmp_path / "a")
    model, tok, feats, cfg = setup(epochs=1, compile=True, max_steps=3)
    b = _train(model, tok, feats, cfg, tmp_path / "b")
    assert b.history[0]["train_loss"] == pytest.approx(a.history[0]["train_loss"], rel=1e-3)


def test_early_stopping(setup, tmp_path):
    model, tok, feats, cfg = setup(epochs=6, lr=1e-9, early_stopping_patience=1)
    r = _train(model, tok, feats, cfg, tmp_path / "w")
    assert r.stopped_early and len(r.history) == 2


def test_resume_requires_checkpoint(setup, tmp_path):
    model, tok, feats, cfg = setup()
    with pytest.raises(TrainingError, match="no checkpoint found"):
        _train(model, tok, feats, cfg, tmp_path / "w", resume=True)


def test_feature_dataset_lengths(tiny_classifier_dir):
    _, tok, _ = load_classifier_folder(tiny_classifier_dir)
    ds = make_features(tok, ["a b c", "a"], None, [0, 1], 8, extras={"teacher_logits": [[0.0, 1.0], [1.0, 0.0]]})
    assert isinstance(ds, FeatureDataset) and ds.lengths == [5, 3]
    assert ds[0]["teacher_logits"] == [0.0, 1.0]


def test_tiny_dir_is_untouched(tiny_classifier_dir):
    assert (Path(tiny_classifier_dir) / "labels.json").exists() and make_tiny_classifier


def test_train_state_round_trips_with_the_state_json_keys():
    import json

    from mobilebert_kit.training.state import TrainState

    s = TrainState(fingerprint="abc")
    s.start_epoch()
    s.add_batch(0.5, 8)
    s.add_batch(0.25, 8)
    saved = json.loads(json.dumps(s.to_dict()))
    assert list(saved) == [
        "epoch",
        "batches_done",
        "global_step",
        "history",
        "best_metric",
        "best_epoch",
        "bad_epochs",
        "train_seconds",
        "examples_seen",
        "epoch_loss",
        "epoch_n",
        "fingerprint",
    ]
    back = TrainState.from_dict(saved)
    assert back == s and back.mean_loss == 0.375 and back.batches_done == 2


def test_evaluation_hook_keeps_best_epoch_and_stops_early(tmp_path):
    from mobilebert_kit.training.hooks import Evaluation
    from mobilebert_kit.training.state import TrainState

    scores = iter([0.5, 0.7, float("nan"), 0.6])
    logs: list[str] = []
    hook = Evaluation(
        lambda: {"macro_f1": next(scores), "n": 3},
        None,
        tmp_path,
        epochs=5,
        patience=2,
        writer=False,
        log=logs.append,
    )
    state = TrainState()
    stops = [hook.on_epoch_end(state) for _ in range(4)]
    assert stops == [False, False, False, True]  # a NaN epoch never counts as a gain
    assert (state.best_epoch, state.best_metric, state.epoch, state.bad_epochs) == (2, 0.7, 4, 2)
    assert all("val_n" not in r for r in state.history) and logs[1].endswith("| best")
    assert logs[-1] == "early stopping: no validation macro-F1 gain for 2 epochs"
