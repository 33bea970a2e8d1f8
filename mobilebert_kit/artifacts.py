"""Self-explaining artifact folders.

Every stage writes one folder that stands alone: the model in its native format, tokenizer,
``labels.json`` and ``manifest.json`` (stage, resolved config, inputs with sha256, library
versions, metrics, timings). Folders are built in a hidden sibling temp dir and renamed into
place, so a crash never leaves half an artifact; a non-empty target is refused unless
``overwrite`` is set, and that check happens *before* any work starts.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mobilebert_kit.bounded_input import MAX_JSON_BYTES
from mobilebert_kit.errors import ArtifactError
from mobilebert_kit.locking import pid_alive

MANIFEST = "manifest.json"
METRICS = "metrics.json"
LABELS = "labels.json"
META = "model_meta.json"  # one export format folder (or phone bundle) described: inputs, labels, file hashes
VERIFY = "verify.json"  # mbk verify's report, next to the format folders of an export
COMPRESSION = "compression.json"  # what mbk compress did (int8, its ONNX graph) for export to follow
TRAIN_LOG = "train_log.jsonl"  # a training stage's per-step metrics (training.metrics_log)
TENSORBOARD = "tb"  # its TensorBoard event files (when tensorboard is installed)
PREDICTIONS = "test_predictions.json"  # a stage's per-example test predictions (predictions.py), for mbk report A B

_LIBS = (
    "torch",
    "transformers",
    "tokenizers",
    "accelerate",
    "optimum",
    "onnx",
    "onnxruntime",
    "coremltools",
    "numpy",
    "safetensors",
)


# A folder holding one of these at its top level was written by mbk (a stage output or an export);
# --overwrite replaces only such folders, never a user's folder that happens to be named as output.
MBK_MARKERS = (MANIFEST, META, "bench.json")


def is_mbk_output(path: str | os.PathLike) -> bool:
    path = Path(path)
    return any((path / m).is_file() for m in MBK_MARKERS)


def check_output_dir(
    path: str | os.PathLike,
    overwrite: bool,
    inputs: tuple[str | os.PathLike | None, ...] = (),
    owned: bool = False,
) -> Path:
    """Fail early when ``path`` may not be written: it exists and is non-empty without ``overwrite``,
    or ``overwrite`` would replace a folder mbk did not write, or one that holds this command's ``inputs``.
    ``owned``: the caller names a folder only mbk writes (e.g. a report's plots), without a marker file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ArtifactError(f"output path {path} exists and is not a folder; remove it or choose another --output")
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ArtifactError(f"output path {path} lies under {blocking}, which is a file; choose another --output")
    if not (path.is_dir() and any(path.iterdir())):
        return path
    if not overwrite:
        raise ArtifactError(
            f"output folder {path} is not empty; pass --overwrite to replace it or choose another --output"
        )
    if not owned and not is_mbk_output(path):
        raise ArtifactError(
            f"--overwrite refused: {path} was not written by mbk (no {MANIFEST}), so replacing it could delete "
            "your files; choose another --output"
        )
    held = [str(p) for p in inputs if p and _is_within(Path(p), path)]
    if held:
        raise ArtifactError(
            f"--overwrite refused: {path} holds this command's input {held[0]}; move it out or choose another --output"
        )
    return path


def not_a_folder(path: str | os.PathLike, what: str) -> str:
    """The start of the error line for a folder argument that is no folder: "WHAT PATH does not exist", or
    "... is a file, not a folder" (a file named where a folder belongs is not missing)."""
    path = Path(path)
    return f"{what} {path} is a file, not a folder" if path.exists() else f"{what} {path} does not exist"


def check_scratch_dir(path: str | os.PathLike, mine: Callable[[Path], bool], flag: str = "") -> Path:
    """Fail early when a working folder a stage creates beside its output and deletes at the end
    (``<output>.ckpt``, ``<output>.trials``) already holds something ``mine`` does not recognise, or is a
    file: deleting it later would delete the user's files. Hidden temp entries (``.*.tmp*``, ``.*.old-*``)
    are mbk's own."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ArtifactError(f"{path} exists and is not a folder; mbk keeps its working files there: move it")
    if path.is_dir():
        foreign = [p for p in sorted(path.iterdir()) if not (_is_temp_entry(p) or mine(p))]
        if foreign:
            raise ArtifactError(
                f"{path} holds {foreign[0].name}, which mbk did not write; mbk keeps {flag or 'its working files'} "
                "there and deletes the folder when done: move your files out or choose another --output"
            )
    return path


def _is_temp_entry(p: Path) -> bool:
    # .NAME.lock: the lock of a run on NAME (locking.py), left behind only by a crash (and then unlocked)
    return p.name.startswith(".") and (".tmp" in p.name or ".old-" in p.name or p.name.endswith(".lock"))


def _is_within(child: Path, folder: Path) -> bool:
    try:
        child.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError):
        return False


def clean_stale_temp(path: str | os.PathLike) -> list[Path]:
    """Remove temp/old siblings of ``path`` left by a run that was killed (its process is gone)."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return [p for kind in ("tmp", "old") for p in _sweep_dead(path.parent, f".{path.name}.{kind}-")]


SCRATCH_PREFIX = "mbk-"


def new_scratch_dir(name: str, parent: str | os.PathLike | None = None) -> Path:
    """A new temp folder for work that is never published: ``mbk-NAME-PID-xxxx`` in TMPDIR, or
    ``.NAME.tmp-PID-xxxx`` inside ``parent``, so that one left behind by a killed run (its PID gone) is removed
    by the next (:func:`sweep_scratch`). The caller deletes it; :func:`scratch_dir` does both."""
    if "-" in name:
        raise ValueError(f"scratch name {name!r} must not contain '-'")
    if parent is None:
        sweep_scratch()
        root, prefix = Path(tempfile.gettempdir()), f"{SCRATCH_PREFIX}{name}-"
    else:
        root, prefix = Path(parent), f".{name}.tmp-"
        _sweep_dead(root, prefix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=root))


@contextlib.contextmanager
def scratch_dir(name: str, parent: str | os.PathLike | None = None) -> Iterator[Path]:
    """:func:`new_scratch_dir`, removed when the block ends (also on an exception)."""
    folder = new_scratch_dir(name, parent)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sweep_scratch() -> list[Path]:
    """Remove the TMPDIR scratch folders of mbk processes that are gone (a SIGKILL runs no cleanup)."""
    return _sweep_dead(Path(tempfile.gettempdir()), SCRATCH_PREFIX, name_part=True)


def _sweep_dead(root: Path, prefix: str, name_part: bool = False) -> list[Path]:
    """Remove the ``root/PREFIX[NAME-]PID[-*]`` entries whose process is gone (:func:`remove_retired`)."""
    removed = []
    for p in root.glob(f"{prefix}*"):
        fields = p.name[len(prefix) :].split("-")
        pid = fields[1 if name_part else 0] if len(fields) > int(name_part) else ""
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            remove_retired(p)
            removed.append(p)
    return removed


def remove_retired(old: Path) -> None:
    """Delete a retired (``.old-PID``) or temp entry. A retired symlink (the output was a link to a folder
    elsewhere) is unlinked, never followed: rmtree refuses links, which left them behind for good."""
    if old.is_symlink() or old.is_file():
        old.unlink(missing_ok=True)
    else:
        shutil.rmtree(old, ignore_errors=True)


def retire(folder: Path, owner: Path, tag: str = "") -> Path:
    """Rename ``folder`` (atomically) to a hidden ``.OWNER.old-PID[-TAG]`` sibling of ``owner`` and return it:
    the caller deletes it; if it is killed first, :func:`clean_stale_temp` of ``owner`` removes it later."""
    old = owner.with_name(f".{owner.name}.old-{os.getpid()}{'-' + tag if tag else ''}")
    os.replace(folder, old)
    return old


def _public_mode(folder: Path) -> None:
    """mkdtemp makes 0700 folders; artifacts get the permissions of any folder the user creates."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)


@contextlib.contextmanager
def staged_output(
    path: str | os.PathLike,
    overwrite: bool = False,
    inputs: tuple[str | os.PathLike | None, ...] = (),
    owned: bool = False,
) -> Iterator[Path]:
    """Yield a temp folder next to ``path``; on success it atomically replaces ``path``.

    On any exception the temp folder is removed and ``path`` is left untouched. Temp folders of
    earlier runs of the same output that were killed are removed first.
    """
    from mobilebert_kit.locking import hold_output

    with hold_output(path):  # one writer per output (a stage's run may hold it already)
        path = check_output_dir(path, overwrite, inputs, owned)
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temp(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
        _public_mode(tmp)
        try:
            yield tmp
            if path.exists() or path.is_symlink():
                old = retire(path, path)
                os.replace(tmp, path)
                remove_retired(old)
            else:
                os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_tree(path: str | os.PathLike, exclude: tuple[str, ...] = (MANIFEST,)) -> str:
    """Hash a file, or every file of a folder (relative names + contents, sorted)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and p.name not in exclude):
        h.update(str(f.relative_to(path)).encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def file_hashes(folder: str | os.PathLike, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every file under ``folder``, keyed by relative posix path."""
    folder = Path(folder)
    return {
        f.relative_to(folder).as_posix(): sha256_file(f)
        for f in sorted(folder.rglob("*"))
        if f.is_file() and f.name not in exclude
    }


def folder_size(path: str | os.PathLike) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in _LIBS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    try:
        out["mobilebert_kit"] = metadata.version("mobilebert_kit")
    except metadata.PackageNotFoundError:
        from mobilebert_kit import __version__

        out["mobilebert_kit"] = __version__
    return out


def write_json(path: str | os.PathLike, data: Any) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")
    os.replace(tmp, path)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically (a temp file beside it, renamed into place)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise ArtifactError(
                f"{path} is {path.stat().st_size:,} bytes, over the {MAX_JSON_BYTES:,} mbk reads; re-run the stage that wrote it"
            )
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as e:
        raise ArtifactError(f"{path} is missing; run the stage that produces it first") from e
    except json.JSONDecodeError as e:
        raise ArtifactError(
            f"{path} is not valid JSON ({e.msg} at line {e.lineno}); re-run the stage that wrote it"
        ) from e
    except (RecursionError, UnicodeDecodeError) as e:
        why = "nests too deeply" if isinstance(e, RecursionError) else "is not UTF-8"
        raise ArtifactError(f"{path} {why} to be read as JSON; re-run the stage that wrote it") from None


def write_labels(folder: str | os.PathLike, label_names: list[str]) -> None:
    write_json(
        Path(folder) / LABELS,
        {
            "labels": list(label_names),
            "id2label": {str(i): n for i, n in enumerate(label_names)},
            "label2id": {n: i for i, n in enumerate(label_names)},
        },
    )


def read_labels(folder: str | os.PathLike) -> list[str]:
    data = read_json(Path(folder) / LABELS)
    return list(data["labels"])


def input_record(path: str | os.PathLike) -> dict[str, Any]:
    """Describe an input artifact or file for a manifest: path, sha256, stage if it has a manifest."""
    path = Path(path)
    rec: dict[str, Any] = {"path": str(path)}
    if path.exists():
        rec["sha256"] = sha256_tree(path)
        m = path / MANIFEST if path.is_dir() else None
        if m is not None and m.exists():
            with contextlib.suppress(Exception):
                rec["stage"] = read_json(m).get("stage")
    return rec


def write_manifest(
    folder: str | os.PathLike,
    *,
    stage: str,
    config: dict,
    inputs: dict[str, Any] | None = None,
    metrics: dict | None = None,
    timings: dict | None = None,
    extra: dict | None = None,
) -> dict:
    """Write ``manifest.json`` describing how this folder was produced; returns it."""
    folder = Path(folder)
    manifest = {
        "stage": stage,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "config": config,
        "inputs": inputs or {},
        "versions": library_versions(),
        "metrics": metrics or {},
        "timings": timings or {},
        "files": file_hashes(folder, exclude=(MANIFEST,)),
    }
    if extra:
        manifest.update(extra)
    write_json(folder / MANIFEST, manifest)
    return manifest


def lineage(folder: str | Path, max_depth: int = 8) -> dict:
    """Walk an artifact's manifests upstream and return what later stages need from it:
    ``{"data": DataConfig dict | None, "max_length": int | None, "teacher": path | None}``.

    Every training stage records ``data`` and ``max_length`` at the top level of its manifest;
    later stages (compress, export, verify) inherit them through ``inputs.model.path``.
    """
    found: dict = {"data": None, "max_length": None, "teacher": None}
    current = Path(folder)
    for _ in range(max_depth):
        m = current / MANIFEST
        if not m.exists():
            break
        manifest = read_json(m)
        for key in found:
            if found[key] is None and manifest.get(key) is not None:
                found[key] = manifest[key]
        if all(v is not None for v in found.values()):
            break
        upstream = (manifest.get("inputs") or {}).get("model", {}).get("path")
        if not upstream or Path(upstream) == current:
            break
        current = Path(upstream)
    return found
