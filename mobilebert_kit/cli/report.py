"""``mbk report``: thin wrapper over :mod:`mobilebert_kit.stages.report` (one run) and
:mod:`mobilebert_kit.stages.compare_report` (several runs side by side)."""

from __future__ import annotations

import click

from mobilebert_kit.cli.common import emit


@click.command("report")
@click.argument("targets", metavar="RUN_DIR_OR_RECIPE [RUN_DIR ...]", nargs=-1)
@click.option("--title", help="Page title. [default: mobilebert_kit run: <folder>]")
@click.option("--seq-len", type=int, help="Bench sequence length shown in the table. [default: longest <= 128 timed]")
@click.option("--threads", type=int, help="Bench thread count shown in the table. [default: 1]")
@click.option(
    "--output",
    "-o",
    type=click.Path(),
    help="With several runs: the folder for compare.html/.md/.json. [default: artifacts/compare/<A>-vs-<B>]",
)
@click.option("--overwrite", is_flag=True, help="With several runs: replace a non-empty --output folder.")
@click.option("--quiet", "-q", is_flag=True, help="No log lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the report's data as JSON.")
def command(targets, title, seq_len, threads, output, overwrite, quiet, as_json):
    """Write report.html and report.md for a run folder, or compare several runs.

    The table goes teacher -> student -> compressed -> each export (accuracy, macro-F1,
    params, size, p50/p90 latency, parity), with per-step training curves and accuracy-vs-latency /
    accuracy-vs-size plots (Pareto front marked). The HTML embeds its PNGs: open it from disk.

    With two or more run folders, the runs go side by side (the first is the baseline): each stage's
    metrics, the phone model's accuracy / size / latency (marked when not comparable), the config keys
    that differ, and the paired test-accuracy difference on the same test texts with its 95% interval.

    \b
    Examples:
      mbk report artifacts/runs/default
      mbk report recipes/smoke.yaml            # the run folder of that recipe
      mbk report artifacts/runs/default --seq-len 64 --threads 2
      mbk report artifacts/runs/default artifacts/runs/t4 --json
    """

    from mobilebert_kit.errors import ConfigError
    from mobilebert_kit.stages import report as rp
    from mobilebert_kit.stages.base import RunContext

    if not targets:
        raise ConfigError("pass the run folder (e.g. artifacts/runs/default) or the recipe that made it")
    run_dirs = [_run_dir(t) for t in targets]
    section = {"title": title, "seq_len": seq_len, "threads": threads}
    ctx = RunContext(quiet=quiet or as_json, overwrite=overwrite)
    if len(run_dirs) > 1:
        from mobilebert_kit.stages import compare_report

        cfg = rp.ReportConfig.from_dict({k: v for k, v in section.items() if v is not None and k != "title"})
        result = compare_report.run([str(p) for p in run_dirs], cfg, output, title, ctx)
    else:
        if output or overwrite:
            raise ConfigError(
                "--output and --overwrite apply when comparing runs; one run's report goes into its folder"
            )
        section["run_dir"] = str(run_dirs[0])
        cfg = rp.ReportConfig.from_dict({k: v for k, v in section.items() if v is not None})
        result = rp.run(cfg, ctx)
    emit(result.metrics, as_json, quiet, "\n".join(result.summary))


def _run_dir(target: str):
    """A run folder, or the run folder of a recipe (``.yaml``)."""
    from pathlib import Path

    p = Path(target)
    if p.suffix in (".yaml", ".yml"):
        from mobilebert_kit.pipeline import recipe as rc

        return rc.load(p).run_dir
    return p
