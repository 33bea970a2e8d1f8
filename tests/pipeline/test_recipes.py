"""Recipes: every shipped recipe validates; mbk validate reports every problem; mbk run wires stages
under the run folder, reuses unchanged stages (also after a failure), honours --from/--until and
--dry-run; mbk report; and the smoke recipe end to end on the shipped MiniLM."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import make_tiny_classifier, write_sentiment_csv

from mobilebert_kit.errors import ArtifactError, ConfigError
from mobilebert_kit.pipeline import recipe as rc
from mobilebert_kit.stages.base import STAGES, config_class, stage_available

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
FAST_TRAIN = {
    "epochs": 1,
    "lr": 1e-2,
    "batch_size": 16,
    "max_length": 32,
    "early_stopping_patience": 0,
    "checkpoint_every": 0,
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("recipes")
    return make_tiny_classifier(d / "tiny", layers=2), write_sentiment_csv(d / "reviews.csv", n=120)


def write_recipe(path: Path, body: dict) -> Path:
    path.write_text("# mbk run " + path.name + "\n" + yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


def finetune_recipe(tmp_path: Path, tiny, stages=("finetune",), **sections) -> Path:
    model, data = tiny
    body = {
        "name": "t",
        "run_dir": str(tmp_path / "run"),
        "stages": list(stages),
        "data": {"data": str(data)},
        "finetune": {"model": str(model), "train": dict(FAST_TRAIN)},
        **sections,
    }
    return write_recipe(tmp_path / "r.yaml", body)


def state(run_dir: Path, key: str) -> dict:
    return json.loads((run_dir / ".state" / f"{key}.json").read_text())


# --------------------------------------------------------------------------- shipped recipes


def test_recipes_folder_has_the_four_recipes():
    names = {p.stem for p in RECIPES}
    assert {"default", "smoke", "seed_chinese_gpu", "mpnet_gpu"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_shipped_recipe_validates_and_has_its_command_in_the_header(path, cli):
    r = rc.load(path)
    assert r.steps and r.run_dir == Path("artifacts/runs") / path.stem
    header = [ln for ln in path.read_text().splitlines() if ln.startswith("#")]
    assert any(f"mbk run recipes/{path.name}" in ln for ln in header), "header comment must show the exact command"
    res = cli("validate", str(path))
    assert res.exit_code == 0 and "valid" in res.output


def test_default_recipe_wires_each_stage_to_the_previous_output():
    r = rc.load(ROOT / "recipes" / "default.yaml")
    run = Path("artifacts/runs/default")
    cfg = {s.key: s.config for s in r.steps}
    assert [s.key for s in r.steps] == [
        "finetune",
        "distill",
        "compress",
        "export",
        "verify",
        "bench",
        "package-android",
        "package-ios",
        "report",
    ]
    assert cfg["finetune"].output == str(run / "teacher") and cfg["finetune"].model == "minilm-l6"
    assert cfg["distill"].teacher == str(run / "teacher") and cfg["distill"].output == str(run / "student")
    assert cfg["distill"].layers == [0, 2, 4] and cfg["distill"].data.data == "rotten_tomatoes"
    assert cfg["compress"].model == str(run / "student")
    assert [s["method"] for s in cfg["compress"].steps][-1] == "int8_dynamic"  # the plan ends in INT8
    assert cfg["export"].model == str(run / "compressed") and set(cfg["export"].resolved_formats) == {
        "onnx",
        "ort",
        "torchscript",
        "coreml",
    }
    assert cfg["verify"].export_dir == str(run / "export") and cfg["bench"].export_dir == str(run / "export")
    assert cfg["package-ios"].output == str(run / "package" / "ios") and cfg["package-ios"].target == "ios"


def test_seed_recipe_has_the_seed_settings():
    r = rc.load(ROOT / "recipes" / "seed_chinese_gpu.yaml")
    ft, di = r.step("finetune").config, r.step("distill").config
    assert ft.model == "bert-base-chinese" and ft.train.freeze_layers == 9 and ft.train.precision == "fp16"
    assert (ft.train.batch_size, ft.train.lr, ft.train.grad_accum) == (32, 3e-5, 2)
    assert di.student == "uer/chinese_roberta_L-4_H-512" and (di.temperature, di.alpha) == (3.0, 0.5)
    assert (di.train.batch_size, di.train.lr, di.train.grad_accum, di.train.precision) == (32, 3e-5, 2, "fp16")


# --------------------------------------------------------------------------- validation


def test_validate_reports_every_problem_at_once(tmp_path, cli):
    p = write_recipe(
        tmp_path / "bad.yaml",
        {
            "stages": ["finetune", "distil", "compress", "export", "verify", "package"],
            "data": {"data": "rotten_tomatoes", "max_train_examples": 100},
            "finetune": {"modle": "minilm-l6", "train": {"epochs": "two"}},
            "compress": {"int8": True, "static": True, "calib_samples": 500, "max_drop": 3},
            "export": {"formats": ["onnx"]},
            "verify": {"batch_size": 0},
            "packge": {},
        },
    )
    res = cli("validate", str(p))
    assert res.exit_code == 1
    out = res.output
    assert out.startswith("Error: ") and "problems:" in out.splitlines()[0]
    for expected in (
        "unknown stage 'distil' (did you mean 'distill'?)",
        "unknown key 'finetune.modle' (did you mean 'finetune.model'?)",
        "finetune.train.epochs: expected an integer, got 'two'",
        "compress: max_drop must be in [0, 1], got 3.0",
        "verify: batch_size must be in [1, inf), got 0",
        "unknown key 'packge'",
        "package target 'android' needs the 'ort' export: add it to export.formats",
    ):
        assert expected in out, expected
    assert "Traceback" not in out


def test_validate_catches_static_int8_without_enough_calibration_data(tmp_path):
    body = {
        "stages": ["finetune", "compress"],
        "data": {"max_train_examples": 50},
        "compress": {"int8": True, "static": True, "calib_samples": 128},
    }
    with pytest.raises(ConfigError) as e:
        rc.load(body, name="x")
    assert e.value.problems == [
        "compress.static calibrates on the training split, but data.max_train_examples is 50 < "
        "compress.calib_samples 128; lower calib_samples or use dynamic INT8"
    ]
    with pytest.raises(ConfigError, match=r"--static is an INT8 mode"):
        rc.load({"stages": ["finetune", "compress"], "compress": {"static": True}}, name="x")


def test_validate_missing_files_and_missing_inputs(tmp_path):
    body = {"stages": ["compress", "export"], "data": {"data": str(tmp_path / "nope.csv")}, "compress": {"int8": True}}
    with pytest.raises(ConfigError) as e:
        rc.load(body, name="x")
    assert e.value.problems == [f"data.data: file {tmp_path / 'nope.csv'} does not exist"]
    # nothing upstream: the stage's own default input (as `mbk compress` would use), checked before running
    r = rc.load(
        {"stages": ["compress", "export"], "run_dir": str(tmp_path / "run"), "compress": {"int8": True}}, name="x"
    )
    assert r.step("compress").config.model == "artifacts/student"
    assert r.step("export").config.model == str(tmp_path / "run" / "compressed")
    with pytest.raises(ArtifactError) as e:
        rc.plan(r)
    assert str(e.value) == (
        "stage 'compress' needs artifacts/student (compress.model), which does not exist; "
        "check the path or add the stage that produces it"
    )
    body = {"stages": ["export"], "export": {"model": str(tmp_path / "missing_model")}}
    with pytest.raises(ConfigError, match="export.model: .*missing_model does not exist"):
        rc.load(body, name="x")


def test_validate_stage_order_duplicates_sections_and_yaml_errors(tmp_path, cli):
    with pytest.raises(ConfigError) as e:
        rc.load({"stages": ["export", "finetune", "finetune"], "finetune": 3}, name="x")
    probs = "\n".join(e.value.problems)
    assert "stage 'finetune' must come before 'export'" in probs
    assert "stage 'finetune' is listed twice" in probs
    assert "section 'finetune' must be a mapping" in probs
    bad = tmp_path / "broken.yaml"
    bad.write_text("stages: [finetune\nfinetune: {}\n")
    res = cli("validate", str(bad))
    assert res.exit_code == 1 and res.output.startswith(f"Error: recipe {bad} is not valid YAML at line")
    res = cli("validate", str(tmp_path / "absent.yaml"))
    assert res.exit_code == 1 and res.output == (
        f"Error: recipe {tmp_path / 'absent.yaml'} does not exist; check the path (the shipped recipes are in "
        "recipes/, e.g. recipes/default.yaml)\n"
    )
    with pytest.raises(ConfigError, match="stages: missing"):
        rc.load({"finetune": {}}, name="x")


def test_unavailable_stage_is_a_clear_error_not_a_crash(monkeypatch, tmp_path, cli):
    import dataclasses

    monkeypatch.setitem(STAGES, "package", dataclasses.replace(STAGES["package"], module="package_not_written_yet"))
    p = write_recipe(tmp_path / "r.yaml", {"stages": ["finetune", "package"]})
    res = cli("validate", str(p))
    assert res.exit_code == 1
    assert res.output == "Error: stage 'package' is not available in this version\n"


def test_overrides_are_typed_and_checked(tmp_path):
    body = {"stages": ["finetune"], "finetune": {"train": {"epochs": 3}}}
    r = rc.load(
        dict(body),
        [
            "finetune.train.epochs=2",
            "finetune.train.lr=1e-4",
            "data.max_train_examples=64",
            "finetune.train.dynamic_padding=false",
            "run_dir=" + str(tmp_path / "x"),
        ],
        name="x",
    )
    cfg = r.step("finetune").config
    assert (cfg.train.epochs, cfg.train.lr, cfg.data.max_train_examples, cfg.train.dynamic_padding) == (
        2,
        1e-4,
        64,
        False,
    )
    assert r.run_dir == tmp_path / "x" and cfg.output == str(tmp_path / "x" / "teacher")
    with pytest.raises(ConfigError) as e:
        rc.load(
            dict(body),
            ["finetun.train.epochs=2", "finetune.train.epochs=lots", "finetune.train.epochs.x=1", "oops"],
            name="x",
        )
    probs = e.value.problems
    assert "override 'finetun.train.epochs=2': unknown section 'finetun' (did you mean 'finetune'?)" in probs
    assert "override 'finetune.train.epochs.x=1': 'finetune.train.epochs' is not a section" in probs
    assert "override 'oops' must look like key.path=value (e.g. finetune.train.epochs=2)" in probs


def test_run_dir_placeholder_and_shared_data_merge(tmp_path):
    body = {
        "stages": ["finetune", "distill"],
        "run_dir": str(tmp_path / "r"),
        "data": {"max_train_examples": 10},
        "finetune": {"data": {"max_eval_examples": 5}},
        "distill": {"cache_dir": "{run_dir}/cache"},
    }
    r = rc.load(body, name="x")
    ft, di = r.step("finetune").config, r.step("distill").config
    assert (ft.data.max_train_examples, ft.data.max_eval_examples) == (10, 5)
    assert di.data.max_train_examples == 10 and di.cache_dir == str(tmp_path / "r" / "cache")
    # no shared data: distill inherits the teacher's recorded data (None), not a default
    r = rc.load({"stages": ["finetune", "distill"], "finetune": {"data": {"data": "rotten_tomatoes"}}}, name="x")
    assert r.step("distill").config.data is None


def test_save_recipe_of_a_later_stage_uses_its_default_input(tmp_path, cli, monkeypatch):
    from mobilebert_kit.cli.common import write_stage_recipe

    monkeypatch.chdir(tmp_path)
    write_stage_recipe("d.yaml", "distill", {"output": "artifacts/student", "train": {"epochs": 1}})
    assert cli("validate", "d.yaml").exit_code == 0
    res = cli("run", "d.yaml")
    assert res.exit_code == 1
    assert res.output == (
        "Error: stage 'distill' needs artifacts/teacher (distill.teacher), which does not exist; "
        "check the path or add the stage that produces it\n"
    )
    assert not (tmp_path / "artifacts" / "student").exists()


def test_save_recipe_from_finetune_loads(tiny, tmp_path, cli):
    from mobilebert_kit.cli.common import write_stage_recipe

    model, data = tiny
    path = tmp_path / "saved.yaml"
    write_stage_recipe(
        str(path),
        "finetune",
        {
            "output": str(tmp_path / "teacher"),
            "model": str(model),
            "data": {"data": str(data), "max_train_examples": 40},
            "train": {"epochs": 1},
        },
    )
    assert path.read_text().startswith(f"# Reproduce with: mbk run {path}\n")
    r = rc.load(path)
    assert r.step("finetune").config.output == str(tmp_path / "teacher")
    assert cli("validate", str(path)).exit_code == 0


@pytest.mark.parametrize("stage", [s for s in STAGES if s != "report"])
def test_a_stage_config_dict_round_trips_through_a_recipe(stage):
    if not stage_available(stage):
        pytest.skip(f"stage {stage} not in this tree")
    cfg = config_class(stage)(**({"int8": True} if stage == "compress" else {}))
    section = cfg.to_dict()
    for key in STAGES[stage].inputs:  # a one-stage recipe names its input explicitly
        section[key] = section.get(key) or "artifacts/x"
    r = rc.load({"stages": [stage], stage: section}, name="x")
    expected = dict(section)
    if section.get("output", "") is None:  # "default" output: the recipe puts it under the run folder
        expected["output"] = str(Path("artifacts/runs/x") / STAGES[stage].subdir / section.get("target", ""))
    assert r.steps[0].config.to_dict() == expected


# --------------------------------------------------------------------------- running


def test_run_reuses_unchanged_stage_and_reruns_on_edit(tiny, tmp_path, cli):
    p = finetune_recipe(tmp_path, tiny)
    run_dir = tmp_path / "run"
    res = cli("run", str(p), "--dry-run")
    assert res.exit_code == 0 and "finetune  run    not run yet" in res.output and not run_dir.exists()
    res = cli("run", str(p), "-q")
    assert res.exit_code == 0, res.output
    manifest = run_dir / "teacher" / "manifest.json"
    first = state(run_dir, "finetune")
    assert first["status"] == "done" and manifest.exists()
    mtime = manifest.stat().st_mtime_ns
    res = cli("run", str(p), "--json")
    assert res.exit_code == 0
    steps = json.loads(res.stdout)["steps"]
    assert steps == [{"step": "finetune", "action": "reuse", "reason": "unchanged", "output": str(run_dir / "teacher")}]
    assert manifest.stat().st_mtime_ns == mtime
    res = cli("run", str(p), "--dry-run", "finetune.train.epochs=2")
    assert "finetune  run    config changed" in res.output
    # the output was replaced behind the run's back (e.g. `mbk finetune --overwrite` into it): not reused
    original = manifest.read_text()
    m = json.loads(original)
    manifest.write_text(json.dumps({**m, "created": "another run"}))
    res = cli("run", str(p), "--dry-run")
    assert "was changed outside this run" in res.output
    manifest.write_text(original)
    assert "finetune  reuse  unchanged" in cli("run", str(p), "--dry-run").output
    # a reused output is re-hashed: corrupted weights behind an intact manifest are not reused
    weights = run_dir / "teacher" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    res = cli("run", str(p), "--dry-run")
    assert "was changed outside this run (model.safetensors differs from its manifest)" in res.output


def test_interrupted_run_continues_where_it_stopped(tiny, tmp_path, cli):
    """Stage 2 fails (a value only its run() can check); the fixed re-run reuses stage 1."""
    p = finetune_recipe(
        tmp_path,
        tiny,
        stages=("finetune", "distill"),
        distill={"layers": [5], "cache_dir": str(tmp_path / "cache"), "train": dict(FAST_TRAIN)},
    )
    run_dir = tmp_path / "run"
    res = cli("run", str(p), "-q")
    assert res.exit_code == 1
    assert res.output.strip().splitlines()[-1] == "Error: layers 5 out of range: the teacher has 2 layers (0..1)"
    assert state(run_dir, "finetune")["status"] == "done"
    assert state(run_dir, "distill")["status"] == "running"  # started, never finished
    assert not (run_dir / "student").exists()  # nothing half-written
    teacher_state = state(run_dir, "finetune")
    mtime = (run_dir / "teacher" / "manifest.json").stat().st_mtime_ns
    res = cli("run", str(p), "distill.layers=[0]", "--json", "-q")
    assert res.exit_code == 0, res.output
    steps = {s["step"]: s["action"] for s in json.loads(res.stdout)["steps"]}
    assert steps == {"finetune": "reuse", "distill": "run"}
    assert (run_dir / "teacher" / "manifest.json").stat().st_mtime_ns == mtime
    assert state(run_dir, "finetune") == teacher_state
    assert state(run_dir, "distill")["status"] == "done" and (run_dir / "student" / "manifest.json").exists()


def test_from_until_and_missing_upstream(tiny, tmp_path, cli):
    p = finetune_recipe(
        tmp_path,
        tiny,
        stages=("finetune", "distill"),
        distill={"layers": [0], "cache_dir": str(tmp_path / "cache"), "train": dict(FAST_TRAIN)},
    )
    res = cli("run", str(p), "--from", "distill")
    assert res.exit_code == 1
    assert res.output == (
        f"Error: stage 'distill' needs {tmp_path / 'run' / 'teacher'}, which does not exist: stage "
        "'finetune' is not part of this run (--from/--until); run it first (e.g. --from finetune)\n"
    )
    res = cli("run", str(p), "--from", "distil")
    assert res.exit_code == 1 and "unknown stage 'distil' (did you mean 'distill'?)" in res.output
    res = cli("run", str(p), "--until", "export")
    assert res.exit_code == 1 and "stage 'export' is not in this recipe's stages" in res.output
    res = cli("run", str(p), "--until", "finetune", "--json", "-q")
    assert res.exit_code == 0
    assert [(s["step"], s["action"]) for s in json.loads(res.stdout)["steps"]] == [
        ("finetune", "run"),
        ("distill", "skip"),
    ]
    res = cli("run", str(p), "--dry-run", "--from", "distill")
    assert (
        res.exit_code == 0 and "finetune  skip   outside --from/--until" in res.output and "distill   run" in res.output
    )


def test_output_outside_run_dir_is_not_overwritten_silently(tiny, tmp_path, cli):
    model, data = tiny
    taken = tmp_path / "mine"
    taken.mkdir()
    (taken / "keep.txt").write_text("precious")
    p = finetune_recipe(tmp_path, tiny)
    res = cli("run", str(p), f"finetune.output={taken}")
    assert res.exit_code == 1 and "is not empty; pass --overwrite" in res.output
    assert (taken / "keep.txt").read_text() == "precious"


def test_tiny_pipeline_end_to_end_with_report(tiny, tmp_path, cli):
    """Every stage on a 2-layer model: wiring, outputs under the run folder, report.html/md."""
    p = finetune_recipe(
        tmp_path,
        tiny,
        stages=("finetune", "distill", "compress", "export", "verify", "bench", "package", "report"),
        distill={"layers": [0], "cache_dir": str(tmp_path / "cache"), "train": dict(FAST_TRAIN)},
        compress={"int8": True, "max_drop": 0.5, "latency_runs": 0},
        export={"formats": ["onnx", "ort"]},
        verify={"node": "off", "int8": {"max_abs_diff": None, "min_agreement": 0.5, "max_accuracy_drop": 0.5}},
        bench={"seq_lengths": [16], "threads": [1], "warmup": 1, "runs": 2, "rounds": 1},
        package={"target": "android"},
    )
    run_dir = tmp_path / "run"
    res = cli("run", str(p), "-q")
    assert res.exit_code == 0, res.output
    for sub in ("teacher", "student", "compressed", "export/onnx", "export/ort", "bench", "package/android"):
        assert (run_dir / sub).is_dir(), sub
    assert json.loads((run_dir / "export" / "verify.json").read_text())["passed"] is True
    assert json.loads((run_dir / "export" / "manifest.json").read_text())["inputs"]["model"]["path"] == str(
        (run_dir / "compressed").resolve()
    )
    html = (run_dir / "report.html").read_text()
    md = (run_dir / "report.md").read_text()
    assert html.count("data:image/png;base64,") == 3 and "<td>teacher</td>" in html and "<td>export: ort</td>" in html
    assert "| student | PyTorch fp32 |" in md and "](report_files/accuracy_vs_size.png)" in md
    assert (run_dir / "report_files" / "accuracy_vs_latency.png").stat().st_size > 1000
    assert not [f for f in os.listdir(run_dir) if f.startswith(".") and f != ".state"]  # no temp leftovers
    _check_training_logs_and_compare(run_dir, cli, tmp_path)
    res = cli("run", str(p), "--json", "-q")
    actions = {s["step"]: s["action"] for s in json.loads(res.stdout)["steps"]}
    assert actions == {
        "finetune": "reuse",
        "distill": "reuse",
        "compress": "reuse",
        "export": "reuse",
        "verify": "reuse",
        "bench": "reuse",
        "package-android": "reuse",
        "report": "run",
    }
    res = cli("run", str(p), "--dry-run", "compress.max_drop=0.4")
    lines = res.output.splitlines()
    assert "distill" in lines[2] and "reuse" in lines[2] and "compress" in lines[3] and "config changed" in lines[3]
    assert all(" run " in ln for ln in lines[4:])
    # mbk report on its own, from the run folder or the recipe
    res = cli("report", str(p), "--json")
    data = json.loads(res.stdout)
    assert [r["name"] for r in data["rows"]] == ["teacher", "student", "compressed", "export: onnx", "export: ort"]
    assert data["seq_len"] == 16 and data["rows"][-1]["p50_ms"] > 0


# --------------------------------------------------------------------------- report


def test_report_tolerates_missing_pieces(tmp_path, cli):
    run_dir = tmp_path / "run"
    (run_dir / "teacher").mkdir(parents=True)
    (run_dir / "teacher" / "metrics.json").write_text(
        json.dumps({"test": {"accuracy": 0.8, "macro_f1": 0.79}, "parameters": 1000, "history": []})
    )
    res = cli("report", str(run_dir))
    assert res.exit_code == 0, res.output
    md = (run_dir / "report.md").read_text()
    assert "| teacher | PyTorch fp32 | 0.8000 | 0.7900 | 0.00M | — | — | — |  |" in md
    assert "no bench results" in md
    res = cli("report", str(tmp_path / "nothing"))
    assert res.exit_code == 1 and res.output.startswith("Error: run folder")
    res = cli("report", str(run_dir), "--threads", "0")
    assert res.exit_code == 1 and res.output == "Error: threads must be in [1, 1024], got 0\n"


def test_pareto_front():
    from mobilebert_kit.stages.report import pareto_front

    pts = [(10, 0.80), (5, 0.79), (2, 0.70), (6, 0.75), (2, 0.69), (10, 0.78)]
    assert pareto_front(pts) == [0, 1, 2]


@pytest.mark.parametrize("cmd", ["run", "validate", "report", "compare"])
def test_help(cli, cmd):
    res = cli(cmd, "--help")
    assert res.exit_code == 0 and "Examples:" in res.output and f"mbk {cmd} " in res.output


# --------------------------------------------------------------------------- the smoke recipe, for real


@pytest.mark.integration
def test_smoke_recipe_end_to_end(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("MBK_CACHE", str(tmp_path / "cache"))
    run_dir = tmp_path / "smoke"
    smoke = ROOT / "recipes" / "smoke.yaml"
    res = cli("run", str(smoke), f"run_dir={run_dir}", "-q")
    assert res.exit_code == 0, res.output
    verify = json.loads((run_dir / "export" / "verify.json").read_text())
    assert verify["passed"] and set(verify["formats"]) == {"onnx", "ort"}
    assert (run_dir / "package" / "android.zip").is_file()
    data = json.loads(cli("report", str(run_dir), "--json", "-q").stdout)
    rows = {r["name"]: r for r in data["rows"]}
    assert set(rows) == {"teacher", "student", "compressed", "export: onnx", "export: ort"}
    assert rows["student"]["params"] < rows["teacher"]["params"]
    assert rows["export: ort"]["size_bytes"] < rows["teacher"]["size_bytes"] / 4
    assert "data:image/png;base64," in (run_dir / "report.html").read_text()
    res = cli("run", str(smoke), f"run_dir={run_dir}", "--dry-run")
    assert res.output.count(" reuse ") == 7 and "report" in res.output.splitlines()[-1]


def _check_training_logs_and_compare(run_dir, cli, tmp_path):
    """Every training stage left its per-step log and per-text test predictions; the
    report drew them; a copy of the run with one config key changed compares with exactly that key."""
    import importlib.util
    import shutil

    from mobilebert_kit.training.metrics_log import read_log

    for stage in ("teacher", "student"):  # compress has no recovery here: test_compress checks its log
        lines = read_log(run_dir / stage / "train_log.jsonl")
        assert [r for r in lines if r["kind"] == "step"] and [r for r in lines if r["kind"] == "eval"], stage
        if importlib.util.find_spec("tensorboard") is not None:
            assert list((run_dir / stage / "tb").rglob("events.out.tfevents.*")), stage
    assert any(k.startswith("loss_soft") for r in read_log(run_dir / "student" / "train_log.jsonl") for k in r)
    assert (run_dir / "report_files" / "step_curves.png").stat().st_size > 1000
    other = tmp_path / "run-t4"
    shutil.copytree(run_dir, other)
    for f in (other / ".state").glob("*.json"):  # as if recipe.run_dir had been run-t4 (its stages' paths in it)
        f.write_text(f.read_text().replace(str(run_dir), str(other)))
    state = json.loads((other / ".state" / "distill.json").read_text())
    state["config"]["temperature"] = 4.0
    (other / ".state" / "distill.json").write_text(json.dumps(state))
    res = cli("report", str(run_dir), str(other), "-o", str(tmp_path / "cmp"), "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert [d["key"] for d in data["config_differences"]] == ["distill.temperature"]
    assert {p["level"]: p["difference"] for p in data["paired"]} == {"teacher": 0.0, "student": 0.0, "phone": 0.0}
