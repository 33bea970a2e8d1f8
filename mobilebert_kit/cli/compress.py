"""``mbk compress``: thin wrapper over :mod:`mobilebert_kit.stages.compress`.

Options default to None (flags to off) so :class:`~mobilebert_kit.stages.compress.CompressConfig` holds
the only defaults; only what the user typed goes into the config.
"""

from __future__ import annotations

import click

from mobilebert_kit.cli.common import emit_result, output_options, save_recipe_option, write_stage_recipe

OPTIONS = [
    click.option(
        "--model",
        "-m",
        type=click.Path(),
        help="Classifier folder to compress (student, teacher or any fine-tuned classifier). "
        "[default: artifacts/student]",
    ),
    click.option("--data", help="Data to evaluate on (default: what the model was trained on, from its manifest)."),
    click.option("--max-length", type=int, help="Longest input (default: recorded upstream, else 128)."),
    click.option(
        "--prune",
        type=float,
        help="Unstructured L1 sparsity of the encoder Linear weights, [0, 1). Zeros only: no size/speed gain.",
    ),
    click.option("--prune-scope", help="global or layer (per-Linear) ranking. [default: global]"),
    click.option(
        "--prune-heads", type=float, help="Fraction of attention heads removed from every layer, least important first."
    ),
    click.option(
        "--prune-ffn", type=float, help="Fraction of FFN neurons removed from every layer, least important first."
    ),
    click.option(
        "--importance-samples", type=int, help="Training examples used to rank heads and neurons. [default: 256]"
    ),
    click.option(
        "--recover-epochs",
        type=int,
        help="Distillation epochs after structured pruning and vocabulary trimming to win accuracy back "
        "(0: off). [default: 0]",
    ),
    click.option("--recover-lr", type=float, help="Learning rate of the recovery training. [default: 5e-05]"),
    click.option(
        "--recover-log-every",
        type=int,
        help="Recovery's optimizer steps between per-step metric lines (train_log.jsonl, TensorBoard tb/recovery; "
        "0: off). [default: 10]",
    ),
    click.option(
        "--teacher",
        type=click.Path(),
        help="Recovery teacher (default: the teacher recorded upstream, else the input model).",
    ),
    click.option(
        "--trim-vocab", is_flag=True, default=None, help="Keep only the word pieces the training corpus uses."
    ),
    click.option(
        "--int4-embeddings",
        is_flag=True,
        default=None,
        help="4-bit block-quantized embedding tables (ORT GatherBlockQuantized; runs before --int8; "
        "the .onnx runs in onnxruntime >= 1.22, the .ort does not load).",
    ),
    click.option(
        "--int4-matmul",
        is_flag=True,
        default=None,
        help="4-bit weight-only MatMuls (ORT MatMulNBits; runs before --int8; can be slower than INT8 on some CPUs).",
    ),
    click.option("--block-size", type=int, help="Weights per 4-bit scale: 16, 32, 64, 128 or 256. [default: 32]"),
    click.option("--int8", is_flag=True, default=None, help="INT8-quantize the ONNX graph (dynamic unless --static)."),
    click.option("--static", is_flag=True, default=None, help="Static (calibrated QDQ) INT8 instead of dynamic."),
    click.option("--calib-samples", type=int, help="Training examples for static calibration. [default: 128]"),
    click.option("--calib-method", help="minmax, entropy or percentile. [default: minmax]"),
    click.option("--per-channel", is_flag=True, default=None, help="Per-channel weight scales."),
    click.option(
        "--reduce-range", is_flag=True, default=None, help="7-bit weights (for CPUs without VNNI that saturate)."
    ),
    click.option("--weight-type", help="qint8 or quint8. [default: qint8]"),
    click.option(
        "--max-drop",
        type=float,
        help="Accuracy guard: largest validation drop allowed versus the input model. [default: 0.01]",
    ),
    click.option(
        "--guard-metric",
        help="accuracy (drop in validation accuracy) or agreement (share of predictions that change). "
        "[default: accuracy]",
    ),
    click.option(
        "--min-agreement",
        type=float,
        help="INT8 guard: label agreement with the fp32 graph that verify will require, checked at its "
        "95% lower bound (see --fidelity-texts). [default: 0.97]",
    ),
    click.option(
        "--fidelity-texts",
        type=int,
        help="Texts that agreement is measured and node sensitivity ranked on: the validation split, topped up "
        "with training texts (labels unused) when it is smaller. [default: 1000]",
    ),
    click.option("--latency-runs", type=int, help="Timed runs per latency number (0: skip). [default: 20]"),
]


def _options(f):
    for option in reversed(OPTIONS):
        f = option(f)
    return f


@click.command("compress")
@_options
@output_options("artifacts/compressed")
@save_recipe_option
def command(save_recipe, overwrite, quiet, as_json, **options):
    """Prune, trim and INT8-quantize a classifier, measuring every step, with an accuracy guard.

    When INT8 drops validation accuracy by more than --max-drop, or its labels agree with the fp32
    graph less than verify will require (--min-agreement), the most sensitive nodes fall back to
    fp32 until both hold; if nothing works the command fails and writes nothing.
    A recipe's compress section can list the steps instead (steps: [{method: prune_ffn,
    fraction: 0.25}, {method: int8_dynamic}]); these flags build that list.

    \b
    Examples:
      mbk compress --int8 --prune 0.2
      mbk compress --prune-heads 0.25 --prune-ffn 0.25 --recover-epochs 1 --trim-vocab --int8
      mbk compress --int8 --static --calib-samples 256 --calib-method entropy --per-channel
      mbk compress --int4-embeddings --block-size 32 --int8
    """
    from mobilebert_kit.stages.base import RunContext
    from mobilebert_kit.stages.compress import CompressConfig, run

    config = CompressConfig(**{k: v for k, v in options.items() if v is not None})
    write_stage_recipe(save_recipe, "compress", config.to_dict())
    emit_result(run(config, RunContext(overwrite=overwrite, quiet=quiet or as_json)), as_json, quiet)
