"""A command never deletes what the user gave it or what mbk did not write: --overwrite refuses an output that
holds any of the command's inputs (every path its config names, not a hand-kept list per stage), the
working folders beside an output (``.ckpt``, ``.trials``) must be mbk's own before they are used, and
--save-recipe never replaces a user's file. Every refusal happens before any work."""

from __future__ import annotations

import pytest

from mobilebert_kit import artifacts
from mobilebert_kit.cli.common import write_stage_recipe
from mobilebert_kit.errors import ArtifactError, ConfigError


def _mbk_folder(path):
    path.mkdir(parents=True)
    artifacts.write_json(path / artifacts.MANIFEST, {"stage": "compress"})
    return path


def test_input_paths_are_every_existing_path_a_config_names(tmp_path):
    from mobilebert_kit.stages.distill import DistillConfig
    from mobilebert_kit.stages.tune import TuneConfig

    data, unl, cache = tmp_path / "d.csv", tmp_path / "u.txt", tmp_path / "cache"
    for f in (data, unl):
        f.write_text("x")
    cache.mkdir()
    cfg = DistillConfig.from_dict(
        {
            "teacher": str(tmp_path),
            "unlabeled": str(unl),
            "cache_dir": str(cache),
            "data": {"data": str(data), "validation_data": str(tmp_path / "missing.csv")},
            "output": str(tmp_path / "out"),
        }
    )
    assert set(cfg.input_paths()) == {str(tmp_path), str(unl), str(cache), str(data)}
    tune = TuneConfig.from_dict({"model": str(tmp_path), "data": str(data), "output": str(tmp_path)})
    assert set(tune.input_paths()) == {str(tmp_path), str(data)}  # the output itself is not an input


def test_compress_overwrite_refuses_an_output_holding_its_data_or_model(cli, tmp_path, tiny_classifier_dir):
    out = _mbk_folder(tmp_path / "c")
    (out / "mydata.csv").write_text("text,label\ngood,pos\nbad,neg\n")
    r = cli("compress", "-m", tiny_classifier_dir, "--data", out / "mydata.csv", "--int8", "-o", out, "--overwrite")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"--overwrite refused: {out} holds this command's input {out / 'mydata.csv'}" in r.output
    assert (out / "mydata.csv").exists()
    r = cli("compress", "-m", out, "--int8", "-o", out, "--overwrite")  # the model is the output
    assert r.exit_code == 1 and "holds this command's input" in r.output and (out / artifacts.MANIFEST).exists()


def test_tune_overwrite_refuses_an_output_holding_its_plans(cli, tmp_path, tiny_classifier_dir):
    out = _mbk_folder(tmp_path / "t")
    plans = out / "plans.yaml"
    plans.write_text("- {name: a, steps: [{method: int8_dynamic}]}\n")
    r = cli("tune", "-m", tiny_classifier_dir, "--plans", plans, "-o", out, "--overwrite")
    assert r.exit_code == 1 and "holds this command's input" in r.output and plans.exists()


def test_distill_overwrite_refuses_an_output_holding_its_unlabeled_text(cli, tmp_path, tiny_classifier_dir):
    out = _mbk_folder(tmp_path / "s")
    extra = out / "raw.txt"
    extra.write_text("a fine film\n")
    r = cli("distill", "-t", tiny_classifier_dir, "--unlabeled", extra, "-o", out, "--overwrite", "-q")
    assert r.exit_code == 1 and f"holds this command's input {extra}" in r.output and extra.exists()


def test_a_users_folder_named_like_a_checkpoint_folder_is_refused_not_deleted(cli, tmp_path, sentiment_csv):
    ckpt = tmp_path / "run.ckpt"
    ckpt.mkdir()
    (ckpt / "my_notes.txt").write_text("mine")
    r = cli("finetune", "--data", sentiment_csv, "-o", tmp_path / "run", "-q")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"Error: {ckpt} holds my_notes.txt, which mbk did not write" in r.output
    assert (ckpt / "my_notes.txt").read_text() == "mine" and not (tmp_path / "run").exists()


def test_scratch_folder_check_accepts_mbks_own_entries(tmp_path):
    work = tmp_path / "out.trials"
    _mbk_folder(work / "plan-a")
    (work / ".plan-b.tmp-123-x").mkdir()  # an interrupted trial's temp folder
    is_trial = lambda p: p.is_dir() and artifacts.is_mbk_output(p)  # noqa: E731
    assert artifacts.check_scratch_dir(work, is_trial) == work
    (work / "plan-c").mkdir()  # a folder mbk did not write
    with pytest.raises(ArtifactError, match="holds plan-c, which mbk did not write"):
        artifacts.check_scratch_dir(work, is_trial)
    (tmp_path / "file.trials").write_text("x")
    with pytest.raises(ArtifactError, match="is not a folder"):
        artifacts.check_scratch_dir(tmp_path / "file.trials", is_trial)


def test_tune_refuses_a_users_trials_folder(cli, tmp_path, tiny_classifier_dir):
    trials = tmp_path / "tuned.trials"
    trials.mkdir()
    (trials / "notes.md").write_text("mine")
    r = cli("tune", "-m", tiny_classifier_dir, "-o", tmp_path / "tuned")
    assert r.exit_code == 1 and "holds notes.md, which mbk did not write" in r.output
    assert (trials / "notes.md").exists()


def test_save_recipe_never_replaces_a_users_file_and_makes_its_folder(tmp_path):
    mine = tmp_path / "recipe.yaml"
    mine.write_text("name: my own recipe\n")
    with pytest.raises(ConfigError, match="exists and is not a recipe mbk saved"):
        write_stage_recipe(str(mine), "export", {"model": "m"})
    assert mine.read_text() == "name: my own recipe\n"
    nested = tmp_path / "new" / "folder" / "r.yaml"
    write_stage_recipe(str(nested), "export", {"model": "m"})
    write_stage_recipe(str(nested), "export", {"model": "m2"})  # mbk's own: replaced
    assert "model: m2" in nested.read_text() and nested.read_text().startswith("# Reproduce with: mbk run ")
    assert not list(nested.parent.glob(".*tmp*"))


def test_paths_that_are_files_where_folders_belong_say_so(cli, tmp_path, sentiment_csv):
    r = cli("distill", "-t", sentiment_csv, "-o", tmp_path / "s", "-q")
    assert r.exit_code == 1 and f"Error: teacher folder {sentiment_csv} is a file, not a folder" in r.output
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    r = cli("finetune", "--data", sentiment_csv, "-o", notes / "sub", "-q")
    assert r.exit_code == 1 and f"output path {notes / 'sub'} lies under {notes}, which is a file" in r.output
    assert notes.read_text() == "mine"
