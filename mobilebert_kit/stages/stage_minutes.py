"""Where a run's minutes went: the report's "Minutes per stage" table.

Each step's wall time comes from the recipe runner's state (``<run>/.state/<step>.json``: ``seconds``, ``output``);
its biggest parts from the timings the stage wrote into its own ``manifest.json`` (e.g. distill's teacher pass
and training, compress's steps), read only when that manifest is the step's own (same ``stage``), not a folder
another stage also writes into (verify and bench report into the export folder).
"""

from __future__ import annotations

import json
from pathlib import Path

STATE_DIR = ".state"
PARTS_SHOWN = 3


def stage_minutes(run_dir: Path) -> list[dict]:
    """One record per step that has a wall time, in the order the steps started."""
    state_dir = Path(run_dir) / STATE_DIR
    if not state_dir.is_dir():
        return []
    found = []
    for f in state_dir.glob("*.json"):
        s = _read(f)
        if f.stem == "report" or not isinstance(s, dict) or not isinstance(s.get("seconds"), (int, float)):
            continue
        found.append((s.get("started") or "", f.stat().st_mtime, f.stem, s))
    found.sort(key=lambda x: (x[0], x[1]))
    return [
        {
            "step": step,
            "status": s.get("status"),
            "seconds": float(s["seconds"]),
            "parts": _parts(step, s.get("output")),
        }
        for _, _, step, s in found
    ]


def minutes_per_stage_lines(run_dir: Path) -> list[str]:
    """The Markdown section (empty when the folder holds no recipe state)."""
    rows = stage_minutes(run_dir)
    total = sum(r["seconds"] for r in rows)
    if not rows or total <= 0:
        return []
    lines = ["## Minutes per stage", "", "| stage | minutes | share | biggest parts |", "|---|---:|---:|---|"]
    for r in rows:
        parts = ", ".join(f"{name} {sec / 60:.1f} min" for name, sec in r["parts"]) or "—"
        lines.append(f"| {r['step']} | {r['seconds'] / 60:.1f} | {r['seconds'] / total:.0%} | {parts} |")
    lines += [f"| **total** | **{total / 60:.1f}** | 100% | |", ""]
    return lines


def _parts(step: str, output: str | None) -> list[tuple[str, float]]:
    """The step's largest timed parts from its own manifest (``*_seconds`` or plain second values), totals left out."""
    if not output:
        return []
    stage = step.split(".")[0]
    # verify writes into the export folder: its timings are in its own verify.json, not export's manifest (a
    # recipe's state records that file as verify's output; the folder is accepted too)
    path = Path(output)
    if stage != "verify":
        path = path / "manifest.json"
    elif path.name != "verify.json":
        path = path / "verify.json"
    manifest = _read(path)
    if not isinstance(manifest, dict) or (stage != "verify" and manifest.get("stage") != stage):
        return []
    timings = manifest.get("timings") or {}
    parts = [
        (name.removesuffix("_seconds").replace("_", " "), float(v))
        for name, v in timings.items()
        if isinstance(v, (int, float)) and not name.startswith("total")
    ]
    return sorted(parts, key=lambda p: -p[1])[:PARTS_SHOWN]


def _read(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
