"""Options and output helpers shared by the subcommands (no heavy imports here)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


def output_options(default_output: str) -> Callable:
    """--output/--overwrite/--quiet/--json, the same on every stage."""

    def deco(f: Callable) -> Callable:
        f = click.option("--json", "as_json", is_flag=True, help="Print the final metrics as JSON on stdout.")(f)
        f = click.option("--quiet", "-q", is_flag=True, help="No progress bars or log lines.")(f)
        f = click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")(f)
        f = click.option(
            "--output", "-o", default=default_output, show_default=True, type=click.Path(), help="Output folder."
        )(f)
        return f

    return deco


def emit(result: dict[str, Any], as_json: bool, quiet: bool, summary: str) -> None:
    """Print the final result: JSON on stdout with --json, else a one-line summary unless --quiet."""
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    elif not quiet:
        click.echo(summary)


def emit_result(result, as_json: bool, quiet: bool) -> None:
    """Print a :class:`~mobilebert_kit.stages.base.StageResult`: its JSON with --json, else its summary
    lines unless --quiet. A process that wrote nothing (a non-main rank) prints nothing."""
    if not result.written:
        return
    emit(result.to_json(), as_json, quiet, "\n".join(result.summary))


def log(msg: str, quiet: bool = False) -> None:
    if not quiet:
        click.echo(msg, err=True)


# --------------------------------------------------------------------------- data + training options
# Options default to None so the dataclass defaults stay the single source of truth (help texts
# read them with default_of); only what the user typed is passed to Config.from_dict (which
# validates and reports every problem at once).

DATA_OPTIONS = (
    "data",
    "text_column",
    "label_column",
    "text_pair_column",
    "validation_data",
    "test_data",
    "split_seed",
    "max_train_examples",
    "max_eval_examples",
    "normalize_labels",
    "label_map",
)
TRAIN_OPTIONS = (
    "epochs",
    "lr",
    "batch_size",
    "eval_batch_size",
    "weight_decay",
    "warmup_ratio",
    "grad_accum",
    "max_length",
    "dynamic_padding",
    "group_by_length",
    "freeze_layers",
    "freeze_embeddings",
    "precision",
    "attention",
    "fast_dropout",
    "sparse_embeddings",
    "cls_only_last_layer",
    "compile",
    "gradient_checkpointing",
    "num_workers",
    "pin_memory",
    "auto_batch_size",
    "seed",
    "checkpoint_every",
    "retain_checkpoints",
    "early_stopping_patience",
    "max_steps",
    "device",
    "log_every",
)


def data_options(f: Callable) -> Callable:
    from mobilebert_kit.data import DataConfig

    def d(name: str) -> str:
        return default_of(DataConfig, name)

    opts = [
        click.option(
            "--data", help="Built-in dataset (rotten_tomatoes) or a .csv/.tsv/.jsonl file or saved datasets folder."
        ),
        click.option("--text-column", help=f"Text column in user files. {d('text_column')}"),
        click.option("--label-column", help=f"Label column in user files. {d('label_column')}"),
        click.option("--text-pair-column", help="Optional second text column (sentence pairs)."),
        click.option(
            "--validation-data", type=click.Path(), help="Validation file (else carved from --data, stratified)."
        ),
        click.option("--test-data", type=click.Path(), help="Test file (else carved from --data, stratified)."),
        click.option("--split-seed", type=int, help=f"Seed of the train/validation/test split. {d('split_seed')}"),
        click.option("--max-train-examples", type=int, help="Use a seeded subset of the training split."),
        click.option("--max-eval-examples", type=int, help="Use a seeded subset of validation/test."),
        click.option(
            "--normalize-labels",
            is_flag=True,
            default=None,
            help="Merge label spellings that are one label (Pos/pos, 01/1, Unicode forms); without it they are refused.",
        ),
        click.option(
            "--label-map",
            help="Say what each label spelling is: a .json/.yaml file of spelling: class (null drops those rows), "
            "or inline 'Pos=pos,POS=pos'.",
        ),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def train_options(f: Callable) -> Callable:
    """The training options every training command takes (finetune, distill): the loop's, then how it runs."""
    for o in reversed(_loop_options() + _run_options()):
        f = o(f)
    return f


def _train_default(name: str) -> str:
    from mobilebert_kit.training.engine import TrainConfig

    return default_of(TrainConfig, name)


def _loop_options() -> list:
    """What the loop computes: epochs, learning rate, batches, lengths, freezing, precision."""
    d = _train_default
    return [
        click.option("--epochs", type=int, help=f"Training epochs. {d('epochs')}"),
        click.option("--lr", type=float, help=f"Peak learning rate (linear warm-up and decay). {d('lr')}"),
        click.option("--batch-size", type=int, help=f"Examples per step per process. {d('batch_size')}"),
        click.option("--eval-batch-size", type=int, help=d("eval_batch_size")),
        click.option("--weight-decay", type=float, help=d("weight_decay")),
        click.option("--warmup-ratio", type=float, help=d("warmup_ratio")),
        click.option("--grad-accum", type=int, help=f"Gradient accumulation steps. {d('grad_accum')}"),
        click.option("--max-length", type=int, help=f"Truncate to this many tokens. {d('max_length')}"),
        click.option(
            "--dynamic-padding/--no-dynamic-padding",
            default=None,
            help=f"Pad each batch to its longest row. {d('dynamic_padding')}",
        ),
        click.option(
            "--group-by-length/--no-group-by-length",
            default=None,
            help=f"Batch rows of similar length together. {d('group_by_length')}",
        ),
        click.option(
            "--freeze-layers", type=int, help=f"Freeze embeddings + the lowest N layers. {d('freeze_layers')}"
        ),
        click.option(
            "--freeze-embeddings/--no-freeze-embeddings",
            default=None,
            help=f"Freeze the embeddings (word, position, type, LayerNorm) alone. {d('freeze_embeddings')}",
        ),
        click.option(
            "--precision",
            type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
            help=f"auto = bf16/fp16 on CUDA; on CPU bf16 autocast where it has native bf16 (avx512_bf16/amx), else fp32 (MBK_PRECISION=fp32 forces fp32). {d('precision')}",
        ),
        click.option(
            "--attention",
            type=click.Choice(["auto", "eager", "sdpa"]),
            help=f"Attention kernel while training; auto = eager on CPU (faster for short rows). {d('attention')}",
        ),
        click.option(
            "--fast-dropout/--no-fast-dropout",
            default=None,
            help=f"CPU: dropout masks from 64-bit random words (torch draws one number per element). {d('fast_dropout')}",
        ),
        click.option(
            "--sparse-embeddings/--no-sparse-embeddings",
            default=None,
            help=f"CPU, one process: sparse word-embedding gradient + lazy Adam (rows in the batch only). "
            f"{d('sparse_embeddings')}",
        ),
        click.option(
            "--cls-only-last-layer/--no-cls-only-last-layer",
            default=None,
            help="CPU, BERT classifiers: the last layer computes only the [CLS] token the pooler reads (exact; "
            f"off whenever hidden states or attentions are asked for). {d('cls_only_last_layer')}",
        ),
    ]


def _run_options() -> list:
    """How the loop runs: compilation, memory, workers, seed, checkpoints, stopping, device, logging."""
    d = _train_default
    return [
        click.option("--compile/--no-compile", default=None, help=f"torch.compile the model. {d('compile')}"),
        click.option(
            "--gradient-checkpointing/--no-gradient-checkpointing",
            default=None,
            help=f"Trade compute for activation memory. {d('gradient_checkpointing')}",
        ),
        click.option("--num-workers", type=int, help="DataLoader workers. [default: 0 on CPU, 4 on CUDA]"),
        click.option("--pin-memory/--no-pin-memory", default=None, help="[default: on with CUDA]"),
        click.option(
            "--auto-batch-size",
            is_flag=True,
            default=None,
            help="Halve the batch on out-of-memory (keeps the effective batch).",
        ),
        click.option("--seed", type=int, help=d("seed")),
        click.option(
            "--checkpoint-every",
            type=int,
            help=f"Optimizer steps between checkpoints (0 = epoch ends). {d('checkpoint_every')}",
        ),
        click.option(
            "--keep-checkpoints",
            "retain_checkpoints",
            is_flag=True,
            default=None,
            help="Keep <output>.ckpt/ after a successful run (removed by default).",
        ),
        click.option(
            "--early-stopping-patience",
            type=int,
            help=f"Epochs without validation gain before stopping (0 = off). {d('early_stopping_patience')}",
        ),
        click.option("--max-steps", type=int, help="Stop after N optimizer steps."),
        click.option("--device", help=f"auto | cpu | cuda | cuda:N. {d('device')}"),
        click.option(
            "--log-every",
            type=int,
            help=f"Optimizer steps between per-step metric lines (train_log.jsonl; TensorBoard tb/ when installed; "
            f"0: off). {d('log_every')}",
        ),
    ]


def default_of(config_class: type, name: str) -> str:
    """``[default: X]`` for a help text, read from the config dataclass (where defaults live)."""
    value = next(f.default for f in dataclasses.fields(config_class) if f.name == name)
    if isinstance(value, bool):
        value = "on" if value else "off"
    return f"[default: {value}]"


def split_names(values: tuple[str, ...] | list[str]) -> list[str]:
    """A repeatable option's values, each also comma-separated: ``-f onnx,ort -f coreml``."""
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def pick(kwargs: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """Pop the named options from ``kwargs``, keeping only the ones the user set."""
    return {n: v for n in names if (v := kwargs.pop(n, None)) is not None}


def save_recipe_option(f: Callable) -> Callable:
    return click.option(
        "--save-recipe",
        type=click.Path(dir_okay=False),
        help="Also write the recipe (YAML) equivalent of this command to this file.",
    )(f)


def write_stage_recipe(path: str | None, stage: str, section: dict[str, Any]) -> None:
    """Write a one-stage recipe reproducing this command (``mbk run FILE``)."""
    if not path:
        return
    import yaml

    from mobilebert_kit.errors import ConfigError

    target = Path(path)
    header = f"{SAVED_RECIPE_HEADER}{path}\n"
    if target.exists() and not _saved_by_mbk(target):
        raise ConfigError(
            f"--save-recipe {path} exists and is not a recipe mbk saved; choose another file (yours is kept)"
        )
    body = yaml.safe_dump({"stages": [stage], stage: section}, sort_keys=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(header + body, encoding="utf-8")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


SAVED_RECIPE_HEADER = "# Reproduce with: mbk run "


def _saved_by_mbk(path: Path) -> bool:
    """A regular file whose first line is the header :func:`write_stage_recipe` writes."""
    try:
        with open(path, encoding="utf-8") as fh:
            return path.is_file() and fh.readline().startswith(SAVED_RECIPE_HEADER)
    except (OSError, UnicodeDecodeError):
        return False
