"""The one guarded model loader: a damaged or unsafe model folder is one clear Error: line."""

from __future__ import annotations

import json
import shutil

import pytest

from mobilebert_kit.errors import ModelError
from mobilebert_kit.models import load_classifier_folder


@pytest.fixture
def model_copy(tiny_classifier_dir, tmp_path):
    return shutil.copytree(tiny_classifier_dir, tmp_path / "m")


def test_truncated_weights(model_copy):
    w = model_copy / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(ModelError, match=rf"^the weights in {model_copy} are damaged \(.*\); re-run the stage"):
        load_classifier_folder(model_copy)


def test_broken_config(model_copy):
    (model_copy / "config.json").write_text('{"architectures": ["BertForSequenceClassification"], ')
    with pytest.raises(ModelError, match=r"config.json is not a valid model config \(.*\); restore it or re-run"):
        load_classifier_folder(model_copy)


def test_pickle_with_code_is_refused_and_says_so(model_copy):
    import torch
    from safetensors.torch import load_file

    state = load_file(str(model_copy / "model.safetensors"))
    (model_copy / "model.safetensors").unlink()
    state["evil"] = _Evil()  # an object, not a tensor: weights_only loading must refuse it
    torch.save(state, model_copy / "pytorch_model.bin")
    with pytest.raises(ModelError) as e:
        load_classifier_folder(model_copy)
    msg = str(e.value)
    assert (
        msg.startswith(f"unsafe pickle weights refused in {model_copy}") and "convert the model to safetensors" in msg
    )


class _Evil:
    def __reduce__(self):
        return (print, ("this would run on load",))


def test_cli_prints_one_error_line(cli, model_copy, tmp_path):
    (model_copy / "config.json").write_text("not json")
    r = cli("export", "--model", model_copy, "-o", tmp_path / "e", "-f", "onnx")
    assert r.exit_code == 1 and r.output.count("Error:") == 1 and "Traceback" not in r.output
    assert "config.json is not a valid model config" in r.output
    assert not (tmp_path / "e").exists() or not any((tmp_path / "e").iterdir())
    json.dumps(r.output)  # printable
