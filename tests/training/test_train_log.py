"""Per-step training metrics (train_log.jsonl + TensorBoard): what a line holds, the interval, loss
terms, resume without lost or doubled lines, and event files TensorBoard itself reads back."""

import importlib.util
import json

import pytest
import torch

from mobilebert_kit.batching import TOKEN_KEYS, make_features
from mobilebert_kit.errors import Interrupted
from mobilebert_kit.models import load_classifier_folder
from mobilebert_kit.training.engine import TrainConfig, TrainModule, train
from mobilebert_kit.training.metrics_log import TENSORBOARD, TRAIN_LOG, read_log, truncate_log

TEXTS = ["great movie", "awful film, truly bad", "a wonderful story", "boring", "superb acting", "dull"] * 8
LABELS = [1, 0, 1, 0, 1, 0] * 8  # 48 rows: 6 batches of 8 per epoch

needs_tensorboard = pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None, reason="tensorboard not installed"
)


def two_term_loss(model, batch, extra):
    """Cross-entropy split into two weighted terms that sum to the loss (as distillation's do)."""
    inputs = {k: batch[k] for k in TOKEN_KEYS if k in batch}
    ce = torch.nn.functional.cross_entropy(model(**inputs).logits, batch["labels"])
    terms = {"a": 0.25 * ce, "b": 0.75 * ce}
    return terms["a"] + terms["b"], {k: v.detach() for k, v in terms.items()}


def _run(tiny_classifier_dir, workdir, loss_fn=two_term_loss, resume=False, **overrides):
    torch.manual_seed(0)
    model, tok, _ = load_classifier_folder(tiny_classifier_dir)
    feats = make_features(tok, TEXTS, None, LABELS, 32)
    opts = {"epochs": 2, "lr": 1e-3, "batch_size": 8, "checkpoint_every": 0, "early_stopping_patience": 0}
    cfg = TrainConfig(**{**opts, "warmup_ratio": 0.0, **overrides})
    return train(
        TrainModule(model, loss_fn),
        feats,
        feats,
        cfg,
        workdir=workdir,
        pad_id=tok.pad_token_id,
        num_labels=2,
        quiet=True,
        resume=resume,
        log_phase="demo",
    )


def test_lines_hold_loss_terms_lr_grad_norm_speed_and_eval_points(tiny_classifier_dir, tmp_path):
    result = _run(tiny_classifier_dir, tmp_path / "w", log_every=2)
    lines = read_log(result.log_dir / TRAIN_LOG)
    steps = [r for r in lines if r["kind"] == "step"]
    evals = [r for r in lines if r["kind"] == "eval"]
    assert [r["step"] for r in steps] == [2, 4, 6, 8, 10, 12]
    assert [(r["step"], r["epoch"]) for r in evals] == [(6, 1), (12, 2)]
    assert all(r["phase"] == "demo" for r in lines)
    for r in steps:
        assert r["batches"] == 2 and r["examples_per_second"] > 0 and r["grad_norm"] > 0
        assert r["loss_a"] + r["loss_b"] == pytest.approx(r["loss"], rel=1e-5)
        assert r["loss_a"] == pytest.approx(r["loss"] / 4, rel=1e-5)
    # linear decay from lr over 12 steps, no warm-up: step k trained at lr * (12 - (k - 1)) / 12
    assert [r["lr"] for r in steps] == pytest.approx([1e-3 * (13 - k) / 12 for k in (2, 4, 6, 8, 10, 12)])
    # the epoch's mean loss (history) is the mean of its lines' means (equal batch counts)
    hist = result.history
    assert hist[0]["train_loss"] == pytest.approx(sum(r["loss"] for r in steps[:3]) / 3, rel=1e-6)
    assert evals[0]["val_accuracy"] == hist[0]["val_accuracy"]


def test_log_every_zero_writes_nothing_and_a_plain_loss_logs_no_terms(tiny_classifier_dir, tmp_path):
    off = _run(tiny_classifier_dir, tmp_path / "off", log_every=0)
    assert off.log_dir is None and not (tmp_path / "off" / TRAIN_LOG).exists()
    plain = _run(tiny_classifier_dir, tmp_path / "plain", loss_fn=None, log_every=5, max_grad_norm=0.0)
    steps = [r for r in read_log(plain.log_dir / TRAIN_LOG) if r["kind"] == "step"]
    assert [(r["step"], r["batches"]) for r in steps] == [(5, 5), (6, 1), (10, 4), (12, 2)]  # + each epoch's end
    assert not any(k.startswith("loss_") for r in steps for k in r)
    assert all(r["grad_norm"] > 0 for r in steps)  # measured even without clipping


def test_resume_neither_loses_nor_doubles_lines(tiny_classifier_dir, tmp_path):
    whole = read_log(_run(tiny_classifier_dir, tmp_path / "whole", log_every=1, checkpoint_every=2).log_dir / TRAIN_LOG)
    calls = {"n": 0}

    def interrupted_at_batch_10(model, batch, extra):  # a Ctrl-C during step 10: checkpoint at 8, lines to 9
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return two_term_loss(model, batch, extra)

    work = tmp_path / "w"
    with pytest.raises(Interrupted):
        _run(tiny_classifier_dir, work, loss_fn=interrupted_at_batch_10, log_every=1, checkpoint_every=2)
    before = read_log(work / TRAIN_LOG)
    assert [r["step"] for r in before if r["kind"] == "step"] == list(range(1, 10))
    resumed = read_log(
        _run(tiny_classifier_dir, work, resume=True, log_every=1, checkpoint_every=2).log_dir / TRAIN_LOG
    )
    assert [(r["kind"], r["step"]) for r in resumed] == [(r["kind"], r["step"]) for r in whole]
    # exact resume: the same losses, step for step
    assert [r["loss"] for r in resumed if r["kind"] == "step"] == pytest.approx(
        [r["loss"] for r in whole if r["kind"] == "step"], rel=1e-5
    )


def test_truncate_keeps_steps_up_to_the_checkpoint_and_its_finished_epochs(tmp_path):
    log = tmp_path / TRAIN_LOG
    rows = [{"kind": "step", "step": s, "epoch": 1 + (s > 3)} for s in range(1, 6)]
    rows.insert(3, {"kind": "eval", "step": 3, "epoch": 1})
    log.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"kind": "st')  # a torn last line
    assert truncate_log(log, step=4, epochs=1) == 1
    assert [(r["kind"], r["step"]) for r in read_log(log)] == [
        ("step", 1),
        ("step", 2),
        ("step", 3),
        ("eval", 3),
        ("step", 4),
    ]
    assert truncate_log(log, step=3, epochs=0) == 2  # the epoch-1 evaluation came after that checkpoint


@needs_tensorboard
def test_tensorboard_reads_the_scalars_back(tiny_classifier_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = _run(tiny_classifier_dir, tmp_path / "w", log_every=3)
    acc = EventAccumulator(str(result.log_dir / TENSORBOARD))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/loss_a", "train/loss_b", "train/lr", "train/grad_norm", "eval/accuracy"} <= tags
    lines = [r for r in read_log(result.log_dir / TRAIN_LOG) if r["kind"] == "step"]
    events = acc.Scalars("train/loss")
    assert [e.step for e in events] == [r["step"] for r in lines]
    assert [e.value for e in events] == pytest.approx([r["loss"] for r in lines], rel=1e-6)
    assert [e.step for e in acc.Scalars("eval/accuracy")] == [6, 12]
