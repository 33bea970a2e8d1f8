"""Compress's ``recover`` step with the teacher's pass in fp32 and in checked INT8 (``teacher_precision``),
side by side in one process: a recorded compress run's plan is re-run once per precision on the same
input, and each run's wall time, recovery time and guarded accuracy are compared. Writes
``benchmarks/results/recover_int8.json`` and ``.md``.

    python benchmarks/recover_int8.py --run artifacts/runs/default-v3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from lib.results_io import provenance, write_results

PRECISIONS = ("fp32", "int8")


def one_run(base: dict, precision: str, out: Path) -> dict:
    from mobilebert_kit.artifacts import read_json
    from mobilebert_kit.stages.base import RunContext
    from mobilebert_kit.stages.compress import CompressConfig, run

    cfg = dict(base, output=str(out))
    cfg["steps"] = [dict(s, teacher_precision=precision) if s["method"] == "recover" else s for s in cfg["steps"]]
    t0 = time.perf_counter()
    metrics = run(CompressConfig.from_dict(cfg), RunContext(overwrite=True, quiet=True)).metrics
    wall = time.perf_counter() - t0
    rec = read_json(out / "compression.json")["recovery"]
    final = metrics["final"]
    return {
        "precision": precision,
        "wall_seconds": wall,
        "recovery_step_seconds": read_json(out / "manifest.json")["timings"]["recovery"],
        "recovery_train_seconds": rec["train_seconds"],
        "ran_in": rec["teacher_precision"],
        "int8_check": rec.get("int8_check"),
        "validation_accuracy": final["validation"]["accuracy"],
        "test_accuracy": final["test"]["accuracy"],
        "test_n": final["test"]["n"],
        "guard_drop": metrics["guard"]["drop"],
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="artifacts/runs/default", help="a recipe run whose compressed/ plan is re-run")
    p.add_argument("--output", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)

    from mobilebert_kit.artifacts import read_json

    run_dir = Path(args.run)
    base = read_json(run_dir / "compressed" / "manifest.json")["config"]
    base["model"] = str(run_dir / "student")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for precision in PRECISIONS:
            rows.append(one_run(base, precision, Path(tmp) / precision))
            print(f"{precision}: {rows[-1]['wall_seconds']:.1f} s", file=sys.stderr)
    result = {
        **provenance("recover_int8", argv),
        "run": str(run_dir),
        "steps": base["steps"],
        "rows": rows,
    }
    write_results(args.output, "recover_int8", result, markdown(result))
    return result


def markdown(r: dict) -> str:
    n = r["rows"][0]["test_n"]
    lines = [
        "# Compress's recovery with the teacher pass in fp32 and in checked INT8",
        "",
        f"The plan of `{r['run']}/compressed` ({', '.join(s['method'] for s in r['steps'])}) re-run on its student, "
        f"once per `recover` `teacher_precision`, one after the other on this machine; accuracy of the final INT8 "
        f"graph at batch 1 (one test text of {n} is {100 / n:.2f} pt).",
        "",
        "| teacher pass | ran in | compress s | recovery step s | of which training s | val acc | guard drop | test acc |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for x in r["rows"]:
        lines.append(
            f"| {x['precision']} | {x['ran_in']} | {x['wall_seconds']:.1f} | {x['recovery_step_seconds']:.1f} | "
            f"{x['recovery_train_seconds']:.1f} | {x['validation_accuracy']:.4f} | {x['guard_drop']:+.4f} | "
            f"{x['test_accuracy']:.4f} |"
        )
    lines += ["", f"Reproduce: `{r['command']}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
