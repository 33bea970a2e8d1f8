"""``mbk report RUN_A RUN_B``: runs side by side, on tiny fake run folders (tests/run_fixtures.py)."""

import json
import math

import pytest
from run_fixtures import fake_run, right_mask

from mobilebert_kit.stages.compare import config_differences, paired, run_config


def _compare(cli, *runs, extra=()):
    r = cli("report", *runs, "--json", *extra)
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_a_changed_override_shows_exactly_that_key_and_a_paired_difference(cli, tmp_path):
    a = fake_run(tmp_path, "default")
    b = fake_run(tmp_path, "hot", overrides={"distill.temperature": 4.0, "finetune.train.lr": 3e-5})
    data = _compare(cli, a, b, extra=("-o", tmp_path / "cmp"))
    diffs = {d["key"]: d["values"] for d in data["config_differences"]}
    # the run folders' own paths (teacher, output...) differ too, but read <run>/... in both
    assert diffs == {"distill.temperature": [3.0, 4.0], "finetune.train.lr": [5e-5, 3e-5]}
    levels = {p["level"]: p for p in data["paired"]}
    assert set(levels) == {"teacher", "student", "phone"}
    assert levels["student"]["verdict"] == "identical answers on every test text"  # same fake answers in both
    assert levels["student"]["difference"] == 0 and levels["student"]["n"] == 400
    for name in ("compare.md", "compare.html", "compare.json", "compare_files/training_curves.png"):
        assert (tmp_path / "cmp" / name).is_file()
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| distill.temperature | 3.0 | 4.0 |" in md and "| finetune.train.lr | 5e-05 | 3e-05 |" in md


def test_paired_interval_says_noise_or_real_and_matches_the_normal_approximation():
    n = 400
    labels = [0] * n
    ids = [f"t{i}" for i in range(n)]
    a_right = right_mask(n, 0.8, seed=0)
    # b: 30 of a's wrong texts right, 10 of a's right texts wrong -> +5 pt on 400 texts
    wrong, good = [i for i in range(n) if not a_right[i]], [i for i in range(n) if a_right[i]]
    b_right = list(a_right)
    for i in wrong[:30]:
        b_right[i] = True
    for i in good[:10]:
        b_right[i] = False
    rec = lambda right: {"text_ids": ids, "labels": labels, "predicted": [0 if r else 1 for r in right]}  # noqa: E731
    p = paired(rec(a_right), rec(b_right), ("a", "b"), "student")
    assert (p["difference"], p["b_right_a_wrong"], p["a_right_b_wrong"]) == (0.05, 30, 10)
    se = math.sqrt(40 / n**2 - 20**2 / n**3)  # McNemar's normal approximation, as a cross-check
    assert p["ci95"][0] == pytest.approx(0.05 - 1.96 * se, abs=0.006)
    assert p["ci95"][1] == pytest.approx(0.05 + 1.96 * se, abs=0.006)
    assert p["verdict"].startswith("real: better")
    one_each = list(a_right)
    one_each[wrong[0]], one_each[good[0]] = True, False
    q = paired(rec(a_right), rec(one_each), ("a", "b"), "student")
    assert q["difference"] == 0 and q["ci95"][0] < 0 < q["ci95"][1] and q["verdict"].startswith("noise")
    # order of the texts does not matter: pairing is by text id
    shuffled = {k: list(reversed(v)) for k, v in rec(b_right).items()}
    assert paired(rec(a_right), shuffled, ("a", "b"), "student")["difference"] == 0.05


def test_real_difference_and_phone_latency_marked_not_comparable(cli, tmp_path):
    a = fake_run(tmp_path, "a", accuracy={"phone": 0.70})
    b = fake_run(tmp_path, "b", accuracy={"phone": 0.90}, bench={"onnxruntime": "1.22.0"})
    data = _compare(cli, a, b, extra=("-o", tmp_path / "cmp"))
    phone = next(p for p in data["paired"] if p["level"] == "phone")
    assert phone["difference"] > 0.1 and phone["ci95"][0] > 0 and phone["verdict"].startswith("real")
    assert data["phone"]["format"] == "ort" and data["phone"]["comparable"] is False
    assert data["phone"]["why_not"] == ["onnxruntime"]
    html = (tmp_path / "cmp" / "compare.html").read_text()
    assert "latency NOT comparable: the runs were timed with different onnxruntime" in html
    same = _compare(cli, a, fake_run(tmp_path, "c"), extra=("-o", tmp_path / "cmp2"))
    assert same["phone"]["comparable"] is True


def test_three_runs_pair_each_with_the_first_and_rerun_replaces_its_own_output(cli, tmp_path):
    runs = [fake_run(tmp_path, f"r{i}", overrides={"distill.alpha": 0.1 * i}) for i in range(3)]
    out = tmp_path / "cmp"
    data = _compare(cli, *runs, extra=("-o", out))
    assert {(p["a"], p["b"]) for p in data["paired"]} == {("r0", "r1"), ("r0", "r2")}
    assert [d["key"] for d in data["config_differences"]] == ["distill.alpha"]
    assert _compare(cli, *runs, extra=("-o", out))["runs"][0]["name"] == "r0"  # an earlier comparison is replaced


def test_stage_table_and_training_logs_per_run(cli, tmp_path):
    a, b = fake_run(tmp_path, "a", steps=40), fake_run(tmp_path, "b", steps=80, transfer_set=True)
    data = _compare(cli, a, b, extra=("-o", tmp_path / "cmp"))
    assert [s and s["steps"] for s in data["stages"]["student"]] == [40, 80]
    assert data["training_logs"]["b"]["student"]["phases"] == ["transfer set"]
    assert data["training_logs"]["a"]["compressed"]["phases"] == ["recovery"]
    assert data["training_logs"]["a"]["student"]["loss_terms"] == ["hard", "soft"]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("one", "Error: comparing needs at least two run folders (got only {a})"),
        ("missing", "Error: run folder {missing} does not exist; pass run folders such as artifacts/runs/default"),
        ("notrun", "Error: {notrun} is not an mbk run folder (no .state/ and no stage output folder in it)"),
        ("other_texts", "Error: the teacher of a and b were tested on different test texts (0 shared of 50 and 50)"),
    ],
)
def test_bad_input_is_one_error_line(cli, tmp_path, case, message):
    a = fake_run(tmp_path, "a", n_test=50)
    notrun = tmp_path / "notes"
    notrun.mkdir()
    (notrun / "todo.txt").write_text("x")
    missing = tmp_path / "nope"
    args = {
        "one": ["compare", a],
        "missing": ["report", a, missing],
        "notrun": ["report", a, notrun],
        "other_texts": ["report", a, fake_run(tmp_path, "b", n_test=50, texts_seed=7)],
    }[case]
    r = cli(*args, "-o", tmp_path / "cmp")
    assert r.exit_code == 1 and r.output.count("Error:") == 1 and "Traceback" not in r.output
    assert message.format(a=a, missing=missing, notrun=notrun) in r.output
    assert not (tmp_path / "cmp").exists()  # nothing half-written


def test_config_of_stage_manifests_when_there_is_no_recipe_state(tmp_path):
    run = tmp_path / "manual"
    (run / "teacher").mkdir(parents=True)
    config = {"train": {"lr": 1e-4}, "output": f"{run}/teacher", "data": {"data": f"{run}-data.csv"}}
    (run / "teacher" / "manifest.json").write_text(json.dumps({"stage": "finetune", "config": config}))
    cfg = run_config(run)
    # the run's own folders read <run>/...; a path that only starts with the same letters is left alone
    assert cfg == {
        "finetune.train.lr": 1e-4,
        "finetune.output": "<run>/teacher",
        "finetune.data.data": f"{run}-data.csv",
    }
    other = {**cfg, "finetune.train.lr": 2e-4}

    class R:
        def __init__(self, c):
            self.config = c

    assert config_differences([R(cfg), R(other)]) == [
        {"key": "finetune.train.lr", "values": [1e-4, 2e-4], "present": [True, True]}
    ]
