"""Options and output helpers shared by the subcommands (no heavy imports here)."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

import click


def output_options(default_output: str) -> Callable:
    """--output/--overwrite/--quiet/--json, the same on every stage."""

    def deco(f: Callable) -> Callable:
        f = click.option("--json", "as_json", is_flag=True, help="Print the final metrics as JSON on stdout.")(f)
        f = click.option("--quiet", "-q", is_flag=True, help="No progress bars or log lines.")(f)
        f = click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")(f)
        f = click.option("--output", "-o", default=default_output, show_default=True, type=click.Path(),
                         help="Output folder.")(f)
        return f

    return deco


def emit(result: dict[str, Any], as_json: bool, quiet: bool, summary: str) -> None:
    """Print the final result: JSON on stdout with --json, else a one-line summary unless --quiet."""
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    elif not quiet:
        click.echo(summary)


def log(msg: str, quiet: bool = False) -> None:
    if not quiet:
        click.echo(msg, err=True)


def parse_overrides(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise click.BadParameter(f"expected KEY=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        out[k.strip()] = v
    return out


def isatty() -> bool:
    return sys.stderr.isatty()
