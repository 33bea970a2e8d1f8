"""ARM64 parity of the default run's INT8 model under QEMU: dynamic vs static INT8 across phone CPUs.

The default run's ``.ort`` (prune 0.2 + dynamic INT8) and a static-INT8 variant of the same student
(prune 0.2 + ``int8_static``, minmax calibration on 128 training texts, the same accuracy guard)
each go through ``mbk verify --arm on`` (:mod:`mobilebert_kit.phone.emulation`): the aarch64 onnxruntime
wheels (this host's version and the Android app's) on emulated Cortex-A53 / A76 / A710 and QEMU's
``max`` (SME), a seeded subset of the test split. Reported: max |Δ| and label agreement vs PyTorch,
the same vs x86 onnxruntime on identical batches (the kernel path's own effect), and the spread
across CPU models per onnxruntime version (is static INT8, with activation scales fixed at
calibration, steadier across CPUs than dynamic INT8, whose scales are computed per batch at run time?).
Numerics only: timing under emulation means nothing. Never writes into the run folder.

    make arm-emu
    python benchmarks/arm64_parity.py                              # builds the static variant (~10 min)
    python benchmarks/arm64_parity.py --static-export /tmp/arm_static/export   # reuse one
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lib.results_io import write_results  # noqa: E402

from mobilebert_kit.artifacts import read_json  # noqa: E402
from mobilebert_kit.errors import VerifyError  # noqa: E402
from mobilebert_kit.phone.emulation import ArmConfig, find_emulator, host_ort_version  # noqa: E402

CPUS = ["cortex-a53", "cortex-a76", "cortex-a710", "max"]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default=str(ROOT / "artifacts" / "runs" / "default"), help="A finished default run.")
    p.add_argument("--work", default="/tmp/mbk-arm64-parity", help="Scratch folder (copies, static variant).")
    p.add_argument("--static-export", default=None, help="An export folder of the static variant to reuse.")
    p.add_argument("--format", default="ort", help="onnx or ort.")
    p.add_argument("--cpus", default=",".join(CPUS))
    p.add_argument("--examples", type=int, default=300)
    p.add_argument("--ort-versions", default="", help="aarch64 onnxruntime versions (default: host's and Android's).")
    p.add_argument("--merge", action="store_true", help="Add these runs to the existing results (other versions).")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    emulator = find_emulator()  # DeviceError (run `make arm-emu`) before any work
    work, run_dir = Path(args.work), Path(args.run)
    versions = [v for v in args.ort_versions.split(",") if v]
    arm = ArmConfig(mode="on", cpus=args.cpus.split(","), examples=args.examples, ort_versions=versions)
    static_export = Path(args.static_export) if args.static_export else build_static(run_dir, work / "static")
    variants = {}
    for name, export in (("dynamic", run_dir / "export"), ("static", static_export)):
        folder = copy_format(export, work / name / "export", args.format)
        variants[name] = summarize(verify(folder, args.format, arm), folder / args.format)
    result = {
        "what": "ARM64 parity under QEMU user mode: default run's INT8 model, dynamic vs static INT8",
        "run": str(run_dir),
        "format": args.format,
        "emulator": f"qemu-aarch64 {emulator.qemu_version} user mode",
        "x86_onnxruntime": host_ort_version(),
        "config": arm.to_dict(),
        "runs_by_version": {v: arm.cpus for v in arm.versions()},
        "variants": variants,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.merge and (out / "arm64_parity.json").exists():
        result = merged(read_json(out / "arm64_parity.json"), result)
    write_results(out, "arm64_parity", result, markdown(result))
    return result


def merged(old: dict, new: dict) -> dict:
    """Earlier results plus this invocation's (onnxruntime versions measured separately, same subset)."""
    if (old["config"]["examples"], old["config"]["seed"]) != (new["config"]["examples"], new["config"]["seed"]):
        raise SystemExit("--merge needs the same --examples and seed as the existing results")
    for name, v in new["variants"].items():
        mine = old["variants"][name]
        versions = {r["onnxruntime"] for r in v["runs"]}
        mine["runs"] = [r for r in mine["runs"] if r["onnxruntime"] not in versions] + v["runs"]
        mine["across_cpus"].update(v["across_cpus"])
    old["runs_by_version"] = {**old.get("runs_by_version", {}), **new.get("runs_by_version", {})}
    return old


def build_static(run_dir: Path, work: Path) -> Path:
    """The default run's student, pruned like the default (0.2) and statically INT8-quantized, exported."""
    from mobilebert_kit.stages.base import RunContext
    from mobilebert_kit.stages.compress import CompressConfig
    from mobilebert_kit.stages.compress import run as compress
    from mobilebert_kit.stages.export import ExportConfig
    from mobilebert_kit.stages.export import run as export

    ctx = RunContext(overwrite=True)
    comp = CompressConfig(
        model=str(run_dir / "student"),
        output=str(work / "compressed"),
        prune=0.2,
        int8=True,
        static=True,
        latency_runs=0,
    )
    compressed = compress(comp, ctx).output
    return export(ExportConfig(model=str(compressed), output=str(work / "export"), formats=["ort", "onnx"]), ctx).output


def copy_format(export: Path, dst: Path, fmt: str) -> Path:
    """A scratch export folder holding only ``fmt`` (verify writes verify.json next to it)."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    shutil.copytree(export / fmt, dst / fmt)
    return dst


def verify(export: Path, fmt: str, arm: ArmConfig) -> dict:
    from mobilebert_kit.stages.verify import VerifyConfig, run

    try:
        run(VerifyConfig(export_dir=str(export), formats=[fmt], node="off", arm=arm))
    except VerifyError as e:  # a breached gate is a finding here, recorded in verify.json
        print(f"verify: {e}", file=sys.stderr)
    return read_json(export / "verify.json")["formats"][fmt]


def summarize(entry: dict, folder: Path) -> dict:
    meta = read_json(folder / "model_meta.json")
    arm = entry["arm64"]
    keep = ("cpu", "max_abs_diff", "agreement", "max_abs_diff_vs_x86", "flips_vs_x86", "flipped", "passed")
    return {
        "model_sha256": entry.get("model_sha256"),
        "quantization": meta.get("quantization"),
        "test_split": {k: entry.get(k) for k in ("n", "max_abs_diff", "agreement", "accuracy", "pytorch_accuracy")},
        "verify_passed": entry["passed"],
        "n": arm["n"],
        "x86_on_subset": arm["x86"],
        "runs": [
            {**{k: r.get(k) for k in keep}, "onnxruntime": r["runtime"]["version"], "cpu_features": r["cpu_features"]}
            for r in arm["runs"]
        ],
        "across_cpus": arm["across_cpus"],
    }


def markdown(result: dict) -> str:
    c = result["config"]
    lines = [
        "# ARM64 parity under QEMU: dynamic vs static INT8 across phone CPUs",
        "",
        f"`{result['format']}` of `{result['run']}` (dynamic INT8) and a static-INT8 variant of the same student, "
        f"each on {c['examples']} seeded test texts (seed {c['seed']}), {result['emulator']}, aarch64 onnxruntime "
        f"wheels from PyPI; x86 reference: onnxruntime {result['x86_onnxruntime']} on identical batches. "
        "Numerics only (emulated timing means nothing). Regenerate: `python benchmarks/arm64_parity.py`.",
        "",
        "Emulated CPU models per onnxruntime version: "
        + "; ".join(f"{v}: {', '.join(cpus)}" for v, cpus in result.get("runs_by_version", {}).items())
        + ".",
        "",
        "| INT8 | onnxruntime | CPU | max\\|Δ\\| vs PyTorch | agreement | max\\|Δ\\| vs x86 | flips vs x86 | gate |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for name, v in result["variants"].items():
        x = v["x86_on_subset"]
        lines.append(
            f"| {name} | {result['x86_onnxruntime']} | x86 (host) | {x['max_abs_diff']:.4f} | {x['agreement']:.2%} | 0 | 0 | |"
        )
        for r in v["runs"]:
            flips = ", ".join(f"#{i}" for i in r["flips_vs_x86"]) or "0"
            gate = "✓" if r["passed"] else "✗"
            lines.append(
                f"| {name} | {r['onnxruntime']} | {r['cpu']} | {r['max_abs_diff']:.4f} | {r['agreement']:.2%} "
                f"| {r['max_abs_diff_vs_x86']:.4f} | {flips} | {gate} |"
            )
    lines += ["", "Spread across CPU models (max |logit difference| between any two; texts labelled differently):", ""]
    for name, v in result["variants"].items():
        for version, s in v["across_cpus"].items():
            split = s["examples_labelled_differently"]
            lines.append(
                f"- {name} INT8, onnxruntime {version}: {s['max_abs_diff']:.4f}, "
                f"{len(split)} text(s){' (' + ', '.join(f'#{i}' for i in split) + ')' if split else ''}"
                + (f"; bit-identical logits: {groups(s['identical_logits'])}" if "identical_logits" in s else "")
            )
    return "\n".join(lines) + "\n"


def groups(identical: list[list[str]]) -> str:
    return " | ".join(" = ".join(g) for g in identical)


if __name__ == "__main__":
    main()
