from __future__ import annotations

import click

from mobilebert_kit.cli.common import (
    DATA_OPTIONS,
    TRAIN_OPTIONS,
    data_options,
    default_of,
    emit_result,
    output_options,
    pick,
    save_recipe_option,
    train_options,
    write_stage_recipe,
)
from mobilebert_kit.stages.finetune import FinetuneConfig


@click.command("finetune")
@click.option(
    "--model",
    "-m",
    help=f"Built-in model (minilm-l6, mpnet-base), local HF folder, or hub id. {default_of(FinetuneConfig, 'model')}",
)
@click.option("--dropout", type=float, help="Override hidden/attention dropout.")
@data_options
@train_options
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in <output>.ckpt/.")
@save_recipe_option
@output_options("artifacts/teacher")
def command(model, dropout, resume, save_recipe, output, overwrite, quiet, as_json, **kwargs):
    """Fine-tune a BERT teacher classifier.

    \b
    Examples:
      mbk finetune                                   # MiniLM-L6 on Rotten Tomatoes, offline
      mbk finetune --data reviews.csv --text-column review --label-column stars --epochs 2
      mbk finetune --freeze-layers 3 --precision auto --grad-accum 2
      mbk finetune --resume                          # after a crash or kill -9
    """
    from mobilebert_kit.stages.base import RunContext
    from mobilebert_kit.stages.finetune import run

    section = {"output": output, "data": pick(kwargs, DATA_OPTIONS), "train": pick(kwargs, TRAIN_OPTIONS)}
    if model:
        section["model"] = model
    if dropout is not None:
        section["dropout"] = dropout
    cfg = FinetuneConfig.from_dict(section)
    write_stage_recipe(save_recipe, "finetune", section)
    ctx = RunContext(overwrite=overwrite, resume=resume, quiet=quiet or as_json)
    emit_result(run(cfg, ctx), as_json, quiet)
