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
    "tune": ("tune", "Try compression plans, report every one, keep the best."),
    "export": ("export", "Export to ONNX / ORT / TorchScript / CoreML."),
    "verify": ("verify", "Prove exported artifacts match the PyTorch model."),
    "bench": ("bench", "Measure latency, size and memory on ONNX Runtime."),
    "package": ("package", "Bundle a verified model for Android or iOS."),
    "device-bench": ("device_bench", "Benchmark the packaged model on an attached Android phone."),
    "run": ("run", "Run a whole pipeline from a YAML recipe."),
    "validate": ("validate", "Check a recipe without running it."),
    "report": ("report", "Write report.html / report.md for a run."),
    "compare": ("compare", "Put runs side by side (mbk report RUN_A RUN_B)."),
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
        """The one error boundary: every failure ends as one ``Error:`` line on its own line."""
        from mobilebert_kit.errors import MbkError, disk_full

        stderr = sys.stderr
        tracker = sys.stderr = _LineTracker(stderr)
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except click.ClickException as e:  # click prints it; a megabyte option value is elided first
            from mobilebert_kit.errors import bounded_message

            e.message = bounded_message(e.message)
            raise
        except MbkError as e:
            # a stage's own error wrapped around a full disk: its suggested fix would mislead (e.g. "check that
            # the model is a standard classifier" for an export that could not write)
            self._fail(ctx, tracker, _disk_full_message(e) if disk_full(e) else str(e), e.exit_code, e)
        except KeyboardInterrupt as e:
            hint = getattr(e, "hint", None) or _after_interrupt(ctx.invoked_subcommand)
            self._fail(ctx, tracker, f"interrupted; {hint}", 130, e)
        except OSError as e:
            self._fail(ctx, tracker, _os_error_message(e), 1, e)
        except Exception as e:  # noqa: BLE001 - the edge: anything unexpected is reported, never a bare traceback
            if disk_full(e):  # a library's own wording of ENOSPC (safetensors, torch's zip writer)
                self._fail(ctx, tracker, _disk_full_message(e), 1, e)
            else:
                log = _write_crash_log(e)
                msg = f"internal error ({type(e).__name__}: {_first_line(e)}); please report it with the log at {log}"
                self._fail(ctx, tracker, msg, 1, e)
        finally:
            sys.stderr = stderr

    @staticmethod
    def _fail(ctx: click.Context, tracker: _LineTracker, message: str, code: int, error: BaseException):
        from mobilebert_kit.errors import bounded_message

        if ctx.obj and ctx.obj.get("debug"):
            raise error
        if not tracker.at_line_start:  # a progress bar was mid-line: Error: starts a line of its own
            tracker.write("\n")
        tracker.write(f"Error: {bounded_message(message)}\n")
        tracker.flush()
        ctx.exit(code)


class _LineTracker:
    """stderr proxy that remembers whether the last character written ended a line."""

    def __init__(self, stream):
        self._stream = stream
        self.at_line_start = True

    def write(self, text: str) -> int:
        if text:
            self.at_line_start = text.endswith("\n")
        return self._stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _after_interrupt(sub: str | None) -> str:
    if sub in ("finetune", "distill"):
        return "run the same command again (with --resume if <output>.ckpt/ holds a checkpoint)"
    if sub == "run":
        return "run the same command again: finished stages are reused"
    return "nothing was written; run the same command again"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else "no message"


_DISK_FULL = (
    "out of disk space{detail}; free some space (or choose another --output) and run the same command "
    "again: finished stages and checkpoints are kept, and nothing half-written was published"
)


def _disk_full_message(e: BaseException) -> str:
    """The one disk-full line: ``writing FILE`` from an OSError in ``e``'s chain, else the words of whoever
    raised it (torch's zip writer says only "unexpected pos N vs M": a file written short)."""
    seen, cur = set(), e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and getattr(cur, "filename", None):
            return _DISK_FULL.format(detail=f" writing {cur.filename}")
        cur = cur.__cause__ or cur.__context__
    what = "a file was written short" if "unexpected pos" in str(e) else _first_line(e)
    return _DISK_FULL.format(detail=f" ({what})")


def _os_error_message(e: OSError) -> str:
    import errno

    where = f" writing {e.filename}" if getattr(e, "filename", None) else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return _DISK_FULL.format(detail=where)
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"permission denied{where}; choose a folder you can write to"
    return f"{e.strerror or _first_line(e)}{where}"


def _write_crash_log(e: BaseException) -> str:
    """Write the traceback where the user can attach it to a report; returns the path."""
    import tempfile
    import time
    import traceback

    folder = os.path.join(tempfile.gettempdir(), "mbk-logs")
    try:
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"mbk-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log")
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"mbk {__version__}: {' '.join(sys.argv)}\n")
            traceback.print_exception(type(e), e, e.__traceback__, file=f)
        return path
    except OSError:
        return "(the log could not be written; run again with --debug)"


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
