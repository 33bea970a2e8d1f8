"""`mbk finetune` end to end: artifacts, bad input, kill -9 + resume, data-parallel, real MiniLM."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_tiny_classifier, sigint_default, write_sentiment_csv

MBK = [sys.executable, "-m", "mobilebert_kit"]
FAST = ["--epochs", "4", "--lr", "1e-2", "--batch-size", "16", "--early-stopping-patience", "0"]


@pytest.fixture(scope="module")
def tiny4(tmp_path_factory):
    d = tmp_path_factory.mktemp("ft")
    return make_tiny_classifier(d / "tiny", layers=2), write_sentiment_csv(d / "d.csv", n=160)


def test_help_lists_commands_and_is_fast():
    out = subprocess.run([*MBK, "--help"], capture_output=True, text=True, check=True)
    assert "finetune" in out.stdout and "Fine-tune a BERT teacher" in out.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, mobilebert_kit.cli; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "False"  # --help never imports torch


def test_finetune_help_has_example(cli):
    r = cli("finetune", "--help")
    assert r.exit_code == 0 and "mbk finetune --resume" in r.output and "--freeze-layers" in r.output


def test_finetune_writes_complete_artifact(tiny4, tmp_path, cli):
    model, data = tiny4
    out = tmp_path / "teacher"
    r = cli(
        "finetune", "--model", model, "--data", data, *FAST, "-o", out, "--json", "--save-recipe", tmp_path / "r.yaml",
        "--log-every", "3",
        # the stock torch paths: this random-init tiny model's 16-text threshold depends on the random stream
        # (with eager attention + fast dropout it scored 14/16, and 8/16 with the CLS-only last layer added: same
        # gradients, other dropout draws); the CPU paths have tests/training/test_cpu_paths.py
        "--attention", "sdpa", "--no-fast-dropout", "--no-cls-only-last-layer",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["test"]["accuracy"] >= 0.9  # the easy task is learnt
    for f in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "vocab.txt",
        "labels.json",
        "metrics.json",
        "manifest.json",
    ):
        assert (out / f).exists(), f
    m = json.loads((out / "manifest.json").read_text())
    assert m["stage"] == "finetune" and m["max_length"] == 128 and m["data"]["data"] == str(data)
    assert m["inputs"]["data"]["sha256"][str(data)] and m["versions"]["torch"]
    assert set(m["files"]) >= {"model.safetensors", "labels.json"}
    assert not (tmp_path / "teacher.ckpt").exists()  # checkpoints cleaned after success
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".teacher")]
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 4 and metrics["history"][0]["examples_per_second"] > 0
    from transformers import AutoModelForSequenceClassification

    reloaded = AutoModelForSequenceClassification.from_pretrained(out)
    assert reloaded.config.id2label == {0: "neg", 1: "pos"}
    # the per-step log and the per-text test answers, recorded in the manifest; the answers give metrics' accuracy
    lines = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines if r["kind"] == "eval"] == [1, 2, 3, 4]
    assert all(r["step"] % 3 == 0 or r["batches"] < 3 for r in lines if r["kind"] == "step")
    preds = json.loads((out / "test_predictions.json").read_text())
    right = sum(p == y for p, y in zip(preds["predicted"], preds["labels"]))
    assert right / len(preds["labels"]) == pytest.approx(metrics["test"]["accuracy"])
    assert {"train_log.jsonl", "test_predictions.json"} <= set(m["files"])


def test_freeze_embeddings_switch_and_precision_recorded(tiny4, tmp_path, cli):
    """--freeze-embeddings reaches the engine (the saved embeddings equal the start's); the precision auto chose
    and why are in metrics.json and the manifest, as devices.choose_precision decides on this machine."""
    import torch
    from safetensors.torch import load_file

    from mobilebert_kit.devices import choose_precision

    model, data = tiny4
    out = tmp_path / "frozen"
    r = cli("finetune", "--model", model, "--data", data, *FAST, "--freeze-embeddings", "--max-steps", "2", "-o", out)
    assert r.exit_code == 0, r.output
    m = json.loads((out / "manifest.json").read_text())
    assert m["config"]["train"]["freeze_embeddings"] is True
    start, end = load_file(Path(model) / "model.safetensors"), load_file(out / "model.safetensors")
    emb = [k for k in end if ".embeddings." in k]
    assert emb and all(torch.equal(start[k], end[k]) for k in emb)
    assert any(not torch.equal(start[k], end[k]) for k in end if ".encoder.layer.0." in k)
    precision, reason = choose_precision("auto", "cpu")
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["precision"], metrics["precision_reason"]) == (precision, reason)
    assert m["metrics"]["precision"] == f"{precision} ({reason})"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--lr", "0"], "Error: train: lr must be in (0, inf), got 0.0"),
        (["--epochs", "0"], "Error: train: epochs must be in [1, inf), got 0"),
        (["--freeze-layers", "5"], "Error: freeze_layers must be in [0, 2] for {model} (2 layers); got 5"),
        (
            ["--max-length", "600"],  # the tiny model has 128 positions; 8192 is only the config's sanity bound
            "Error: max_length 600 is more than {model} can take (128 positions); use --max-length 128 or less",
        ),
        (["--lr", "nan"], "Error: train: lr must be a finite number, got nan"),
        (["--log-every", "-1"], "Error: train: log_every must be in [0, inf), got -1"),
        (["--precision", "fp16"], "Error: --precision fp16 needs a CUDA GPU; on CPU use --precision fp32 (or auto)"),
        (["--resume"], "Error: --resume: no checkpoint found in {out}.ckpt; run without --resume to start fresh"),
        (
            ["--data", "missing.csv"],
            "Error: data file missing.csv does not exist; check the path or use --data rotten_tomatoes",
        ),
        (
            ["--data", "rotten_tomatos"],
            "Error: unknown built-in dataset 'rotten_tomatos' (did you mean 'rotten_tomatoes'?)",
        ),
    ],
)
def test_bad_input_one_error_line(tiny4, tmp_path, cli, args, message):
    model, data = tiny4
    out = tmp_path / "o"
    base = ["finetune", "--model", model, "--data", data, "-o", out, "--max-steps", "1"]
    r = cli(*base, *args)
    assert r.exit_code != 0
    assert message.format(model=model, out=out) in r.output
    assert "Traceback" not in r.output
    assert not out.exists()


def test_bad_model_inputs(tmp_path, cli, monkeypatch):
    r = cli("finetune", "--model", "minilm-l7", "-o", tmp_path / "o")
    assert (
        r.exit_code == 1
        and "model 'minilm-l7' is not a built-in name (minilm-l6, mpnet-base, paraphrase-minilm-l3)" in r.output
    )
    (tmp_path / "notmodel").mkdir()
    r = cli("finetune", "--model", tmp_path / "notmodel", "-o", tmp_path / "o")
    assert "is not a Hugging Face model folder (no config.json)" in r.output
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = cli("finetune", "--model", "google-bert/bert-base-uncased", "-o", tmp_path / "o")
    assert r.exit_code == 1 and "is not a local folder and hub downloads are off" in r.output
    # online mode, but the hub's host does not answer (an unresolvable HF_ENDPOINT): said at once, no retries
    for offline in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(offline, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    r = cli("finetune", "--model", "google-bert/bert-base-uncased", "-o", tmp_path / "o")
    assert r.exit_code == 1 and r.output.count("\n") == 1, r.output
    assert "is not a local folder, and the Hugging Face hub cannot be reached from here (hub.invalid:443" in r.output


def test_non_empty_output_refused_then_overwritten(tiny4, tmp_path, cli):
    model, data = tiny4
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    r = cli("finetune", "--model", model, "--data", data, "-o", out, "--max-steps", "1")
    assert r.exit_code == 1 and f"Error: output folder {out} is not empty; pass --overwrite" in r.output
    assert (out / "keep.txt").exists()
    # --overwrite replaces only what mbk wrote: a folder holding a user's file is refused, untouched
    r = cli("finetune", "--model", model, "--data", data, "-o", out, "--max-steps", "1", "--epochs", "1", "--overwrite")
    assert r.exit_code == 1 and f"Error: --overwrite refused: {out} was not written by mbk" in r.output
    assert (out / "keep.txt").exists()
    (out / "keep.txt").unlink()
    r = cli("finetune", "--model", model, "--data", data, "-o", out, "--max-steps", "1", "--epochs", "1")
    assert r.exit_code == 0 and (out / "manifest.json").exists()
    r = cli("finetune", "--model", model, "--data", data, "-o", out, "--max-steps", "1", "--epochs", "1", "--overwrite")
    assert r.exit_code == 0 and (out / "manifest.json").exists()


def test_kill9_then_resume_matches_uninterrupted_run(tiny4, tmp_path):
    """SIGKILL right after step 11 (mid epoch 2, last checkpoint at step 9), then --resume:
    the final metrics and per-epoch losses equal an uninterrupted run's."""
    model, data = tiny4
    args = ["finetune", "--model", str(model), "--data", str(data), *FAST, "--checkpoint-every", "3", "--json", "-q"]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    full = subprocess.run([*MBK, *args, "-o", str(tmp_path / "a")], capture_output=True, text=True, env=env)
    assert full.returncode == 0, full.stderr
    killed = subprocess.run(
        [*MBK, *args, "-o", str(tmp_path / "b")], capture_output=True, text=True, env={**env, "MBK_KILL_AT_STEP": "11"}
    )
    assert killed.returncode == -9
    assert not (tmp_path / "b").exists()  # nothing half-written
    assert (tmp_path / "b.ckpt" / "checkpoints" / "step-00000009" / "state.json").exists()
    resumed = subprocess.run(
        [*MBK, *args, "-o", str(tmp_path / "b"), "--resume"], capture_output=True, text=True, env=env
    )
    assert resumed.returncode == 0, resumed.stderr
    a, b = json.loads(full.stdout), json.loads(resumed.stdout)
    assert [h["train_loss"] for h in b["history"]] == pytest.approx([h["train_loss"] for h in a["history"]], rel=1e-6)
    assert b["test"] == {**a["test"], "eval_seconds": b["test"]["eval_seconds"]}
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["resumed_from"].endswith("step-00000009")


def test_resume_skips_a_damaged_checkpoint_and_after_a_kill_during_the_final_save(tiny4, tmp_path):
    """The newest checkpoint is truncated: --resume warns, takes the one before it, and still ends
    bit-exactly where an uninterrupted run ends. The output already written by a run killed during its
    final save does not block --resume. With every checkpoint damaged, one clear error."""
    model, data = tiny4
    args = ["finetune", "--model", str(model), "--data", str(data), *FAST, "--checkpoint-every", "3", "--json", "-q"]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    full = subprocess.run([*MBK, *args, "-o", str(tmp_path / "a")], capture_output=True, text=True, env=env)
    assert full.returncode == 0, full.stderr
    kill = {**env, "MBK_KILL_AT_STEP": "11"}
    assert subprocess.run([*MBK, *args, "-o", str(tmp_path / "b")], capture_output=True, env=kill).returncode == -9
    ckdir = tmp_path / "b.ckpt" / "checkpoints"
    assert sorted(p.name for p in ckdir.iterdir()) == ["step-00000008", "step-00000009"]  # epoch end, every 3
    weights = ckdir / "step-00000009" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # as if killed after the result was renamed into place
    resumed = subprocess.run(
        [*MBK, *args, "-o", str(tmp_path / "b"), "--resume"], capture_output=True, text=True, env=env
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "warning: checkpoint step-00000009 is damaged (model.safetensors does not match its recorded sha256)" in (
        resumed.stderr
    )
    a, b = json.loads(full.stdout), json.loads(resumed.stdout)
    assert [h["train_loss"] for h in b["history"]] == pytest.approx([h["train_loss"] for h in a["history"]], rel=1e-6)
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["resumed_from"].endswith("step-00000008")
    assert not (tmp_path / "b.ckpt").exists()
    # every checkpoint damaged
    assert subprocess.run([*MBK, *args, "-o", str(tmp_path / "c")], capture_output=True, env=kill).returncode == -9
    for ck in (tmp_path / "c.ckpt" / "checkpoints").iterdir():
        (ck / "optimizer.pt").write_bytes(b"")
    r = subprocess.run([*MBK, *args, "-o", str(tmp_path / "c"), "--resume"], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert (
        "Error: --resume: every checkpoint in" in r.stderr and "is damaged (step-00000009, step-00000008)" in r.stderr
    )


def test_resume_refuses_different_options(tiny4, tmp_path):
    model, data = tiny4
    args = [
        "finetune",
        "--model",
        str(model),
        "--data",
        str(data),
        *FAST,
        "--checkpoint-every",
        "3",
        "-q",
        "-o",
        str(tmp_path / "o"),
    ]
    subprocess.run([*MBK, *args], env={**os.environ, "MBK_KILL_AT_STEP": "4"}, capture_output=True)
    r = subprocess.run([*MBK, *args, "--lr", "5e-3", "--resume"], capture_output=True, text=True)
    assert r.returncode == 1 and "made with different data, model or training options" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.skipif(
    shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
    reason="torchrun not installed",
)
def test_data_parallel_two_cpu_processes(tiny4, tmp_path):
    model, data = tiny4
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    out = tmp_path / "ddp"
    r = subprocess.run(
        [
            torchrun,
            "--nproc_per_node",
            "2",
            "--master_port",
            "29533",
            "-m",
            "mobilebert_kit",
            "finetune",
            "--model",
            str(model),
            "--data",
            str(data),
            *FAST,
            "--batch-size",
            "8",
            "-o",
            str(out),
            "--json",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["steps"] == 4 * (128 // (8 * 2))  # each process sees half the batches
    assert metrics["test"]["accuracy"] >= 0.9
    assert [p.name for p in tmp_path.iterdir()] == ["ddp"]  # one writer, no leftovers


@pytest.mark.integration
def test_real_minilm_beats_majority_baseline(minilm_teacher_dir):
    from mobilebert_kit.data import DataConfig, load_dataset

    m = json.loads((minilm_teacher_dir / "metrics.json").read_text())
    test = load_dataset(DataConfig(max_train_examples=640, max_eval_examples=200)).splits["test"]
    majority = max(test.labels.count(0), test.labels.count(1)) / len(test)
    assert m["test"]["n"] == 200 and m["parameters"] > 22_000_000
    assert m["test"]["accuracy"] > majority + 0.03, (m["test"], majority)


def test_save_recipe_writes_loadable_section(tiny4, tmp_path, cli):
    import yaml

    model, data = tiny4
    cli(
        "finetune",
        "--model",
        model,
        "--data",
        data,
        "--max-steps",
        "1",
        "--epochs",
        "1",
        "-o",
        tmp_path / "o",
        "--save-recipe",
        tmp_path / "r.yaml",
        "-q",
    )
    text = (tmp_path / "r.yaml").read_text()
    assert text.startswith(f"# Reproduce with: mbk run {tmp_path / 'r.yaml'}")
    recipe = yaml.safe_load(text)
    assert recipe["stages"] == ["finetune"]
    from mobilebert_kit.stages.finetune import FinetuneConfig

    cfg = FinetuneConfig.from_dict(recipe["finetune"])
    assert cfg.train.max_steps == 1 and cfg.data.data == str(data)


def test_same_seed_same_model(tiny4, tmp_path, cli):
    """The new classification head is initialised from --seed too: two runs give identical weights."""
    from transformers import BertModel

    from mobilebert_kit.artifacts import sha256_file

    classifier, data = tiny4
    base = tmp_path / "base"  # a base model: finetune must initialise a new head
    BertModel.from_pretrained(classifier).save_pretrained(base)
    for f in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"):
        if (classifier / f).exists():
            (base / f).write_bytes((classifier / f).read_bytes())
    digests = []
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        r = cli("finetune", "--model", base, "--data", data, "-o", tmp_path / name, "--max-steps", "2", "--epochs", "1",
                "--seed", seed, "-q")  # fmt: skip
        assert r.exit_code == 0, r.output
        digests.append(sha256_file(tmp_path / name / "model.safetensors"))
    assert digests[0] == digests[1] and digests[0] != digests[2]


def test_keep_checkpoints_keeps_the_ckpt_folder_and_says_where(tiny4, tmp_path, cli):
    model, data = tiny4
    r = cli("finetune", "--model", model, "--data", data, *FAST, "-o", tmp_path / "k", "--keep-checkpoints")
    assert r.exit_code == 0, r.output
    kept = tmp_path / "k.ckpt" / "checkpoints"
    assert kept.is_dir() and any(kept.iterdir())
    assert f"checkpoints kept in {tmp_path / 'k.ckpt'}" in r.output


def test_ctrl_c_says_whether_there_is_a_checkpoint_to_resume(tiny4, tmp_path):
    model, data = tiny4
    args = [*MBK, "finetune", "--model", str(model), "--data", str(data), *FAST, "--checkpoint-every", "3", "-q"]
    for step, out, hint in (
        (2, tmp_path / "a", "no checkpoint was written yet; run the same command again (without --resume)"),
        (4, tmp_path / "b", f"run the same command with --resume to continue from checkpoint step-00000003 in {tmp_path / 'b.ckpt'}"),
    ):  # fmt: skip
        env = {**os.environ, "MBK_INTERRUPT_AT_STEP": str(step)}
        # a shell that started the suite in the background leaves SIGINT ignored, and children inherit that
        r = subprocess.run([*args, "-o", str(out)], capture_output=True, text=True, env=env, preexec_fn=sigint_default)
        assert r.returncode == 130 and "Traceback" not in r.stderr
        assert r.stderr.splitlines()[-1] == f"Error: interrupted; {hint}"
        assert not out.exists()
