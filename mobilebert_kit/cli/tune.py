"""``mbk tune``: thin wrapper over :mod:`mobilebert_kit.stages.tune`."""

from __future__ import annotations

import click

from mobilebert_kit.cli.common import emit_result, output_options, save_recipe_option, write_stage_recipe


def _plans(path: str | None) -> list | None:
    """``--plans FILE``: a YAML list of ``{name: ..., steps: [...]}`` (safe_load)."""
    if path is None:
        return None
    from pathlib import Path

    from mobilebert_kit.errors import ConfigError
    from mobilebert_kit.pipeline.recipe import (
        read_yaml,  # the recipes' loader: safe, duplicate keys refused, UTF-8 checked
    )

    try:
        plans = read_yaml(Path(path), f"--plans {path}")
    except OSError as e:
        raise ConfigError(f"--plans {path}: {e.strerror}; pass a YAML file listing {{name, steps}} plans") from e
    if not isinstance(plans, list) or not plans:
        raise ConfigError(f"--plans {path} must be a YAML list of {{name: ..., steps: [...]}} plans")
    return plans


@click.command("tune")
@click.option("--model", "-m", type=click.Path(), help="Classifier folder to compress. [default: artifacts/student]")
@click.option("--data", help="Data to evaluate on (default: what the model was trained on, from its manifest).")
@click.option("--max-length", type=int, help="Longest input (default: recorded upstream, else 128).")
@click.option("--plans", "plans_file", type=click.Path(dir_okay=False), help="YAML list of {name, steps} plans to try.")
@click.option(
    "--grid", help="Built-in plans: quick (INT8 variants, vocab trim, 4-bit) or full (+ pruning). [default: quick]"
)
@click.option("--objective", help="What the winner minimises: size, latency or accuracy (max). [default: size]")
@click.option("--max-drop", type=float, help="Accuracy guard of every trial (validation). [default: 0.01]")
@click.option("--latency-runs", type=int, help="Timed ORT runs per trial. [default: 50]")
@click.option("--keep-trials", is_flag=True, default=None, help="Keep every trial's folder in <output>.trials/.")
@click.option(
    "--seeds",
    type=int,
    help="Run plans that prune, recover or calibrate with seeds 0..N-1: tune.md shows the spread, accuracy "
    "ranks by the mean, the output holds seed 0. [default: 1]",
)
@click.option(
    "--ort-format",
    is_flag=True,
    default=None,
    help="Only plans whose graph can become the Android app's .ort compete (4-bit embeddings cannot).",
)
@output_options("artifacts/tuned")
@save_recipe_option
def command(save_recipe, overwrite, quiet, as_json, plans_file, **options):
    """Try a grid of compression plans, measure each (guard, size, latency), keep the best.

    Every trial is an `mbk compress` run with the same accuracy guard; all of them, refused ones
    included, go to tune.md / tune.json / pareto.png in the output, which is the winning trial's
    compress folder (export it as you would export `mbk compress`'s).

    \b
    Examples:
      mbk tune --objective size
      mbk tune --grid full --objective latency --max-drop 0.005
      mbk tune --plans my_plans.yaml
      mbk tune --grid full --seeds 3
    """
    from mobilebert_kit.artifacts import check_output_dir
    from mobilebert_kit.stages.base import RunContext
    from mobilebert_kit.stages.tune import TuneConfig, run

    options["plans"] = _plans(plans_file)
    config = TuneConfig.from_dict({k: v for k, v in options.items() if v is not None})
    # the plans file is read here, not named in the config: the output must not hold it either
    check_output_dir(config.output, overwrite, (*config.input_paths(), plans_file))
    write_stage_recipe(save_recipe, "tune", config.to_dict())
    emit_result(run(config, RunContext(overwrite=overwrite, quiet=quiet or as_json)), as_json, quiet)
