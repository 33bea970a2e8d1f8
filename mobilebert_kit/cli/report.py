"""``mbk report``: thin wrapper over :mod:`mobilebert_kit.stages.report`."""

from __future__ import annotations

import click

from mobilebert_kit.cli.common import emit


@click.command("report")
@click.argument("target", metavar="RUN_DIR_OR_RECIPE", required=False, default=None)
@click.option("--title", help="Page title. [default: mobilebert_kit run: <folder>]")
@click.option("--seq-len", type=int, help="Bench sequence length shown in the table. [default: longest <= 128 timed]")
@click.option("--threads", type=int, help="Bench thread count shown in the table. [default: 1]")
@click.option("--quiet", "-q", is_flag=True, help="No log lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the report's data as JSON.")
def command(target, title, seq_len, threads, quiet, as_json):
    """Write report.html and report.md for a run folder.

    The table goes teacher -> student -> compressed -> each export (accuracy, macro-F1,
    params, size, p50/p90 latency, parity), with training curves and accuracy-vs-latency /
    accuracy-vs-size plots (Pareto front marked). The HTML embeds its PNGs: open it from disk.

    \b
    Examples:
      mbk report artifacts/runs/default
      mbk report recipes/smoke.yaml            # the run folder of that recipe
      mbk report artifacts/runs/default --seq-len 64 --threads 2
    """
    from pathlib import Path

    from mobilebert_kit.errors import ConfigError
    from mobilebert_kit.stages import report as rp
    from mobilebert_kit.stages.base import RunContext

    if target is None:
        raise ConfigError("pass the run folder (e.g. artifacts/runs/default) or the recipe that made it")
    p = Path(target)
    if p.suffix in (".yaml", ".yml"):
        from mobilebert_kit.pipeline import recipe as rc

        run_dir = rc.load(p).run_dir
    else:
        run_dir = p
    section = {"run_dir": str(run_dir), "title": title, "seq_len": seq_len, "threads": threads}
    cfg = rp.ReportConfig.from_dict({k: v for k, v in section.items() if v is not None})
    result = rp.run(cfg, RunContext(quiet=quiet or as_json))
    emit(result.metrics, as_json, quiet, "\n".join(result.summary))
