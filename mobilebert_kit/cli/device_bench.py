"""``mbk device-bench``: benchmark the packaged model on an attached Android phone."""

from __future__ import annotations

import click

from mobilebert_kit.cli.common import emit


@click.command("device-bench")
@click.option(
    "--bundle",
    type=click.Path(),
    help="Android bundle written by `mbk package --target android`. [default: artifacts/package/android]",
)
@click.option(
    "--apk", default=None, type=click.Path(), help="Demo APK to install [default: android_demo's debug APK if built]."
)
@click.option("--serial", "-s", default=None, help="adb serial of the phone (when several are attached).")
@click.option("--warmup", type=int, help="Untimed runs first. [default: 10]")
@click.option("--runs", type=int, help="Timed runs. [default: 50]")
@click.option("--text", help="Input text. [default: a wonderful, moving film with a clever script]")
@click.option("--output", "-o", type=click.Path(), help="Result JSON. [default: artifacts/device_bench.json]")
@click.option("--no-push", is_flag=True, help="Use the bundle inside the APK instead of pushing this one.")
@click.option("--timeout", "timeout_s", type=float, help="Seconds to wait for the app. [default: 180]")
@click.option("--require-device", is_flag=True, help="Fail (instead of SKIP) when adb or a phone is missing.")
@click.option("--quiet", "-q", is_flag=True, help="No log lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the result JSON on stdout.")
def command(
    bundle, apk, serial, warmup, runs, text, output, no_push, timeout_s, require_device, quiet, as_json
) -> None:
    """Run the Android demo's benchmark mode on a phone over adb; write p50/p90 latency JSON.

    Without adb or a phone it prints one SKIP: line and exits 0 (--require-device makes that an error).

    \b
    Example:
      mbk package --target android && mbk device-bench --runs 100
    """
    from mobilebert_kit.stages.base import RunContext
    from mobilebert_kit.stages.device_bench import DeviceBenchConfig, DeviceSkip, run

    section = {
        "bundle": bundle,
        "apk": apk,
        "serial": serial,
        "warmup": warmup,
        "runs": runs,
        "text": text,
        "output": output,
        "require_device": require_device or None,
        "timeout_s": timeout_s,
        "push_bundle": False if no_push else None,
    }
    config = DeviceBenchConfig.from_dict({k: v for k, v in section.items() if v is not None})
    try:
        result = run(config, RunContext(quiet=quiet or as_json))
    except DeviceSkip as e:
        click.echo(f"SKIP: {e}")
        return
    emit(result.metrics, as_json, quiet, "\n".join(result.summary))
