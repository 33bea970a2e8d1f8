from mobilebert_kit.stages.report import ReportConfig, _guard_text, _pick_case


def _row(model, seq):
    return {"model": model, "threads": 1, "batch": 1, "seq_len": seq, "p50_ms": 1.0}


def test_table_uses_the_length_every_model_was_timed_at():
    # exports stop at their max_length (64), PyTorch models go on to 128
    rows = [_row("onnx int8", 32), _row("ort int8", 32), _row("pytorch teacher", 32), _row("pytorch teacher", 128)]
    seq, case = _pick_case(rows, ReportConfig())
    assert seq == 32 and {r["model"] for r in case} == {"onnx int8", "ort int8", "pytorch teacher"}


def test_table_prefers_the_longest_length_up_to_128_on_ties():
    rows = [_row(m, s) for m in ("onnx int8", "pytorch teacher") for s in (16, 64, 128, 256)]
    assert _pick_case(rows, ReportConfig())[0] == 128
    assert _pick_case(rows, ReportConfig(seq_len=64))[0] == 64


def test_report_refuses_an_unrelated_folder(cli, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "todo.txt").write_text("buy milk")
    r = cli("report", folder)
    assert r.exit_code == 1 and r.output.count("Error:") == 1
    assert f"Error: {folder} is not an mbk run folder (no .state/ and no stage output folder in it)" in r.output
    assert sorted(p.name for p in folder.iterdir()) == ["todo.txt"]


def test_headline_adds_the_speedup_in_the_app_pinned_runtime(tmp_path):
    """bench's row of the .ort in the Android app's onnxruntime (a side runtime) reaches the ort row and the headline."""
    from mobilebert_kit.artifacts import META, write_json
    from mobilebert_kit.runtimes import ANDROID_ORT_VERSION
    from mobilebert_kit.stages.report import _export_rows, _headline

    (tmp_path / "ort").mkdir()
    write_json(tmp_path / "ort" / META, {"model_file": "model.ort", "int8": True, "size_bytes": 10})
    case = [
        {**_row("ort int8", 32), "p50_ms": 2.0},
        {**_row(f"ort int8 @ onnxruntime {ANDROID_ORT_VERSION}", 32), "p50_ms": 1.6},
    ]
    (row,) = _export_rows(tmp_path, {"formats": {"ort": {"accuracy": 0.8}}}, case, [])
    assert (row["p50_ms"], row["app_p50_ms"], row["app_runtime"]) == (2.0, 1.6, f"onnxruntime {ANDROID_ORT_VERSION}")
    teacher = {"name": "teacher", "accuracy": 0.8, "size_bytes": 100, "p50_ms": 16.0}
    assert _headline([teacher, row]) == (
        "ort keeps 100.0% of the teacher's accuracy, 10.0x smaller, 8.0x faster (p50), "
        f"10.0x in the app's onnxruntime {ANDROID_ORT_VERSION}"
    )
    (row,) = _export_rows(tmp_path, {}, case[:1], [])  # bench ran without the side runtime (offline, or none)
    assert row["app_p50_ms"] is None and "app's" not in (_headline([teacher, {**row, "accuracy": 0.8}]) or "")


def test_guard_cell_states_the_interval_and_the_rule_it_passed_by():
    """A drop over max_drop that passed (its interval reaches below the line) is not written as "<= max_drop"."""
    guard = {"passed": True, "drop": 0.0102, "max_drop": 0.01, "drop_ci95": [-0.0016, 0.0211]}
    assert _guard_text(guard) == "guard ✓ drop +1.02 pt (95% CI -0.2 … +2.1; refused if all > 1 pt)"
    assert _guard_text({"passed": False, "drop": 0.02, "max_drop": 0.01}) == "guard ✗ drop +0.0200 (≤ 0.01)"


def test_report_notes_the_transfer_text_and_the_teacher_pass_speed(tmp_path):
    """The student's transfer set (source, windows kept and dropped for overlap) and how fast the teacher
    labelled it reach the report's notes (shown in report.md and report.html)."""
    from mobilebert_kit.artifacts import write_json
    from mobilebert_kit.stages.report import collect

    (tmp_path / "student").mkdir()
    transfer = {"source": "imdb", "documents": 40, "windows": 250, "dropped_for_overlap": 3, "kept": 247,
                "window_policy": "every text cut into windows of 1-3 sentences, <= 64 tokens"}  # fmt: skip
    cache = {"train": "built", "train_seconds": 2.0, "train_precision": "int8"}
    write_json(
        tmp_path / "student" / "metrics.json", {"transfer": transfer, "teacher_cache": cache, "train_examples": 400}
    )
    notes = collect(tmp_path, ReportConfig())["notes"]
    assert notes == [
        "distill's teacher-labelled transfer text: imdb: 40 documents -> 250 windows (every text cut into windows of "
        "1-3 sentences, <= 64 tokens); 3 dropped for overlap with validation/test text, 247 kept; "
        "teacher pass 200 texts/s (int8)"
    ]
    write_json(
        tmp_path / "student" / "metrics.json", {"transfer": transfer, "teacher_cache": {**cache, "train": "hit"}}
    )
    assert collect(tmp_path, ReportConfig())["notes"][0].endswith("247 kept")  # a cache hit has no speed to show
