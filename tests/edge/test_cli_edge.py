"""The CLI's one error boundary: every failure is one ``Error:`` line on its own line, no traceback."""

from __future__ import annotations

import errno
import sys

import pytest

from mobilebert_kit.stages import base as stage


def _fail_with(monkeypatch, exc: BaseException, partial_line: str = ""):
    """Make the export stage write ``partial_line`` to stderr (a progress bar mid-line), then raise."""

    def run(config, ctx=None):
        sys.stderr.write(partial_line)
        raise exc

    import mobilebert_kit.stages.export as export

    monkeypatch.setattr(export, "run", run)
    assert stage.stage_module("export").run is run


def test_unexpected_error_is_one_line_with_a_log(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    _fail_with(monkeypatch, TypeError("unsupported operand type(s)"))
    r = cli("export", "--model", tmp_path, "-o", tmp_path / "e")
    assert r.exit_code == 1
    assert "Traceback" not in r.output
    lines = [x for x in r.output.splitlines() if x.startswith("Error:")]
    assert len(lines) == 1 and lines[0].startswith(
        "Error: internal error (TypeError: unsupported operand type(s)); please report it with the log at "
    )
    log = lines[0].rsplit(" ", 1)[1]
    text = open(log, encoding="utf-8").read()
    assert "Traceback" in text and "TypeError: unsupported operand type(s)" in text


def test_full_disk_says_disk(cli, monkeypatch, tmp_path):
    _fail_with(monkeypatch, OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "e" / "model.onnx")))
    r = cli("export", "--model", tmp_path, "-o", tmp_path / "e")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"Error: out of disk space writing {tmp_path / 'e' / 'model.onnx'}; free some space" in r.output


def test_error_starts_its_own_line_after_a_progress_bar(cli, monkeypatch, tmp_path):
    from mobilebert_kit.errors import ExportError

    _fail_with(monkeypatch, ExportError("the graph did not fuse"), partial_line="\rtraining:  40%|####      | 4/10")
    r = cli("export", "--model", tmp_path, "-o", tmp_path / "e")
    assert r.exit_code == 1
    assert "\nError: the graph did not fuse\n" in r.output and "4/10Error" not in r.output


@pytest.mark.parametrize("sub, hint", [("finetune", "--resume"), ("export", "nothing was written")])
def test_interrupt_message_fits_the_command(cli, monkeypatch, tmp_path, sub, hint):
    _fail_with(monkeypatch, KeyboardInterrupt())
    if sub == "finetune":
        import mobilebert_kit.stages.finetune as finetune

        def run(config, ctx=None):
            raise KeyboardInterrupt

        monkeypatch.setattr(finetune, "run", run)
        r = cli("finetune", "-o", tmp_path / "t")
    else:
        r = cli("export", "--model", tmp_path, "-o", tmp_path / "e")
    assert r.exit_code == 130 and "Error: interrupted; " in r.output and hint in r.output


def test_debug_shows_the_traceback(cli, monkeypatch, tmp_path):
    _fail_with(monkeypatch, TypeError("boom"))
    with pytest.raises(TypeError, match="boom"):
        cli("--debug", "export", "--model", tmp_path, "-o", tmp_path / "e")


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 3916608 vs 3916496"),  # torch.save
        Exception("Error while serializing: I/O error: No space left on device (os error 28)"),  # safetensors
        RuntimeError("saving failed"),  # ... raised from an ENOSPC OSError
    ],
    ids=["torch-zip-writer", "safetensors", "chained"],
)
def test_a_library_wording_of_a_full_disk_says_disk(cli, monkeypatch, tmp_path, error):
    if str(error) == "saving failed":
        error.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    _fail_with(monkeypatch, error)
    r = cli("export", "--model", tmp_path, "-o", tmp_path / "e")
    lines = [x for x in r.output.splitlines() if x.startswith("Error:")]
    assert r.exit_code == 1 and "Traceback" not in r.output and len(lines) == 1
    assert lines[0].startswith("Error: out of disk space") and "internal error" not in lines[0], lines[0]
    assert "run the same command again" in lines[0]


def test_a_stage_error_around_a_full_disk_says_disk_not_the_stage_fix(cli, monkeypatch, tmp_path):
    from mobilebert_kit.errors import ExportError

    error = ExportError("ONNX export of m failed (OSError: [Errno 28] No space left on device); check the model")
    error.__cause__ = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "e" / "model.onnx"))
    _fail_with(monkeypatch, error)
    r = cli("export", "--model", tmp_path, "-o", tmp_path / "e")
    lines = [x for x in r.output.splitlines() if x.startswith("Error:")]
    assert r.exit_code == 1 and len(lines) == 1
    assert lines[0].startswith(f"Error: out of disk space writing {tmp_path / 'e' / 'model.onnx'}; free some space")
    assert "check the model" not in lines[0]
