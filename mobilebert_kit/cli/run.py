"""``mbk run``: thin wrapper over :mod:`mobilebert_kit.recipe`."""

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
    from mobilebert_kit import recipe as rc

    r = rc.load(recipe_file, list(overrides))
    if dry_run:
        items = rc.plan(r, start, until)
        result = {
            "recipe": r.name,
            "run_dir": str(r.run_dir),
            "plan": [
                {
                    "step": it.step.key,
                    "action": it.action,
                    "reason": it.reason,
                    "output": str(it.step.output) if it.step.output else None,
                }
                for it in items
            ],
        }
        width = max(len(it.step.label) for it in items)
        lines = [f"Plan for {r.name} (run folder {r.run_dir}):"]
        lines += [f"  {i}. {it.step.label:<{width}}  {it.action:<5}  {it.reason}" for i, it in enumerate(items, 1)]
        emit(result, as_json, False, "\n".join(lines))
        return
    records = rc.execute(
        r, start=start, until=until, quiet=quiet or as_json, overwrite=overwrite, log=lambda m: log(m, quiet or as_json)
    )
    ran = [x["step"] for x in records if x["action"] == "run"]
    reused = [x["step"] for x in records if x["action"] == "reuse"]
    report = r.run_dir / "report.html"
    tail = f"; report: {report}" if any(x["step"] == "report" and x["action"] == "run" for x in records) else ""
    emit(
        {"recipe": r.name, "run_dir": str(r.run_dir), "steps": records},
        as_json,
        quiet,
        f"{r.name}: ran {len(ran)} stage(s){' (' + ', '.join(ran) + ')' if ran else ''}, reused {len(reused)}"
        f"{' (' + ', '.join(reused) + ')' if reused else ''}; outputs in {r.run_dir}{tail}",
    )
