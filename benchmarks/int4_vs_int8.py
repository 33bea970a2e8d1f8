"""INT8 dynamic vs 4-bit embeddings (GatherBlockQuantized) vs 4-bit MatMul (MatMulNBits): size,
accuracy and latency of the graphs ``mbk compress`` hands over, side by side in one run.

Each variant is one ``mbk compress`` run of the same student (the accuracy guard included; a variant
the guard refuses is reported as refused, not timed). Then, on this machine, one intra-op thread,
batch 1, interleaved rounds (A, B, C, A, B, C ...): latency at sequence length 128 and at the data's
real lengths (test texts tokenized without padding), in this environment's onnxruntime and in the
version the Android app pins (``--ort-versions``; 4-bit graphs run there as ``.onnx``, their ``.ort``
does not load in it). MatMulNBits' speed depends on the
CPU's kernels (AVX2 / AVX-512 VNNI / ARM dot-product) and on ``accuracy_level`` (4: int8 compute),
so the 4-bit MatMul graph is timed at both levels. Run it on a quiet machine: numbers taken beside
other jobs are noise. Writes ``benchmarks/results/int4_vs_int8.json`` and ``.md``.

    python benchmarks/int4_vs_int8.py --student artifacts/runs/default/student
    python benchmarks/int4_vs_int8.py --student artifacts/runs/default/student --variants int8 emb+int8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lib.inputs import encode_sample, fixed_inputs, seeded_sample  # noqa: E402
from lib.ort_timing import expand_versions, time_in_runtime  # noqa: E402
from lib.results_io import write_results  # noqa: E402

from mobilebert_kit.artifacts import library_versions, read_json  # noqa: E402
from mobilebert_kit.compression.guard import ci_text  # noqa: E402
from mobilebert_kit.graph import onnx_tools as ot  # noqa: E402

# name -> compress steps (every variant starts from the same fp32 student)
VARIANTS = {
    "int8": [{"method": "int8_dynamic"}],
    "int8-pc": [{"method": "int8_dynamic", "per_channel": True}],  # the default recipe's INT8 step
    "emb+int8": [{"method": "int4_embeddings", "block_size": 32}, {"method": "int8_dynamic"}],
    "emb128+int8": [{"method": "int4_embeddings", "block_size": 128}, {"method": "int8_dynamic"}],
    "matmul": [{"method": "int4_matmul", "block_size": 32}],
    "matmul_acc4": [{"method": "int4_matmul", "block_size": 32, "accuracy_level": 4}],
    "matmul+int8": [{"method": "int4_matmul", "block_size": 32}, {"method": "int8_dynamic"}],
    "emb+matmul_acc4+int8": [
        {"method": "int4_embeddings", "block_size": 32},
        {"method": "int4_matmul", "block_size": 32, "accuracy_level": 4},
        {"method": "int8_dynamic"},
    ],
}


def compress_variant(student: Path, work: Path, name: str, max_drop: float) -> dict:
    """Run (or reuse) ``mbk compress`` for one variant; returns its row (``refused`` when the guard said no)."""
    from mobilebert_kit.errors import CompressError
    from mobilebert_kit.stages.base import RunContext
    from mobilebert_kit.stages.compress import CompressConfig, run

    out = work / name.replace("+", "_")
    if not (out / "metrics.json").exists():
        print(f"compressing: {name} ...", file=sys.stderr)
        cfg = CompressConfig(
            model=str(student), output=str(out), steps=VARIANTS[name], latency_runs=0, max_drop=max_drop
        )
        try:
            run(cfg, RunContext(overwrite=True, quiet=True))
        except CompressError as e:
            return {"variant": name, "steps": VARIANTS[name], "refused": str(e)}
    metrics = read_json(out / "metrics.json")
    final = metrics["steps"][-1]
    return {
        "variant": name,
        "steps": VARIANTS[name],
        "onnx": str(out / "onnx" / "model.onnx"),
        "size_mb": (out / "onnx" / "model.onnx").stat().st_size / 1e6,
        "validation": final["validation"],
        "test": final["test"],
        "guard": metrics["guard"],
        "ops": ot.op_counts(out / "onnx" / "model.onnx"),
    }


def real_inputs(student: Path, n: int) -> tuple[list[dict], float]:
    """``n`` test texts tokenized without padding (seeded), and their median length."""
    from mobilebert_kit.artifacts import lineage
    from mobilebert_kit.data import data_config_for, load_dataset
    from mobilebert_kit.models import load_tokenizer

    tok = load_tokenizer(str(student))
    test = load_dataset(data_config_for(student, None)).splits["test"]
    max_length = int(lineage(student).get("max_length") or 128)
    inputs = encode_sample(tok, test, seeded_sample(len(test), n), max_length)
    return inputs, float(np.median([x["input_ids"].shape[1] for x in inputs]))


def latency(rows: list[dict], inputs: dict, order: dict, rounds: int, versions: list[str]) -> None:
    """Add p50/p90 per onnxruntime version and input set to every row the guard passed (one intra-op
    thread, each version in its own process: ort_timing.time_in_runtime; ``order[set]``: the indices
    of ``inputs[set]`` timed per round)."""
    timed = [r for r in rows if "onnx" in r]
    paths = {r["variant"]: Path(r["onnx"]) for r in timed}
    feeds = {n: inputs for n in paths}
    for version in versions:
        print(f"latency: onnxruntime {version} ...", file=sys.stderr)
        t = time_in_runtime(version, paths, feeds, order, rounds)
        for r in timed:
            r.setdefault("latency", {})[t["version"]] = {
                label: {
                    "p50_ms": float(np.median(per[r["variant"]])),
                    "p90_ms": float(np.percentile(per[r["variant"]], 90)),
                }
                for label, per in t["times_ms"].items()
            }


def markdown(result: dict) -> str:
    versions = result["ort_versions"]
    lines = [
        "# INT8 dynamic vs 4-bit embeddings vs 4-bit MatMul",
        "",
        f"Student `{result['student']}`; batch 1, 1 thread, interleaved, {result['rounds']} rounds; real lengths: "
        f"{result['real_texts']} seeded test texts, median {result['real_length_median_tokens']:.0f} tokens. "
        "Accuracy: test split, ONNX Runtime, batch 1; the guard's drop is on validation.",
        "",
        "| variant | size MB | test acc | val drop (95% CI) | "
        + " | ".join(f"p50 ms real / 128 @ {v}" for v in versions)
        + " |",
        "|---|---:|---:|---|" + "---:|" * len(versions),
    ]
    for r in result["rows"]:
        if "refused" in r:
            lines.append(f"| {r['variant']} | refused by the guard: {r['refused'][:120]} | | |" + " |" * len(versions))
            continue
        g = r["guard"]
        lo, hi = g.get("drop_ci95") or (g["drop"], g["drop"])
        lat = " | ".join(
            f"{r['latency'][v]['real']['p50_ms']:.3f} / {r['latency'][v]['seq128']['p50_ms']:.3f}" for v in versions
        )
        lines.append(
            f"| {r['variant']} | {r['size_mb']:.2f} | {r['test']['accuracy']:.4f} | "
            f"{100 * g['drop']:+.2f} pt ({ci_text(lo, hi)}) | {lat} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--student", default="artifacts/runs/default/student", help="fp32 student classifier folder")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--max-drop", type=float, default=0.01, help="the accuracy guard's bound (as mbk compress)")
    ap.add_argument("--real-texts", type=int, default=200, help="test texts timed at their real token length")
    ap.add_argument("--runs-128", type=int, default=60, help="timed runs per graph at seq 128")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--ort-versions", default="host,android", help="onnxruntime versions to time in (android: the app's)"
    )
    ap.add_argument("--work", default="benchmarks/work/int4_vs_int8")
    ap.add_argument("--results", default="benchmarks/results")
    args = ap.parse_args()

    student, work = Path(args.student), Path(args.work)
    if not (student / "config.json").exists():
        sys.exit(f"Error: student folder {student} does not exist; run `mbk run recipes/default.yaml` first")
    work.mkdir(parents=True, exist_ok=True)
    rows = [compress_variant(student, work, v, args.max_drop) for v in args.variants]
    texts, median_len = real_inputs(student, args.real_texts)
    inputs = {"seq128": [fixed_inputs(128)], "real": texts}  # the one 128-token input, timed runs_128 times
    order = {"seq128": [0] * max(1, args.runs_128 // args.rounds), "real": list(range(len(texts)))}
    versions = expand_versions(args.ort_versions)
    latency(rows, inputs, order, args.rounds, versions)
    result = {
        "student": str(student),
        "rounds": args.rounds,
        "real_texts": len(texts),
        "ort_versions": list(dict.fromkeys(v for r in rows for v in r.get("latency", {}))),
        "real_length_median_tokens": median_len,
        "rows": rows,
        "versions": library_versions(),
    }
    write_results(args.results, "int4_vs_int8", result, markdown(result))


if __name__ == "__main__":
    main()
