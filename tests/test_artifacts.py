"""Artifact folders: --overwrite replaces only mbk's own folders, never a user's files or the
command's inputs; killed runs' temp folders are cleaned; artifacts get ordinary permissions."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from mobilebert_kit import artifacts
from mobilebert_kit.errors import ArtifactError


def _user_folder(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "good.csv").write_text("text,label\na,1\n")
    (folder / "notes.txt").write_text("my notes")
    return folder


def test_overwrite_refuses_a_folder_mbk_did_not_write(tmp_path):
    folder = _user_folder(tmp_path)
    with pytest.raises(ArtifactError, match=r"--overwrite refused: .*s was not written by mbk \(no manifest.json\)"):
        with artifacts.staged_output(folder, overwrite=True) as tmp:
            (tmp / "model.bin").write_text("x")
    assert sorted(p.name for p in folder.iterdir()) == ["good.csv", "notes.txt"]
    assert not list(tmp_path.glob(".s.tmp-*"))


def test_overwrite_refuses_a_folder_holding_the_commands_input(tmp_path):
    folder = tmp_path / "teacher"
    folder.mkdir()
    artifacts.write_json(folder / artifacts.MANIFEST, {"stage": "finetune"})
    (folder / "train.csv").write_text("text,label\na,1\n")
    with pytest.raises(ArtifactError, match=r"--overwrite refused: .*teacher holds this command's input .*train.csv"):
        artifacts.check_output_dir(folder, True, inputs=(str(folder / "train.csv"), None))
    assert (folder / "train.csv").exists()


def test_overwrite_replaces_an_mbk_folder(tmp_path):
    folder = tmp_path / "out"
    with artifacts.staged_output(folder) as tmp:
        artifacts.write_json(tmp / artifacts.MANIFEST, {"stage": "x", "n": 1})
    with pytest.raises(ArtifactError, match="is not empty; pass --overwrite"):
        artifacts.check_output_dir(folder, False)
    with artifacts.staged_output(folder, overwrite=True) as tmp:
        artifacts.write_json(tmp / artifacts.MANIFEST, {"stage": "x", "n": 2})
    assert artifacts.read_json(folder / artifacts.MANIFEST)["n"] == 2


def test_artifact_folders_get_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with artifacts.staged_output(tmp_path / "out") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755


def test_a_killed_runs_temp_folder_is_cleaned_next_time(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".out.tmp-{pid}-abcd"
    stale.mkdir()
    (stale / "big.bin").write_bytes(b"0" * 1000)
    mine = tmp_path / f".out.tmp-{os.getpid()}-live"  # a live process's temp folder is left alone
    mine.mkdir()
    other = tmp_path / f".other.tmp-{pid}-abcd"  # another output's temp folder too
    other.mkdir()
    with artifacts.staged_output(tmp_path / "out") as tmp:
        (tmp / "f").write_text("x")
    assert not stale.exists() and mine.exists() and other.exists()


def test_scratch_folders_of_killed_runs_are_swept_and_live_ones_kept(tmp_path, monkeypatch):
    import subprocess
    import sys

    from mobilebert_kit.artifacts import new_scratch_dir, scratch_dir, sweep_scratch

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f"mbk-compress-{gone.stdout.strip()}-abc"  # a SIGKILLed run's leftover
    dead.mkdir()
    (dead / "model.onnx").write_bytes(b"x" * 10)
    alive = tmp_path / f"mbk-compress-{os.getpid()}-def"
    alive.mkdir()
    logs, mine = tmp_path / "mbk-logs", tmp_path / "tmp-something"  # crash logs and others' folders stay
    logs.mkdir()
    mine.mkdir()
    with scratch_dir("int8") as d:
        assert d.parent == tmp_path and d.name.startswith(f"mbk-int8-{os.getpid()}-")
        assert not dead.exists() and alive.exists() and logs.exists() and mine.exists()
    assert not d.exists()
    with pytest.raises(ValueError):
        new_scratch_dir("a-b")
    assert sweep_scratch() == []


def test_a_work_folder_inside_an_output_is_swept_when_its_process_is_gone(tmp_path):
    import subprocess
    import sys

    from mobilebert_kit.artifacts import scratch_dir

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f".export.tmp-{gone.stdout.strip()}-abc"  # a SIGKILLed export's work folder
    dead.mkdir()
    live = tmp_path / f".export.tmp-{os.getpid()}-def"
    live.mkdir()
    with scratch_dir("export", parent=tmp_path) as work:
        assert work.parent == tmp_path and work.name.startswith(f".export.tmp-{os.getpid()}-")
        assert not dead.exists() and live.exists()
    assert not work.exists()
