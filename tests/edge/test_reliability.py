"""Reliability campaign (slow tier, `make reliability`): kill -9 and Ctrl-C at random moments of a
real `mbk finetune` process, over and over, then resume until it finishes; every file of the newest
checkpoint damaged in turn. The result must be bit-identical to an uninterrupted run, and nothing
may be left behind (no temp folders, no checkpoints). The fast, deterministic versions of these
(kill at a fixed step, one truncated checkpoint) run in the default suite (test_finetune.py)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_tiny_classifier, sigint_default, write_sentiment_csv

pytestmark = pytest.mark.slow

MBK = [sys.executable, "-m", "mobilebert_kit"]
ARGS = ["--epochs", "4", "--lr", "1e-2", "--batch-size", "16", "--early-stopping-patience", "0"]
ARGS += ["--checkpoint-every", "2", "-q"]
ENV = {**os.environ, "PYTHONHASHSEED": "0"}


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """(command without -o, uninterrupted output, seconds an uninterrupted run takes)."""
    d = tmp_path_factory.mktemp("rel")
    model, data = make_tiny_classifier(d / "tiny", layers=2), write_sentiment_csv(d / "d.csv", n=240)
    cmd = [*MBK, "finetune", "--model", str(model), "--data", str(data), *ARGS]
    t0 = time.monotonic()
    subprocess.run([*cmd, "-o", str(d / "ref")], check=True, capture_output=True, env=ENV)
    return cmd, d / "ref", time.monotonic() - t0


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def _same_model(a: Path, b: Path) -> bool:
    import torch

    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _interrupt(cmd: list[str], out: Path, after: float, sig: int, resume: bool) -> int:
    """Start a run (resuming if asked), send ``sig`` after ``after`` seconds (if still running); its exit code."""
    p = subprocess.Popen([*cmd, "-o", str(out), *(["--resume"] if resume else [])], env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         preexec_fn=sigint_default)  # fmt: skip
    try:
        p.wait(timeout=after)
    except subprocess.TimeoutExpired:
        p.send_signal(sig)
    _, err = p.communicate()
    assert "Traceback" not in err, err
    return p.returncode


def _leftovers(out: Path) -> list[str]:
    """Checkpoints or temp folders left next to ``out``. A kill inside the final delete can leave a
    hidden ``.NAME.old-PID-*`` (the next write of that output removes it: test_artifacts.py)."""
    names = (p.name for p in out.parent.iterdir() if p.name.startswith((f".{out.name}.", f"{out.name}.ckpt")))
    return sorted(n for n in names if not n.startswith(f".{out.name}.old-"))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_interrupted_again_and_again_then_resumed_is_bit_identical(job, tmp_path, sig):
    cmd, ref, seconds = job
    rng = random.Random(1234 + sig)
    out, ckpts = tmp_path / "run", tmp_path / "run.ckpt" / "checkpoints"
    interrupted = 0
    for _ in range(6):
        if (out / "manifest.json").exists() and not ckpts.is_dir():
            break  # finished (the signal came after the result was in place)
        code = _interrupt(cmd, out, rng.uniform(0.3, 1.1) * seconds, sig, resume=ckpts.is_dir())
        interrupted += code != 0
        if code == 0:
            break
        # killed; or Ctrl-C: one Error line, exit 130 (or -2 when it lands as Python exits: a shell shows 130 too)
        assert code in (-signal.SIGKILL, 130, -signal.SIGINT), code
    else:  # never finished within the interrupted attempts: finish without interruption
        assert _interrupt(cmd, out, 10 * seconds + 60, sig, resume=ckpts.is_dir()) == 0
    assert interrupted >= 1  # the campaign really interrupted the run
    assert _same_model(out, ref)
    assert _leftovers(out) == []


@pytest.mark.parametrize("victim", ["model.safetensors", "optimizer.pt", "state.json", "hashes.json", "rng.pt"])
def test_each_file_of_the_newest_checkpoint_damaged(job, tmp_path, victim):
    cmd, ref, _ = job
    out = tmp_path / "run"
    killed = subprocess.run([*cmd, "-o", str(out)], env={**ENV, "MBK_KILL_AT_STEP": "13"}, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    newest = sorted((tmp_path / "run.ckpt" / "checkpoints").iterdir())[-1]
    target = newest / victim
    if not target.exists():
        pytest.skip(f"checkpoints hold no {victim}: {sorted(p.name for p in newest.iterdir())}")
    target.write_bytes(target.read_bytes()[: max(0, target.stat().st_size // 2)])
    r = subprocess.run([*cmd, "-o", str(out), "--resume"], env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"warning: checkpoint {newest.name} is damaged" in r.stderr
    assert _same_model(out, ref)
    assert _leftovers(out) == []
