"""``mbk bench``: thin wrapper over :mod:`mobilebert_kit.stages.bench`."""

from __future__ import annotations

import click

from mobilebert_kit.cli.common import emit_result, save_recipe_option, split_names, write_stage_recipe


def _ints(value: str | None, name: str) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError as e:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}", param_hint=name) from e


@click.command("bench")
@click.option(
    "--export-dir",
    "-e",
    type=click.Path(),
    help="Folder written by `mbk export`. [default: artifacts/export]",
)
@click.option(
    "--format",
    "-f",
    "formats",
    multiple=True,
    metavar="FORMAT",
    help="Exported formats to time: onnx, ort, torchscript, executorch, tflite (repeat or comma-separate). "
    "[default: onnx, ort; none when --model is given]",
)
@click.option(
    "--model",
    "-m",
    "models",
    multiple=True,
    type=click.Path(),
    help="Time these .onnx/.ort/.pt/.pte/.tflite files or classifier folders instead of the export dir (repeatable).",
)
@click.option("--seq-lengths", help="Comma-separated sequence lengths. [default: 16,64,128]")
@click.option("--batch-sizes", help="Comma-separated batch sizes. [default: 1]")
@click.option("--threads", help="Comma-separated intra-op thread counts. [default: 1,2]")
@click.option("--warmup", type=int, help="Warm-up runs per case. [default: 5]")
@click.option("--runs", type=int, help="Timed runs per case. [default: 30]")
@click.option("--rounds", type=int, help="Interleaved rounds the runs are split into. [default: 3]")
@click.option(
    "--runtime-version",
    "runtime_versions",
    multiple=True,
    metavar="auto|none|X",
    help="Also time the ONNX Runtime models in onnxruntime==X, installed once into a cached side environment "
    "(repeatable). auto: the .ort also in the version the Android app pins, when installed or installable "
    "(skipped offline); none: this environment's onnxruntime only. [default: auto]",
)
@click.option("--pytorch/--no-pytorch", default=None, help="Also time the source PyTorch model. [default: pytorch]")
@click.option("--output", "-o", type=click.Path(), help="Where bench.json/bench.md go. [default: artifacts/bench]")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")
@click.option("--quiet", "-q", is_flag=True, help="No log lines or table.")
@click.option("--json", "as_json", is_flag=True, help="Print bench.json on stdout.")
@save_recipe_option
def command(
    save_recipe,
    export_dir,
    formats,
    models,
    seq_lengths,
    batch_sizes,
    threads,
    warmup,
    runs,
    rounds,
    runtime_versions,
    pytorch,
    output,
    overwrite,
    quiet,
    as_json,
):
    """Measure latency (p50/p90/p99), size and memory on ONNX Runtime, PyTorch for reference.

    The .ort is also timed in the onnxruntime version the Android app pins (a cached side install, run
    in a subprocess after the host's cases): INT8 kernels differ between versions.

    \b
    Examples:
      mbk bench
      mbk bench --seq-lengths 16,64,128 --threads 1,2 --batch-sizes 1,8 --overwrite
      mbk bench --model artifacts/export/onnx/model.onnx --no-pytorch --threads 1
      mbk bench --format ort --runtime-version 1.22.0 --runtime-version 1.26.0
    """

    from mobilebert_kit.stages.base import RunContext
    from mobilebert_kit.stages.bench import BenchConfig, run

    section = {
        "export_dir": export_dir,
        "formats": split_names(formats) if formats else ([] if models else None),
        "models": list(models) or None,
        "pytorch": pytorch,
        "seq_lengths": _ints(seq_lengths, "--seq-lengths"),
        "batch_sizes": _ints(batch_sizes, "--batch-sizes"),
        "threads": _ints(threads, "--threads"),
        "warmup": warmup,
        "runs": runs,
        "rounds": rounds,
        "runtime_versions": list(runtime_versions) or None,
        "output": output,
    }
    config = BenchConfig.from_dict({k: v for k, v in section.items() if v is not None})
    write_stage_recipe(save_recipe, "bench", config.to_dict())
    emit_result(run(config, RunContext(overwrite=overwrite, quiet=quiet or as_json)), as_json, quiet)
