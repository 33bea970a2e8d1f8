"""`mbk tune` trials timed where the phone's latency target is judged: against Optimum's INT8, in the app's onnxruntime.

`mbk tune` times each trial once, in this environment's onnxruntime at one length. This benchmark takes the
kept trials of a tune run (``mbk tune --keep-trials``; each one a compress folder) and any other compress
folders (``--extra NAME=FOLDER``), and times every INT8 graph side by side with Optimum's dynamic INT8 of the
same student: batch 1, 1 intra-op thread, interleaved, at real test-text lengths and at 128 tokens, in the
Android app's onnxruntime and this environment's. Accuracy is what each compress run measured (its INT8
graph at batch 1).

    mbk tune -m artifacts/runs/default/student --plans PLANS.yaml --ort-format --keep-trials -o /tmp/tune/out
    python benchmarks/tune_trials.py --tune /tmp/tune/out --student artifacts/runs/default/student --name tune_first_token

Writes ``benchmarks/results/<name>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lib.baselines import optimum_int8  # noqa: E402
from lib.inputs import encode_one, seeded_sample  # noqa: E402
from lib.ort_timing import HOST, p50_by_version  # noqa: E402
from lib.results_io import cpu_line, provenance, write_results  # noqa: E402

from mobilebert_kit.artifacts import library_versions, read_json  # noqa: E402
from mobilebert_kit.runtimes import cpu_info  # noqa: E402

OPTIMUM = "Optimum dynamic INT8 of the student"


def trial_folders(tune_out: Path | None, extra: list[str]) -> dict[str, Path]:
    """Plan name -> compress folder: the tune run's kept trials (in its tune.json order), then the extras."""
    out: dict[str, Path] = {}
    if tune_out is not None:
        trials = tune_out.parent / f"{tune_out.name}.trials"
        for t in read_json(tune_out / "tune.json")["trials"]:
            if (trials / t["name"] / "onnx" / "model.onnx").is_file():
                out[t["name"]] = trials / t["name"]
    for item in extra:
        name, sep, folder = item.partition("=")
        if not sep or not (Path(folder) / "onnx" / "model.onnx").is_file():
            raise SystemExit(f"Error: --extra {item!r}: give NAME=FOLDER, a compress output with onnx/model.onnx")
        out[name] = Path(folder)
    if not out:
        raise SystemExit("Error: no trial graphs found; run `mbk tune --keep-trials` or pass --extra NAME=FOLDER")
    return out


def describe(folder: Path) -> dict:
    metrics = read_json(folder / "metrics.json")
    final = metrics.get("final") or {}
    return {
        "folder": str(folder),
        "val_accuracy": (final.get("validation") or {}).get("accuracy"),
        "test_accuracy": (final.get("test") or {}).get("accuracy"),
        "size_bytes": (folder / "onnx" / "model.onnx").stat().st_size,
    }


def timings(paths: dict[str, Path], tokenizers: dict[str, Path], texts: list[str], args) -> dict:
    """p50 ms per version, length set and model; every model reads the same texts through its own tokenizer."""
    from transformers import AutoTokenizer

    long_text = " ".join(texts)  # real words, truncated at 128 tokens by each tokenizer
    feeds = {}
    for name, tok_dir in tokenizers.items():
        tok = AutoTokenizer.from_pretrained(tok_dir)
        feeds[name] = {"real": [encode_one(tok, t, 128) for t in texts], "s128": [encode_one(tok, long_text, 128)]}
    timed = {"real": list(range(len(texts))), "s128": [0] * args.runs_128}
    return p50_by_version(args.ort_versions, paths, feeds, timed, args.rounds)


def markdown(res: dict) -> str:
    versions = list(res["p50_ms"])
    head = "| graph | val acc | test acc | size MB | " + " | ".join(
        f"p50 ms real / 128 @ {v} (x Optimum)" for v in versions
    )
    rows = [
        "# `mbk tune` trials against Optimum's INT8, in the app's onnxruntime",
        "",
        f"Student `{res['student']}`; {res['setup']} CPU: {cpu_line(res.get('cpu'))}.",
        "",
        head + " |",
        "|---|---:|---:|---:|" + "---:|" * len(versions),
    ]
    for name, g in res["graphs"].items():
        cells = []
        for v in versions:
            real, s128 = res["p50_ms"][v]["real"], res["p50_ms"][v]["s128"]
            cells.append(
                f"{real[name]:.3f} / {s128[name]:.3f}"
                + ("" if name == OPTIMUM else f" ({real[name] / real[OPTIMUM]:.2f} / {s128[name] / s128[OPTIMUM]:.2f})")
            )
        acc = [f"{g[k]:.4f}" if g.get(k) is not None else "" for k in ("val_accuracy", "test_accuracy")]
        rows.append(f"| {name} | {acc[0]} | {acc[1]} | {g['size_bytes'] / 1e6:.2f} | " + " | ".join(cells) + " |")
    rows += ["", f"Reproduce: `python benchmarks/{res['command']}`", ""]
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tune", type=Path, default=None, help="an `mbk tune --keep-trials` output folder")
    p.add_argument("--extra", action="append", default=[], help="NAME=FOLDER: another compress output (repeat)")
    p.add_argument("--student", type=Path, required=True, help="the student the trials compressed (for Optimum)")
    p.add_argument("--data", default="rotten_tomatoes")
    p.add_argument("--texts", type=int, default=300, help="seeded test texts timed at their real length")
    p.add_argument("--runs-128", type=int, default=60)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--ort-versions", default=f"android,{HOST}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="tune_trials", help="results file stem")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args()
    if args.texts < 1 or args.runs_128 < 1 or args.rounds < 1:
        p.error("--texts, --runs-128 and --rounds must be >= 1")

    from mobilebert_kit.data import DataConfig, load_dataset

    folders = trial_folders(args.tune, args.extra)
    test = load_dataset(DataConfig(data=args.data)).splits["test"]
    idx = sorted(seeded_sample(len(test), args.texts, args.seed))
    graphs = {name: describe(folder) for name, folder in folders.items()}
    with tempfile.TemporaryDirectory(prefix="mbk-tune-trials-") as tmp:
        optimum = optimum_int8(args.student, Path(tmp))
        paths = {**{n: f / "onnx" / "model.onnx" for n, f in folders.items()}, OPTIMUM: optimum}
        graphs[OPTIMUM] = {"folder": str(args.student), "size_bytes": optimum.stat().st_size}
        tokenizers = {**folders, OPTIMUM: args.student}
        p50 = timings(paths, tokenizers, [test.texts[i] for i in idx], args)
    res = {
        **provenance("tune_trials"),
        "student": str(args.student),
        "setup": (
            f"batch 1, 1 intra-op thread, interleaved; 'real': {len(idx)} seeded test texts each at its own length, "
            f"x{args.rounds} rounds; '128': one 128-token input x{args.runs_128}, x{args.rounds} rounds; "
            "(x Optimum): the graph's p50 over Optimum's in the same run. Accuracy: each compress run's INT8 graph "
            "at batch 1 (validation 1 text = 0.08 pt, test the same)."
        ),
        "graphs": graphs,
        "p50_ms": p50,
        "libraries": library_versions(),
        "cpu": cpu_info(),
    }
    write_results(args.results, args.name, res, markdown(res))


if __name__ == "__main__":
    main()
