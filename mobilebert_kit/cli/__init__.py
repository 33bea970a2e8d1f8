"""The ``mbk`` command. Thin: each subcommand lives in ``mobilebert_kit/cli/<name>.py`` and is
imported only when invoked, so ``mbk --help`` stays instant (no torch import)."""

from __future__ import annotations

import importlib
import os
import sys

import click

from mobilebert_kit import __version__

# command name -> (module under mobilebert_kit.cli, one-line help shown by `mbk --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "finetune": ("finetune", "Fine-tune a BERT teacher classifier."),
    "distill": ("distill", "Distill the teacher into a small student."),
    "compress": ("compress", "Prune and INT8-quantize a classifier, with an accuracy guard."),
    "export": ("export", "Export to ONNX / ORT / TorchScript / CoreML."),
    "verify": ("verify", "Prove exported artifacts match the PyTorch model."),
    "bench": ("bench", "Measure latency, size and memory on ONNX Runtime."),
    "package": ("package", "Bundle a verified model for Android or iOS."),
    "device-bench": ("device_bench", "Benchmark the packaged model on an attached Android phone."),
    "run": ("run", "Run a whole pipeline from a YAML recipe."),
    "validate": ("validate", "Check a recipe without running it."),
    "report": ("report", "Write report.html / report.md for a run."),
}


class LazyGroup(click.Group):
    """Click group that imports a subcommand's module only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, (mod, _) in COMMANDS.items() if _module_exists(mod)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or not _module_exists(COMMANDS[name][0]):
            return None
        module = importlib.import_module(f"mobilebert_kit.cli.{COMMANDS[name][0]}")
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        from mobilebert_kit.errors import MbkError

        try:
            return super().invoke(ctx)
        except MbkError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: {e}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            sub = ctx.invoked_subcommand
            how = (
                "run the same command with --resume to continue from the last checkpoint"
                if sub in ("finetune", "distill")
                else "run the same command again: finished stages are reused"
                if sub == "run"
                else "nothing was written; run the same command again"
            )
            click.echo(f"Error: interrupted; {how}", err=True)
            ctx.exit(130)


def _module_exists(mod: str) -> bool:
    return os.path.exists(os.path.join(os.path.dirname(__file__), f"{mod}.py"))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mbk")
@click.option("--debug", is_flag=True, envvar="MBK_DEBUG", help="Show full tracebacks instead of one Error: line.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """mobilebert_kit: turn a BERT text classifier into a small, fast, verified phone model.

    \b
    Everything at once, offline, on the embedded default (MiniLM-L6 + Rotten Tomatoes):
      mbk run recipes/default.yaml
    Stage by stage:
      mbk finetune --data rotten_tomatoes --model minilm-l6
      mbk distill --layers 0,2,4
      mbk compress --int8 --prune 0.2
      mbk export --format all && mbk verify && mbk bench
      mbk package --target android
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
