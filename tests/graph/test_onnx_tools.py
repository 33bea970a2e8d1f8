"""onnx_tools on the tiny BERT: export, fusion counts, INT8, parity with PyTorch, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from mobilebert_kit.compression.ort_quant import Int8Dynamic, quantize
from mobilebert_kit.errors import ExportError, ModelError
from mobilebert_kit.graph import onnx_tools as ot

TEXTS = ["a wonderful film", "a dull, boring mess that never ends and never ends", "ok", "great fun!"]


@pytest.fixture(scope="module")
def fp32_onnx(tiny_classifier_dir, tmp_path_factory):
    return ot.export_onnx(tiny_classifier_dir, tmp_path_factory.mktemp("onnx") / "model.onnx")


def _torch_logits(folder):
    from mobilebert_kit.batching import predict_logits
    from mobilebert_kit.models import load_classifier_folder

    model, tok, _ = load_classifier_folder(folder)
    return predict_logits(model, tok, TEXTS, max_length=64), tok


def test_export_has_dynamic_axes_and_matches_pytorch(fp32_onnx, tiny_classifier_dir):
    sess = ot.session(fp32_onnx)
    ins = {i.name: i for i in sess.get_inputs()}
    assert list(ins) == ["input_ids", "attention_mask", "token_type_ids"]
    assert all(i.type == "tensor(int64)" and i.shape == ["batch", "sequence"] for i in ins.values())
    assert [o.name for o in sess.get_outputs()] == ["logits"]
    ref, tok = _torch_logits(tiny_classifier_dir)
    got = ot.onnx_predict_logits(sess, tok, TEXTS, max_length=64, batch_size=3)
    assert got.shape == (4, 2)
    assert np.abs(ref - got).max() < 1e-4


def test_optimize_fuses_attention(fp32_onnx, tiny_classifier_dir, tmp_path):
    fused = ot.optimize_onnx(fp32_onnx, tmp_path / "opt.onnx", num_heads=2, hidden_size=32)
    assert fused["Attention"] == 1  # one per layer but the last, which runs for the first token only
    assert fused["EmbedLayerNormalization"] == 1
    assert fused["SkipLayerNormalization"] == 4
    ref, tok = _torch_logits(tiny_classifier_dir)
    got = ot.onnx_predict_logits(ot.session(tmp_path / "opt.onnx", threads=2), tok, TEXTS, max_length=64)
    assert np.abs(ref - got).max() < 1e-4
    q = tmp_path / "int8.onnx"
    quantize(tmp_path / "opt.onnx", q, Int8Dynamic())
    counts = ot.op_counts(q)
    assert counts.get("DynamicQuantizeLinear", 0) + counts.get("MatMulInteger", 0) > 0
    assert q.stat().st_size < (tmp_path / "opt.onnx").stat().st_size
    got8 = ot.onnx_predict_logits(ot.session(q), tok, TEXTS, max_length=64)
    assert got8.shape == ref.shape and np.isfinite(got8).all()


def test_optimize_without_attention_fails(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "relu.onnx")
    with pytest.raises(ExportError, match="did not fuse attention"):
        ot.optimize_onnx(tmp_path / "relu.onnx", tmp_path / "out.onnx", num_heads=2, hidden_size=32)
    assert ot.optimize_onnx(tmp_path / "relu.onnx", tmp_path / "out.onnx", 2, 32, require_attention=False) == {}


def test_bad_inputs(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        ot.session(tmp_path / "missing.onnx")
    with pytest.raises(ModelError, match="does not exist"):
        ot.export_onnx(tmp_path / "nope", tmp_path / "m.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="could not load"):
        ot.session(tmp_path / "junk.onnx")
