"""Recipe files that mbk must refuse before any stage runs, with one line naming the problem and the fix:
bytes that are not UTF-8, duplicate keys, a run_dir that is a file, and values the built-in models'
config.json already rules out. Also: a stage's refusal inside ``mbk run`` names the recipe's fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mobilebert_kit.errors import ConfigError
from mobilebert_kit.pipeline import recipe as rc


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_non_utf8_recipe_names_the_byte_and_the_fix(tmp_path, cli):
    path = tmp_path / "r.yaml"
    path.write_bytes(b"name: x\nstages: [finetune]\n# \xff\xfe bad\n")
    for cmd in ("validate", "run"):
        res = cli(cmd, path)
        assert res.exit_code == 1
        assert res.output == f"Error: recipe {path} is not UTF-8 (byte 0xff at offset 29); save it as UTF-8\n"


@pytest.mark.parametrize(
    ("body", "key", "line", "first"),
    [
        ("stages: [finetune]\nfinetune:\n  train: {epochs: 5}\nfinetune:\n  model: minilm-l6\n", "finetune", 4, 2),
        ("stages: [finetune]\nfinetune:\n  train:\n    epochs: 5\n    epochs: 1\n", "epochs", 5, 4),
    ],
    ids=["section", "nested"],
)
def test_duplicate_key_is_refused_with_both_lines(tmp_path, cli, body, key, line, first):
    path = write(tmp_path, body)
    res = cli("validate", path)
    assert res.exit_code == 1
    assert res.output == (
        f"Error: recipe {path} line {line}: duplicate key '{key}' (the earlier one, line {first}, would be ignored); "
        "merge them\n"
    )


def test_unique_key_loader_stays_safe_and_keeps_merge_keys():
    text = "base: &b {epochs: 1, lr: 0.1}\ntrain:\n  <<: *b\n  epochs: 3\n"
    assert yaml.load(text, Loader=rc.UniqueKeyLoader)["train"] == {"epochs": 3, "lr": 0.1}
    with pytest.raises(yaml.YAMLError, match="could not determine a constructor"):
        yaml.load("x: !!python/object/apply:os.system [echo hi]\n", Loader=rc.UniqueKeyLoader)


def test_run_dir_that_is_a_file_is_refused_before_any_stage(tmp_path, cli):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    path = write(tmp_path, f"name: x\nstages: [finetune]\nrun_dir: {afile}\n")
    for args in (("validate",), ("run", "--dry-run"), ("run",)):
        res = cli(*args, path)
        assert res.exit_code == 1
        assert res.output == f"Error: run_dir {afile} is a file, not a folder; set run_dir to a folder (run_dir=PATH)\n"
    res = cli("validate", path, f"run_dir={afile / 'sub'}")
    assert res.output == (
        f"Error: run_dir {afile / 'sub'} lies under {afile}, which is a file; set run_dir to a folder (run_dir=PATH)\n"
    )
    assert afile.read_text() == "mine"


def test_occupied_output_in_a_recipe_run_names_run_dir_not_output(tmp_path, cli):
    run_dir = tmp_path / "run"
    (run_dir / "teacher").mkdir(parents=True)
    (run_dir / "teacher" / "notes.txt").write_text("mine")
    path = write(tmp_path, f"name: x\nstages: [finetune]\nrun_dir: {run_dir}\n")
    res = cli("run", path, "-q")
    assert res.exit_code == 1
    assert res.output == (
        f"Error: --overwrite refused: {run_dir / 'teacher'} was not written by mbk (no manifest.json), so replacing "
        "it could delete your files; choose another run_dir\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("mine")
    res = cli("run", path, "-q", f"finetune.output={elsewhere}")
    assert res.exit_code == 1
    assert res.output == (
        f"Error: output folder {elsewhere} is not empty; pass --overwrite to replace it or choose another "
        "finetune.output\n"
    )
    assert (run_dir / "teacher" / "notes.txt").read_text() == "mine"


BUILTIN_TEACHER = {"name": "x", "stages": ["finetune", "distill", "export"], "finetune": {"model": "minilm-l6"}}


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ("distill.layers=[0,2,99]", "distill.layers 99 out of range: the teacher has 6 layers (0..5)"),
        (
            "finetune.train.max_length=513",
            "finetune.train: max_length 513 is more than minilm-l6 can take (512 positions); use --max-length 512 or less",
        ),
        (
            "finetune.train.freeze_layers=99",
            "finetune.train: freeze_layers must be in [0, 6] for minilm-l6 (6 layers); got 99",
        ),
        (
            "distill.train.freeze_layers=4",  # the default student copies every other layer: 3
            "distill.train: freeze_layers must be in [0, 3] for the student (3 layers); got 4",
        ),
        (
            "export.max_length=513",
            "export.max_length 513 is more than the model can take (512 positions, from minilm-l6); "
            "set export.max_length to 512 or less",
        ),
        (
            "data.data=bogus_dataset",
            "data.data: unknown built-in dataset 'bogus_dataset'; known: rotten_tomatoes; "
            "or pass a .csv/.tsv/.jsonl file",
        ),
    ],
    ids=["teacher-layers", "max-length", "freeze-layers", "student-freeze", "export-length", "dataset"],
)
def test_validate_reports_what_the_builtin_model_rules_out(override, problem):
    with pytest.raises(ConfigError) as e:
        rc.load(BUILTIN_TEACHER, [override, "export.formats=[onnx]"])
    assert e.value.problems == [problem]
    assert BUILTIN_TEACHER["finetune"] == {"model": "minilm-l6"}, "overrides must not edit the caller's mapping"


def test_values_the_builtin_model_takes_stay_valid():
    ok = ["distill.layers=[0,5]", "finetune.train.max_length=512", "export.max_length=512", "export.formats=[onnx]"]
    assert rc.load(BUILTIN_TEACHER, ok).steps
