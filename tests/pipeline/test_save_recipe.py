"""--save-recipe on the single-stage commands writes a recipe that `mbk validate` accepts and that
`mbk run` reproduces."""

import yaml


def test_export_save_recipe_validates_and_runs(tiny_classifier_dir, tmp_path, cli):
    recipe = tmp_path / "export.yaml"
    out = tmp_path / "export"
    r = cli("export", "--model", tiny_classifier_dir, "--format", "onnx", "-o", out, "--save-recipe", recipe, "-q")
    assert r.exit_code == 0, r.output
    data = yaml.safe_load(recipe.read_text())
    assert data["stages"] == ["export"] and data["export"]["formats"] == ["onnx"]
    assert data["export"]["model"] == str(tiny_classifier_dir) and "overwrite" not in data["export"]
    assert cli("validate", recipe).exit_code == 0
    first = (out / "onnx" / "model.onnx").read_bytes()
    r = cli("run", recipe, "--overwrite")
    assert r.exit_code == 0, r.output
    assert (out / "onnx" / "model.onnx").read_bytes() == first  # the recipe reproduces the command


def test_every_stage_command_offers_save_recipe(cli):
    for command in ("finetune", "distill", "compress", "export", "verify", "bench", "package"):
        assert "--save-recipe" in cli(command, "--help").output, command
