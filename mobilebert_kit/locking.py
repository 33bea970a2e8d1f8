"""One writer per output folder.

Two runs writing the same output share its checkpoint folder (``<output>.ckpt``) and its temp folders:
the first to finish deletes the checkpoints under the second, and the published folder can end up with
one run's weights under the other's manifest. So a stage holds a lock on its output for as long as it
runs: a hidden file ``.<output>.lock`` beside the folder, holding the owner's PID, host, start time and
command line, locked with ``flock``. A second run on the same output fails at once with one line naming
the owner.

A crashed run cannot leave a stale lock behind: the kernel drops an ``flock`` when its process dies,
whatever the file says. Where ``flock`` is not supported (some network file systems) the file alone
decides: a lock whose PID is dead on this host is stale and taken over; one from another host is
refused, with the fix (delete the lock file once that run is gone).

Locks are re-entrant within a process (a stage's ``run`` holds the lock, and its ``staged_output``
holds it again), and released on exit from the ``with`` block.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mobilebert_kit.errors import ArtifactError

LOCK_SUFFIX = ".lock"
_COMMAND_CHARS = 160


@dataclass
class _Held:
    fd: int
    count: int


_HELD: dict[str, _Held] = {}  # lock file (resolved) -> this process's hold


def lock_path(output: str | os.PathLike) -> Path:
    """The lock file of an output folder: a hidden sibling, so replacing the folder keeps the lock."""
    output = Path(os.path.abspath(output))
    return output.with_name(f".{output.name}{LOCK_SUFFIX}")


def holds_output(run: Callable) -> Callable:
    """Decorate a stage's ``run(config, ctx)``: ``config.output`` is held for the whole run (before the
    first check, through training and its ``.ckpt`` folder, until the result is published)."""

    @functools.wraps(run)
    def locked_run(config, ctx=None):
        output = getattr(config, "output", None)
        if not output:
            return run(config, ctx)
        with hold_output(output):
            return run(config, ctx)

    return locked_run


@contextlib.contextmanager
def hold_output(output: str | os.PathLike) -> Iterator[Path]:
    """Hold ``output`` (and its ``.ckpt`` / temp siblings) for this process while the block runs.

    Raises:
        ArtifactError: another live process holds it (the line names its PID, host and start time).
    """
    if not Path(os.path.abspath(output)).name or _follower_rank():
        # the file-system root (nothing can be published there), or a non-zero rank of a data-parallel
        # run: rank 0 holds the lock for every rank
        yield Path(output)
        return
    path = lock_path(output)
    key = str(path)
    if key in _HELD:
        _HELD[key].count += 1
        try:
            yield path
        finally:
            _HELD[key].count -= 1
        return
    made = _make_parents(path.parent)
    try:
        fd = _acquire(path, Path(output))
    except OSError:  # no lock file can be written there: neither can the output; the stage says why
        fd = None
    except BaseException:
        _remove_empty(made)
        raise
    if fd is not None:
        _HELD[key] = _Held(fd, 1)
    try:
        yield path
    finally:
        if fd is not None:
            del _HELD[key]
            _release(path, fd)
        _remove_empty(made)


def _follower_rank() -> bool:
    """A non-zero rank of a distributed launch (torchrun / accelerate set RANK and WORLD_SIZE)."""
    rank, world = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
    return rank.isdigit() and world.isdigit() and int(world) > 1 and int(rank) != 0


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the ones created, deepest first."""
    missing = []
    for p in [folder, *folder.parents]:
        if p.exists() or p.is_symlink():
            break
        missing.append(p)
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove folders this lock created that stayed empty (a run refused early leaves no trace)."""
    for p in folders:
        with contextlib.suppress(OSError):
            p.rmdir()


def _acquire(path: Path, output: Path) -> int:
    """Open, lock and stamp the lock file; retries when the file was replaced while we locked it."""
    for _ in range(20):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            locked = _flock(fd)
            if locked is False:
                raise ArtifactError(busy_message(output, _stamped_owner(path)))
            if locked is None:  # no flock here: the file's content decides
                _check_owner_file(path, output)
            if not _same_file(fd, path):  # the holder released (and removed) it between our open and lock
                os.close(fd)
                continue
            _stamp(fd)
            return fd
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
    raise ArtifactError(f"could not take the lock {path} (it keeps changing); is another mbk run starting on {output}?")


def _flock(fd: int) -> bool | None:
    """True: locked; False: another process holds it; None: the file system has no flock."""
    try:
        import fcntl
    except ImportError:  # Windows
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        return None


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _stamp(fd: int) -> None:
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(sys.argv)[:_COMMAND_CHARS],
    }
    data = json.dumps(info).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


def _release(path: Path, fd: int) -> None:
    # removed while still locked, so nobody can lock this file after we let go (they retry on a new one)
    with contextlib.suppress(OSError):
        if _same_file(fd, path):
            path.unlink()
    with contextlib.suppress(OSError):
        os.close(fd)


def _stamped_owner(path: Path, wait_s: float = 1.0) -> dict:
    """The owner of a lock another process holds. It locks first and stamps the file right after, so a run
    that lost the race by microseconds can find the file still empty: wait a moment for the stamp."""
    deadline = time.monotonic() + wait_s
    owner = read_owner(path)
    while "pid" not in owner and time.monotonic() < deadline:
        time.sleep(0.02)
        owner = read_owner(path)
    return owner


def read_owner(path: Path) -> dict:
    """What a lock file says about its owner (empty when unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8")[:4096])
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _check_owner_file(path: Path, output: Path) -> None:
    """Without flock: refuse a lock whose owner may be alive; a dead PID on this host is stale."""
    owner = read_owner(path)
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return
    if owner.get("host") == socket.gethostname():
        if pid_alive(pid):
            raise ArtifactError(busy_message(output, owner))
        return  # stale: its process is gone
    raise ArtifactError(busy_message(output, owner) + f" (if that run is gone, delete {path})")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (one we may not signal still exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def busy_message(output: Path, owner: dict) -> str:
    who = f"pid {owner.get('pid', '?')} on {owner.get('host', 'an unknown host')}"
    if owner.get("started"):
        who += f", since {owner['started']}"
    if owner.get("command"):
        who += f": {owner['command']}"
    return (
        f"output folder {output} is being written by another mbk run ({who}); wait for it to finish or stop it, "
        "or choose another --output"
    )
