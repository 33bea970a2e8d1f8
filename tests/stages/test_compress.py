"""mbk compress end to end on a tiny BERT trained for a few seconds: the hand-over folder, the
accuracy guard (falls a sensitive node back to fp32; refuses a broken model), and bad input."""

from __future__ import annotations

import csv
import json
import re
import shutil

import pytest
from conftest import NEG, POS, make_tiny_classifier

from mobilebert_kit.artifacts import read_json
from mobilebert_kit.errors import ConfigError


def _train_tiny(folder, data_csv, epochs: int = 3):
    """A 4-head tiny classifier that really learned the sentiment data (varied, correct predictions)."""
    import torch

    from mobilebert_kit.compression import surgery as prune
    from mobilebert_kit.data import DataConfig, load_dataset
    from mobilebert_kit.models import load_classifier_folder

    make_tiny_classifier(folder, heads=4, label_names=["neg", "pos"])
    model, tok, _ = load_classifier_folder(folder)
    train = load_dataset(DataConfig(data=str(data_csv))).splits["train"]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    torch.manual_seed(0)
    for _ in range(epochs):
        for batch in prune.training_batches(model, tok, train.texts, train.labels, None, 64, 16):
            model(**batch).loss.backward()
            opt.step()
            opt.zero_grad()
    model.eval()
    return model


def _with_manifest(folder, data: dict, max_length: int = 64):
    (folder / "manifest.json").write_text(json.dumps({"stage": "finetune", "data": data, "max_length": max_length}))
    return folder


@pytest.fixture(scope="module")
def trained(sentiment_csv, tmp_path_factory):
    root = tmp_path_factory.mktemp("compress")
    folder = root / "student"
    _train_tiny(folder, sentiment_csv).save_pretrained(folder)
    return _with_manifest(folder, {"data": str(sentiment_csv)})


@pytest.fixture(scope="module")
def hostile(trained, tmp_path_factory):
    """The trained model with one embedding row the tokenizer never produces set to 1000: fp32
    predictions are unchanged, but per-tensor INT8 of the embedding table rounds every other row to 0."""
    import torch

    from mobilebert_kit.models import load_classifier_folder

    folder = tmp_path_factory.mktemp("hostile") / "student"
    shutil.copytree(trained, folder)
    model, _, _ = load_classifier_folder(folder)
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight[1] = 1000.0  # [unused0]
    model.save_pretrained(folder)
    return folder


def test_help(cli):
    r = cli("compress", "--help")
    assert r.exit_code == 0
    assert "mbk compress --int8 --prune 0.2" in r.output and "--max-drop" in r.output and "--calib-method" in r.output


def test_end_to_end_hand_over_folder(cli, trained, tmp_path):
    from mobilebert_kit.artifacts import lineage
    from mobilebert_kit.graph import onnx_tools as ot
    from mobilebert_kit.models import load_classifier_folder

    out = tmp_path / "compressed"
    r = cli(
        "compress",
        "--model",
        trained,
        "-o",
        out,
        "--prune",
        "0.2",
        "--prune-scope",
        "layer",
        "--prune-heads",
        "0.5",
        "--prune-ffn",
        "0.25",
        "--trim-vocab",
        "--int8",
        "--latency-runs",
        "2",
        "--json",
        "--max-drop",
        "0.5",
        # agreement on the validation split only: with the training texts too (the default), the guard sees
        # this heavily pruned tiny model's INT8 flip a training text and keeps one node in fp32
        "--fidelity-texts",
        "1",
    )
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["guard"]["passed"] is True and result["output"] == str(out)
    for f in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "vocab.txt",
        "labels.json",
        "manifest.json",
        "metrics.json",
        "compression.json",
        "onnx/model.onnx",
    ):
        assert (out / f).is_file(), f
    comp = read_json(out / "compression.json")
    assert comp["int8"] is True and comp["int8_mode"] == "dynamic" and comp["onnx_model"] == "onnx/model.onnx"
    assert comp["weight_type"] == "qint8" and comp["per_channel"] is False and comp["nodes_excluded"] == []
    assert comp["prune"]["scope"] == "layer" and comp["structured"]["intermediate_size"] == 48
    assert comp["trim_vocab"]["vocab_after"] < 100
    metrics = read_json(out / "metrics.json")
    assert [s["step"] for s in metrics["steps"]] == [
        "structured",
        "trim_vocab",
        "unstructured",
        "onnx_fp32",
        "int8_dynamic",
    ]
    for s in metrics["steps"]:
        assert 0 <= s["validation"]["accuracy"] <= 1 and "macro_f1" in s["validation"] and "accuracy" in s["test"]
    assert metrics["input"]["validation"]["accuracy"] == 1.0  # the tiny model learned the easy task
    unstructured = metrics["steps"][2]
    assert unstructured["params"] == metrics["steps"][1]["params"]  # zeros do not remove parameters...
    assert unstructured["sparsity"] > 0.19 and any("do not change" in n for n in metrics["notes"])  # ...and we say so
    assert metrics["steps"][0]["params"] < metrics["input"]["params"]
    assert metrics["steps"][-1]["size_bytes"] < metrics["steps"][-2]["size_bytes"]  # INT8 graph smaller than fp32 graph
    assert metrics["input"]["latency_ms_pytorch_fp32"] > 0 and metrics["steps"][-1]["latency_ms_ort"] > 0
    # downstream stages find the data and max length; the folder reloads as a smaller classifier
    assert (
        lineage(out)["max_length"] == 64
        and lineage(out)["data"]["data"] == read_json(trained / "manifest.json")["data"]["data"]
    )
    assert read_json(out / "manifest.json")["inputs"]["model"]["path"] == str(trained)
    model, tok, labels = load_classifier_folder(out)
    assert labels == ["neg", "pos"] and model.config.vocab_size == len(tok) == comp["trim_vocab"]["vocab_after"]
    assert model.bert.encoder.layer[0].attention.self.num_attention_heads == 2
    ops = ot.op_counts(out / "onnx" / "model.onnx")
    assert ops.get("QAttention") == 1 and ops.get("QEmbedLayerNormalization") == 1  # the last layer runs for [CLS] only
    logits = ot.onnx_predict_logits(ot.session(out / "onnx" / "model.onnx"), tok, ["a wonderful film", "a dull mess"])
    assert logits.shape == (2, 2)


def test_guard_falls_back_the_sensitive_node(cli, hostile, tmp_path):
    from mobilebert_kit.graph import onnx_tools as ot

    out = tmp_path / "c"
    r = cli("compress", "--model", hostile, "-o", out, "--int8", "--latency-runs", "0")
    assert r.exit_code == 0, r.output
    comp = read_json(out / "compression.json")
    metrics = read_json(out / "metrics.json")
    first, last = metrics["guard_search"]["tried"][0], metrics["guard_search"]["tried"][-1]
    assert first["nodes_excluded"] == 0 and first["drop"] > 0.01  # plain INT8 broke it...
    assert comp["nodes_excluded"] == ["EmbedLayerNormalization_0"]  # ...the guard found the culprit...
    assert (
        last["drop"] <= 0.01 and metrics["guard"]["passed"] and metrics["guard"]["final_accuracy"] == 1.0
    )  # ...and fixed it
    assert metrics["guard_search"]["sensitivity_mse"][0][0] == "EmbedLayerNormalization_0"
    ops = ot.op_counts(out / "onnx" / "model.onnx")
    assert ops.get("EmbedLayerNormalization") == 1 and ops.get("QAttention") == 1  # the rest is still INT8
    assert "EmbedLayerNormalization_0" in r.output  # reported


def test_guard_refuses_a_broken_model_and_writes_nothing(cli, trained, tmp_path):
    """Trimming the vocabulary to a training corpus that shares few words with validation breaks the
    model: the stage must fail with its numbers, not hand it over."""

    def write(path, phrases):
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            for i in range(40):
                pos = i % 2 == 0
                w.writerow([phrases[pos][i // 2 % len(phrases[pos])], "pos" if pos else "neg"])
        return path

    train = write(tmp_path / "train.csv", {True: POS[:1], False: NEG[:1]})
    val = write(tmp_path / "val.csv", {True: POS[4:], False: NEG[4:]})
    model = tmp_path / "m"
    shutil.copytree(trained, model)
    _with_manifest(model, {"data": str(train), "validation_data": str(val), "test_data": str(val)})
    out = tmp_path / "c"
    r = cli("compress", "--model", model, "-o", out, "--trim-vocab", "--latency-runs", "0")
    assert r.exit_code == 1
    err = r.stderr.strip().splitlines()[-1]
    assert err.startswith("Error: accuracy guard failed: validation accuracy drop") and "Nothing was written" in err
    m = re.search(
        r"drop (\d\.\d{4}) > --max-drop 0.01 \(onnx fp32; 95% CI (-?\d\.\d{4}) … \d\.\d{4}: a real drop\); "
        r"validation accuracy (\d\.\d{4}) -> (\d\.\d{4})",
        err,
    )
    assert (
        m
        and float(m.group(1)) > 0.01
        and float(m.group(2)) > 0.01  # refused because even the interval's low end is over the bound
        and float(m.group(3)) - float(m.group(4)) == pytest.approx(float(m.group(1)), abs=1e-3)
    )
    assert not out.exists() and not list(tmp_path.glob(".c.tmp-*"))


@pytest.mark.parametrize(
    "args,message",
    [
        (["--prune", "1.0"], "Error: prune must be in [0, 1), got 1.0"),
        (["--prune-heads", "0.9"], "Error: --prune-heads 0.9 would remove all 4 attention heads of every layer"),
        (["--static"], "Error: --static is an INT8 mode: pass --int8 --static"),
        (["--int8", "--static", "--calib-samples", "100000"], "Error: --calib-samples 100000 is more than the"),
        (
            ["--int8", "--static", "--calib-method", "kl"],
            "Error: calib_method must be one of minmax, entropy, percentile; got 'kl'",
        ),
        (["--prune", "0.2", "--prune-scope", "rows"], "Error: prune_scope must be one of global, layer; got 'rows'"),
        (["--int8", "--weight-type", "int4"], "Error: weight_type must be one of qint8, quint8; got 'int4'"),
        ([], "Error: nothing to do: pass at least one of --prune"),
    ],
)
def test_bad_input_one_error_line(cli, trained, tmp_path, args, message):
    out = tmp_path / "c"
    r = cli("compress", "--model", trained, "-o", out, *args)
    assert r.exit_code != 0
    assert r.stderr.startswith(message), r.stderr
    assert r.stderr.count("\n") == 1 and not out.exists()


def test_not_a_classifier_refused(cli, tmp_path):
    from transformers import BertConfig, BertModel

    base = tmp_path / "base"
    BertModel(
        BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    ).save_pretrained(base)
    r = cli("compress", "--model", base, "-o", tmp_path / "c", "--int8")
    assert r.exit_code != 0 and r.stderr.startswith("Error: ") and "holds no sequence-classification head" in r.stderr
    assert r.stderr.count("\n") == 1 and not (tmp_path / "c").exists()


def test_recovery_training_after_structured_pruning(cli, trained, tmp_path):
    pytest.importorskip("mobilebert_kit.stages.distill")
    out = tmp_path / "c"
    r = cli(
        "compress",
        "--model",
        trained,
        "-o",
        out,
        "--prune-heads",
        "0.5",
        "--recover-epochs",
        "1",
        "--recover-lr",
        "1e-3",
        "--recover-log-every",
        "2",
        "--latency-runs",
        "0",
        "--max-drop",
        "1",
        "--quiet",
    )
    assert r.exit_code == 0, r.output
    metrics = read_json(out / "metrics.json")
    assert [s["step"] for s in metrics["steps"]] == ["structured", "recovery", "onnx_fp32"]
    rec = read_json(out / "compression.json")["recovery"]
    assert (
        rec["teacher"] == str(trained) and rec["epochs"] == 1 and len(rec["history"]) == 1
    )  # no teacher upstream: the input
    assert metrics["steps"][1]["params"] == metrics["steps"][0]["params"]  # recovery trains, it does not regrow
    # recovery's per-step log, marked as recovery, with the distillation loss's terms
    lines = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in lines if r["kind"] == "step"]
    assert steps and all(r["phase"] == "recovery" for r in lines) and [r["kind"] for r in lines][-1] == "eval"
    assert all(r["step"] % 2 == 0 or r is steps[-1] for r in steps)
    assert all(r["loss_soft"] + r["loss_hard"] == pytest.approx(r["loss"], rel=1e-4) for r in steps)


def test_recovery_layer_distillation_to_the_unpruned_model(trained, tmp_path, monkeypatch):
    """``hidden_weight``: after head pruning and a vocabulary trim, each layer's output is trained towards the
    same layer of the compress input; the trimmed tokenizer lines up token by token with the input's, and the
    input's layer outputs go through the teacher cache (here in tmp_path)."""
    pytest.importorskip("mobilebert_kit.stages.distill")
    from mobilebert_kit.stages.compress import CompressConfig, run

    monkeypatch.setenv("MBK_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "c"
    steps = [
        {"method": "prune_heads", "fraction": 0.5},
        {"method": "trim_vocab"},
        {"method": "recover", "epochs": 1, "lr": 1e-3, "hidden_weight": 2.0},
    ]
    run(CompressConfig(model=str(trained), output=str(out), steps=steps, latency_runs=0, max_drop=1.0))
    rec = read_json(out / "compression.json")["recovery"]
    assert rec["hidden_weight"] == 2.0 and rec["hidden_from"] == str(trained) and len(rec["history"]) == 1
    assert len(list((tmp_path / "cache" / "teacher_cache").glob("*.safetensors"))) == 1  # the layer outputs


def test_recovery_teacher_pass_in_checked_int8(trained, tmp_path):
    """``teacher_precision: int8`` on ``recover``: the teacher's logits come from the checked INT8 teacher,
    and compression.json says what the check found; an unknown precision is refused with the choices."""
    pytest.importorskip("mobilebert_kit.stages.distill")
    from mobilebert_kit.stages.compress import CompressConfig, run

    out = tmp_path / "c"
    steps = [{"method": "prune_heads", "fraction": 0.5}, {"method": "recover", "lr": 1e-3, "teacher_precision": "int8"}]
    run(CompressConfig(model=str(trained), output=str(out), steps=steps, latency_runs=0, max_drop=1.0))
    rec = read_json(out / "compression.json")["recovery"]
    check = rec["int8_check"]
    assert rec["teacher_precision"] == check["precision"] == "int8" and check["tried"][-1]["kl"] <= check["max_kl"]
    with pytest.raises(ConfigError, match="teacher_precision must be one of fp32, int8; got 'bf16'"):
        CompressConfig(model=str(trained), steps=[{"method": "recover", "teacher_precision": "bf16"}])


def test_layer_distillation_loss_adds_the_hidden_state_error():
    """The recovery loss with ``hidden_weight`` is the logit loss plus weight x the layer-output MSE: equal to it
    when the targets are the model's own layer outputs, larger by exactly weight x MSE when they are shifted."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from mobilebert_kit.training.losses import distillation_loss

    torch.manual_seed(0)
    model = BertForSequenceClassification(
        BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    ).eval()
    ids = torch.randint(5, 50, (3, 7))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        own = torch.stack(model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[1:], 2)
        batch = {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 0])}
        batch["teacher_logits"] = torch.randn(3, 2)
        plain = distillation_loss(3.0, 0.5)(model, batch, {})
        same = distillation_loss(3.0, 0.5, 4.0)(model, {**batch, "teacher_hidden": own}, {})
        shifted = distillation_loss(3.0, 0.5, 4.0)(model, {**batch, "teacher_hidden": own + 0.5}, {})
    assert torch.isclose(same, plain, atol=1e-5)
    assert torch.isclose(shifted - plain, torch.tensor(4.0 * 0.25), atol=1e-4)


def test_4bit_embeddings_then_int8_survive_a_hostile_row(cli, hostile, tmp_path):
    """Block-wise 4-bit scales each row's blocks on their own, so the one huge row that breaks per-tensor
    INT8 of the table (test above) costs nothing here; INT8 then quantizes the rest with no fallback."""
    from mobilebert_kit.graph import onnx_tools as ot

    out = tmp_path / "c"
    r = cli(
        "compress", "--model", hostile, "-o", out, "--int4-embeddings", "--block-size", "16", "--int8",
        "--latency-runs", "0", "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    comp, metrics = read_json(out / "compression.json"), read_json(out / "metrics.json")
    assert [s["step"] for s in metrics["steps"]] == ["onnx_fp32", "int4_embeddings", "int8_dynamic"]
    fp32, four, int8 = metrics["steps"]
    assert (
        fp32["fusion_options"] == {"enable_embed_layer_norm": False}
        and "EmbedLayerNormalization" not in fp32["fused_ops"]
    )
    emb = comp["int4_embeddings"]
    assert emb["block_size"] == 16 and emb["nodes_excluded"] == [] and len(emb["nodes_quantized"]) == 3
    assert emb["runtimes"]["ort_format_loads_in"] == [] and any("int4_embeddings" in n for n in metrics["notes"])
    assert comp["int8"] is True and comp["nodes_excluded"] == [] and metrics["guard"]["checked"] == "onnx int8 dynamic"
    assert metrics["guard"]["final_accuracy"] == 1.0 and int8["validation"]["agreement_with_fp32"] == 1.0
    assert fp32["size_bytes"] > four["size_bytes"] > int8["size_bytes"]
    ops = ot.op_counts(out / "onnx" / "model.onnx")
    assert ops["GatherBlockQuantized"] == 3 and ops["QAttention"] == 1 and "EmbedLayerNormalization" not in ops
    # ORT format cannot store the 4-bit tables: export says so instead of writing a file that will not load
    r = cli("export", "--model", out, "--format", "ort", "-o", tmp_path / "e")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "Error: the ORT-format model does not load in onnxruntime" in r.output
    assert "export --format onnx instead" in r.output and not (tmp_path / "e" / "ort").exists()
    r = cli("export", "--model", out, "--format", "onnx", "-o", tmp_path / "e", "-q")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("order", [("trim_vocab", "recover"), ("recover", "trim_vocab")])
def test_steps_run_in_the_order_written(trained, tmp_path, order):
    """A steps list is the order run: trimming then recovery trains the trimmed model (and wins its loss
    back); the reverse trims a recovered model. Both are recorded in that order."""
    pytest.importorskip("mobilebert_kit.stages.distill")
    from mobilebert_kit.stages.compress import CompressConfig, run

    settings = {"trim_vocab": {}, "recover": {"epochs": 1, "lr": 1e-3}}
    out = tmp_path / "c"
    steps = [{"method": m, **settings[m]} for m in order]
    result = run(CompressConfig(model=str(trained), output=str(out), steps=steps, latency_runs=0, max_drop=1.0))
    metrics, comp = read_json(out / "metrics.json"), read_json(out / "compression.json")
    labels = {"trim_vocab": "trim_vocab", "recover": "recovery"}
    assert [s["step"] for s in metrics["steps"]] == [labels[m] for m in order] + ["onnx_fp32"]
    trimmed = comp["trim_vocab"]["vocab_after"]
    assert metrics["steps"][order.index("recover")]["params"] == (
        metrics["steps"][order.index("trim_vocab")]["params"]
        if order[0] == "trim_vocab"
        else metrics["input"]["params"]
    )  # recovery trained the model as the earlier steps left it
    assert result.metrics["final"]["step"] == "onnx_fp32" and trimmed < 30522


def test_small_validation_split_is_topped_up_with_training_texts_for_agreement(cli, trained, tmp_path):
    """16 validation examples cannot bound INT8-vs-fp32 agreement at 97%; the training texts (labels
    unused) can, and the log says which texts it was measured on."""
    from mobilebert_kit.data import Split
    from mobilebert_kit.stages.compress import fidelity_texts

    val, train = Split(["a", "b"], [0, 1]), Split([f"t{i}" for i in range(5)], [0] * 5)
    assert fidelity_texts(val, train, 4, seed=0).texts[:2] == ["a", "b"] and len(fidelity_texts(val, train, 4, 0)) == 4
    assert fidelity_texts(val, train, 2, seed=0) is val and len(fidelity_texts(val, train, 100, 0)) == 7

    r = cli("compress", "--model", trained, "-o", tmp_path / "c", "--int8", "--latency-runs", "0")
    assert r.exit_code == 0, r.output
    m = re.search(
        r"agreement with fp32 [\d.]+% on (\d+) texts \((\d+) validation \+ (\d+) training, labels unused\)", r.output
    )
    n_val = read_json(tmp_path / "c" / "metrics.json")["input"]["validation"]["n"]
    assert m and int(m.group(2)) == n_val and int(m.group(1)) == n_val + int(m.group(3)) and int(m.group(3)) > 100
    assert f"of {m.group(1)} texts (95% low" in r.output and "verify needs 97%: expected to pass" in r.output
    r = cli(
        "compress", "--model", trained, "-o", tmp_path / "d", "--int8", "--latency-runs", "0", "--fidelity-texts", "1"
    )
    assert r.exit_code == 0, r.output
    assert f"(observed: {n_val} validation texts are too few to bound it at 97%" in r.output
    assert f"{n_val} texts are too few to bound it, so verify may fail" in r.output
