"""``mbk package``: bundle a verified export for Android (.ort, or .tflite for LiteRT) or iOS (.mlpackage)."""

from __future__ import annotations

import click

from mobilebert_kit.cli.common import emit_result, save_recipe_option, write_stage_recipe


@click.command("package")
@click.option("--target", "-t", required=True, help="android (.ort, ONNX Runtime Mobile) or ios (.mlpackage, CoreML).")
@click.option(
    "--runtime",
    default=None,
    help="Phone runtime the bundle is for: ort (android default), litert (android: model.tflite from "
    "`mbk export -f tflite`), coreml (ios). Bundles for a non-default runtime go to artifacts/package/<target>-<runtime>.",
)
@click.option(
    "--export-dir",
    type=click.Path(),
    help="Folder written by `mbk export` (and checked by `mbk verify`). [default: artifacts/export]",
)
@click.option(
    "--output", "-o", default=None, type=click.Path(), help="Bundle folder [default: artifacts/package/<target>]."
)
@click.option("--overwrite", is_flag=True, help="Replace a non-empty bundle folder.")
@click.option("--no-zip", is_flag=True, help="Do not write <output>.zip beside the folder.")
@click.option(
    "--install-into",
    type=click.Path(),
    default=None,
    help="Also copy the bundle into an app: android_demo (app/src/main/assets/bundle) or ios_demo (MBKDemo/bundle).",
)
@click.option(
    "--golden-text",
    "golden_texts",
    multiple=True,
    help="Text for the on-device self-test (repeatable; default: a built-in nasty set).",
)
@click.option(
    "--allow-unverified-runtime",
    is_flag=True,
    help="Bundle even if `mbk verify` never passed in the onnxruntime version the golden vectors are computed in "
    "(the bundle records verified: false).",
)
@click.option("--quiet", "-q", is_flag=True, help="No log lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the bundle's model_meta.json on stdout.")
@save_recipe_option
def command(
    save_recipe,
    target: str,
    runtime: str | None,
    export_dir: str | None,
    output: str | None,
    overwrite: bool,
    no_zip: bool,
    install_into: str | None,
    golden_texts: tuple[str, ...],
    allow_unverified_runtime: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Bundle a verified model, tokenizer, labels and golden test vectors for a phone.

    Refuses exports that failed or never ran `mbk verify`, or that changed since, and bundles whose
    runtime version (Android: the onnxruntime version the app pins) verify never passed in. Golden
    vectors carry per-vector tolerances derived from the spread measured across onnxruntime versions
    and thread counts.

    \b
    Example:
      mbk package --target android --install-into android_demo
      mbk package --target android --runtime litert
      mbk package --target ios
    """
    from mobilebert_kit.stages.base import RunContext
    from mobilebert_kit.stages.package import PackageConfig, run

    section = {
        "target": target,
        "runtime": runtime,
        "export_dir": export_dir,
        "output": output,
        "make_zip": False if no_zip else None,
        "install_into": install_into,
        "golden_texts": list(golden_texts) or None,
        "allow_unverified_runtime": allow_unverified_runtime or None,
    }
    config = PackageConfig.from_dict({k: v for k, v in section.items() if v is not None})
    write_stage_recipe(save_recipe, "package", config.to_dict())
    emit_result(run(config, RunContext(overwrite=overwrite, quiet=quiet or as_json)), as_json, quiet)
