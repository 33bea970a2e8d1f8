"""``mbk run``: thin wrapper over :mod:`mobilebert_kit.pipeline.recipe`."""

from __future__ import annotations

import click

from mobilebert_kit.cli.common import emit, log


@click.command("run")
@click.argument("recipe_file", metavar="RECIPE", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1, metavar="[KEY.PATH=VALUE]...")
@click.option("--dry-run", is_flag=True, help="Show the plan (run / reuse / skip per stage, and why) and stop.")
@click.option(
    "--from", "start", metavar="STAGE", help="Start at this stage; earlier stages' outputs must already exist."
)
@click.option("--until", metavar="STAGE", help="Stop after this stage.")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Also replace non-empty outputs outside the run folder (set explicitly in the recipe).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the per-stage records (or the plan) as JSON.")
def command(recipe_file, overrides, dry_run, start, until, overwrite, quiet, as_json):
    """Run a pipeline recipe: its stages in order, each one's output under the run folder.

    A stage whose config and inputs are unchanged since it last succeeded is reused (content
    hash in <run_dir>/.state/), so re-running after a failure continues where it stopped and
    editing one stage re-runs only it and what depends on it. Overrides use dotted keys and YAML
    values.

    \b
    Examples:
      mbk run recipes/default.yaml
      mbk run recipes/smoke.yaml --dry-run
      mbk run recipes/default.yaml finetune.train.epochs=2 data.max_train_examples=2000
      mbk run recipes/default.yaml --from compress compress.max_drop=0.005
      mbk run recipes/default.yaml --until verify export.formats=[onnx,ort]
    """
    from mobilebert_kit.pipeline import recipe as rc

    r = rc.load(recipe_file, list(overrides))
    if dry_run:
        plan = rc.plan(r, start, until)
        emit(rc.plan_json(r, plan), as_json, False, "\n".join(rc.plan_lines(r, plan)))
        return
    records = rc.execute(
        r, start=start, until=until, quiet=quiet or as_json, overwrite=overwrite, log=lambda m: log(m, quiet or as_json)
    )
    emit({"recipe": r.name, "run_dir": str(r.run_dir), "steps": records}, as_json, quiet, rc.run_summary(r, records))
