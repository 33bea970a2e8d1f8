"""One writer per output: a second run on the same output is refused with one line naming the first,
two runs started at once never mix their files, and crashed runs leave nothing that blocks the next."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mobilebert_kit import artifacts
from mobilebert_kit.errors import ArtifactError
from mobilebert_kit.locking import hold_output, lock_path

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}

# A stage as cheap as it gets, through the real lock and publish path: like a training stage it keeps
# working files in <output>.ckpt, then publishes weights + a manifest hashing them, then drops the .ckpt.
STAGE = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from mobilebert_kit import artifacts
    from mobilebert_kit.errors import MbkError
    from mobilebert_kit.locking import holds_output

    go, out, tag = sys.argv[1:]

    class Config:
        output = out

    @holds_output
    def run(config, ctx=None):
        ckpt = Path(out + ".ckpt")
        ckpt.mkdir(exist_ok=True)
        (ckpt / "step.txt").write_text(tag)
        time.sleep(0.1)
        with artifacts.staged_output(out, overwrite=True) as tmp:
            (tmp / "model.safetensors").write_bytes(os.urandom(2048) + tag.encode())
            time.sleep(0.05)
            artifacts.write_manifest(tmp, stage="dummy", config={"tag": tag})
        assert (ckpt / "step.txt").read_text() == tag, "another run wrote my checkpoint folder"
        artifacts.remove_retired(artifacts.retire(ckpt, Path(out), "ckpt"))

    while not os.path.exists(go):
        time.sleep(0.002)
    try:
        run(Config())
    except MbkError as e:
        print(f"Error: {e}")
        sys.exit(1)
    """
)


def _start(script: str, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _manifest_matches_weights(folder: Path) -> dict:
    manifest = json.loads((folder / artifacts.MANIFEST).read_text())
    assert manifest["files"] == artifacts.file_hashes(folder, exclude=(artifacts.MANIFEST,))
    return manifest


def test_two_runs_started_at_once_one_wins_and_the_artifact_is_whole(tmp_path):
    out = tmp_path / "out"
    rounds, refused = 12, 0
    for r in range(rounds):
        go = tmp_path / f"go-{r}"
        procs = [_start(STAGE, go, out, f"run{r}-{i}") for i in range(2)]
        time.sleep(0.3)  # both imported and waiting
        go.touch()
        results = [(p.wait(timeout=60), p.stdout.read()) for p in procs]
        codes = sorted(rc for rc, _ in results)
        winner = next(i for i, (rc, _) in enumerate(results) if rc == 0) if 0 in codes else None
        if codes == [0, 0]:
            # sequential, not overlapping (one finished before the other started): fine, but both whole
            pass
        else:
            assert codes == [0, 1], results
            refused += 1
            loser_out = next(o for rc, o in results if rc == 1)
            assert loser_out.startswith(f"Error: output folder {out} is being written by another mbk run (pid ")
            assert f"pid {procs[winner].pid} on {socket.gethostname()}, since " in loser_out
            assert loser_out.count("\n") == 1 and "Traceback" not in loser_out
        manifest = _manifest_matches_weights(out)
        tags = {f"run{r}-{i}" for i, (rc, _) in enumerate(results) if rc == 0}
        assert manifest["config"]["tag"] in tags
        leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".") or p.name.endswith(".ckpt"))
        assert leftovers == [], leftovers
    assert refused >= rounds // 2, f"only {refused} of {rounds} rounds overlapped: the race was not exercised"


HOLDER = textwrap.dedent(
    """
    import sys, time
    from mobilebert_kit.locking import hold_output
    with hold_output(sys.argv[1]):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


@pytest.fixture
def held_elsewhere(tmp_path):
    """A live process on this host holding ``tmp_path/out``."""
    out = tmp_path / "out"
    proc = _start(HOLDER, out, 120)
    assert proc.stdout.readline().strip() == "held"
    yield out, proc
    proc.kill()
    proc.wait()


def test_second_run_on_a_held_output_is_refused_naming_the_first(cli, held_elsewhere, tiny_classifier_dir, tmp_path):
    out, holder = held_elsewhere
    r = cli("export", "--model", tiny_classifier_dir, "-f", "onnx", "-o", out, "-q")
    assert r.exit_code == 1 and r.output.count("Error:") == 1 and "Traceback" not in r.output
    assert f"Error: output folder {out} is being written by another mbk run (pid {holder.pid} on " in r.output
    assert "wait for it to finish or stop it, or choose another --output" in r.output
    assert not out.exists()


def test_training_stage_is_refused_before_touching_the_checkpoint_folder(cli, held_elsewhere, sentiment_csv):
    out, holder = held_elsewhere
    ckpt = out.with_name("out.ckpt")
    ckpt.mkdir()
    (ckpt / "checkpoints").mkdir()  # the first run's checkpoints
    r = cli("finetune", "--model", "minilm-l6", "--data", sentiment_csv, "-o", out, "--resume", "-q")
    assert r.exit_code == 1 and f"(pid {holder.pid} on " in r.output
    assert (ckpt / "checkpoints").is_dir()


def test_a_crashed_runs_lock_does_not_block(tmp_path):
    out = tmp_path / "out"
    holder = _start(HOLDER, out, 120)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()  # kill -9: no cleanup ran, the lock file stays behind
    holder.wait()
    assert lock_path(out).exists() and json.loads(lock_path(out).read_text())["pid"] == holder.pid
    with hold_output(out):
        assert json.loads(lock_path(out).read_text())["pid"] == os.getpid()
    assert not lock_path(out).exists()


def test_lock_is_reentrant_in_one_process_and_released(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    with hold_output(out), hold_output(out):
        assert lock_path(out).exists()
    assert not lock_path(out).exists()
    assert not (tmp_path / "a").exists()  # the folders the lock created are gone again


def test_without_flock_a_live_owner_refuses_and_a_dead_one_is_stale(tmp_path, monkeypatch):
    from mobilebert_kit import locking

    monkeypatch.setattr(locking, "_flock", lambda fd: None)  # a file system without flock
    out = tmp_path / "out"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        info = {"pid": sleeper.pid, "host": socket.gethostname(), "started": "2026-01-01T00:00:00Z"}
        lock_path(out).write_text(json.dumps(info))
        with pytest.raises(ArtifactError, match=rf"\(pid {sleeper.pid} on .*, since 2026-01-01T00:00:00Z\)"):
            with hold_output(out):
                pass
    finally:
        sleeper.kill()
        sleeper.wait()
    with hold_output(out):  # its owner is dead now: stale, taken over
        pass
    lock_path(out).write_text(json.dumps({**info, "host": "elsewhere.example"}))
    with pytest.raises(ArtifactError, match=r"on elsewhere.example.*if that run is gone, delete .*\.out\.lock"):
        with hold_output(out):
            pass


def test_replacing_an_output_that_is_a_symlink_leaves_no_old_entry(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / artifacts.MANIFEST).write_text("{}")
    (real / "keep.txt").write_text("the link's target is not deleted")
    out = tmp_path / "out"
    out.symlink_to(real)
    with artifacts.staged_output(out, overwrite=True) as tmp:
        (tmp / "w.bin").write_bytes(b"x")
    assert out.is_dir() and not out.is_symlink() and (out / "w.bin").exists()
    assert (real / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "real"]


def test_stale_old_symlink_of_a_dead_run_is_cleaned(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / f".out.old-{dead.pid}").symlink_to(real)
    with artifacts.staged_output(tmp_path / "out") as tmp:
        (tmp / "w.bin").write_bytes(b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "real"]


@pytest.mark.slow
def test_two_real_finetune_runs_at_once(tmp_path, tiny_classifier_dir, sentiment_csv):
    """The same race with the real stage (each process imports torch: ~10 s a round on a quiet machine)."""
    out = tmp_path / "out"
    refused = 0
    for r in range(5):
        args = ["--model", tiny_classifier_dir, "--data", sentiment_csv, "-o", out, "--overwrite", "-q"]
        args += ["--max-steps", "2", "--epochs", "1", "--batch-size", "8"]
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "mobilebert_kit", "finetune", *map(str, args), "--seed", str(10 * r + i)],
                env=ENV,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for i in range(2)
        ]
        results = [(p.wait(timeout=600), p.stdout.read()) for p in procs]
        codes = sorted(rc for rc, _ in results)
        assert codes in ([0, 0], [0, 1]), results
        if codes == [0, 1]:
            refused += 1
            assert "is being written by another mbk run (pid " in next(o for rc, o in results if rc == 1)
        _manifest_matches_weights(out)
        assert not out.with_name("out.ckpt").exists()
    assert refused, "no round overlapped: the race was not exercised"
