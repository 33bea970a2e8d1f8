"""Strict loading: a folder whose weights do not fit its config.json is refused everywhere it is loaded,
with the config's depth/width against the weights'. Only a new classification head may be initialised."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mobilebert_kit.errors import ModelError
from mobilebert_kit.models import ResolvedModel, load_classifier_folder, load_pretrained_for_classification


def _edit_config(folder: Path, **changes) -> Path:
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.fixture
def model_copy(tiny_classifier_dir, tmp_path):
    return shutil.copytree(tiny_classifier_dir, tmp_path / "m")


@pytest.fixture
def base_encoder(tmp_path) -> Path:
    """A tiny BERT encoder without a classification head (as a pretrained model ships), with an MLM head."""
    import torch
    from conftest import minilm_path
    from transformers import AutoTokenizer, BertConfig, BertForPreTraining

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    folder = tmp_path / "base"
    BertForPreTraining(cfg).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    ("changes", "said", "found"),
    [
        ({"num_hidden_layers": 4}, "4 layers, hidden 32", "2 layers, hidden 32"),
        ({"num_hidden_layers": 1}, "1 layers, hidden 32", "2 layers, hidden 32"),
        ({"hidden_size": 64, "intermediate_size": 128}, "2 layers, hidden 64, FFN 128", "2 layers, hidden 32, FFN 64"),
    ],
)
def test_classifier_folder_whose_config_does_not_fit_is_refused(model_copy, changes, said, found):
    _edit_config(model_copy, **changes)
    with pytest.raises(ModelError) as e:
        load_classifier_folder(model_copy)
    msg = str(e.value)
    assert msg.startswith(f"the weights in {model_copy} do not fit its config.json: the config says {said}")
    assert f"the weights have {found}" in msg and "Fix config.json" in msg
    assert len(msg) < 800 and "\n" not in msg


def test_fitting_classifier_loads(model_copy):
    model, _, labels = load_classifier_folder(model_copy)
    assert labels == ["neg", "pos"] and model.config.num_hidden_layers == 2


def test_base_encoder_gets_a_new_head_named_in_one_line(base_encoder):
    lines: list[str] = []
    model = load_pretrained_for_classification(
        ResolvedModel(str(base_encoder), str(base_encoder), "local"), ["a", "b", "c"], log=lines.append
    )
    assert model.config.num_labels == 3
    assert len(lines) == 1
    assert lines[0].startswith(
        "model: new classification head, initialised randomly: classifier.bias, classifier.weight"
    )
    assert "pretraining head is not used" in lines[0] and "cls.*" in lines[0]


def test_base_encoder_with_a_misfit_config_is_refused(base_encoder):
    _edit_config(base_encoder, num_hidden_layers=3)
    with pytest.raises(ModelError, match=r"the config says 3 layers, hidden 32.*the weights have 2 layers, hidden 32"):
        load_pretrained_for_classification(ResolvedModel("b", str(base_encoder), "local"), ["a", "b"])


def test_classifier_with_another_label_count_gets_a_new_head(model_copy):
    lines: list[str] = []
    model = load_pretrained_for_classification(
        ResolvedModel("m", str(model_copy), "local"), ["x", "y", "z"], log=lines.append
    )
    assert model.config.num_labels == 3 and len(lines) == 1 and "classifier.weight" in lines[0]


def test_unknown_extra_weights_are_not_silently_dropped(model_copy):
    from safetensors.torch import load_file, save_file

    state = load_file(str(model_copy / "model.safetensors"))
    state["bert.encoder.extra_adapter.weight"] = state["classifier.weight"].clone()
    save_file(state, str(model_copy / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(
        ModelError, match=r"1 not used by the config's model \(e.g. bert.encoder.extra_adapter.weight\)"
    ):
        load_classifier_folder(model_copy)


def test_finetune_cli_refuses_a_misfit_base_model(cli, base_encoder, sentiment_csv, tmp_path):
    _edit_config(base_encoder, num_hidden_layers=6)
    r = cli("finetune", "--model", base_encoder, "--data", sentiment_csv, "-o", tmp_path / "o", "--max-steps", "1")
    assert r.exit_code == 1 and r.output.count("Error:") == 1 and "Traceback" not in r.output
    assert "the config says 6 layers" in r.output and "the weights have 2 layers" in r.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["distill", "export", "compress"])
def test_stages_refuse_a_misfit_model_folder(cli, model_copy, tmp_path, command):
    _edit_config(model_copy, num_hidden_layers=3)
    args = {
        "distill": ["distill", "-t", model_copy, "-o", tmp_path / "o", "-q"],
        "export": ["export", "--model", model_copy, "-f", "onnx", "-o", tmp_path / "o", "-q"],
        "compress": ["compress", "--model", model_copy, "--int8", "-o", tmp_path / "o", "-q"],
    }[command]
    r = cli(*args)
    assert r.exit_code == 1 and r.output.count("Error:") == 1 and "Traceback" not in r.output
    assert "the config says 3 layers, hidden 32" in r.output and "the weights have 2 layers, hidden 32" in r.output
