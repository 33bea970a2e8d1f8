"""Issue 28's ablation: what makes the phone model carry the big teacher.

One row per combination of

* **init**: ``layers`` (the base recipe's student: e.g. MiniLM-L6's layers 0,2,4) or
  ``paraphrase-minilm-l3`` (the built-in 3-layer BERT trained at that depth);
* **transfer**: 0, ~25k or ~100k IMDB windows labelled by the teacher (``distill --unlabeled imdb
  --max-unlabeled N``; seeded prefixes, so the 25k set is part of the 100k one);
* **intermediate KD**: off, or on (``--kd-weights``, default ``hidden_weight=1``: TinyBERT's projected
  hidden-state MSE; it needs a teacher with the student's tokenizer: a row whose distill refuses is
  recorded as skipped with the reason, never silently dropped);

each with ``--seeds`` seeds (the distill ``train.seed``). Every (row, seed) is a ``mbk run`` of the base
recipe's ``distill, compress, export, verify, package`` stages (verify without ARM emulation) in a run folder of its own, on one shared
fine-tuned teacher (``--teacher``, or the base recipe run ``--until finetune`` once under ``--work``).
The score is the **packaged phone model** (``package/android``'s INT8 ``.ort``, in ONNX Runtime) on the
run's test split, paired against the fp32 PyTorch teacher on the same texts (paired bootstrap 95%
interval, benchmarks/targets.py ``paired_ci``), plus the student's validation accuracy (what any
choice must be made on), the transfer set's counts (windows kept / dropped for overlap), the teacher
pass's texts/s when it was computed (not a cache hit) and the wall minutes of those stages.

Resumable per (row, seed): results are rewritten after each one, a finished one is skipped on the next
call, and an interrupted ``mbk run`` continues from its last finished stage. Timings need a quiet
machine: on a loaded one they are recorded but say nothing.

    # the full table on the quality recipe (MPNet teacher): hours on 2 cores
    python benchmarks/student_quality.py --recipe recipes/quality.yaml
    # smoke: one row, one seed, a few steps
    python benchmarks/student_quality.py --recipe recipes/smoke.yaml --rows layers/0/off --seeds 1 \\
        --set distill.train.max_steps=3 --tag smoke
Writes ``benchmarks/results/student_quality.json`` and ``.md`` (``--tag`` suffixes them).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lib.results_io import cpu_line, provenance, write_results  # noqa: E402

STAGES = ["distill", "compress", "export", "verify", "package"]  # package bundles only a verified export
INITS = ("layers", "paraphrase-minilm-l3")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="recipes/quality.yaml", help="base recipe (its data/distill/compress/...)")
    ap.add_argument("--teacher", help="fine-tuned teacher folder [default: the base recipe's finetune, run once]")
    ap.add_argument("--inits", default=",".join(INITS), help="comma-separated: layers, paraphrase-minilm-l3")
    ap.add_argument("--transfer", default="0,25000,100000", help="transfer set sizes (IMDB windows)")
    ap.add_argument("--kd", default="off,on", help="intermediate KD settings to run: off, on")
    ap.add_argument("--kd-weights", default="hidden_weight=1", help="what 'on' sets in distill (KEY=VALUE,...)")
    ap.add_argument("--rows", help="only these rows, e.g. layers/0/off,paraphrase-minilm-l3/25000/on")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--set", action="append", default=[], help="KEY.PATH=VALUE applied to every run's recipe")
    ap.add_argument("--work", default="benchmarks/work/student_quality")
    ap.add_argument("--results", default="benchmarks/results")
    ap.add_argument("--tag", default="")
    ap.add_argument("--note", help="a line for the table (e.g. what else ran on the machine)")
    return ap.parse_args(argv)


def rows(args) -> list[dict]:
    out = []
    for init in args.inits.split(","):
        for size in (int(n) for n in args.transfer.split(",")):
            for kd in args.kd.split(","):
                out.append({"name": f"{init}/{size}/{kd}", "init": init, "transfer": size, "kd": kd})
    if args.rows:
        wanted = args.rows.split(",")
        unknown = sorted(set(wanted) - {r["name"] for r in out})
        if unknown:
            sys.exit(f"Error: unknown rows {', '.join(unknown)}; rows are INIT/SIZE/KD from --inits/--transfer/--kd")
        out = [r for r in out if r["name"] in wanted]
    return out


def set_dotted(tree: dict, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    for key in path:
        tree = tree.setdefault(key, {})
    tree[last] = value


def run_recipe(base: dict, row: dict, seed: int, teacher: Path, run_dir: Path, args) -> dict:
    """The recipe of one (row, seed): the base recipe's later stages on the shared teacher."""
    recipe = copy.deepcopy(base)
    recipe.update(name=f"sq-{row['name'].replace('/', '-')}-s{seed}", run_dir=str(run_dir), stages=STAGES)
    distill = recipe.setdefault("distill", {})
    distill["teacher"] = str(teacher)
    if row["init"] != "layers":
        distill["student"], distill["layers"] = row["init"], None
    if row["transfer"]:
        distill.update(unlabeled="imdb", max_unlabeled=row["transfer"])
    if row["kd"] == "on":
        for pair in args.kd_weights.split(","):
            key, value = pair.split("=", 1)
            distill[key.strip()] = yaml.safe_load(value)
    distill.setdefault("train", {})["seed"] = seed
    for item in args.set:
        key, value = item.split("=", 1)
        set_dotted(recipe, key, yaml.safe_load(value))
    recipe.setdefault("compress", {})["teacher"] = str(teacher)  # after --set: a replaced section keeps it
    for stage in ("finetune", "bench", "report"):
        recipe.pop(stage, None)
    verify = recipe.get("verify") if isinstance(recipe.get("verify"), dict) else {}
    recipe["verify"] = {**verify, "arm": {"mode": "off"}}  # ARM emulation: minutes per run, no bearing on accuracy
    return recipe


def mbk(*argv: str) -> subprocess.CompletedProcess:
    """``mbk`` from this checkout (not whatever the venv's editable install points at)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "mobilebert_kit", *argv], capture_output=True, text=True, env=env)


def shared_teacher(base: dict, args) -> tuple[Path, float | None]:
    """``--teacher``, or the base recipe's finetune stage run once (reused by mbk run when unchanged)."""
    if args.teacher:
        return Path(args.teacher), None
    recipe = {**copy.deepcopy(base), "run_dir": str(Path(args.work) / "teacher-run")}
    path = Path(args.work) / "teacher-recipe.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    t0 = time.perf_counter()
    done = mbk("run", str(path), "--until", "finetune", "-q")
    if done.returncode:
        sys.exit(f"Error: the teacher's finetune failed:\n{done.stdout}{done.stderr}")
    return Path(recipe["run_dir"]) / "teacher", (time.perf_counter() - t0) / 60


def teacher_scores(teacher: Path, test, max_length: int) -> np.ndarray:
    """Which test texts the fp32 PyTorch teacher gets right."""
    from lib.inputs import encode_texts
    from lib.runners import torch_runner

    from mobilebert_kit.models import load_tokenizer

    run = torch_runner(teacher)
    enc = encode_texts(load_tokenizer(str(teacher)), test, max_length)
    return np.concatenate([run(x) for x in enc]).argmax(-1) == np.asarray(test.labels)


def phone_scores(run_dir: Path, test, max_length: int) -> tuple[np.ndarray, int]:
    """Which test texts the packaged phone model gets right (its own tokenizer: the bundle's trimmed
    vocabulary renumbers word pieces), and its file size."""
    from lib.inputs import encode_texts
    from lib.runners import ort_runner

    from mobilebert_kit.artifacts import folder_size, read_json
    from mobilebert_kit.models import load_tokenizer

    bundle = run_dir / "package" / "android"
    phone = bundle / read_json(bundle / "model_meta.json")["model_file"]
    run = ort_runner(phone)
    enc = encode_texts(load_tokenizer(str(bundle)), test, max_length)
    return np.concatenate([run(x) for x in enc]).argmax(-1) == np.asarray(test.labels), folder_size(phone)


def one_run(base: dict, row: dict, seed: int, teacher: Path, ctx: dict, args) -> dict:
    from lib.runners import recipe_seconds
    from lib.stats import paired_ci

    from mobilebert_kit.artifacts import read_json

    run_dir = Path(args.work) / row["name"].replace("/", "_") / f"seed{seed}"
    recipe_file = run_dir.parent / f"seed{seed}.yaml"
    recipe_file.parent.mkdir(parents=True, exist_ok=True)
    recipe_file.write_text(yaml.safe_dump(run_recipe(base, row, seed, teacher, run_dir, args), sort_keys=False))
    t0 = time.perf_counter()
    done = mbk("run", str(recipe_file), "-q")
    if done.returncode:
        error = next((ln for ln in (done.stdout + done.stderr).splitlines() if ln.startswith("Error:")), None)
        # intermediate KD refused for this pair (tokenizers) or this size (cache memory): a fact, not a retry
        refused = bool(error and ("token by token" in error or "cached teacher states" in error))
        return {"status": "skipped" if refused else "failed", "reason": error or (done.stderr or done.stdout)[-2000:]}
    correct, size = phone_scores(run_dir, ctx["test"], ctx["max_length"])
    metrics = read_json(run_dir / "student" / "metrics.json")
    cache = metrics.get("teacher_cache", {})
    texts = metrics.get("train_examples", 0)
    diff, lo, hi = paired_ci(correct, ctx["teacher_correct"])
    return {
        "status": "done",
        "phone_test_accuracy": float(correct.mean()),
        "phone_minus_teacher": diff,
        "ci95": [lo, hi],
        "phone_size_bytes": size,
        "student_validation_accuracy": metrics["validation"]["accuracy"],
        "student_test_accuracy": metrics["test"]["accuracy"],
        "transfer": metrics.get("transfer"),
        "teacher_pass_texts_per_second": (texts / cache["train_seconds"])
        if cache.get("train") == "built" and cache.get("train_seconds")
        else None,
        "train_examples_per_second": metrics.get("train_examples_per_second"),
        "stage_seconds": recipe_seconds(run_dir)["per_stage"],
        "wall_minutes": (time.perf_counter() - t0) / 60,
        "correct": correct.astype(int).tolist(),
    }


def summarise(runs: dict) -> dict:
    done = [r for r in runs.values() if r.get("status") == "done"]
    if not done:
        return {"seeds_done": 0}

    def ms(key):
        values = [r[key] for r in done]
        return {"mean": statistics.mean(values), "sd": statistics.stdev(values) if len(values) > 1 else None}

    return {
        "seeds_done": len(done),
        "phone_test_accuracy": ms("phone_test_accuracy"),
        "phone_minus_teacher": ms("phone_minus_teacher"),
        "student_validation_accuracy": ms("student_validation_accuracy"),
        "wall_minutes": ms("wall_minutes"),
        "seeds_below_teacher_beyond_noise": sum(r["ci95"][1] < 0 for r in done),
        "phone_size_bytes": max(r["phone_size_bytes"] for r in done),
    }


def main(argv: list[str] | None = None) -> None:
    from mobilebert_kit.artifacts import library_versions, lineage
    from mobilebert_kit.data import data_config_for, load_dataset
    from mobilebert_kit.runtimes import cpu_info

    args = parse_args(argv)
    args.work = str(Path(args.work).resolve())
    base = yaml.safe_load(Path(args.recipe).read_text())
    stem = "student_quality" + (f"-{args.tag}" if args.tag else "")
    out_json = Path(args.results) / f"{stem}.json"
    res = json.loads(out_json.read_text()) if out_json.exists() else {}
    res["cpu"] = cpu_info()  # this call's machine (a resumed table may span machines: see 'created')
    teacher, finetune_minutes = shared_teacher(base, args)
    if res.get("teacher", {}).get("path") not in (None, str(teacher)):
        sys.exit(f"Error: {out_json} holds results for another teacher; pass --tag or move it")
    max_length = int(lineage(teacher).get("max_length") or 128)
    test = load_dataset(data_config_for(teacher, None)).splits["test"]
    teacher_correct = teacher_scores(teacher, test, max_length)
    res.update(provenance("student_quality", argv))
    res.update(recipe=args.recipe, n_test=len(test), versions=library_versions())
    res["teacher"] = {"path": str(teacher), "test_accuracy": float(teacher_correct.mean())}
    if finetune_minutes is not None:
        res["teacher"]["finetune_minutes_this_call"] = finetune_minutes
    res.setdefault("rows", {})
    if args.note:
        res.setdefault("notes", []).append(args.note)
    ctx = {"test": test, "max_length": max_length, "teacher_correct": teacher_correct}
    for row in rows(args):
        entry = res["rows"].setdefault(row["name"], {**row, "runs": {}})
        for seed in (int(s) for s in args.seeds.split(",")):
            if entry["runs"].get(str(seed), {}).get("status") in ("done", "skipped"):
                continue
            print(f"{row['name']} seed {seed} ...", file=sys.stderr, flush=True)
            entry["runs"][str(seed)] = one_run(base, row, seed, teacher, ctx, args)
            entry["summary"] = summarise(entry["runs"])
            write_results(args.results, stem, res, markdown(res))
    write_results(args.results, stem, res, markdown(res))


def _pm(d: dict | None, scale: float = 1.0, fmt: str = "{:.4f}") -> str:
    if not d:
        return "n/a"
    sd = "" if d.get("sd") is None else " ± " + fmt.format(d["sd"] * scale)
    return fmt.format(d["mean"] * scale) + sd


def markdown(res: dict) -> str:
    n = res["n_test"]
    lines = [
        "# What makes the phone model carry the big teacher (issue 28)",
        "",
        f"Base recipe `{res['recipe']}`; teacher `{res['teacher']['path']}`: test accuracy "
        f"{res['teacher']['test_accuracy']:.4f} (PyTorch fp32). Phone model = the packaged INT8 `.ort` (package/android) "
        f"in ONNX Runtime, on the same {n} test texts (one text = {100 / n:.2f} pt). Mean ± sd over seeds; "
        "'below beyond noise' counts seeds whose paired 95% interval vs the teacher lies wholly below 0. "
        "Choose on validation, never on test.",
        "",
        "| row (init / transfer windows / intermediate KD) | seeds | phone test acc | phone − teacher (pt) | "
        "below beyond noise | student val acc | kept / dropped windows | teacher pass texts/s | MB | wall min |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for name, entry in res.get("rows", {}).items():
        s = entry.get("summary", {})
        runs = entry.get("runs", {})
        if not s.get("seeds_done"):
            reasons = {r.get("reason", "")[:120] for r in runs.values() if r.get("status") != "done"}
            lines.append(f"| {name} | 0 | {'; '.join(sorted(reasons)) or 'not run'} |||||||||")
            continue
        done = [r for r in runs.values() if r.get("status") == "done"]
        t = (done[0].get("transfer") or {}) if done else {}
        tps = [r["teacher_pass_texts_per_second"] for r in done if r.get("teacher_pass_texts_per_second")]
        windows = f"{t.get('kept')} / {t.get('dropped_for_overlap')}" if t else "–"
        speed = f"{statistics.mean(tps):.0f}" if tps else "– (cached)"
        lines.append(
            f"| {name} | {s['seeds_done']} | {_pm(s['phone_test_accuracy'])} | "
            f"{_pm(s['phone_minus_teacher'], 100, '{:+.2f}')} | {s['seeds_below_teacher_beyond_noise']} | "
            f"{_pm(s['student_validation_accuracy'])} | {windows} | {speed} | "
            f"{s['phone_size_bytes'] / 1e6:.1f} | {_pm(s['wall_minutes'], 1, '{:.1f}')} |"
        )
    lines += [
        "",
        f"CPU: {cpu_line(res.get('cpu'))}. Wall minutes are distill+compress+export+verify+package of one seed.",
        *[f"\nNote: {n}" for n in res.get("notes", [])],
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
