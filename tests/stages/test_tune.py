"""mbk tune on a tiny trained classifier: every plan is a compress trial, all of them reported
(refused ones too), the winner is the best passed trial for the objective, and bad input is refused
before any trial runs."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import NEG, POS
from test_compress import _train_tiny, _with_manifest

from mobilebert_kit.stages.tune import choose, mark_pareto

PLANS = """
- name: dynamic
  steps: [{method: int8_dynamic}]
- name: trim+dynamic
  steps: [{method: trim_vocab}, {method: int8_dynamic}]
- name: impossible
  steps: [{method: int8_dynamic}]
"""


@pytest.fixture(scope="module")
def trained(sentiment_csv, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tune") / "student"
    _train_tiny(folder, sentiment_csv).save_pretrained(folder)
    return _with_manifest(folder, {"data": str(sentiment_csv)})


def test_tune_reports_every_trial_and_keeps_the_smallest(cli, trained, tmp_path):
    plans = tmp_path / "plans.yaml"
    plans.write_text(PLANS)
    out = tmp_path / "tuned"
    r = cli("tune", "-m", trained, "--plans", plans, "--latency-runs", "3", "-o", out, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    report = json.loads((out / "tune.json").read_text())
    assert [t["name"] for t in report["trials"]] == ["dynamic", "trim+dynamic", "impossible"]
    passed = [t for t in report["trials"] if t["status"] == "passed"]
    for t in passed:  # the drop is the input's validation accuracy minus the trial's
        assert abs(t["drop"]) < 0.5 and t["drop"] == pytest.approx(
            t["guard"]["input_accuracy"] - t["validation_accuracy"]
        )
    assert passed and res["best"] == min(passed, key=lambda t: t["size_bytes"])["name"]
    trim = next(t for t in report["trials"] if t["name"] == "trim+dynamic")
    dyn = next(t for t in report["trials"] if t["name"] == "dynamic")
    if trim["status"] == "passed":  # a smaller vocabulary makes a smaller graph
        assert trim["size_bytes"] < dyn["size_bytes"]
    # the output is the winner's compress folder: export takes it like compress's
    assert (out / "onnx" / "model.onnx").exists() and (out / "compression.json").exists()
    md = (out / "tune.md").read_text()
    assert md.count("| passed |") == len(passed)
    n = passed[0]["validation_n"]  # the resolution and each drop's interval, so nobody ranks trials on noise
    assert f"Validation has {n} examples: one example is {100 / n:.2f} pt" in md
    lo, hi = passed[0]["guard"]["drop_ci95"]
    assert f"{100 * passed[0]['drop']:+.2f} ({100 * lo:+.1f} … {100 * hi:+.1f})" in md
    assert (out / "pareto.png").stat().st_size > 1000
    assert not (tmp_path / "tuned.trials").exists()  # trial folders removed unless --keep-trials
    r = cli("export", "-m", out, "--format", "onnx", "-o", tmp_path / "e", "-q")
    assert r.exit_code == 0, r.output


def test_a_guard_refusal_is_a_reported_loser_and_no_winner_is_an_error(cli, trained, tmp_path):
    """Trimming the vocabulary to a training corpus that shares few words with validation breaks the
    model (as in test_compress): the trial is refused by the guard; with no other plan, no winner."""
    rows = "".join(f'"{POS[0] if i % 2 else NEG[0]}",{"pos" if i % 2 else "neg"}\n' for i in range(40))
    val = "".join(f'"{POS[4 + i % 4] if i % 2 else NEG[4 + i % 4]}",{"pos" if i % 2 else "neg"}\n' for i in range(40))
    (tmp_path / "train.csv").write_text("text,label\n" + rows)
    (tmp_path / "val.csv").write_text("text,label\n" + val)
    model = tmp_path / "m"
    shutil.copytree(trained, model)
    data = {"data": str(tmp_path / "train.csv"), "validation_data": str(tmp_path / "val.csv")}
    _with_manifest(model, {**data, "test_data": str(tmp_path / "val.csv")})
    plans = tmp_path / "plans.yaml"
    plans.write_text("- name: trimmed\n  steps: [{method: trim_vocab}]\n")
    r = cli("tune", "-m", model, "--plans", plans, "--latency-runs", "0", "-o", tmp_path / "t")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "Error: no plan passed the accuracy guard (--max-drop 0.01); every trial:" in r.output
    assert "  trimmed: accuracy guard failed: validation accuracy drop" in r.output
    assert not (tmp_path / "t").exists() and not (tmp_path / "t.trials").exists()


def test_seeds_repeat_only_seeded_plans_and_rank_by_the_mean(cli, trained, tmp_path):
    """--seeds 2: the plan that recovers (trains) runs with seeds 0 and 1 and reports both, their mean and
    range; the INT8-only plan is deterministic and runs once. The output holds seed 0's model."""
    plans = tmp_path / "plans.yaml"
    plans.write_text(
        "- name: recover\n  steps: [{method: recover, epochs: 1, lr: 1.0e-3}, {method: int8_dynamic}]\n"
        "- name: dynamic\n  steps: [{method: int8_dynamic}]\n"
    )
    out = tmp_path / "tuned"
    r = cli("tune", "-m", trained, "--plans", plans, "--seeds", "2", "--latency-runs", "0", "--keep-trials",
            "--objective", "accuracy", "--max-drop", "1", "-o", out)  # fmt: skip
    assert r.exit_code == 0, r.output
    rec, dyn = json.loads((out / "tune.json").read_text())["trials"]
    assert "seeds" not in dyn and not (tmp_path / "tuned.trials" / "dynamic@seed1").exists()
    assert [s["seed"] for s in rec["seeds"]] == [0, 1] and rec["seeds"][0]["validation_accuracy"] == rec[
        "validation_accuracy"
    ]
    vals = [s["validation_accuracy"] for s in rec["seeds"]]
    assert rec["validation_accuracy_mean"] == pytest.approx(sum(vals) / 2) and rec["validation_accuracy_range"] == [
        min(vals),
        max(vals),
    ]
    seed1 = json.loads((tmp_path / "tuned.trials" / "recover@seed1" / "metrics.json").read_text())
    assert seed1["final"]["validation"]["accuracy"] == vals[1]
    losses = [
        json.loads((tmp_path / "tuned.trials" / name / "compression.json").read_text())["recovery"]["history"][0][
            "train_loss"
        ]
        for name in ("recover", "recover@seed1")
    ]
    assert losses[0] != losses[1]  # the seed reached training (another batch order)
    md = (out / "tune.md").read_text()
    assert "| recover | 2/2 |" in md and "ranks by the mean" in md


def test_ranking_uses_the_mean_over_seeds():
    lucky = {"name": "lucky", "status": "passed", "size_bytes": 1, "latency_ms": 1, "validation_accuracy": 0.9,
             "validation_accuracy_mean": 0.7}  # fmt: skip
    steady = {"name": "steady", "status": "passed", "size_bytes": 1, "latency_ms": 1, "validation_accuracy": 0.8}
    assert choose([lucky, steady], "accuracy")["name"] == "steady"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--objective", "speed"], "Error: objective must be one of size, latency, accuracy; got 'speed'"),
        (["--grid", "huge"], "Error: grid must be one of quick, full; got 'huge'"),
        (["--max-drop", "nan"], "Error: max_drop must be a finite number, got nan"),
        (["--seeds", "0"], "Error: seeds must be in [1, 10], got 0"),
    ],
)
def test_bad_options(cli, trained, tmp_path, args, message):
    r = cli("tune", "-m", trained, *args, "-o", tmp_path / "t")
    assert r.exit_code == 1 and r.output.strip().splitlines()[-1] == message
    assert not (tmp_path / "t").exists()


def test_bad_plans_are_all_reported_before_any_trial(cli, trained, tmp_path):
    plans = tmp_path / "p.yaml"
    plans.write_text(
        "- name: a\n  steps: [{method: int8_dynamic}, {method: trim_vocab}]\n"
        "- name: b\n  steps: [{method: prune_fnn, fraction: 0.2}]\n"
        "- name: c\n  steps: [{method: prune, fraction: 1.5}]\n"
    )
    r = cli("tune", "-m", trained, "--plans", plans, "-o", tmp_path / "t")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "plans[0].steps: trim_vocab change(s) the PyTorch model, so must come before int8_dynamic" in r.output
    assert "unknown compression method 'prune_fnn' (did you mean 'prune_ffn'?)" in r.output
    assert "plans[2].steps[0]: fraction must be in [0, 1), got 1.5" in r.output
    assert not (tmp_path / "t").exists() and not (tmp_path / "t.trials").exists()


def test_no_data_to_evaluate_on(cli, tiny_classifier_dir, tmp_path):
    r = cli("tune", "-m", tiny_classifier_dir, "-o", tmp_path / "t")
    assert r.exit_code == 1
    assert f"Error: no data to evaluate the trials on: {tiny_classifier_dir} records none" in r.output


def test_unloadable_data_is_refused_before_any_trial(cli, tiny_classifier_dir, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    r = cli("tune", "-m", tiny_classifier_dir, "--data", empty, "-o", tmp_path / "t")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"Error: {empty} is empty; it needs a header and at least one row" in r.output
    assert "[1/" not in r.output  # no trial started
    assert not (tmp_path / "t").exists() and not (tmp_path / "t.trials").exists()


def test_choose_and_pareto():
    def t(name, size, lat, acc, status="passed"):
        return {"name": name, "status": status, "size_bytes": size, "latency_ms": lat, "validation_accuracy": acc}

    trials = [
        t("a", 10, 2.0, 0.80),
        t("b", 8, 3.0, 0.79),
        t("c", 12, 1.5, 0.81),
        t("d", 12, 2.5, 0.78),
        t("x", 1, 1, 1, "refused"),
    ]
    assert choose(trials, "size")["name"] == "b"
    assert choose(trials, "latency")["name"] == "c"
    assert choose(trials, "accuracy")["name"] == "c"
    mark_pareto(trials)
    assert [x["name"] for x in trials if x["pareto"]] == ["a", "b", "c"]  # d is beaten by a; x was refused
    assert choose([trials[-1]], "size") is None


def test_bad_data_stops_the_run_at_the_first_trial(cli, trained, tmp_path):
    """Bad data fails every plan alike: one Error line about the data, not N refused trials."""
    model = tmp_path / "m"
    shutil.copytree(trained, model)
    (tmp_path / "d.csv").write_text("text,label\na film, sadly, without,neg\n")
    _with_manifest(model, {"data": str(tmp_path / "d.csv")})
    r = cli("tune", "-m", model, "-o", tmp_path / "t")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.output.strip().splitlines()[-1].startswith(f"Error: {tmp_path / 'd.csv'} line 2 has more fields")
    assert not (tmp_path / "t").exists() and not (tmp_path / "t.trials").exists()


def test_tune_is_a_recipe_stage_that_feeds_export():
    from mobilebert_kit.pipeline import recipe as rc

    r = rc.load({"stages": ["distill", "tune", "export"], "tune": {"objective": "latency"}}, name="t")
    cfg = {s.key: s.config for s in r.steps}
    assert cfg["tune"].model.endswith("student") and cfg["tune"].objective == "latency"
    assert cfg["export"].model == cfg["tune"].output and cfg["tune"].output.endswith("tuned")


def test_plans_file_is_read_like_a_recipe(cli, tmp_path, tiny_classifier_dir):
    """--plans goes through the recipes' loader: a repeated key (the first value silently lost) and a file that
    is not UTF-8 are one clear line each."""
    plans = tmp_path / "plans.yaml"
    plans.write_text("- name: a\n  steps: [{method: int8_dynamic}]\n  name: b\n")
    r = cli("tune", "-m", tiny_classifier_dir, "--plans", plans, "-o", tmp_path / "t")
    assert r.exit_code == 1 and r.output.strip() == (
        f"Error: --plans {plans} line 3: duplicate key 'name' (the earlier one, line 1, would be ignored); merge them"
    )
    plans.write_bytes(b"\xff\xfe- x")
    r = cli("tune", "-m", tiny_classifier_dir, "--plans", plans, "-o", tmp_path / "t")
    assert r.exit_code == 1 and "is not UTF-8 (byte 0xff at offset 0); save it as UTF-8" in r.output
