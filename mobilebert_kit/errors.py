"""Domain errors. Raised inside the library; the CLI turns them into one ``Error: ...`` line.

Every message names the problem *and* the fix, so the user never needs the traceback
(``mbk --debug`` still shows it).
"""

from __future__ import annotations


class MbkError(Exception):
    """Base class for every error mobilebert_kit reports to the user."""

    exit_code = 1


class Interrupted(KeyboardInterrupt):
    """Ctrl-C inside a stage that knows what the user should do next (``hint``)."""

    def __init__(self, hint: str):
        super().__init__(hint)
        self.hint = hint


class ConfigError(MbkError):
    """A configuration value, flag or recipe key is invalid."""

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            msg = self.problems[0]
        else:
            msg = f"{len(self.problems)} problems:\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(msg)


class DataError(MbkError):
    """Input data is missing, empty or malformed."""


class ModelError(MbkError):
    """A model could not be found, loaded or is not what the stage needs."""


class ArtifactError(MbkError):
    """An artifact folder is missing, incomplete, tampered with, or would be overwritten."""


class TrainingError(MbkError):
    """Training could not start or continue (device, precision, resume...)."""


class CompressError(MbkError):
    """Pruning or quantization failed or could not meet the accuracy guard."""


class TuneError(MbkError):
    """No compression plan of a tune run passed the accuracy guard."""


class ExportError(MbkError):
    """A model could not be exported to the requested format."""


class VerifyError(MbkError):
    """An exported artifact failed a parity or integrity check."""


class PackageError(MbkError):
    """A mobile bundle could not be built."""


class DeviceError(MbkError):
    """An attached device could not be used."""


class RuntimeVersionError(MbkError):
    """A side onnxruntime version could not be installed or run (unknown version, broken wheel)."""


class IndexUnreachableError(RuntimeVersionError):
    """A side runtime is not installed and the package index cannot be reached to install it."""


class RuntimeModelError(RuntimeVersionError):
    """The side runtime works but cannot load or run this model (too old for its file format or ops)."""


# How a full disk shows through the libraries that write for us: safetensors' Rust I/O error, and torch's
# zip writer, which reports only the short write it saw ("unexpected pos N vs M").
_DISK_FULL_MARKS = ("No space left on device", "os error 28", "Disk quota exceeded", "os error 122")
_SHORT_WRITE_MARKS = ("unexpected pos", "PytorchStreamWriter failed writing")


def disk_full(error: BaseException | None) -> bool:
    """Whether ``error``, or an exception it was raised from, is a write that failed on a full disk."""
    import errno

    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(error)
        if any(mark in text for mark in _DISK_FULL_MARKS + _SHORT_WRITE_MARKS):
            return True
        error = error.__cause__ or error.__context__
    return False


def warn(message: str) -> None:
    """A warning a careful user would want even with --quiet: one ``warning: ...`` line on stderr."""
    import sys

    print(f"warning: {bounded_message(message)}", file=sys.stderr, flush=True)


MAX_LINE_CHARS = 2000  # one line of an Error:/warning: message
MAX_MESSAGE_LINES = 60  # a ConfigError lists every problem, one per line


def elide(text: str, limit: int = MAX_LINE_CHARS) -> str:
    """``text`` cut to about ``limit`` characters: its head and tail, the middle replaced by its size."""
    if len(text) <= limit:
        return text
    head, tail = text[: limit * 3 // 4], text[-(limit // 8) :]
    return f"{head}[... {len(text) - len(head) - len(tail):,} characters elided ...]{tail}"


def bounded_message(message: str) -> str:
    """A message fit for a terminal: every line elided to :data:`MAX_LINE_CHARS`, at most
    :data:`MAX_MESSAGE_LINES` lines (a megabyte value in a message costs a few hundred bytes)."""
    lines = message.split("\n")
    shown = [elide(line) for line in lines[:MAX_MESSAGE_LINES]]
    if len(lines) > MAX_MESSAGE_LINES:
        shown.append(f"  ... {len(lines) - MAX_MESSAGE_LINES} more lines")
    return "\n".join(shown)
