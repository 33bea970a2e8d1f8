"""``mbk verify``: thin wrapper over :mod:`mobilebert_kit.stages.verify`."""

from __future__ import annotations

import click

from mobilebert_kit.cli.common import emit_result, log, save_recipe_option, split_names, write_stage_recipe


def _fmt(v, pct=False):
    if v is None:
        return "-"
    if pct:
        return f"{v:.2%}"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


@click.command("verify")
@click.option(
    "--export-dir",
    "-e",
    type=click.Path(),
    help="Folder written by `mbk export`. [default: artifacts/export]",
)
@click.option(
    "--format",
    "--formats",
    "-f",
    "formats",
    multiple=True,
    metavar="FORMAT",
    help="Only these formats (repeat or comma-separate; default: every exported one).",
)
@click.option(
    "--model",
    "-m",
    default=None,
    type=click.Path(),
    help="Source PyTorch classifier (default: the one recorded in model_meta.json).",
)
@click.option(
    "--data", default=None, help="Data to verify on (default: what the model was trained on); its test split is used."
)
@click.option("--max-examples", type=int, default=None, help="Verify on a seeded subset of the test split.")
@click.option("--max-abs-diff", type=float, help="fp32 artifacts: max |logit difference|. [default: 0.001]")
@click.option("--min-agreement", type=float, help="fp32 artifacts: min label agreement (0-1). [default: 0.995]")
@click.option("--max-accuracy-drop", type=float, help="fp32 artifacts: max accuracy drop (0-1). [default: 0.005]")
@click.option("--int8-max-abs-diff", type=float, help="INT8 artifacts: max |logit difference| (default: not gated).")
@click.option("--int8-min-agreement", type=float, help="INT8 artifacts: min label agreement. [default: 0.97]")
@click.option("--int8-max-accuracy-drop", type=float, help="INT8 artifacts: max accuracy drop. [default: 0.01]")
@click.option(
    "--node/--no-node",
    "node",
    default=None,
    help="Also run .onnx/.ort in onnxruntime-node (default: when node is available; --node makes it required).",
)
@click.option(
    "--runtime-version",
    "runtime_versions",
    multiple=True,
    metavar="auto|none|X",
    help="Also run the onnx/ort parity in onnxruntime==X, installed once into a cached side environment "
    "(repeatable). auto: also the version the Android app pins, when installed or installable (skipped "
    "offline); none: host runtime only. [default: auto]",
)
@click.option(
    "--arm",
    type=click.Choice(["auto", "on", "off"]),
    default=None,
    help="ARM64 parity of .onnx/.ort under QEMU user mode (`make arm-emu` installs it); auto: when installed. "
    "[default: auto]",
)
@click.option(
    "--arm-cpus", default=None, help="Emulated CPU models, comma-separated. [default: cortex-a53,cortex-a76,max]"
)
@click.option(
    "--arm-examples",
    type=int,
    default=None,
    help="Seeded subset of the test split to emulate. [default: as many as bound the flip rate below 3% at 95% with 0 flips: 99]",
)
@click.option(
    "--arm-ort-versions",
    default=None,
    help="aarch64 onnxruntime versions, comma-separated (default: the Android app's pinned version, what the phone runs).",
)
@click.option("--quiet", "-q", is_flag=True, help="No log lines.")
@click.option("--json", "as_json", is_flag=True, help="Print verify.json on stdout.")
@save_recipe_option
def command(save_recipe, formats, node, runtime_versions, quiet, as_json, **options):
    """Check every exported artifact against the PyTorch model it came from.

    Per format: sha256 of every file vs model_meta.json, then on the test split max |logit
    difference|, label agreement, accuracy and macro-F1 of both (✓/✗ per check). CoreML off macOS:
    spec checked, numerics NOT run (Core ML runs only on Apple OSes). Writes <export-dir>/verify.json; exits 1
    listing every breach.

    \b
    Examples:
      mbk verify
      mbk verify --export-dir artifacts/export --format onnx --min-agreement 0.999
      mbk verify --data reviews.csv --int8-min-agreement 0.95 --no-node
      mbk verify --runtime-version 1.22.0 --runtime-version 1.20.1
      mbk verify --format ort --arm on --arm-cpus cortex-a53,max --arm-examples 100
    """
    from mobilebert_kit.errors import VerifyError
    from mobilebert_kit.stages.base import RunContext
    from mobilebert_kit.stages.verify import run

    formats = tuple(split_names(formats))
    config = _config(formats, node, {**options, "runtime_versions": list(runtime_versions) or None})
    error = result = None
    try:
        write_stage_recipe(save_recipe, "verify", config.to_dict())
        result = run(config, RunContext(quiet=quiet or as_json))
    except VerifyError as e:
        error = e
    report = _read_report(config.export_dir)
    if report is not None and (error is None or not quiet) and not as_json:
        log("\n".join(_report_lines(report, formats)), quiet and error is None)
    if error is not None:
        raise error
    emit_result(result, as_json, quiet)


def _config(formats: tuple[str, ...], node: bool | None, o: dict):
    """A VerifyConfig of the options the user set (the dataclasses hold the defaults)."""
    from mobilebert_kit.stages.verify import VerifyConfig

    def given(**values):
        return {k: v for k, v in values.items() if v is not None}

    section = given(
        export_dir=o["export_dir"],
        formats=list(formats) or None,
        model=o["model"],
        data={"data": o["data"]} if o["data"] else None,
        max_examples=o["max_examples"],
        fp32=given(
            max_abs_diff=o["max_abs_diff"], min_agreement=o["min_agreement"], max_accuracy_drop=o["max_accuracy_drop"]
        ),
        int8=given(
            max_abs_diff=o["int8_max_abs_diff"],
            min_agreement=o["int8_min_agreement"],
            max_accuracy_drop=o["int8_max_accuracy_drop"],
        ),
        node={None: None, True: "on", False: "off"}[node],
        runtime_versions=o["runtime_versions"],
        arm=given(mode=o["arm"], cpus=o["arm_cpus"], examples=o["arm_examples"], ort_versions=o["arm_ort_versions"]),
    )
    return VerifyConfig.from_dict(section)


def _read_report(export_dir: str) -> dict | None:
    from pathlib import Path

    from mobilebert_kit.artifacts import VERIFY, read_json

    path = Path(export_dir) / VERIFY
    return read_json(path) if path.exists() else None


def _report_lines(report: dict, formats: tuple[str, ...]) -> list[str]:
    """✓/✗ per format (with its parity numbers) and per check, then what was proved where."""
    from mobilebert_kit.phone.side_parity import proved_lines

    lines = []
    for fmt, e in report["formats"].items():
        if formats and fmt not in formats:
            continue  # an earlier verification kept in verify.json
        weights = e.get("weights") or ("int8" if e["int8"] else "fp32")
        head = f"{'✓' if e['passed'] else '✗'} {fmt} ({weights})"
        if "agreement" in e:
            head += (
                f": max|Δ| {_fmt(e['max_abs_diff'])}, agreement {_fmt(e['agreement'], True)}, "
                f"accuracy {e['accuracy']:.4f} vs PyTorch {e['pytorch_accuracy']:.4f}, "
                f"macro-F1 {e['macro_f1']:.4f} vs {e['pytorch_macro_f1']:.4f}"
            )
        if e.get("summary"):  # e.g. "spec checked; numerics NOT run: ..." where the runtime cannot run here
            head += f": {e['summary']}"
        lines.append(head)
        for c in e["checks"]:
            mark = {True: "✓", False: "✗", None: "–"}[c["passed"]]
            lines.append(f"    {mark} {c['name']}" + (f": {c['detail']}" if c["detail"] else ""))
    return lines + proved_lines(report, formats)
