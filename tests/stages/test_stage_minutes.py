"""The report's "Minutes per stage": each step's wall time from the recipe state, its biggest parts from its own
manifest, shares of the total; a folder another stage writes into is not mistaken for the step's own."""

import json

from mobilebert_kit.stages.stage_minutes import minutes_per_stage_lines, stage_minutes


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _run(tmp_path):
    run = tmp_path / "run"
    state = run / ".state"
    _write(
        state / "finetune.json",
        {"status": "done", "seconds": 120.0, "started": "2026-12-07T10:00:00", "output": str(run / "teacher")},
    )
    _write(
        state / "distill.json",
        {"status": "done", "seconds": 240.0, "started": "2026-12-07T10:02:00", "output": str(run / "student")},
    )
    _write(
        state / "verify.json",
        {"status": "done", "seconds": 60.0, "started": "2026-12-07T10:06:00", "output": str(run / "export")},
    )
    _write(state / "report.json", {"status": "running", "started": "2026-12-07T10:07:00"})
    _write(
        run / "teacher" / "manifest.json",
        {"stage": "finetune", "timings": {"load_seconds": 6.0, "train_seconds": 108.0, "total_seconds": 120.0}},
    )
    _write(
        run / "student" / "manifest.json",
        {
            "stage": "distill",
            "timings": {
                "load_seconds": 3.0,
                "teacher_cache_seconds": 30.0,
                "train_seconds": 180.0,
                "eval_seconds": 24.0,
                "x_seconds": 1.0,
                "total_seconds": 240.0,
            },
        },
    )
    _write(run / "export" / "manifest.json", {"stage": "export", "timings": {"onnx_seconds": 50.0}})
    return run


def test_minutes_per_stage_table(tmp_path):
    run = _run(tmp_path)
    rows = stage_minutes(run)
    assert [r["step"] for r in rows] == ["finetune", "distill", "verify"]  # in start order; report excluded
    assert rows[1]["parts"] == [("train", 180.0), ("teacher cache", 30.0), ("eval", 24.0)]  # top 3, no total
    assert rows[2]["parts"] == []  # the export folder's manifest is export's, not verify's
    lines = minutes_per_stage_lines(run)
    assert lines[0] == "## Minutes per stage"
    assert "| distill | 4.0 | 57% | train 3.0 min, teacher cache 0.5 min, eval 0.4 min |" in lines
    assert "| finetune | 2.0 | 29% | train 1.8 min, load 0.1 min |" in lines
    assert "| verify | 1.0 | 14% | — |" in lines
    assert "| **total** | **7.0** | 100% | |" in lines


def test_no_state_no_section(tmp_path):
    assert minutes_per_stage_lines(tmp_path) == []
    _write(tmp_path / ".state" / "x.json", {"status": "running"})  # no seconds yet
    assert minutes_per_stage_lines(tmp_path) == []


def test_report_shows_the_section(tmp_path):
    from mobilebert_kit.stages import report

    run = _run(tmp_path)
    data = report.collect(run, report.ReportConfig(run_dir=str(run)))
    assert "## Minutes per stage" in report.render_markdown(data, "t", {})


def test_verify_parts_come_from_its_own_report(tmp_path):
    run = _run(tmp_path)
    _write(
        run / "export" / "verify.json",
        {"passed": True, "timings": {"pytorch_reference_seconds": 9.0, "onnx_seconds": 30.0, "ort_seconds": 12.0}},
    )
    rows = {r["step"]: r for r in stage_minutes(run)}
    assert rows["verify"]["parts"] == [("onnx", 30.0), ("ort", 12.0), ("pytorch reference", 9.0)]


def test_verify_parts_when_the_state_records_the_report_file(tmp_path):
    """`mbk run` records verify's output as the verify.json file itself (the export folder is export's)."""
    run = _run(tmp_path)
    _write(
        run / ".state" / "verify.json",
        {
            "status": "done",
            "seconds": 60.0,
            "started": "2026-12-07T10:06:00",
            "output": str(run / "export" / "verify.json"),
        },
    )
    _write(run / "export" / "verify.json", {"passed": True, "timings": {"onnx_seconds": 35.0, "ort_seconds": 35.1}})
    rows = {r["step"]: r for r in stage_minutes(run)}
    assert rows["verify"]["parts"] == [("ort", 35.1), ("onnx", 35.0)]
