"""Issue 29's fault-injection campaign, run long and recorded: a whole tiny run (every stage) killed with
SIGKILL a random moment into a target stage, or run out of disk when that stage starts (its tmpfs, which holds
the run folder, the cache and TMPDIR, filled to a random few KB or MB), then the same command again with the
space freed. Each stage is the target in turn. Each case must end in a clean ``Error:`` line or a
kill, then a finished run whose published folders match their manifests, with nothing left behind and the
uninterrupted run's weights (tests/fault_injection.py). Seeded: a finding replays with its kind and seed.
Needs root (it mounts tmpfs).

    python benchmarks/fault_campaign.py                 # 16 kills + 16 disk-full cases: each stage twice (~20 min)
    python benchmarks/fault_campaign.py --kill 2 --disk-full 2

Writes benchmarks/results/fault_campaign.{json,md}.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from lib.results_io import provenance, write_results  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kill", type=int, default=16, help="cases (each stage in turn is the target)")
    ap.add_argument("--disk-full", type=int, default=16)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--stem", default="fault_campaign")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)

    from conftest import make_tiny_classifier, write_sentiment_csv
    from fault_injection import can_mount, one_case, reference

    scratch = Path(tempfile.mkdtemp(prefix="mbk-faults-"))
    try:
        why = can_mount(scratch)
        if why:
            sys.exit(f"Error: {why}")
        model = make_tiny_classifier(scratch / "tiny", layers=2)
        data = write_sentiment_csv(scratch / "d.csv", n=160)
        ref = reference(scratch, model, data)
        outcomes = []
        for kind, n in (("kill", args.kill), ("disk-full", args.disk_full)):
            for seed in range(args.first_seed, args.first_seed + n):
                outcomes.append(one_case(kind, seed, scratch, model, data, ref).to_json())
                print(f"{kind} {seed}: {outcomes[-1]['problems'] or 'ok'}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = {
        **provenance("fault_campaign", argv),
        "reference": {"seconds": ref["seconds"], "bytes": ref["bytes"], "problems": ref["problems"]},
        "outcomes": outcomes,
        "findings": [o for o in outcomes if o["problems"]],
    }
    write_results(args.out, args.stem, result, _markdown(result))
    return 1 if result["findings"] else 0


def _ending(o: dict) -> str:
    if o["first_code"] == -9:
        return "killed"
    if o["first_code"] == 0:
        return "finished (the fault came after the stage's last write)"
    return (o["first_error"] or f"exit {o['first_code']}")[:80]


def _markdown(r: dict) -> str:
    ref = r["reference"]
    tally = Counter((o["kind"], _ending(o)) for o in r["outcomes"])
    stages = Counter((o["kind"], o.get("stage", "?")) for o in r["outcomes"])
    lines = [
        "# Fault-injection campaign (issue 29)",
        "",
        f"`{r['command']}`, {r['created']}. A whole tiny run (finetune, distill, compress, export, verify, bench, "
        f"package, report; {ref['seconds']:.0f} s, {ref['bytes'] / 1e6:.1f} MB uninterrupted) killed a random moment into "
        "a target stage, or out of disk from that stage's start, then run again with room; each stage is the target "
        "in turn. Invariants: a clean `Error:` line or a "
        "kill; then a finished run, every published folder matching its manifest, nothing left behind, the "
        "uninterrupted run's weights.",
        "",
        f"**{len(r['outcomes'])} cases, {len(r['findings'])} findings.**",
        "",
        "| fault | first attempt ended | cases |",
        "|---|---|---:|",
        *[f"| {kind} | {ending} | {n} |" for (kind, ending), n in sorted(tally.items())],
        "",
        "Where the faults landed (the stage the runner had marked running when the run was killed or stopped; "
        "`-`: none, the fault came after the target's last write):",
        "",
        "| fault | stage | cases |",
        "|---|---|---:|",
        *[f"| {kind} | {stage} | {n} |" for (kind, stage), n in sorted(stages.items())],
        "",
    ]
    if r["findings"]:
        lines += ["## Findings", ""]
        lines += [f"- {o['kind']} seed {o['seed']}: {'; '.join(o['problems'])[:300]}" for o in r["findings"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
