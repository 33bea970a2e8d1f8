"""The issue-27 benchmarks' own arithmetic (no training here): the peer comparison picks the fastest peer and
compares every mbk variant with it; the precision summary calls a difference noise only against the seeds' spread;
the Markdown of each renders from its JSON."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import precision_accuracy  # noqa: E402
import precision_probe  # noqa: E402
import trainer_peer  # noqa: E402


def _res(eps, acc, **kw):
    return {"train_examples_per_second": eps, "test_accuracy": acc, "test_macro_f1": acc, "precision": "bf16", **kw}


def test_trainer_peer_compares_with_the_fastest_peer():
    results = {
        "finetune: peer Trainer (workers 0)": _res(50.0, 0.62),
        "finetune: peer Trainer (workers 2)": _res(80.0, 0.63),
        "finetune: mbk default": _res(120.0, 0.64),
        "finetune: mbk --freeze-layers 2": {"error": "boom"},
        "distill: peer Trainer (workers 0)": {"error": "no teacher"},
        "distill: mbk default": _res(200.0, 0.60),
    }
    out = trainer_peer.ratios(results)
    assert out["finetune"]["peer"] == "finetune: peer Trainer (workers 2)"
    assert out["finetune"]["vs_peer"] == {
        "finetune: mbk default": {"speedup": 1.5, "accuracy_delta_pt": pytest.approx(1.0)}
    }
    assert "distill" not in out  # no peer ran: no ratio invented
    report = {
        "setup": {
            "model": "m",
            "teacher": "t",
            "train_examples": 10,
            "epochs": 1,
            "batch_size": 32,
            "max_length": 64,
            "lr": 5e-5,
            "seed": 1,
            "repeats": 1,
            "cpu_bf16_flags": ["avx512_bf16"],
            "load_average_1min": [1.0],
        },
        "results": {k: {**v, "runs": [v]} if "error" not in v else v for k, v in results.items()},
        "vs_peer": out,
        "command": "x",
        "created": "now",
        "wall_seconds": 60.0,
    }
    md = trainer_peer.markdown(report)
    assert (
        "| finetune: mbk default | bf16 | 120.0 |" in md
        and "- finetune: mbk default: **1.50x**, accuracy +1.0 pt" in md
    )
    assert "| finetune: mbk --freeze-layers 2 | error: boom |" in md


def test_trainer_peer_variants_cover_peer_defaults_and_freeze_switches():
    args = trainer_peer.argparse.Namespace(
        only=["finetune", "distill"], peer_workers=[0, 2], freeze_layers=3, cpu_paths=True, match=[]
    )
    v = trainer_peer.variants(args)
    assert v["distill: mbk --no-cls-only-last-layer"] == ("distill", "mbk", ["--no-cls-only-last-layer"])
    assert v["finetune: mbk --sparse-embeddings"] == ("finetune", "mbk", ["--sparse-embeddings"])  # opt-in
    stock = ["--attention", "sdpa", "--no-fast-dropout", "--no-cls-only-last-layer"]
    assert v["finetune: mbk stock paths"] == ("finetune", "mbk", stock)
    args.match = ["peer", "stock"]
    assert set(trainer_peer.variants(args)) == {n for n in v if "peer" in n or "stock" in n}
    args.match = []
    args.cpu_paths = False
    assert not [name for name in trainer_peer.variants(args) if "paths" in name or "sdpa" in name]
    assert v["finetune: peer Trainer (workers 2)"] == ("finetune", "peer", 2)
    assert v["distill: mbk --freeze-layers 3"] == ("distill", "mbk", ["--freeze-layers", "3"])
    assert v["finetune: mbk --freeze-embeddings"] == ("finetune", "mbk", ["--freeze-embeddings"])
    assert "distill: mbk --teacher-precision auto" in v and "finetune: mbk --teacher-precision auto" not in v


def test_cpu_paths_summary_compares_paths_with_stock():
    import cpu_paths

    run = lambda acc, eps=10.0: {"test_accuracy": acc, "validation_accuracy": acc, "train_examples_per_second": eps}  # noqa: E731
    runs = {"distill": {"stock": [run(0.80), run(0.82)], "paths": [run(0.81, 15), run(0.81, 15)]}}
    s = cpu_paths.summary(runs)["distill"]
    assert s["within_noise"] is True and s["speedup"] == 1.5
    assert abs(s["paths_minus_stock_test"]) < 1e-12
    far = cpu_paths.summary({"distill": {"stock": [run(0.80), run(0.80)], "paths": [run(0.70), run(0.70)]}})
    assert far["distill"]["within_noise"] is False
    md = cpu_paths.markdown(
        {
            "setup": {"model": "m", "teacher": "t", "seeds": [1, 2], "note": None},
            "variants": {"stock": {"attention": "sdpa"}, "paths": {"attention": "auto"}},
            "cpu": None,
            "runs": runs,
            "summary": cpu_paths.summary(runs),
            "command": "cpu_paths.py",
            "created": "now",
        }
    )
    assert "| distill | paths |" in md and "paths train 1.50x as fast" in md


def test_precision_summary_judges_against_the_seed_spread():
    run = lambda acc, eps=10.0: {"test_accuracy": acc, "train_examples_per_second": eps}  # noqa: E731
    runs = {
        "finetune": {"fp32": [run(0.80), run(0.82), run(0.81)], "bf16": [run(0.81, 20), run(0.80, 20), run(0.82, 20)]},
        "distill": {"fp32": [run(0.80), run(0.80)], "bf16": [run(0.70), run(0.70)]},
    }
    s = precision_accuracy.summary(runs)
    assert s["finetune"]["within_noise"] is True and s["finetune"]["bf16_speedup"] == 2.0
    assert s["distill"]["within_noise"] is False  # 10 pt apart with no spread at all is not noise
    one = precision_accuracy.summary({"finetune": {"fp32": [run(0.8)], "bf16": [run(0.7)]}})
    assert one["finetune"]["within_noise"] is None


def test_precision_probe_markdown_states_the_decision():
    r = {
        "setup": {
            "model": "minilm-l6",
            "batch_size": 32,
            "tokens": 40,
            "threads": 2,
            "timed_steps": 2,
            "warmup_steps": 1,
            "order": "interleaved",
        },
        "machine": {
            "cpu_bf16_flags": ["avx512_bf16"],
            "torch_cpu_capability": "AVX512",
            "torch": "2.13",
            "auto_decision": "precision: bf16 autocast (CPU has avx512_bf16)",
        },
        "step_seconds": {"fp32": [3.6, 3.7], "bf16": [1.9, 1.8]},
        "median_step_seconds": {"fp32": 3.65, "bf16": 1.85},
        "bf16_speedup": 3.65 / 1.85,
        "command": "x",
        "created": "now",
    }
    md = precision_probe.markdown(r)
    assert "`auto` here: precision: bf16 autocast (CPU has avx512_bf16)." in md and "**1.97x**" in md


def test_recipe_minutes_reads_the_run_it_timed(tmp_path):
    """The stage table and the accuracies come from the run folder's own files (state, metrics, verify.json)."""
    import json

    import recipe_minutes

    run = tmp_path / "run"
    (run / ".state").mkdir(parents=True)
    for i, (step, sec) in enumerate((("finetune", 90.0), ("distill", 120.0))):
        state = {"seconds": sec, "status": "done", "started": f"2026-12-08T00:0{i}:00", "output": str(run / step)}
        (run / ".state" / f"{step}.json").write_text(json.dumps(state))
    (run / "teacher").mkdir()
    (run / "teacher" / "metrics.json").write_text(json.dumps({"test": {"accuracy": 0.84}}))
    (run / "student").mkdir()
    (run / "student" / "metrics.json").write_text(json.dumps({"student": {"test": {"accuracy": 0.83}}}))
    (run / "export").mkdir()
    verify = {"formats": {"ort": {"accuracy": 0.8268, "agreement": 0.99}}}
    (run / "export" / "verify.json").write_text(json.dumps(verify))
    from mobilebert_kit.stages.stage_minutes import stage_minutes

    r = {
        "recipe": "recipes/default.yaml",
        "wall_seconds": 240.0,
        "stages": stage_minutes(run),
        "outcome": recipe_minutes.outcome(run),
        "command": "recipe_minutes.py",
        "created": "now",
    }
    assert r["outcome"] == {
        "teacher_test_accuracy": 0.84,
        "student_test_accuracy": 0.83,
        "phone_ort_test_accuracy": 0.8268,
        "phone_agreement_with_pytorch": 0.99,
    }
    md = recipe_minutes.markdown(r)
    assert "4.0 min wall" in md and "| finetune | 1.5 |" in md and "| distill | 2.0 |" in md
    assert "phone model (packaged INT8 `.ort`) 0.8268" in md
    assert recipe_minutes.outcome(tmp_path / "empty")["phone_ort_test_accuracy"] is None  # a run that stopped early
