"""``mbk compare``: ``mbk report RUN_A RUN_B ...`` under its own name (at least two runs)."""

from __future__ import annotations

import click

from mobilebert_kit.cli.common import emit


@click.command("compare")
@click.argument("run_dirs", metavar="RUN_A RUN_B [RUN ...]", nargs=-1)
@click.option("--seq-len", type=int, help="Bench sequence length compared. [default: longest <= 128 timed]")
@click.option("--threads", type=int, help="Bench thread count compared. [default: 1]")
@click.option("--title", help="Page title.")
@click.option(
    "--output",
    "-o",
    type=click.Path(),
    help="Folder for compare.html/.md/.json. [default: artifacts/compare/<A>-vs-<B>]",
)
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --output folder.")
@click.option("--quiet", "-q", is_flag=True, help="No log lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison's data as JSON.")
def command(run_dirs, seq_len, threads, title, output, overwrite, quiet, as_json):
    """Put runs side by side: stage metrics, the phone model, config differences, paired accuracy.

    The first run is the baseline; each other run's test accuracy is paired with it text by text,
    with a 95% bootstrap interval ("noise" when it covers 0).

    \b
    Examples:
      mbk compare artifacts/runs/default artifacts/runs/t4
      mbk compare artifacts/runs/a artifacts/runs/b artifacts/runs/c -o artifacts/compare/abc
    """
    from mobilebert_kit.stages import compare_report
    from mobilebert_kit.stages.base import RunContext
    from mobilebert_kit.stages.report import ReportConfig

    section = {"seq_len": seq_len, "threads": threads}
    cfg = ReportConfig.from_dict({k: v for k, v in section.items() if v is not None})
    ctx = RunContext(quiet=quiet or as_json, overwrite=overwrite)
    result = compare_report.run(list(run_dirs), cfg, output, title, ctx)
    emit(result.metrics, as_json, quiet, "\n".join(result.summary))
