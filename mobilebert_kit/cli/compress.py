"""``mbk compress``: thin wrapper over :mod:`mobilebert_kit.compress`."""

from __future__ import annotations

import click

from mobilebert_kit.cli.common import emit_result, output_options, save_recipe_option, write_stage_recipe


@click.command("compress")
@click.option(
    "--model",
    "-m",
    default="artifacts/student",
    show_default=True,
    type=click.Path(),
    help="Classifier folder to compress (student, teacher or any fine-tuned classifier).",
)
@click.option(
    "--data", default=None, help="Data to evaluate on (default: what the model was trained on, from its manifest)."
)
@click.option("--max-length", type=int, default=None, help="Longest input (default: recorded upstream, else 128).")
@click.option(
    "--prune",
    type=float,
    default=0.0,
    show_default=True,
    help="Unstructured L1 sparsity of the encoder Linear weights, [0, 1). Zeros only: no size/speed gain.",
)
@click.option("--prune-scope", default="global", show_default=True, help="global or layer (per-Linear) ranking.")
@click.option(
    "--prune-heads",
    type=float,
    default=0.0,
    show_default=True,
    help="Fraction of attention heads removed from every layer, least important first.",
)
@click.option(
    "--prune-ffn",
    type=float,
    default=0.0,
    show_default=True,
    help="Fraction of FFN neurons removed from every layer, least important first.",
)
@click.option(
    "--importance-samples",
    type=int,
    default=256,
    show_default=True,
    help="Training examples used to rank heads and neurons.",
)
@click.option(
    "--recover-epochs",
    type=int,
    default=0,
    show_default=True,
    help="Distillation epochs after structured pruning to win accuracy back (0: off).",
)
@click.option(
    "--recover-lr", type=float, default=5e-5, show_default=True, help="Learning rate of the recovery training."
)
@click.option(
    "--teacher",
    default=None,
    type=click.Path(),
    help="Recovery teacher (default: the teacher recorded upstream, else the input model).",
)
@click.option("--trim-vocab", is_flag=True, help="Keep only the word pieces the training corpus uses.")
@click.option("--int8", is_flag=True, help="INT8-quantize the ONNX graph (dynamic unless --static).")
@click.option("--static", is_flag=True, help="Static (calibrated QDQ) INT8 instead of dynamic.")
@click.option(
    "--calib-samples", type=int, default=128, show_default=True, help="Training examples for static calibration."
)
@click.option("--calib-method", default="minmax", show_default=True, help="minmax, entropy or percentile.")
@click.option("--per-channel", is_flag=True, help="Per-channel weight scales.")
@click.option("--reduce-range", is_flag=True, help="7-bit weights (for CPUs without VNNI that saturate).")
@click.option("--weight-type", default="qint8", show_default=True, help="qint8 or quint8.")
@click.option(
    "--max-drop",
    type=float,
    default=0.01,
    show_default=True,
    help="Accuracy guard: largest validation drop allowed versus the input model.",
)
@click.option(
    "--guard-metric",
    default="accuracy",
    show_default=True,
    help="accuracy (drop in validation accuracy) or agreement (share of predictions that change).",
)
@click.option(
    "--latency-runs", type=int, default=20, show_default=True, help="Timed runs per latency number (0: skip)."
)
@output_options("artifacts/compressed")
@save_recipe_option
def command(
    save_recipe,
    model,
    data,
    max_length,
    prune,
    prune_scope,
    prune_heads,
    prune_ffn,
    importance_samples,
    recover_epochs,
    recover_lr,
    teacher,
    trim_vocab,
    int8,
    static,
    calib_samples,
    calib_method,
    per_channel,
    reduce_range,
    weight_type,
    max_drop,
    guard_metric,
    latency_runs,
    output,
    overwrite,
    quiet,
    as_json,
):
    """Prune, trim and INT8-quantize a classifier, measuring every step, with an accuracy guard.

    When INT8 drops validation accuracy by more than --max-drop, the most sensitive nodes fall
    back to fp32 until it does not; if nothing works the command fails and writes nothing.

    \b
    Examples:
      mbk compress --int8 --prune 0.2
      mbk compress --prune-heads 0.25 --prune-ffn 0.25 --recover-epochs 1 --trim-vocab --int8
      mbk compress --int8 --static --calib-samples 256 --calib-method entropy --per-channel
    """
    from mobilebert_kit.compress import CompressConfig, run
    from mobilebert_kit.stage import RunContext

    config = CompressConfig(
        model=model,
        output=output,
        data=data,
        max_length=max_length,
        prune=prune,
        prune_scope=prune_scope,
        prune_heads=prune_heads,
        prune_ffn=prune_ffn,
        importance_samples=importance_samples,
        recover_epochs=recover_epochs,
        recover_lr=recover_lr,
        teacher=teacher,
        trim_vocab=trim_vocab,
        int8=int8,
        static=static,
        calib_samples=calib_samples,
        calib_method=calib_method,
        per_channel=per_channel,
        reduce_range=reduce_range,
        weight_type=weight_type,
        max_drop=max_drop,
        guard_metric=guard_metric,
        latency_runs=latency_runs,
    )
    write_stage_recipe(save_recipe, "compress", config.to_dict())
    emit_result(run(config, RunContext(overwrite=overwrite, quiet=quiet or as_json)), as_json, quiet)
