"""How long `mbk verify` takes with the ARM64 leg on, before and after "verify in proportion", and what bound the
ARM leg reached.

"before" reproduces the old defaults through options that still exist: 300 texts, this host's and the Android
app's aarch64 onnxruntime, one emulator at a time (``arm.parallel: 1``). "after" is today's defaults: as many
texts as bound the flip rate below ``arm.flip_bound`` (3%: 99 texts) with 0 flips, the app's onnxruntime, one
emulator per core, started while the x86 checks run. "recipe" is the default recipe's ARM section (2 CPU models,
150 texts). Each verifies the same export folder (a copy each, so
verify.json of one does not feed the other), in the order given by ``--order``.

    make arm-emu                                                  # once: qemu + arm64 root + wheels (cached)
    python benchmarks/verify_time.py --export-dir runs/default/export            # both, ~5-25 min on 2 cores
    python benchmarks/verify_time.py --export-dir runs/default/export --only after recipe
    python benchmarks/verify_time.py --export-dir runs/default/export --only after --formats ort  # standalone .ort

Results: benchmarks/results/verify_time.{json,md}.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from lib.results_io import cpu_line, provenance, write_results

RESULTS = Path(__file__).resolve().parent / "results"
WHICH = ("before", "after", "recipe")


def settings(which: str) -> dict:
    from mobilebert_kit.phone.emulation import host_ort_version
    from mobilebert_kit.runtimes import ANDROID_ORT_VERSION

    if which == "before":
        versions = list(dict.fromkeys([host_ort_version(), ANDROID_ORT_VERSION]))
        return {"mode": "on", "examples": 300, "ort_versions": versions, "parallel": 1}
    if which == "recipe":  # recipes/default.yaml's verify.arm section
        return {"mode": "on", "cpus": ["cortex-a53", "max"], "examples": 150}
    return {"mode": "on"}


def verify_once(export_dir: Path, which: str, formats: list[str]) -> dict:
    from mobilebert_kit.stages.base import RunContext
    from mobilebert_kit.stages.verify import VerifyConfig, run

    with tempfile.TemporaryDirectory(prefix="mbk-verify-time-") as tmp:
        copy = Path(tmp) / "export"
        shutil.copytree(export_dir, copy)
        (copy / "verify.json").unlink(missing_ok=True)  # an earlier verify's entries would be kept and reported
        cfg = VerifyConfig.from_dict({"export_dir": str(copy), "formats": formats, "arm": settings(which)})
        t0 = time.perf_counter()
        report = run(cfg, RunContext(quiet=True)).metrics
        seconds = time.perf_counter() - t0
    arm = {name: e.get("arm64") for name, e in report["formats"].items() if isinstance(e.get("arm64"), dict)}
    return {
        "seconds": seconds,
        "arm": settings(which),
        "passed": report["passed"],
        "bound": {name: a.get("bound") for name, a in arm.items()},
        "configurations": {
            name: [(r.get("runtime") or {}).get("version", "?") + " " + r["cpu"] for r in a["runs"]]
            for name, a in arm.items()
        },
    }


def markdown(r: dict) -> str:
    lines = [
        "# `mbk verify` with the ARM64 leg: before and after sizing it by the bound it must show",
        "",
        f"Export `{r['export_dir']}`, formats {r['formats'] or 'all'}; CPU: {cpu_line(r.get('cpu'))}.",
        "",
        "| settings | seconds | ARM leg per format: worst flips -> 95% bound, max abs diff vs x86 |",
        "|---|---:|---|",
    ]
    for which, v in r["runs"].items():
        b = "; ".join(
            f"{fmt}: {x['max_label_flips_vs_x86']} flip(s) in {x['n']} -> < {x['flip_rate_upper_95']:.1%}, "
            f"max|Δ| {x['max_abs_diff_vs_x86']:.3g} ({x['configurations_run']} configurations)"
            for fmt, x in v["bound"].items()
            if x
        )
        lines.append(f"| {which} ({v['arm']}) | {v['seconds']:.1f} | {b or 'no ARM leg ran'} |")
    lines += ["", f"Reproduce: `{r['command']}` (created {r['created']}).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--export-dir", required=True)
    p.add_argument("--formats", nargs="*", default=[], help="default: every exported format")
    p.add_argument("--only", choices=WHICH, nargs="+", default=None, help="these settings only, in this order")
    p.add_argument("--order", nargs="+", choices=WHICH, default=["after", "before"])
    p.add_argument("--output", default=str(RESULTS))
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)
    from mobilebert_kit.runtimes import cpu_info

    order = args.only or args.order
    runs = {}
    for which in order:
        print(f"verify ({which}) ...", file=sys.stderr)
        runs[which] = verify_once(Path(args.export_dir), which, args.formats)
        print(f"verify ({which}): {runs[which]['seconds']:.1f} s", file=sys.stderr)
    r = {
        **provenance("verify_time", argv),
        "export_dir": args.export_dir,
        "formats": args.formats,
        "cpu": cpu_info(),
        "runs": runs,
    }
    write_results(args.output, "verify_time" + (f"-{args.tag}" if args.tag else ""), r, markdown(r))
    return r


if __name__ == "__main__":
    main()
