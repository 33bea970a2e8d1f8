"""INT8 on the fused ONNX graph of a tiny BERT: dynamic and static graphs run in ORT and stay close
to fp32; exclusions are honoured; methods refuse bad settings before doing any work."""

from __future__ import annotations

import numpy as np
import pytest

from mobilebert_kit.compression import ort_quant as q
from mobilebert_kit.errors import ConfigError
from mobilebert_kit.graph import onnx_tools as ot
from mobilebert_kit.models import load_tokenizer

TEXTS = ["a wonderful, moving film", "a dull, boring mess", "great fun", "terrible acting and a bad script"] * 4


@pytest.fixture(scope="module")
def fused(tiny_classifier_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("quant")
    raw = ot.export_onnx(tiny_classifier_dir, root / "raw.onnx")
    ops = ot.optimize_onnx(raw, root / "fused.onnx", num_heads=0, hidden_size=0)
    assert ops["Attention"] == 1  # the first layer; the last runs for the first token only (first_token.py)
    tok = load_tokenizer(str(tiny_classifier_dir))
    ref = ot.onnx_predict_logits(ot.session(root / "fused.onnx"), tok, TEXTS, max_length=32)
    return root / "fused.onnx", tok, ref


def _run(path, tok):
    return ot.onnx_predict_logits(ot.session(path), tok, TEXTS, max_length=32)


@pytest.mark.parametrize("per_channel,weight_type", [(False, "qint8"), (True, "quint8")])
def test_dynamic_int8_runs_and_shrinks(fused, tmp_path, per_channel, weight_type):
    src, tok, ref = fused
    rep = q.quantize(src, tmp_path / "int8.onnx", q.Int8Dynamic(per_channel=per_channel, weight_type=weight_type))
    ops = rep["ops"]
    assert ops.get("QAttention") == 1 and ops.get("MatMulInteger", 0) >= 9 and ops.get("QEmbedLayerNormalization") == 1
    assert rep["size_bytes"] < src.stat().st_size / 2  # the embedding table is int8 too
    out = _run(tmp_path / "int8.onnx", tok)
    assert out.shape == ref.shape and np.isfinite(out).all()
    assert np.abs(out - ref).max() < 0.05


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_static_qdq_runs(fused, tmp_path, method):
    src, tok, ref = fused
    sess = ot.session(src)
    feeds = q.calibration_feeds([i.name for i in sess.get_inputs()], tok, TEXTS, None, 32, batch_size=4)
    assert len({f["input_ids"].shape[1] for f in feeds}) == 1  # one length: histogram calibrators need it
    rep = q.quantize(src, tmp_path / "qdq.onnx", q.Int8Static(calibration=feeds, method=method, per_channel=True))
    assert rep["ops"].get("QuantizeLinear", 0) >= 6 and rep["ops"].get("DequantizeLinear", 0) >= 12
    out = _run(tmp_path / "qdq.onnx", tok)
    assert np.isfinite(out).all() and np.abs(out - ref).max() < 0.05


def test_nodes_to_exclude_stay_fp32(fused, tmp_path):
    src, tok, _ = fused
    method = q.Int8Dynamic()
    cands = q.candidate_nodes(src, method)
    assert "Attention_0" in cands and "EmbedLayerNormalization_0" in cands
    ffn = next(c for c in cands if "intermediate/dense/MatMul" in c)
    rep = q.quantize(src, tmp_path / "ex.onnx", method, nodes_to_exclude=[ffn, "EmbedLayerNormalization_0"])
    import onnx

    nodes = {n.name: n.op_type for n in onnx.load(str(tmp_path / "ex.onnx")).graph.node}
    assert nodes[ffn] == "MatMul" and nodes["EmbedLayerNormalization_0"] == "EmbedLayerNormalization"
    assert rep["ops"]["QAttention"] == 1 and "QEmbedLayerNormalization" not in rep["ops"]
    assert rep["nodes_excluded"] == sorted([ffn, "EmbedLayerNormalization_0"])


def test_sensitivity_ranks_a_hostile_node_first(fused, tmp_path):
    """A node whose quantization destroys the output must come first in the ranking."""
    import onnx
    from onnx import numpy_helper

    src, tok, _ = fused
    m = onnx.load(str(src))
    emb = next(n for n in m.graph.node if n.op_type == "EmbedLayerNormalization")
    table = next(t for t in m.graph.initializer if t.name == emb.input[2])  # word embeddings
    arr = numpy_helper.to_array(table).copy()
    arr[1] = 1000.0  # [unused0]: never produced by the tokenizer, so fp32 outputs do not change
    table.CopyFrom(numpy_helper.from_array(arr, table.name))
    hostile = tmp_path / "hostile.onnx"
    onnx.save(m, str(hostile))
    ref = _run(hostile, tok)
    method = q.Int8Dynamic()
    ranking = q.sensitivity(hostile, method, q.candidate_nodes(hostile, method), lambda p: _run(p, tok), ref, tmp_path)
    assert ranking[0][0] == emb.name and ranking[0][1] > 100 * ranking[1][1]


def test_methods_refuse_bad_settings():
    with pytest.raises(ConfigError, match="static INT8 needs calibration data"):
        q.Int8Static(calibration=None)
    with pytest.raises(ConfigError, match="calib_method must be one of minmax, entropy, percentile; got 'kl'"):
        q.Int8Static(calibration=[{}], method="kl")
    with pytest.raises(ConfigError, match="weight_type must be one of qint8, quint8; got 'int4'"):
        q.Int8Dynamic(weight_type="int4")


def _int8_temp_dirs() -> set[str]:
    import tempfile
    from pathlib import Path

    return {p.name for p in Path(tempfile.gettempdir()).glob("mbk-int8-*")}


def test_static_leaves_no_temp_dirs(fused, tmp_path):
    """The typed graph and calibration ranges live while the method is open, then go."""
    src, tok, _ = fused
    before = _int8_temp_dirs()
    sess = ot.session(src)
    feeds = q.calibration_feeds([i.name for i in sess.get_inputs()], tok, TEXTS, None, 32, batch_size=4)
    method = q.Int8Static(calibration=feeds)
    q.quantize(src, tmp_path / "a.onnx", method)  # one call: its own workspace, removed at the end
    assert _int8_temp_dirs() == before
    with method:  # open: calibrate once, reuse for every call
        q.quantize(src, tmp_path / "b.onnx", method)
        assert len(_int8_temp_dirs() - before) == 1
        q.quantize(src, tmp_path / "c.onnx", method, nodes_to_exclude=q.candidate_nodes(src, method)[:1])
    assert _int8_temp_dirs() == before
    assert (tmp_path / "b.onnx").read_bytes() == (tmp_path / "a.onnx").read_bytes()


@pytest.fixture(scope="module")
def unfused_embeddings(tiny_classifier_dir, tmp_path_factory):
    """The tiny graph fused as a plan with 4-bit embeddings fuses it: embedding Gathers left visible."""
    root = tmp_path_factory.mktemp("quant4")
    raw = ot.export_onnx(tiny_classifier_dir, root / "raw.onnx")
    ops = ot.optimize_onnx(raw, root / "fused.onnx", 0, 0, fusion={"enable_embed_layer_norm": False})
    assert ops["Attention"] == 1 and "EmbedLayerNormalization" not in ops
    return root / "fused.onnx"


@pytest.mark.parametrize("op,quantized,expected", [("Gather", "GatherBlockQuantized", 3), ("MatMul", "MatMulNBits", 9)])
def test_4bit_weights_run_and_shrink(unfused_embeddings, fused, tmp_path, op, quantized, expected):
    _, tok, _ = fused
    ref = _run(unfused_embeddings, tok)
    method = q.Int4Weights(op_types_to_quantize=(op,), block_size=16)
    candidates = q.candidate_nodes(unfused_embeddings, method)
    # word/position/token-type tables; MatMuls: 3 in the first layer (QKV live in Attention), 6 in the first-token
    # layer (query, folded key and value, output, FFN x2)
    assert len(candidates) == expected
    report = q.quantize(unfused_embeddings, tmp_path / "q4.onnx", method)
    assert report["ops"].get(quantized) == expected and not q.candidate_nodes(tmp_path / "q4.onnx", method)
    assert report["size_bytes"] < unfused_embeddings.stat().st_size
    out = _run(tmp_path / "q4.onnx", tok)
    assert out.shape == ref.shape and 0 < np.abs(out - ref).max() < 0.5  # changed, but close


def test_4bit_only_and_exclude(unfused_embeddings, tmp_path):
    method = q.Int4Weights(op_types_to_quantize=("Gather",))
    word, *others = q.candidate_nodes(unfused_embeddings, method)
    # ORT's nodes_to_include adds to the op types; "only this node" must still mean only this node
    only = q.quantize(unfused_embeddings, tmp_path / "a.onnx", method, nodes_to_quantize=[word])
    assert only["ops"]["GatherBlockQuantized"] == 1
    rest = q.quantize(unfused_embeddings, tmp_path / "b.onnx", method, nodes_to_exclude=[word])
    assert rest["ops"]["GatherBlockQuantized"] == len(others) and rest["nodes_excluded"] == [word]


def test_int8_after_4bit_leaves_the_4bit_ops(unfused_embeddings, fused, tmp_path):
    _, tok, _ = fused
    q.quantize(unfused_embeddings, tmp_path / "q4.onnx", q.Int4Weights(op_types_to_quantize=("Gather",)))
    assert not [n for n in q.candidate_nodes(tmp_path / "q4.onnx", q.Int8Dynamic()) if "embeddings" in n]
    report = q.quantize(tmp_path / "q4.onnx", tmp_path / "both.onnx", q.Int8Dynamic())
    assert report["ops"]["GatherBlockQuantized"] == 3 and report["ops"]["QAttention"] == 1
    assert np.isfinite(_run(tmp_path / "both.onnx", tok)).all()


def test_4bit_refuses_bad_settings():
    with pytest.raises(ConfigError) as e:
        q.Int4Weights(op_types_to_quantize=("Conv",), block_size=48, bits=3, accuracy_level=9)
    assert e.value.problems == [
        "op_types_to_quantize must be some of MatMul, Gather; got ['Conv']",
        "block_size must be one of 16, 32, 64, 128, 256; got '48'",
        "bits must be one of 4; got '3'",
        "accuracy_level must be one of 0, 1, 2, 3, 4; got '9'",
    ]
