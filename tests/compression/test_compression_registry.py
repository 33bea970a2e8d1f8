"""The compression method registry: a method defined in one file (tests/dummy_method.py) and
registered with one line runs through a recipe's ``compress: steps:`` list; bad steps are refused
with every problem at once."""

from __future__ import annotations

import pytest
import yaml
from conftest import make_tiny_classifier

from mobilebert_kit import compression
from mobilebert_kit.artifacts import read_json
from mobilebert_kit.errors import ConfigError
from mobilebert_kit.stages.compress import CompressConfig, shorthand_steps

KNOWN = "prune, prune_heads, prune_ffn, recover, trim_vocab, int8_dynamic, int8_static, int4_embeddings, int4_matmul"


@pytest.fixture()
def scale_bias(monkeypatch):
    monkeypatch.setitem(compression.METHODS, "scale_bias", "dummy_method:ScaleClassifierBias")  # the one line


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    return make_tiny_classifier(tmp_path_factory.mktemp("reg") / "student", heads=4, label_names=["neg", "pos"])


def test_dummy_method_runs_from_a_recipe(scale_bias, student, sentiment_csv, tmp_path, cli):
    run_dir = tmp_path / "run"
    recipe = {
        "stages": ["compress"],
        "run_dir": str(run_dir),
        "compress": {
            "model": str(student),
            "data": str(sentiment_csv),
            "max_length": 32,
            "latency_runs": 0,
            "max_drop": 1.0,
            "steps": [{"method": "scale_bias", "factor": 1.0}, {"method": "int8_dynamic", "per_channel": True}],
        },
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    r = cli("run", tmp_path / "r.yaml", "--quiet")
    assert r.exit_code == 0, r.output
    out = run_dir / "compressed"
    metrics, comp = read_json(out / "metrics.json"), read_json(out / "compression.json")
    assert [s["step"] for s in metrics["steps"]] == ["scale_bias", "onnx_fp32", "int8_dynamic"]
    assert metrics["steps"][0]["factor"] == 1.0 and metrics["steps"][0]["validation"]["agreement_with_input"] == 1.0
    assert comp["scale_bias"] == {"factor": 1.0} and comp["prune"] is None
    assert comp["int8"] is True and comp["int8_mode"] == "dynamic" and comp["per_channel"] is True
    assert (out / "onnx" / "model.onnx").is_file() and metrics["guard"]["passed"]


def test_shorthand_builds_the_same_list():
    cfg = CompressConfig(prune=0.2, prune_heads=0.5, prune_ffn=0.25, recover_epochs=1, trim_vocab=True, int8=True)
    # recovery comes after trimming so it wins back what both cost, and before L1 (training would refill the zeros)
    assert [s["method"] for s in shorthand_steps(cfg)] == [
        "prune_heads",
        "prune_ffn",
        "trim_vocab",
        "recover",
        "prune",
        "int8_dynamic",
    ]
    plan = cfg.plan()  # heads and neurons fuse into one importance pass, as before
    assert [s.label for s in plan] == ["structured", "trim_vocab", "recovery", "unstructured", ""]
    four = CompressConfig(int4_matmul=True, int4_embeddings=True, block_size=64, int8=True).plan()
    assert [s.name for s in four] == ["int4_embeddings", "int4_matmul", "int8_dynamic"]
    assert four[0].block_size == four[1].block_size == 64 and four[0].fusion == {"enable_embed_layer_norm": False}
    assert (plan[0].heads, plan[0].ffn) == (0.5, 0.25) and plan[-1].name == "int8_dynamic"
    assert CompressConfig(int8=True, static=True).plan()[0].name == "int8_static"
    assert shorthand_steps(CompressConfig(recover_epochs=1)) == []  # recovery alone compresses nothing
    with pytest.raises(ConfigError, match="^nothing to do: pass at least one of --prune"):
        CompressConfig().plan()


def _problems(steps, **extra) -> list[str]:
    with pytest.raises(ConfigError) as e:
        CompressConfig.from_dict({"steps": steps, **extra}, section="compress")
    return e.value.problems


def test_bad_steps_every_problem_at_once(scale_bias):
    assert _problems(
        [
            {"method": "prune_fnn", "fraction": 0.25},
            {"method": "prune_ffn", "fractoin": 0.25},
            {"method": "scale_bias", "factor": 50},
            {"method": "int8_static", "calib_method": "kl"},
            {"method": "prune_heads"},
        ]
    ) == [
        f"compress: steps[0]: unknown compression method 'prune_fnn' (did you mean 'prune_ffn'?); "
        f"known: {KNOWN}, scale_bias",
        "compress: unknown key 'steps[1].fractoin' (did you mean 'steps[1].fraction'?)",
        "compress: steps[2]: factor must be in (0, 10], got 50.0",
        "compress: steps[3]: calib_method must be one of minmax, entropy, percentile; got 'kl'",
        "compress: steps[4]: fraction is required: the share of attention heads of every layer to remove, in [0, 1)",
    ]


@pytest.mark.parametrize(
    "steps,extra,message",
    [
        ([{"method": "prune_ffn", "fraction": 1.5}], {}, "compress: steps[0]: fraction must be in [0, 1), got 1.5"),
        (
            [{"method": "recover", "hidden_weight": -1}],
            {},
            "compress: steps[0]: hidden_weight must be in [0, inf), got -1",
        ),
        (["int8_dynamic"], {}, "compress.steps[0]: expected a mapping, got 'int8_dynamic'"),
        ([{"fraction": 0.2}], {}, "compress: steps[0]: expected a mapping with a 'method' key (one of prune, "),
        (
            [{"method": "int8_dynamic"}, {"method": "prune", "fraction": 0.2}],
            {},
            "compress: steps: prune change(s) the PyTorch model, so must come before int8_dynamic",
        ),
        (
            [{"method": "int8_dynamic"}, {"method": "int8_static"}],
            {},
            "compress: steps: only one INT8 step per run (int8_dynamic, then int8_static)",
        ),
        (
            [{"method": "int8_dynamic"}, {"method": "int4_embeddings"}],
            {},
            "compress: steps: int4_embeddings must come before int8_dynamic: INT8 quantizes whatever is still fp32",
        ),
        (
            [{"method": "int4_matmul"}, {"method": "int4_matmul", "block_size": 64}],
            {},
            "compress: steps: int4_matmul appears 2 times; an ONNX step runs once per run",
        ),
        (
            [{"method": "int4_embeddings"}, {"method": "trim_vocab"}],
            {},
            "compress: steps: trim_vocab change(s) the PyTorch model, so must come before int4_embeddings",
        ),
        (
            [{"method": "int4_matmul", "block_size": 48}],
            {},
            "compress: steps[0]: block_size must be one of 16, 32, 64, 128, 256; got '48'",
        ),
        ([{"method": "int4_embeddings", "bits": 8}], {}, "compress: steps[0]: bits must be one of 4; got '8'"),
        (
            [{"method": "int4_matmul", "accuracy_level": 7}],
            {},
            "compress: steps[0]: accuracy_level must be one of 0, 1, 2, 3, 4; got '7'",
        ),
        (
            [{"method": "int4_embeddings", "symmetric": "maybe"}],
            {},
            "compress: steps[0].symmetric: expected true/false",
        ),
        ([], {"block_size": 100}, "compress: block_size must be one of 16, 32, 64, 128, 256; got '100'"),
        (
            [{"method": "int8_dynamic"}],
            {"int8": True, "per_channel": True},
            "compress: steps replaces the shorthand options; drop int8, per_channel or write them as steps",
        ),
    ],
)
def test_bad_step_lists(steps, extra, message):
    problems = _problems(steps, **extra)
    assert len(problems) == 1 and problems[0].startswith(message), problems


def test_bad_4bit_plan_every_problem_at_once():
    """Unknown bits and block sizes, a 4-bit step after INT8 and before a PyTorch step: all in one error."""
    assert _problems(
        [
            {"method": "int4_embeddings", "bits": 3, "block_size": 20},
            {"method": "int8_dynamic"},
            {"method": "int4_matmul"},
            {"method": "prune", "fraction": 0.2},
        ]
    ) == [
        "compress: steps[0]: bits must be one of 4; got '3'",
        "compress: steps[0]: block_size must be one of 16, 32, 64, 128, 256; got '20'",
        "compress: steps: int4_matmul must come before int8_dynamic: INT8 quantizes whatever is still fp32 (the "
        "embedding Gathers and MatMuls included), so it is the last ONNX step",
        "compress: steps: prune change(s) the PyTorch model, so must come before int8_dynamic (it works on the "
        "exported ONNX graph)",
    ]


def test_bad_steps_reported_by_the_cli(student, tmp_path, cli):
    recipe = {"stages": ["compress"], "compress": {"model": str(student), "steps": [{"method": "int9"}]}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    r = cli("run", tmp_path / "r.yaml", "--dry-run")
    assert r.exit_code != 0
    assert r.stderr.startswith("Error: compress: steps[0]: unknown compression method 'int9'"), r.stderr
