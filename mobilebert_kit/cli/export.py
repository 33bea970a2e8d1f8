"""``mbk export``: thin wrapper over :mod:`mobilebert_kit.stages.export`."""

from __future__ import annotations

import click

from mobilebert_kit.cli.common import emit_result, save_recipe_option, split_names, write_stage_recipe


@click.command("export")
@click.option(
    "--format",
    "-f",
    "formats",
    multiple=True,
    metavar="FORMAT",
    help="onnx, ort, torchscript, coreml, executorch or tflite (optional extras) or all (= the first four); "
    "repeat or comma-separate for several. [default: all]",
)
@click.option(
    "--model",
    "-m",
    type=click.Path(),
    help="Classifier folder to export (compress/distill/finetune output). [default: artifacts/compressed]",
)
@click.option(
    "--max-length", type=int, default=None, help="Longest input (default: what the model was trained with, else 128)."
)
@click.option(
    "--int8/--fp32", "int8", default=None, help="Force INT8 or fp32 (default: what compression.json asks for)."
)
@click.option("--opset", type=int, help="ONNX opset. [default: 17]")
@click.option(
    "--coreml-precision",
    type=click.Choice(["fp32", "fp16"]),
    help="Compute precision of the CoreML mlprogram. [default: fp32]",
)
@click.option(
    "--coreml-lengths",
    metavar="N,N,...",
    help="CoreML: enumerated sequence lengths, increasing, the largest = max length (e.g. 32,64,128); "
    "the Neural Engine runs only enumerated shapes. Needs iOS18. [default: one flexible length]",
)
@click.option(
    "--coreml-palettize",
    "coreml_palettize_bits",
    type=int,
    metavar="BITS",
    help="CoreML: palettize weights to 2**BITS values (1, 2, 3, 4, 6 or 8) instead of int8 weights.",
)
@click.option(
    "--coreml-palettize-mode",
    type=click.Choice(["kmeans", "uniform"]),
    help="How the palette is found (kmeans needs scikit-learn). [default: kmeans]",
)
@click.option(
    "--coreml-target",
    type=click.Choice(["iOS15", "iOS16", "iOS17", "iOS18"]),
    help="Minimum deployment target of the CoreML model. [default: iOS16, iOS18 with --coreml-lengths]",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(),
    help="Export folder; each format goes to <output>/<format>/. [default: artifacts/export]",
)
@click.option("--overwrite", is_flag=True, help="Replace existing format folders.")
@click.option("--quiet", "-q", is_flag=True, help="No log lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the per-format summary as JSON.")
@save_recipe_option
def command(save_recipe, formats, model, max_length, int8, opset, output, overwrite, quiet, as_json, **coreml):
    """Export a classifier to ONNX / ORT / TorchScript / CoreML (/ ExecuTorch) folders.

    Each format folder is self-contained: model file, tokenizer files, labels.json and
    model_meta.json (inputs, dtypes, dynamic axes, max length, labels, sha256 of every file).

    \b
    Examples:
      mbk export --format all
      mbk export -f onnx -f ort --model artifacts/student --output artifacts/export
      mbk export -f executorch --int8 --model artifacts/student
      mbk export -f coreml --coreml-lengths 32,64,128 --coreml-palettize 6
    """
    from mobilebert_kit.errors import ConfigError
    from mobilebert_kit.stages.base import RunContext
    from mobilebert_kit.stages.export import ExportConfig, run

    names = split_names(formats)
    given = [f"--{k.replace('_bits', '').replace('_', '-')}" for k, v in coreml.items() if v is not None]
    if names and given and not {"coreml", "all"} & set(names):
        raise ConfigError(
            f"{', '.join(given)}: {'a CoreML option' if len(given) == 1 else 'CoreML options'}, but -f "
            f"{','.join(names)} does not export coreml; add -f coreml or drop {'it' if len(given) == 1 else 'them'}"
        )
    section = {
        "model": model,
        "output": output,
        "formats": names if formats else None,
        "opset": opset,
        "max_length": max_length,
        "int8": int8,
        **coreml,  # --coreml-lengths 32,64,128 is split and checked by the config
    }
    config = ExportConfig.from_dict({k: v for k, v in section.items() if v is not None})
    write_stage_recipe(save_recipe, "export", config.to_dict())
    emit_result(run(config, RunContext(overwrite=overwrite, quiet=quiet or as_json)), as_json, quiet)
