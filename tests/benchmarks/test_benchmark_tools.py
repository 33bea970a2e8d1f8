"""The benchmarks' own tools: the LayerNorm rewrite ort_versions.py times, and the timing worker (benchmarks/lib) that
runs ONNX Runtime models in a chosen onnxruntime (here the host's)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from lib.ort_timing import HOST, time_in_runtime  # noqa: E402
from ort_versions import decompose_layer_norm  # noqa: E402

H = 8


def _ln_model(path: Path, skip: bool) -> None:
    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "s", H])
    k = helper.make_tensor_value_info("k", TensorProto.FLOAT, [1, "s", H])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "s", H])
    inits = [numpy_helper.from_array(rng.normal(size=H).astype(np.float32), n) for n in ("g", "b", "bias")]
    if skip:
        nodes = [
            helper.make_node(
                "SkipLayerNormalization",
                ["x", "k", "g", "b", "bias"],
                ["y", "", "", "sum"],
                domain="com.microsoft",
                epsilon=1e-5,
            ),
        ]
        outputs = [y, helper.make_tensor_value_info("sum", TensorProto.FLOAT, [1, "s", H])]
    else:
        nodes = [
            helper.make_node("Add", ["x", "k"], ["a"]),
            helper.make_node("LayerNormalization", ["a", "g", "b"], ["y"], epsilon=1e-5),
        ]
        outputs = [y]
    graph = helper.make_graph(nodes, "ln", [x, k], outputs, inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 8
    onnx.save(model, path)


def _run(path: Path, feeds: dict) -> list:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


@pytest.mark.parametrize("skip", [True, False])
def test_layer_norm_rewrite_keeps_the_outputs(tmp_path, skip):
    _ln_model(tmp_path / "ln.onnx", skip)
    assert decompose_layer_norm(tmp_path / "ln.onnx", tmp_path / "prim.onnx") == 1
    ops = {n.op_type for n in onnx.load(tmp_path / "prim.onnx").graph.node}
    assert not ops & {"LayerNormalization", "SkipLayerNormalization"}
    rng = np.random.default_rng(1)
    feeds = {n: rng.normal(size=(1, 5, H)).astype(np.float32) for n in ("x", "k")}
    for a, b in zip(_run(tmp_path / "ln.onnx", feeds), _run(tmp_path / "prim.onnx", feeds), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_timing_worker_times_every_model_on_every_input(tmp_path):
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "s"])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "s"])
    graph = helper.make_graph(
        [helper.make_node("Cast", ["input_ids"], ["logits"], to=TensorProto.FLOAT)], "c", [ids], [out]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "cast.onnx")
    sets = {"real": [{"input_ids": [[1, 2, 3]]}, {"input_ids": [[4, 5]]}], "128": [{"input_ids": [[7] * 128]}]}
    paths = {"a": tmp_path / "cast.onnx", "b": tmp_path / "cast.onnx"}
    res = time_in_runtime(
        HOST, paths, {"a": sets, "b": sets}, {"real": [0, 1], "128": [0, 0]}, rounds=2, logits_set="real"
    )
    assert set(res["times_ms"]) == {"real", "128"}
    assert all(len(res["times_ms"][s][m]) == 4 for s in ("real", "128") for m in ("a", "b"))
    assert all(t > 0 for s in res["times_ms"].values() for ts in s.values() for t in ts)
    assert res["logits"]["a"] == [[1.0, 2.0, 3.0], [4.0, 5.0]]


def test_graph_variants_build_what_each_variant_names(tiny_classifier_dir, tmp_path):
    from graph_variants import VARIANTS, build, score
    from transformers import AutoTokenizer

    from mobilebert_kit.data import Split

    graphs = build(tiny_classifier_dir, tmp_path)
    assert list(graphs) == list(VARIANTS)
    ops = {name: g["ops"] for name, g in graphs.items()}
    assert ops["default"].get("QAttention") and ops["default"].get("BiasGelu")
    assert not ops["attention unfused"].get("QAttention") and ops["attention unfused"].get("Softmax")
    assert ops["MultiHeadAttention"].get("MultiHeadAttention") and not ops["MultiHeadAttention"].get("QAttention")
    assert ops["FastGelu"].get("FastGelu") and not ops["FastGelu"].get("BiasGelu")
    assert ops["no SkipLayerNorm"].get("LayerNormalization") and not ops["no SkipLayerNorm"].get(
        "SkipLayerNormalization"
    )
    # the tiny model's first layer is fused; its last runs for the first token only unless told otherwise
    assert ops["every position"].get("QAttention") == ops["default"].get("QAttention") + 1
    int8_products = ops["INT8 attention products"].get("MatMulInteger", 0)
    assert int8_products >= ops["attention unfused"].get("MatMulInteger", 0) + 2  # scores and context of layer 0
    assert ops["embeddings unfused"].get("Gather") and not ops["embeddings unfused"].get("QEmbedLayerNormalization")
    import onnx

    masks = [
        list(n.input)
        for n in onnx.load(str(graphs["MultiHeadAttention, no mask"]["path"])).graph.node
        if n.op_type == "MultiHeadAttention"
    ]
    assert masks and all(len(inputs) == 4 for inputs in masks)  # query, key, value, bias: no mask
    val = Split(["a good film", "a dull and tiresome film", "fine"], [1, 0, 1])
    score(graphs, AutoTokenizer.from_pretrained(tiny_classifier_dir), val)
    assert graphs["default"]["agreement_with_default"] == 1.0
    assert all(0.0 <= g["val_accuracy"] <= 1.0 for g in graphs.values())


def test_weight_averaging_hook_averages_what_it_names(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import torch
    from weight_averaging import Average, install

    from mobilebert_kit.training import engine
    from mobilebert_kit.training.hooks import Evaluation

    model = torch.nn.Linear(2, 1, bias=False)

    def step(avg, value, epoch):
        with torch.no_grad():
            model.weight.fill_(value)
        avg.on_step_end(SimpleNamespace(epoch=epoch))

    ema = Average(model, epochs=2, mode="ema", decay=0.9)
    for value, epoch in ((1.0, 0), (3.0, 1)):
        step(ema, value, epoch)
    ema.on_epoch_end(SimpleNamespace(epoch=0))  # not the last epoch: the live weights stay
    assert model.weight[0, 0].item() == 3.0
    ema.on_epoch_end(SimpleNamespace(epoch=1))
    assert model.weight[0, 0].item() == pytest.approx(1.0 + 0.1 * 2.0)

    last = Average(model, epochs=2, mode="last_epoch")
    for value, epoch in ((100.0, 0), (2.0, 1), (4.0, 1), (9.0, 1)):
        step(last, value, epoch)
    last.on_epoch_end(SimpleNamespace(epoch=1))
    assert model.weight[0, 0].item() == pytest.approx(5.0)  # epoch 1's steps only

    monkeypatch.setattr(engine, "Hooks", engine.Hooks)
    ev = Evaluation(lambda: None, model, tmp_path, epochs=2, patience=0, writer=False, log=print)
    install("ema", 0.99)
    kinds = [type(h).__name__ for h in engine.Hooks([engine.ProgressBar(2, True), ev]).hooks]
    assert kinds == ["ProgressBar", "Average", "Evaluation"]


def test_int4_vs_int8_table_has_a_latency_column_per_runtime():
    from int4_vs_int8 import markdown

    lat = {"real": {"p50_ms": 0.5}, "seq128": {"p50_ms": 2.25}}
    row = {
        "variant": "int8",
        "size_mb": 19.2,
        "test": {"accuracy": 0.83},
        "guard": {"drop": 0.004, "drop_ci95": [-0.002, 0.011]},
        "latency": {"1.32.0": lat, "1.22.0": {"real": {"p50_ms": 0.4}, "seq128": {"p50_ms": 2.0}}},
    }
    res = {
        "student": "s",
        "rounds": 3,
        "real_texts": 200,
        "real_length_median_tokens": 27.0,
        "ort_versions": ["1.32.0", "1.22.0"],
        "rows": [row, {"variant": "matmul", "refused": "drop too big"}],
    }
    md = markdown(res)
    assert "| int8 | 19.20 | 0.8300 | +0.40 pt (-0.2 … +1.1) | 0.500 / 2.250 | 0.400 / 2.000 |" in md
    assert "| matmul | refused by the guard: drop too big |" in md
    assert "p50 ms real / 128 @ 1.22.0" in md


def test_teacher_int8_closeness_measures_what_it_names():
    from teacher_int8 import closeness

    a = np.array([[2.0, -1.0], [0.0, 1.0], [3.0, 0.5]])
    same = closeness(a, a.copy(), 3.0)
    assert same == {"label_agreement": 1.0, "kl_fp32_to_int8": 0.0, "max_abs_logit_diff": 0.0}
    flipped = closeness(a, a[:, ::-1].copy(), 3.0)
    assert flipped["label_agreement"] == 0.0 and flipped["kl_fp32_to_int8"] > 0.01
    assert flipped["max_abs_logit_diff"] == pytest.approx(3.0)


def test_distill_speed_reports_every_teacher_precision():
    from distill_speed import markdown

    def side(ex_s, e2e, acc):
        run = {"train_examples_per_second": ex_s}
        return {
            "train_examples_per_second": ex_s,
            "end_to_end_examples_per_second": e2e,
            "teacher_cache_seconds": 1.0,
            "test_accuracy": acc,
            "test_macro_f1": acc,
            "student_parameters": 10,
            "runs": [run],
        }

    seed, fp32, int8 = side(20.0, 20.0, 0.7), side(60.0, 40.0, 0.71), side(60.0, 50.0, 0.72)
    setup = dict.fromkeys(("teacher", "layers", "train_examples", "test_examples", "epochs", "batch_size"), 1)
    setup.update(max_length=64, lr=1e-4, temperature=3.0, alpha=0.5, device="cpu", torch_threads=1, cpu_count=2)
    setup.update(repeats=1, load_average_1min=[0.5])
    by = {
        p: {"mbk_distill": v, "speedup_train": 3.0, "speedup_end_to_end": v["end_to_end_examples_per_second"] / 20}
        for p, v in (("fp32", fp32), ("int8", int8))
    }
    r = {"setup": setup, "teacher": {"test_accuracy": 0.8, "test_macro_f1": 0.8, "parameters": 20}}
    r.update(seed_distill_trainer=seed, mbk_distill=fp32, by_teacher_precision=by, command="x")
    md = markdown(r)
    assert "| mbk distill, teacher pass int8 (cached teacher outputs, dynamic padding) | 60.0 | 50.0 | 1.0 |" in md
    assert "- teacher pass fp32: **3.00x** on training steps, **2.00x** end to end" in md
    assert "- teacher pass int8: **3.00x** on training steps, **2.50x** end to end" in md
    assert "shared with other jobs" not in md


def test_recover_int8_table_has_a_row_per_precision():
    from recover_int8 import markdown

    row = {"wall_seconds": 100.0, "recovery_step_seconds": 80.0, "recovery_train_seconds": 50.0, "test_n": 1276}
    row.update(validation_accuracy=0.81, guard_drop=0.01, test_accuracy=0.83)
    rows = [dict(row, precision=p, ran_in=p) for p in ("fp32", "int8")]
    md = markdown({"run": "r", "steps": [{"method": "recover"}], "rows": rows, "command": "x"})
    assert "| int8 | int8 | 100.0 | 80.0 | 50.0 | 0.8100 | +0.0100 | 0.8300 |" in md
    assert "one test text of 1276 is 0.08 pt" in md


def test_targets_checks_the_litert_build_against_every_optimum_timed():
    from targets import LITERT, OPTIMUM, PHONE, TEACHER, checks, markdown

    def model(size, acc, real, l128, **extra):
        return {"size_bytes": size, "accuracy": acc, "macro_f1": acc, "p50_ms_real": real, "p50_ms_128": l128, **extra}

    res = {"run": "r", "n_test": 4, "real_length_median_tokens": 20, "host_onnxruntime": "1.32.0"}
    res["models"] = {
        TEACHER: model(100e6, 1.0, 10.0, 40.0),
        PHONE: model(9e6, 1.0, 1.0, 4.5),
        OPTIMUM: model(18e6, 1.0, 2.5, 11.0),
        LITERT: model(11e6, 0.75, 0.8, 3.9, runtime_version="2.3.0"),
    }
    res["side_runtimes"] = {"1.22.0": {PHONE: model(9e6, 1.0, 0.9, 4.3), OPTIMUM: model(18e6, 1.0, 1.3, 6.0)}}
    res["recipe_seconds"] = {"total": 600.0}
    right = np.ones(4, dtype=bool)
    correct = {TEACHER: right, PHONE: right, OPTIMUM: right, LITERT: np.array([True, True, True, False])}
    c = checks(res, correct)
    assert c["faster_128 @ litert"]["value"] == pytest.approx(40 / 3.9)
    assert c["smaller @ litert"]["value"] == pytest.approx(100 / 11)
    assert c["vs_optimum_latency_128 @ litert vs Optimum @ ort 1.22.0"]["value"] == pytest.approx(3.9 / 6.0)
    assert c["vs_optimum_latency_real @ litert vs Optimum @ ort 1.32.0"]["value"] == pytest.approx(0.8 / 2.5)
    assert c["accuracy_ratio @ litert"]["diff_vs_teacher"][0] == pytest.approx(-0.25)
    res["checks"] = c
    md = markdown(res)
    assert f"| {LITERT}, ai-edge-litert 2.3.0 (XNNPACK) | 11.0 | 0.7500 |" in md
    assert "| faster_128 @ litert | 10.256 | 10.0 | met |" in md
    assert "| smaller @ litert | 9.091 | 10.0 | NOT met |" in md
    assert "| vs_optimum_latency_128 @ litert vs Optimum @ ort 1.22.0 | 0.650 | 0.5 | NOT met |" in md


def test_student_quality_rows_and_their_recipes(tmp_path):
    """Each ablation row becomes the base recipe's later stages on the shared teacher, with only that row's
    levers changed; a seed sets distill's train.seed; --set applies to every run."""
    import student_quality as sq
    import yaml

    from mobilebert_kit.pipeline import recipe as recipes

    args = sq.parse_args(["--set", "distill.train.max_steps=3", "--rows", "paraphrase-minilm-l3/25000/on,layers/0/off"])
    rows = sq.rows(args)
    assert [r["name"] for r in rows] == ["layers/0/off", "paraphrase-minilm-l3/25000/on"]
    base = yaml.safe_load((Path(__file__).resolve().parents[2] / "recipes" / "quality.yaml").read_text())
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    plain = sq.run_recipe(base, rows[0], 2, teacher, tmp_path / "r0", args)
    assert plain["stages"] == sq.STAGES and "finetune" not in plain
    assert plain["distill"]["layers"] == [0, 2, 4] and "unlabeled" not in plain["distill"]
    assert plain["distill"]["train"]["seed"] == 2 and plain["distill"]["train"]["max_steps"] == 3
    full = sq.run_recipe(base, rows[1], 1, teacher, tmp_path / "r1", args)
    d = full["distill"]
    assert d["student"] == "paraphrase-minilm-l3" and d["layers"] is None and d["hidden_weight"] == 1
    assert d["unlabeled"] == "imdb" and d["max_unlabeled"] == 25000 and d["teacher"] == str(teacher)
    for i, recipe in enumerate((plain, full)):
        path = tmp_path / f"r{i}.yaml"
        path.write_text(yaml.safe_dump(recipe))
        assert recipes.load(path).stages == sq.STAGES  # a recipe mbk accepts
    with pytest.raises(SystemExit, match="unknown rows nope/1/off"):
        sq.rows(sq.parse_args(["--rows", "nope/1/off"]))
