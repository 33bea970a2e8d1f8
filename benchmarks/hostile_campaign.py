"""The hostile-input campaign of issue 29, run long and recorded: generated data files (CSV/TSV/JSONL/JSON/gzip
bytes in several encodings) through the readers, generated recipes and dotted overrides through
``mbk validate``, generated option values through every command (stage runs stubbed: this exercises parsing
and validation, not training). Each case must end in success or one clean ``Error:`` line, with no traceback,
no "internal error" and no user file changed. The cases are derandomised (the same every run for the same
counts), so a recorded finding can be replayed.

    python benchmarks/hostile_campaign.py                      # 4000 + 2000 + 2000 + 3000 = 11,000 cases
    python benchmarks/hostile_campaign.py --readers 200 --recipes 100 --overrides 100 --cli 100

Writes benchmarks/results/hostile_campaign.{json,md}: cases and outcomes per family, and every finding.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from lib.results_io import provenance, write_results  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readers", type=int, default=4000)
    ap.add_argument("--recipes", type=int, default=2000)
    ap.add_argument("--overrides", type=int, default=2000)
    ap.add_argument("--cli", type=int, default=3000)
    ap.add_argument("--seed", type=int, help="hypothesis seed (other cases); default: derandomised")
    ap.add_argument("--stem", default="hostile_campaign", help="results file name (without .json/.md)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)

    import os

    import pytest
    from conftest import make_tiny_classifier
    from test_hostile_campaign import campaign

    root = Path(tempfile.mkdtemp(prefix="mbk-campaign-"))
    mp = pytest.MonkeyPatch()
    try:
        model = make_tiny_classifier(root / "tiny" / "model")
        arena = _arena(root, model, mp)
        tally = campaign(arena, args.readers, args.recipes, args.overrides, args.cli, args.seed)
    finally:
        mp.undo()
        os.chdir(ROOT)
        shutil.rmtree(root, ignore_errors=True)
    result = {
        **provenance("hostile_campaign", argv),
        "counts": {k: v for k, v in vars(args).items() if k not in ("out", "stem")},
        "cases": dict(tally.cases),
        "total_cases": sum(tally.cases.values()),
        "outcomes": dict(sorted(tally.outcomes.items())),
        "findings": tally.findings,
    }
    write_results(args.out, args.stem, result, _markdown(result))
    return 1 if tally.findings else 0


def _arena(root: Path, model: Path, mp):
    """The same user folder / work folder as the test fixture ``arena``."""
    from campaign_helpers import stub_stages
    from conftest import write_sentiment_csv

    user, work = root / "user", root / "work"
    user.mkdir()
    work.mkdir()
    write_sentiment_csv(user / "data.csv", n=60)
    shutil.copytree(model, user / "model")
    shutil.copy(ROOT / "recipes" / "smoke.yaml", user / "recipe.yaml")
    (user / "notes.txt").write_text("my notes\n")
    mp.chdir(work)
    stub_stages(mp)
    paths = [str(p) for p in (user / "data.csv", user / "model", user / "recipe.yaml", user / "notes.txt")]
    paths += [str(user / "missing"), str(work / "out"), str(ROOT / "recipes" / "default.yaml")]
    return user, work, paths


def _markdown(r: dict) -> str:
    lines = [
        "# Hostile-input campaign (issue 29)",
        "",
        f"`{r['command']}`, {r['created']}. Invariant: success or one clean `Error:` line; no traceback, no",
        "'internal error', no user file changed. "
        + (
            f"Cases of hypothesis seed {r['counts']['seed']}."
            if r["counts"].get("seed") is not None
            else "Cases derandomised (the same every run)."
        ),
        "",
        f"**{r['total_cases']:,} cases, {len(r['findings'])} findings.**",
        "",
        "| family | cases |",
        "|---|---:|",
        *[f"| {k} | {v:,} |" for k, v in r["cases"].items()],
        "",
        "| outcome | cases |",
        "|---|---:|",
        *[f"| {k} | {v:,} |" for k, v in r["outcomes"].items()],
        "",
    ]
    if r["findings"]:
        lines += ["## Findings", ""]
        for f in r["findings"]:
            last = f["problem"].strip().splitlines()[-1] if f["problem"].strip() else ""
            lines.append(f"- {f['family']}: `{last[:200]}` (case `{f['case'][:150]}`)")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
