"""mbk distill: student initialisation, losses, the teacher-output cache, the stage end to end on a
tiny teacher, bad input, and (integration) the real MiniLM teacher into a 3-layer student."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_classifier, minilm_path

from mobilebert_kit.artifacts import read_json
from mobilebert_kit.errors import ConfigError
from mobilebert_kit.models import load_classifier_folder
from mobilebert_kit.stages import distill
from mobilebert_kit.stages.base import RunContext
from mobilebert_kit.training import students
from mobilebert_kit.training.losses import distillation_loss

FAST = [
    "--epochs",
    "3",
    "--lr",
    "1e-2",
    "--batch-size",
    "16",
    "--checkpoint-every",
    "0",
    "--early-stopping-patience",
    "0",
    "-q",
]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, sentiment_csv) -> Path:
    """A tiny 4-layer BERT fine-tuned on the sentiment csv with `mbk finetune` (so it has a real
    manifest recording its data and max length). Read-only."""
    from mobilebert_kit.data import DataConfig
    from mobilebert_kit.stages import finetune
    from mobilebert_kit.training.engine import TrainConfig

    root = tmp_path_factory.mktemp("distill")
    init = make_tiny_classifier(root / "init", layers=4, hidden=32, heads=2)
    # lr 3e-3 x 8 epochs: from random init, lr 1e-2 x 4 collapsed to one class in 2-3 of 5 seeds (on the stock
    # and on the CPU paths alike: which seeds depends on the random stream); this learned 14-16/16 in 5 of 5
    train = TrainConfig(epochs=8, lr=3e-3, batch_size=16, max_length=32, checkpoint_every=0, early_stopping_patience=0)
    return finetune.run(
        finetune.FinetuneConfig(
            model=str(init), data=DataConfig(data=str(sentiment_csv)), train=train, output=str(root / "teacher")
        ),
        RunContext(quiet=True),
    ).output


@pytest.fixture(scope="module")
def distilled(teacher_dir, tmp_path_factory):
    """`mbk distill` with defaults (every other layer = 0,2) on the tiny teacher."""
    from click.testing import CliRunner

    from mobilebert_kit.cli import main

    root = tmp_path_factory.mktemp("student")
    args = [
        "distill",
        "--teacher",
        str(teacher_dir),
        "--cache-dir",
        str(root / "cache"),
        "-o",
        str(root / "student"),
        *FAST,
    ]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return root / "student", root / "cache", args


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"temperature": 0}, "temperature must be in (0, inf), got 0"),
        ({"temperature": -1.5}, "temperature must be in (0, inf), got -1.5"),
        ({"alpha": 1.5}, "alpha must be in [0, 1], got 1.5"),
        ({"alpha": -0.1}, "alpha must be in [0, 1], got -0.1"),
        ({"layers": [0, 2, 2]}, "layers lists teacher layer 2 more than once; got 0,2,2"),
        ({"layers": [-1, 2]}, "layers must be teacher layer indices >= 0; got -1,2"),
        (
            {"layers": [0, 2], "student_config": {"hidden_size": 64}},
            "choose one student initialisation: layers or student_config, not both",
        ),
        ({"hidden_weight": -1}, "hidden_weight must be in [0, inf), got -1"),
        ({"layer_map": [1, 3]}, "layer_map only matters with hidden_weight or attention_weight > 0"),
        (
            {"teacher_precision": "fp16"},
            "teacher_precision must be one of fp32, int8, bf16, auto; got 'fp16' (did you mean 'bf16'?)",
        ),
    ],
)
def test_config_refuses_bad_values(kw, message):
    with pytest.raises(ConfigError) as e:
        distill.DistillConfig(**kw)
    assert str(e.value) == message


def test_config_from_dict_and_student_arch():
    cfg = distill.DistillConfig.from_dict(
        {"layers": "0,2,4", "temperature": "3", "alpha": 0.5, "student_config": None, "train": {"epochs": 1}}
    )
    assert cfg.layers == [0, 2, 4] and cfg.temperature == 3.0 and cfg.init_method == "layers"
    arch = distill.DistillConfig.from_dict({"student_config": {"hidden_size": 64, "num_heads": 4}})
    assert arch.init_method == "student_config" and arch.student_config.hidden_size == 64
    with pytest.raises(
        ConfigError, match="unknown key 'student_config.hiden_size' \\(did you mean 'student_config.hidden_size'\\?\\)"
    ):
        distill.DistillConfig.from_dict({"student_config": {"hiden_size": 64}})
    with pytest.raises(ConfigError, match="hidden_size \\(30\\) must be divisible by num_heads \\(4\\)"):
        distill.StudentArch(hidden_size=30, num_heads=4)


def test_default_layers_and_uniform_map():
    assert students.every_other_layer(6) == [0, 2, 4]
    assert students.every_other_layer(12) == [0, 2, 4, 6, 8, 10]
    assert students.uniform_layer_map(3, 6) == [1, 3, 5]
    assert students.uniform_layer_map(2, 4) == [1, 3]
    assert students.uniform_layer_map(4, 4) == [0, 1, 2, 3]


# --------------------------------------------------------------------------- student initialisation


def test_copy_layers_student_takes_exactly_those_weights(tmp_path):
    teacher, _, _ = load_classifier_folder(make_tiny_classifier(tmp_path / "t", layers=4, hidden=32, seed=3))
    student = students.copy_layers_student(teacher, [3, 0])
    assert student.config.num_hidden_layers == 2
    t, s = teacher.state_dict(), student.state_dict()
    for key in s:
        src = key.replace("layer.0.", "layer.3.") if "layer.0." in key else key.replace("layer.1.", "layer.0.")
        assert torch.equal(s[key], t[src]), key
    assert torch.equal(s["classifier.weight"], t["classifier.weight"])
    assert torch.equal(s["bert.embeddings.word_embeddings.weight"], t["bert.embeddings.word_embeddings.weight"])
    with pytest.raises(ConfigError, match="layers 4,7 out of range: the teacher has 4 layers \\(0..3\\)"):
        students.copy_layers_student(teacher, [0, 4, 7])


def test_same_tokenizer(tiny_classifier_dir):
    from transformers import AutoTokenizer

    a = AutoTokenizer.from_pretrained(tiny_classifier_dir)
    assert students.same_tokenizer(a, AutoTokenizer.from_pretrained(minilm_path()))
    assert not students.same_tokenizer(a, AutoTokenizer.from_pretrained(minilm_path(), do_lower_case=False))


# --------------------------------------------------------------------------- cached outputs + losses


TEXTS = ["a wonderful, moving film", "bad", "tedious and stupid, a painful slog of a movie", "great fun indeed"]


def _outputs(teacher, tok, folder, cache, hidden=(), attn=(), texts=TEXTS, log=None, progress=False, **kw):
    return distill.teacher_outputs(
        teacher,
        tok,
        list(texts),
        None,
        max_length=32,
        hidden_layers=list(hidden),
        attention_layers=list(attn),
        cache_dir=cache,
        slot={"teacher": str(folder), "role": "t"},
        teacher_sha=distill.teacher_weights_sha(folder),
        batch_size=3,
        device=torch.device("cpu"),
        log=log or (lambda m: None),
        progress=progress,
        **kw,
    )


def test_loss_is_zero_when_student_equals_teacher(tmp_path, teacher_dir):
    """A student holding all of the teacher's layers reproduces the cached logits, hidden states and
    attention maps token for token (padding included), so every distillation term is ~0; the hard
    term alone equals the cross-entropy."""
    from mobilebert_kit.batching import Collator, make_features

    folder = teacher_dir  # fine-tuned: its outputs are far from uniform
    teacher, tok, _ = load_classifier_folder(folder)
    student = students.copy_layers_student(teacher, [0, 1, 2, 3]).eval()
    out = _outputs(teacher, tok, folder, tmp_path / "c", hidden=[0, 1, 2, 3], attn=[0, 1, 2, 3])
    labels = [1, 0, 0, 1]
    feats = make_features(
        tok,
        TEXTS,
        None,
        labels,
        32,
        extras={"teacher_logits": list(out.logits), "teacher_hidden": out.hidden, "idx": [0, 1, 2, 3]},
    )
    batch = Collator(tok.pad_token_id, 32, dynamic=True)([feats[i] for i in range(4)])
    assert batch["teacher_hidden"].shape[:3] == (4, batch["input_ids"].shape[1], 4)
    loss = distillation_loss(3.0, 1.0, 1.0, 1.0, out.attentions)(student, batch, torch.nn.ModuleDict())
    assert float(loss) < 1e-6  # float16 rounding of the cached hidden states / maps only
    # a student with the layers in another order is measurably off on each term
    other = students.copy_layers_student(teacher, [3, 2, 1, 0]).eval()
    for kw in ({"alpha": 1.0}, {"alpha": 1.0, "hidden_weight": 1.0}, {"alpha": 1.0, "attention_weight": 1.0}):
        c = distill.DistillConfig(**kw)

        def fn(m, c=c):
            loss = distillation_loss(c.temperature, c.alpha, c.hidden_weight, c.attention_weight, out.attentions)
            return float(loss(m, batch, torch.nn.ModuleDict()))

        assert fn(other) > 100 * max(fn(student), 1e-9), kw
    hard = distillation_loss(3.0, 0.0)(student, batch, None)
    ce = torch.nn.functional.cross_entropy(
        student(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"]
        ).logits,
        batch["labels"],
    )
    assert float(hard) == pytest.approx(float(ce), rel=1e-5)


def test_soft_loss_matches_kl_times_t_squared(tmp_path):
    folder = make_tiny_classifier(tmp_path / "t", layers=2, hidden=32, seed=2)
    student, tok, _ = load_classifier_folder(folder)
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    teacher_logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-3.0, 1.0], [0.0, 0.0]])
    batch = {**enc, "teacher_logits": teacher_logits, "labels": torch.tensor([1, 0, 0, 1])}
    T = 3.0
    loss = distillation_loss(T, 1.0)(student, batch, None)
    s = student(**enc).logits
    p_t = torch.softmax(teacher_logits / T, -1)
    kl = (p_t * (p_t.log() - torch.log_softmax(s / T, -1))).sum(-1).mean() * T * T
    assert float(loss) == pytest.approx(float(kl), rel=1e-5)


def test_cache_hit_stale_and_corrupt(tmp_path):
    from safetensors import safe_open

    folder = make_tiny_classifier(tmp_path / "t", layers=2, hidden=32, seed=4)
    teacher, tok, _ = load_classifier_folder(folder)
    logs: list[str] = []
    first = _outputs(teacher, tok, folder, tmp_path / "c", hidden=[1], log=logs.append)
    assert first.status == "built" and Path(first.path).exists()
    with safe_open(first.path, framework="pt") as f:
        assert len(f.metadata()["key"]) == 64 and f.metadata()["n"] == "4"
    again = _outputs(teacher, tok, folder, tmp_path / "c", hidden=[1], log=logs.append)
    assert again.status == "hit" and again.path == first.path
    assert (again.logits == first.logits).all() and all((a == b).all() for a, b in zip(again.hidden, first.hidden))
    assert [h.shape for h in again.hidden] == [(len(tok(t)["input_ids"]), 1, 32) for t in TEXTS]

    # retrain (here: perturb) the teacher in place: same cache slot, new key -> stale, rebuilt, new numbers
    with torch.no_grad():
        teacher.classifier.weight.add_(1.0)
    teacher.save_pretrained(folder)
    stale = _outputs(teacher, tok, folder, tmp_path / "c", hidden=[1], log=logs.append)
    assert stale.status == "stale-rebuilt" and stale.path == first.path
    assert not (stale.logits == first.logits).all()
    assert any("teacher cache: stale" in m for m in logs)
    # other texts in the same slot are stale too
    assert _outputs(teacher, tok, folder, tmp_path / "c", hidden=[1], texts=TEXTS[:3]).status == "stale-rebuilt"

    Path(first.path).write_bytes(b"not a safetensors file")
    logs.clear()
    fixed = _outputs(teacher, tok, folder, tmp_path / "c", hidden=[1], log=logs.append)
    assert fixed.status == "stale-rebuilt" and "unreadable" in logs[0]
    assert not list((tmp_path / "c").glob(".*tmp"))  # atomic writes leave no temp files


def test_int8_teacher_pass_is_cached_apart_and_close_to_fp32(tmp_path, teacher_dir):
    """An INT8 teacher pass gets its own cache file (the fp32 one stays valid), leaves the teacher
    itself fp32, and gives outputs near the fp32 pass's but not identical to them (it did quantize)."""
    teacher, tok, _ = load_classifier_folder(teacher_dir)
    fp32 = _outputs(teacher, tok, teacher_dir, tmp_path / "c", hidden=[1])
    int8 = _outputs(teacher, tok, teacher_dir, tmp_path / "c", hidden=[1], precision="int8")
    assert int8.status == "built" and int8.path != fp32.path
    assert isinstance(teacher.classifier, torch.nn.Linear) and type(teacher.classifier) is torch.nn.Linear
    diff = float(np.abs(int8.logits - fp32.logits).max())
    assert 0 < diff < 0.1 * float(np.abs(fp32.logits).max())
    assert (int8.logits.argmax(-1) == fp32.logits.argmax(-1)).all()
    assert [h.shape for h in int8.hidden] == [h.shape for h in fp32.hidden]
    assert _outputs(teacher, tok, teacher_dir, tmp_path / "c", hidden=[1]).status == "hit"
    assert _outputs(teacher, tok, teacher_dir, tmp_path / "c", hidden=[1], precision="int8").status == "hit"


def test_int8_teacher_pass_is_a_cpu_path():
    from mobilebert_kit.devices import teacher_pass_precision

    assert teacher_pass_precision("int8", "cpu") == "int8"
    assert teacher_pass_precision("int8", "cuda") == "fp32"  # torch.ao's dynamic INT8 kernels are CPU-only
    assert teacher_pass_precision("fp32", "cpu") == "fp32"


def test_teacher_pass_plan_follows_the_device(monkeypatch):
    """What each --teacher-precision tries: bf16 only on a CPU with native bf16, auto = check and time both there
    and INT8 elsewhere, and a GPU pass runs the teacher as loaded."""
    from mobilebert_kit import devices
    from mobilebert_kit.training.teacher_precision import teacher_pass_plan

    monkeypatch.setattr(devices, "cpu_bf16_flags", lambda: ["avx512_bf16"])
    assert [teacher_pass_plan(p, "cpu") for p in ("fp32", "int8", "bf16", "auto")] == ["fp32", "int8", "bf16", "auto"]
    assert [teacher_pass_plan(p, "cuda") for p in ("int8", "bf16", "auto")] == ["fp32"] * 3
    monkeypatch.setattr(devices, "cpu_bf16_flags", lambda: [])
    assert [teacher_pass_plan(p, "cpu") for p in ("bf16", "auto")] == ["fp32", "int8"]


def test_bf16_teacher_pass_is_cached_apart_checked_and_close_to_fp32(tmp_path, teacher_dir):
    """A bf16 teacher pass runs the teacher under autocast (its weights stay fp32, untouched), is checked against
    fp32 on a sample, gets its own cache file, and its outputs are near the fp32 pass's but not identical."""
    teacher, tok, _ = load_classifier_folder(teacher_dir)
    fp32 = _outputs(teacher, tok, teacher_dir, tmp_path / "c", hidden=[1])
    bf16 = _outputs(teacher, tok, teacher_dir, tmp_path / "c", hidden=[1], precision="bf16")
    assert bf16.status == "built" and bf16.path != fp32.path
    assert bf16.int8_check["precision"] == "bf16" and bf16.int8_check["tried"][0]["kl"] <= bf16.int8_check["max_kl"]
    assert all(p.dtype == torch.float32 for p in teacher.parameters())
    diff = float(np.abs(bf16.logits - fp32.logits).max())
    assert 0 < diff < 0.1 * float(np.abs(fp32.logits).max())
    assert (bf16.logits.argmax(-1) == fp32.logits.argmax(-1)).all()
    assert _outputs(teacher, tok, teacher_dir, tmp_path / "c", hidden=[1], precision="bf16").status == "hit"


def test_auto_teacher_pass_keeps_the_faster_of_the_checked(teacher_dir, monkeypatch):
    """auto checks int8 and bf16, times both on the sample and keeps the faster that passed; one that fails the
    soft-label check is not a candidate however fast; none passing leaves the fp32 teacher."""
    from mobilebert_kit.training import int8_teacher as it
    from mobilebert_kit.training import teacher_precision as tp

    teacher, tok, _ = load_classifier_folder(teacher_dir)
    texts, lines = TEXTS * 10, []
    kw = {"plan": "auto", "max_length": 32, "temperature": 3.0, "log": lines.append}
    fast = {"int8": 2.0, "bf16": 1.0}
    monkeypatch.setattr(tp, "_timed_pass", lambda m, *a: fast["bf16" if type(m).__name__ == "Bf16Autocast" else "int8"])
    model, report = tp.checked_teacher(teacher, tok, texts, None, **kw)
    assert report["precision"] == "bf16" and type(model).__name__ == "Bf16Autocast"
    assert report["auto"]["seconds_on_sample"] == {"int8": 2.0, "bf16": 1.0}
    assert lines[-1].startswith("teacher pass: bf16 (auto: faster on") and "int8 2000 ms, bf16 1000 ms" in lines[-1]
    assert tp.as_checked(teacher, report).__class__.__name__ == "Bf16Autocast"
    fast.update(int8=0.5)
    model, report = tp.checked_teacher(teacher, tok, texts, None, **kw)
    assert report["precision"] == "int8" and model is not teacher
    failed = {"precision": "fp32", "sample": 80, "max_kl": it.MAX_KL, "fp32_layers": [], "tried": []}
    with monkeypatch.context() as m:  # the check, not the clock, rules a candidate out
        m.setattr(it, "int8_teacher", lambda model, *a, **k: (model, failed))
        model, report = tp.checked_teacher(teacher, tok, texts, None, **kw)
    assert report["precision"] == "bf16" and "int8 failed the soft-label check" in lines[-1]
    monkeypatch.setattr(it, "MAX_KL", -1.0)
    model, report = tp.checked_teacher(teacher, tok, texts, None, **kw)
    assert model is teacher and report["precision"] == "fp32"


def test_int8_teacher_check_keeps_outlier_layers_fp32_until_close(teacher_dir, monkeypatch):
    """The check ranks Linear layers by their inputs' max/RMS (a LayerNorm spike makes the next layer's
    inputs the worst), keeps the first k of them fp32 at the first step whose soft-label KL is within
    MAX_KL, and falls back to the fp32 teacher itself when no step is."""
    from mobilebert_kit.training import int8_teacher as it

    assert [len(it.sample_indices(n)) for n in (10, 1000, 10197, 10**6)] == [10, 64, 256, 256]
    teacher, tok, _ = load_classifier_folder(teacher_dir)
    with torch.no_grad():
        teacher.bert.encoder.layer[0].output.LayerNorm.weight[3] = 60.0
    texts = TEXTS * 20
    kw = {"max_length": 32, "temperature": 3.0, "log": lambda m: None}
    _, ratios = it._fp32_pass_with_input_ratios(teacher, tok, texts, None, 32)
    assert max(ratios, key=ratios.get).startswith("bert.encoder.layer.1.attention.self.")
    monkeypatch.setattr(it, "MAX_KL", -1.0)  # nothing passes
    model, strict = it.int8_teacher(teacher, tok, texts, None, **kw)
    assert model is teacher and strict["precision"] == "fp32" and strict["fp32_layers"] == []
    steps = [t["fp32_layers"] for t in strict["tried"]]
    assert steps == [k for k in it.FALLBACK_STEPS if k <= len(ratios)]
    kls = [t["kl"] for t in strict["tried"]]
    assert kls[0] > 0 and min(kls[1:]) < kls[0]  # keeping the outlier layers fp32 helps
    k = next(i for i, v in enumerate(kls) if v < kls[0])
    monkeypatch.setattr(it, "MAX_KL", kls[k])
    model, ok = it.int8_teacher(teacher, tok, texts, None, **kw)
    assert ok["precision"] == "int8" and len(ok["fp32_layers"]) == steps[k] and len(ok["tried"]) == k + 1
    assert ok["fp32_layers"] == sorted(ratios, key=ratios.get, reverse=True)[: steps[k]]
    assert model is not teacher and type(dict(model.named_modules())[ok["fp32_layers"][0]]) is torch.nn.Linear
    assert type(teacher.classifier) is torch.nn.Linear  # the teacher itself untouched


def test_long_inference_passes_show_progress(tmp_path, capsys):
    """A teacher pass (an MPNet teacher takes minutes over 10k texts) counts texts on stderr when asked,
    and prints nothing when not; the numbers are the same either way."""
    from mobilebert_kit.batching import predict_logits

    folder = make_tiny_classifier(tmp_path / "t", layers=2, hidden=32, seed=4)
    teacher, tok, _ = load_classifier_folder(folder)
    silent = predict_logits(teacher, tok, TEXTS, max_length=32)
    assert capsys.readouterr().err == ""
    shown = predict_logits(teacher, tok, TEXTS, max_length=32, progress="teacher logits")
    err = capsys.readouterr().err
    assert "teacher logits" in err and "4/4" in err and (silent == shown).all()
    _outputs(teacher, tok, folder, tmp_path / "c", hidden=[1], progress=True)
    assert "teacher pass" in capsys.readouterr().err


# --------------------------------------------------------------------------- the stage end to end


def test_help(cli):
    r = cli("distill", "--help")
    assert r.exit_code == 0
    for flag in (
        "--teacher",
        "--layers",
        "--student-config",
        "--temperature",
        "--alpha",
        "--hidden-weight",
        "--attention-weight",
        "--unlabeled",
        "--resume",
        "mbk distill --layers 0,2,4 --temperature 3 --alpha 0.5",
    ):
        assert flag in r.output


def test_distill_writes_a_standalone_student(distilled, teacher_dir):
    out, cache, _ = distilled
    for name in ("model.safetensors", "config.json", "labels.json", "metrics.json", "manifest.json", "tokenizer.json"):
        assert (out / name).exists(), name
    assert not (out.parent / "student.ckpt").exists()  # checkpoints removed after success
    model, tok, labels = load_classifier_folder(out)
    assert model.config.num_hidden_layers == 2 and labels == ["neg", "pos"]
    m = read_json(out / "metrics.json")
    assert m["student"]["layers"] == 2 and m["teacher"]["layers"] == 4
    # >= 13 of 16 test texts: P < 0.011 for a model at chance (a collapsed one scores 0.5)
    assert m["teacher"]["test"]["accuracy"] >= 0.8  # the tiny teacher learned the task...
    assert m["student"]["test"]["accuracy"] >= 0.8  # ...and so did its student
    assert m["retention"]["accuracy"] == pytest.approx(
        m["student"]["test"]["accuracy"] / m["teacher"]["test"]["accuracy"]
    )
    assert m["student"]["parameters"] < m["teacher"]["parameters"] and m["compression"]["parameters"] > 1
    assert m["teacher_cache"] == {**m["teacher_cache"], "train": "built", "eval": "built"}
    manifest = read_json(out / "manifest.json")
    teacher_manifest = read_json(teacher_dir / "manifest.json")
    assert manifest["stage"] == "distill" and manifest["data"] == teacher_manifest["data"]  # data from the lineage
    assert manifest["max_length"] == 32 == teacher_manifest["max_length"]
    assert manifest["teacher"] == str(teacher_dir)
    assert manifest["inputs"]["student_init"] == {"method": "layers", "layers": [0, 2]}
    assert manifest["config"]["temperature"] == 3.0 and manifest["config"]["alpha"] == 0.5
    # predictions of the saved student match what metrics.json reports
    from mobilebert_kit.batching import predict_logits
    from mobilebert_kit.data import DataConfig, load_dataset
    from mobilebert_kit.metrics import classification_metrics

    test = load_dataset(DataConfig.from_dict(manifest["data"])).splits["test"]
    logits = predict_logits(model, tok, test.texts, max_length=32)
    assert classification_metrics(logits, test.labels, 2)["accuracy"] == m["student"]["test"]["accuracy"]
    # ... and so do its saved per-text answers; the per-step log carries the loss's two terms
    preds = read_json(out / "test_predictions.json")
    assert preds["predicted"] == [int(x) for x in logits.argmax(-1)] and preds["labels"] == list(test.labels)
    lines = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in lines if r["kind"] == "step"]
    assert steps and all(r["loss_soft"] + r["loss_hard"] == pytest.approx(r["loss"], rel=1e-4) for r in steps)
    assert not any("phase" in r for r in lines)  # no transfer set here


def test_second_run_reuses_the_cache(distilled, cli, tmp_path):
    _, cache, args = distilled
    files = sorted(cache.iterdir())
    mtimes = [f.stat().st_mtime_ns for f in files]
    i = args.index("-o")
    r = cli(*args[:i], "-o", tmp_path / "s2", *args[i + 2 :], "--epochs", "1")
    assert r.exit_code == 0, r.output
    m = read_json(tmp_path / "s2" / "metrics.json")
    assert m["teacher_cache"]["train"] == "hit" and m["teacher_cache"]["eval"] == "hit"
    assert sorted(cache.iterdir()) == files and [f.stat().st_mtime_ns for f in files] == mtimes


def test_int8_teacher_pass_scores_the_teacher_in_fp32(distilled, cli, tmp_path):
    """The default INT8 teacher pass covers the training text only: validation/test come from the fp32
    teacher, so --teacher-precision fp32 rebuilds the training pass alone and the reported scores do not move."""
    out, _, args = distilled
    i = args.index("-o")
    r = cli(*args[:i], "-o", tmp_path / "s32", *args[i + 2 :], "--teacher-precision", "fp32")
    assert r.exit_code == 0, r.output
    m, base = read_json(tmp_path / "s32" / "metrics.json"), read_json(out / "metrics.json")
    assert (m["teacher_cache"]["train"], m["teacher_cache"]["eval"]) == ("built", "hit")
    assert m["teacher_cache"]["train_precision"] == "fp32" and base["teacher_cache"]["train_precision"] == "int8"
    check = base["teacher_cache"]["int8_check"]
    assert check["precision"] == "int8" and check["tried"][-1]["kl"] <= check["max_kl"]
    assert m["teacher_cache"]["int8_check"] is None
    assert m["teacher"]["test"] == base["teacher"]["test"]
    assert read_json(out / "manifest.json")["config"]["teacher_precision"] == "int8"
    assert read_json(tmp_path / "s32" / "manifest.json")["config"]["teacher_precision"] == "fp32"


def test_fresh_student_with_projection_and_attention_losses(teacher_dir, tmp_path, cli):
    r = cli(
        "distill",
        "-t",
        teacher_dir,
        "--student-config",
        "hidden_size=16,num_layers=2,num_heads=1,intermediate_size=32",
        "--hidden-weight",
        "1",
        "--attention-weight",
        "1",
        "--layer-map",
        "1,3",
        "--cache-dir",
        tmp_path / "c",
        "-o",
        tmp_path / "s",
        *FAST,
        "--epochs",
        "2",
        "--json",
    )
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["student"]["hidden_size"] == 16 and m["student"]["layers"] == 2
    assert all(h["train_loss"] > 0 for h in m["history"])
    assert m["history"][-1]["train_loss"] < m["history"][0]["train_loss"]
    manifest = read_json(tmp_path / "s" / "manifest.json")
    assert manifest["layer_map"] == [1, 3] and manifest["inputs"]["student_init"] == {"method": "student_config"}
    # the projection is a training aid, not part of the student
    model, _, _ = load_classifier_folder(tmp_path / "s")
    assert not any("proj" in k for k in model.state_dict())


def test_pretrained_student_and_data_overrides(teacher_dir, tmp_path, cli):
    student = make_tiny_classifier(tmp_path / "base", layers=3, hidden=32, seed=7)
    r = cli(
        "distill",
        "-t",
        teacher_dir,
        "--student",
        student,
        "--layers",
        "2",  # keep only the pretrained student's last layer
        "--max-train-examples",
        "40",
        "--alpha",
        "1",
        "--cache-dir",
        tmp_path / "c",
        "-o",
        tmp_path / "s",
        *FAST,
        "--epochs",
        "1",
        "--json",
    )
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["labeled_examples"] == 40 and m["student"]["layers"] == 1
    manifest = read_json(tmp_path / "s" / "manifest.json")
    assert manifest["data"]["max_train_examples"] == 40  # the user's option laid over the teacher's data
    assert manifest["data"]["data"] == read_json(teacher_dir / "manifest.json")["data"]["data"]
    assert manifest["inputs"]["student_init"]["method"] == "student"
    assert manifest["inputs"]["student_init"]["layers"] == [2]


def test_unlabeled_text_is_labelled_by_the_teacher(teacher_dir, tmp_path, cli):
    extra = tmp_path / "raw.txt"
    extra.write_text(
        "\n".join(["a joyful, wonderful film", "an ugly, boring mess", "", "funny and smart and great"] * 5)
    )
    r = cli(
        "distill",
        "-t",
        teacher_dir,
        "--unlabeled",
        extra,
        "--max-unlabeled",
        "12",
        "--cache-dir",
        tmp_path / "c",
        "-o",
        tmp_path / "s",
        *[a for a in FAST if a != "-q"],  # the log lines are checked
        "--epochs",
        "1",
    )
    assert r.exit_code == 0, r.output
    m = read_json(tmp_path / "s" / "metrics.json")
    assert m["unlabeled_examples"] == 12 and m["train_examples"] == m["labeled_examples"] + 12
    # the INT8 teacher pass over the unlabeled text applies the training text's check instead of checking again
    assert r.output.count("teacher pass: checking int8 against fp32") == 1, r.output
    assert m["teacher_cache"]["train_precision"] == "int8"
    lines = (tmp_path / "s" / "train_log.jsonl").read_text().splitlines()
    assert lines and all(json.loads(x)["phase"] == "transfer set" for x in lines)
    r = cli("distill", "-t", teacher_dir, "--unlabeled", "builtin", "-o", tmp_path / "s2", *FAST)
    assert r.exit_code == 1
    assert "has no built-in unlabeled text; pass --unlabeled FILE" in r.output and not (tmp_path / "s2").exists()


def test_kill_and_resume_gives_the_same_student(teacher_dir, tmp_path, cli):
    """kill -9 mid-run, then --resume: the engine's exact resume carries over to distillation
    (cached teacher outputs ride along with each example, so the resumed batches are identical)."""
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    common = [
        "distill",
        "-t",
        str(teacher_dir),
        "--cache-dir",
        str(tmp_path / "c"),
        "--hidden-weight",
        "1",
        *FAST,
        "--epochs",
        "2",
        "--checkpoint-every",
        "3",
    ]

    # every leg in a fresh process: the same thread count and library state for all three
    def run(*extra, env=None):
        return subprocess.run(
            [sys.executable, "-m", "mobilebert_kit", *map(str, common), *map(str, extra)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    r = run("-o", tmp_path / "straight")
    assert r.returncode == 0, r.stderr[-2000:]
    env = {**os.environ, "MBK_KILL_AT_STEP": "11"}
    p = subprocess.run(
        [sys.executable, "-m", "mobilebert_kit", *common, "-o", str(tmp_path / "resumed")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == -9, p.stderr[-2000:]
    assert not (tmp_path / "resumed").exists() and (tmp_path / "resumed.ckpt" / "checkpoints").is_dir()
    r = run("-o", tmp_path / "resumed", "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    assert read_json(tmp_path / "resumed" / "manifest.json")["resumed_from"].endswith("step-00000009")
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_resume_without_checkpoint(teacher_dir, tmp_path, cli):
    r = cli("distill", "-t", teacher_dir, "-o", tmp_path / "s", "--resume", *FAST)
    assert r.exit_code == 1 and "--resume: no checkpoint found" in r.output


# --------------------------------------------------------------------------- bad input: one Error line, nothing written


def _bad(cli, tmp_path, *args):
    r = cli("distill", *args, "-o", tmp_path / "s", "--cache-dir", tmp_path / "c", *FAST)
    assert r.exit_code != 0
    assert not (tmp_path / "s").exists() and not (tmp_path / "s.ckpt").exists() and not list(tmp_path.glob(".s.tmp-*"))
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    return lines[0]


def test_bad_teacher(cli, tmp_path):
    assert _bad(cli, tmp_path, "-t", tmp_path / "nope") == (
        f"Error: teacher folder {tmp_path / 'nope'} does not exist; run `mbk finetune` first or pass --teacher PATH"
    )
    base = tmp_path / "base"
    from transformers import BertConfig, BertModel

    BertModel(
        BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=1, intermediate_size=16)
    ).save_pretrained(base)
    assert "holds no sequence-classification head (architectures: ['BertModel'])" in _bad(cli, tmp_path, "-t", base)


def test_bad_options(cli, tmp_path, teacher_dir):
    t = ("-t", teacher_dir)
    assert _bad(cli, tmp_path, *t, "--layers", "0,4") == "Error: layers 4 out of range: the teacher has 4 layers (0..3)"
    assert _bad(cli, tmp_path, *t, "--layers", "1,1") == "Error: layers lists teacher layer 1 more than once; got 1,1"
    assert _bad(cli, tmp_path, *t, "--temperature", "0") == "Error: temperature must be in (0, inf), got 0.0"
    assert _bad(cli, tmp_path, *t, "--alpha", "1.5") == "Error: alpha must be in [0, 1], got 1.5"
    assert _bad(cli, tmp_path, *t, "--hidden-weight", "1", "--layer-map", "1,9") == (
        "Error: layer_map 9 out of range: the teacher has 4 layers (0..3)"
    )
    assert _bad(cli, tmp_path, *t, "--hidden-weight", "1", "--layer-map", "1") == (
        "Error: layer_map has 1 entries but the student has 2 layers; give one teacher layer per student layer"
    )
    r = cli("distill", *t, "--layers", "a,b", "-o", tmp_path / "s")
    assert r.exit_code == 2 and "expected comma-separated integers like 0,2,4" in r.output


def test_student_label_count_and_tokenizer_mismatch(cli, tmp_path, teacher_dir):
    three = make_tiny_classifier(tmp_path / "three", num_labels=3)
    assert _bad(cli, tmp_path, "-t", teacher_dir, "--student", three) == (
        f"Error: student {three} has 3 labels but the teacher has 2 (neg, pos); "
        "pass a student with 2 labels or a base model"
    )
    from transformers import AutoTokenizer

    cased = make_tiny_classifier(tmp_path / "cased")
    AutoTokenizer.from_pretrained(minilm_path(), do_lower_case=False).save_pretrained(cased)
    msg = _bad(cli, tmp_path, "-t", teacher_dir, "--student", cased, "--hidden-weight", "1")
    assert msg.startswith(
        f"Error: the student's tokenizer ({cased}) differs from the teacher's; hidden-state and attention "
        "losses compare token by token and need the same tokenizer"
    )


def test_data_labels_must_match_teacher(cli, tmp_path, teacher_dir):
    from conftest import write_sentiment_csv

    other = write_sentiment_csv(tmp_path / "ints.csv", label_kind="int")
    msg = _bad(cli, tmp_path, "-t", teacher_dir, "--data", other)
    assert msg.startswith("Error: the data's labels ['0', '1'] are not the labels of the teacher")
    assert "['neg', 'pos'] (matched by name); distill on the teacher's data (omit --data)" in msg


# --------------------------------------------------------------------------- integration: the real MiniLM teacher


@pytest.fixture(scope="session")
def real_teacher(request, tmp_path_factory) -> Path:
    """MiniLM-L6 fine-tuned on a few hundred Rotten Tomatoes reviews; shared with the other
    integration tests when conftest provides it."""
    try:
        return request.getfixturevalue("minilm_teacher_dir")
    except pytest.FixtureLookupError:
        pass
    from click.testing import CliRunner

    from mobilebert_kit.cli import main

    out = tmp_path_factory.mktemp("minilm") / "teacher"
    r = CliRunner().invoke(
        main,
        [
            "finetune",
            "--model",
            "minilm-l6",
            "--max-train-examples",
            "300",
            "--max-eval-examples",
            "200",
            "--epochs",
            "1",
            "--lr",
            "1e-4",
            "--batch-size",
            "16",
            "--max-length",
            "48",
            "-o",
            str(out),
            "-q",
        ],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.integration
def test_real_minilm_teacher_into_three_layers(real_teacher, cli, tmp_path):
    r = cli(
        "distill",
        "-t",
        real_teacher,
        "--layers",
        "0,2,4",
        "--temperature",
        "3",
        "--alpha",
        "0.5",
        "--epochs",
        "1",
        "--lr",
        "1e-4",
        "--batch-size",
        "16",
        "--cache-dir",
        tmp_path / "c",
        "-o",
        tmp_path / "s",
        "-q",
        "--json",
    )
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    t_acc, s_acc = m["teacher"]["test"]["accuracy"], m["student"]["test"]["accuracy"]
    assert m["student"]["layers"] == 3 and m["teacher"]["layers"] == 6 and m["student"]["hidden_size"] == 384
    assert 15e6 < m["student"]["parameters"] < m["teacher"]["parameters"] - 5e6  # 3 of 6 layers gone (~5.3M params)
    assert t_acc > 0.6  # a teacher that learned something from a few hundred reviews
    assert s_acc > 0.55 and m["test_agreement_with_teacher"] > 0.6  # the student follows it
    model, _, labels = load_classifier_folder(tmp_path / "s")
    assert labels == ["rotten", "fresh"] and model.config.num_hidden_layers == 3
    shutil.rmtree(tmp_path / "c")


def test_unlabeled_text_overlapping_evaluation_is_dropped_and_counted(teacher_dir, sentiment_csv, tmp_path, cli):
    """Any unlabeled source goes through the overlap guard (transfer.py): a validation/test text in a
    user's file is dropped and counted in the log and metrics.json; a file that is mostly the
    evaluation texts is refused with one Error line and no output."""
    from mobilebert_kit.data import DataConfig, load_dataset

    test_text = load_dataset(DataConfig(data=str(sentiment_csv))).splits["test"].texts[0]
    mine = [
        "a quiet film about two brothers at sea",
        "the score swells at all the wrong moments",
        "it runs long but the ending lands",
        "nobody in this cast looks bored",
    ]
    extra = tmp_path / "raw.txt"
    extra.write_text("\n".join([*mine, test_text]))
    r = cli(
        "distill",
        "-t",
        teacher_dir,
        "--unlabeled",
        extra,
        "--cache-dir",
        tmp_path / "c",
        "-o",
        tmp_path / "s",
        *[a for a in FAST if a != "-q"],
        "--epochs",
        "1",
    )
    assert r.exit_code == 0, r.output
    assert "5 windows (texts over max length cut into" in r.output and "1 dropped for overlap" in r.output
    m = read_json(tmp_path / "s" / "metrics.json")
    assert m["unlabeled_examples"] == 4 and m["transfer"]["dropped_for_overlap"] == 1 and m["transfer"]["kept"] == 4
    extra.write_text("\n".join([test_text] * 3 + mine[:1]))
    r = cli(
        "distill", "-t", teacher_dir, "--unlabeled", extra, "--cache-dir", tmp_path / "c", "-o", tmp_path / "s2", *FAST
    )
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "Error: 3 of 4 unlabeled texts from" in r.output and "overlap the validation/test texts" in r.output
    assert not (tmp_path / "s2").exists()


def test_intermediate_losses_on_a_transfer_set_too_big_for_memory_are_refused_first(
    teacher_dir, tmp_path, cli, monkeypatch
):
    """The hidden-state cache of every unlabeled text lives in memory: when it would not fit, one Error line
    before the teacher pass says so and how to fix it (not an out-of-memory kill an hour later)."""
    from mobilebert_kit.data import transfer

    monkeypatch.setattr(transfer, "available_memory_bytes", lambda: 1000)
    extra = tmp_path / "raw.txt"
    extra.write_text("a quiet film about two brothers at sea\nthe score swells at all the wrong moments\n")
    args = ["-t", teacher_dir, "--unlabeled", extra, "--hidden-weight", "1", "--cache-dir", tmp_path / "c"]
    r = cli("distill", *args, "-o", tmp_path / "s", *FAST)
    assert r.exit_code == 1 and "Traceback" not in r.output and not (tmp_path / "s").exists()
    assert "GiB of cached teacher states in memory" in r.output and "lower --max-unlabeled" in r.output
    assert not (tmp_path / "c").exists()  # refused before the teacher pass
