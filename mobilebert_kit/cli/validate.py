"""``mbk validate``: check a recipe without running anything."""

from __future__ import annotations

import click

from mobilebert_kit.cli.common import emit


@click.command("validate")
@click.argument("recipe_file", metavar="RECIPE", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1, metavar="[KEY.PATH=VALUE]...")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing when the recipe is valid (exit code only).")
@click.option("--json", "as_json", is_flag=True, help="Print the resolved configs as JSON.")
def command(recipe_file, overrides, quiet, as_json):
    """Check a recipe without running it; reports every problem at once.

    Unknown keys (with a did-you-mean), wrong types, out-of-range values, files the recipe
    names that do not exist, and combinations no single stage can catch (static INT8 without
    enough calibration data, packaging a format that is not exported, ...). Exit code 1 when
    anything is wrong.

    \b
    Examples:
      mbk validate recipes/default.yaml
      mbk validate recipes/default.yaml finetune.train.epochs=2 compress.static=true
    """
    from mobilebert_kit.pipeline import recipe as rc

    r = rc.load(recipe_file, list(overrides))
    result = {
        "recipe": r.name,
        "run_dir": str(r.run_dir),
        "stages": r.stages,
        "steps": {s.key: rc.config_dict(s.config) for s in r.steps},
    }
    emit(
        result,
        as_json,
        quiet,
        f"{recipe_file}: valid ({len(r.steps)} step(s): {' -> '.join(s.label for s in r.steps)}; "
        f"run folder {r.run_dir})",
    )
