"""The pages of ``mbk report RUN_A RUN_B ...``: ``compare.md``, ``compare.html`` (plots embedded as data
URIs, so the page opens from disk), ``compare.json`` and ``compare_files/`` (the PNGs the Markdown links).
The data comes from :func:`mobilebert_kit.stages.compare.compare`."""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path
from typing import Any

from mobilebert_kit.stages.base import RunContext, StageResult
from mobilebert_kit.stages.compare import STAGE_METRICS, compare, curves

MD, HTML, JSON, FILES = "compare.md", "compare.html", "compare.json", "compare_files"
STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    "td:first-child,th{text-align:left}th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}"
    ".warn{color:#a40}"
)


def fmt(v: Any, kind: str = "") -> str:
    """A comparison cell: the run report's kinds, plus accuracy differences (pt) and raw config values."""
    from mobilebert_kit.stages.report import fmt_value

    if v is not None and kind == "pt":
        return f"{100 * v:+.2f} pt"
    if kind in ("acc", "params", "mb", "ms") or v is None or (isinstance(v, float) and v != v):
        return fmt_value(v, kind)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    return str(v)


def _value(v: Any) -> str:
    """A config value as the recipe would spell it (3.0 stays 3.0, 3e-05 stays 3e-05)."""
    return v if isinstance(v, str) else json.dumps(v, default=str)


def tables(data: dict) -> list[tuple[str, str | None, list[str], list[list[str]]]]:
    """(heading, note, header, rows) of every table, shared by the Markdown and the HTML."""
    names = [r["name"] for r in data["runs"]]
    out = [("Runs", None, ["run", "folder"], [[r["name"], r["path"]] for r in data["runs"]])]
    rows = [
        [p["level"], f"{p['a']} → {p['b']}", fmt(p["accuracy_a"], "acc"), fmt(p["accuracy_b"], "acc"),
         fmt(p["difference"], "pt"), f"{100 * p['ci95'][0]:+.2f} … {100 * p['ci95'][1]:+.2f} pt",
         str(p["a_right_b_wrong"]), str(p["b_right_a_wrong"]), str(p["n"]), p["verdict"]]
        for p in data["paired"]
    ]  # fmt: skip
    note = None if rows else "no model of these runs saved per-text test predictions (re-run them with this mbk)"
    out.append(("Paired test accuracy (same test texts)", note,
                ["model", "runs", "accuracy A", "accuracy B", "B − A", "95% CI", "A right, B wrong",
                 "B right, A wrong", "texts", "verdict"], rows))  # fmt: skip
    for stage, per_run in data["stages"].items():
        body = [[label] + [fmt((m or {}).get(key), kind) for m in per_run] for label, key, kind in STAGE_METRICS]
        out.append((f"Stage: {stage}", None, ["metric", *names], body))
    out.append(_phone_table(data, names))
    diffs = data["config_differences"]
    body = [[d["key"]] + [_value(v) if ok else "(absent)" for v, ok in zip(d["values"], d["present"])] for d in diffs]
    out.append(("Config differences", None if diffs else "the runs' configs are identical", ["key", *names], body))
    return out


def _phone_table(data: dict, names: list[str]) -> tuple[str, str | None, list[str], list[list[str]]]:
    phone = data["phone"]
    if phone["format"] is None:
        return ("Phone model", "no export format that every run has", ["metric", *names], [])
    per_run = phone["runs"]
    body = [
        [label] + [fmt(p.get(key), kind) for p in per_run]
        for label, key, kind in (("test accuracy", "accuracy", "acc"), ("macro-F1", "macro_f1", "acc"),
                                 ("size", "size_bytes", "mb"), ("p50 ms", "p50_ms", "ms"))
    ]  # fmt: skip
    keys = sorted({k for p in per_run for k in p["settings"]})
    body += [[f"bench {k}"] + [fmt(p["settings"].get(k)) for p in per_run] for k in keys]
    if phone["comparable"]:
        note = "latencies comparable: same bench case, runtime, library versions and core count"
    elif phone["why_not"]:
        note = "latency NOT comparable: the runs were timed with different " + ", ".join(phone["why_not"])
    else:
        note = "latency NOT comparable: bench did not time the phone model in every run"
    return (f"Phone model ({phone['format']})", note, ["metric", *names], body)


def render_markdown(data: dict, title: str, plot: Path | None) -> str:
    lines = [f"# {title}", ""]
    for heading, note, head, rows in tables(data):
        lines += [f"## {heading}", ""]
        if note:
            lines += [f"_{note}_", ""]
        if rows:
            lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
            lines.append("")
    if plot is not None:
        lines += ["## Training curves (per step)", "", f"![training curves]({FILES}/{plot.name})", ""]
    lines.append(f"_Written by mbk report on {time.strftime('%Y-%m-%d %H:%M:%S')}._")
    return "\n".join(lines) + "\n"


def render_html(data: dict, title: str, plot: Path | None) -> str:
    e = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    for heading, note, head, rows in tables(data):
        parts.append(f"<h2>{e(heading)}</h2>")
        if note:
            parts.append(f"<p class='{'warn' if 'NOT' in note else ''}'><em>{e(note)}</em></p>")
        if rows:
            th = "".join(f"<th>{e(h)}</th>" for h in head)
            body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
            parts.append(f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>")
    if plot is not None:
        b64 = base64.b64encode(plot.read_bytes()).decode("ascii")
        parts.append(
            f"<h2>Training curves (per step)</h2><img alt='training curves' src='data:image/png;base64,{b64}'>"
        )
    parts.append(f"<p><em>Written by mbk report on {time.strftime('%Y-%m-%d %H:%M:%S')}.</em></p></body></html>\n")
    return "\n".join(parts)


def _plot(paths: list[str], folder: Path) -> Path | None:
    from mobilebert_kit.stages import report_curves

    logs = curves(paths)
    if not any(logs.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = report_curves.compare_figure(plt, logs)
    fig.tight_layout()
    path = folder / "training_curves.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def default_output(paths: list[str]) -> Path:
    names = [Path(p).resolve().name for p in paths]
    tail = names[1] if len(names) == 2 else f"{len(names) - 1}-runs"
    return Path("artifacts") / "compare" / f"{names[0]}-vs-{tail}"


def run(paths: list[str], report_cfg, output: str | None = None, title: str | None = None,
        ctx: RunContext | None = None) -> StageResult:  # fmt: skip
    """Compare the run folders ``paths`` (the first is the baseline) and write the pages into ``output``."""
    from mobilebert_kit.artifacts import MANIFEST, staged_output, write_json, write_manifest

    log = (ctx or RunContext()).log
    data = compare(paths, report_cfg)
    out = Path(output) if output else default_output(paths)
    # a folder an earlier comparison wrote is replaced; anything else needs --overwrite
    earlier = (json.loads((out / MANIFEST).read_text()) if (out / MANIFEST).is_file() else {}).get("stage") == "compare"
    title = title or "mobilebert_kit runs compared: " + " vs ".join(r["name"] for r in data["runs"])
    with staged_output(out, overwrite=earlier or bool(ctx and ctx.overwrite), inputs=tuple(paths)) as tmp:
        (tmp / FILES).mkdir()
        plot = _plot(paths, tmp / FILES)
        (tmp / MD).write_text(render_markdown(data, title, plot), encoding="utf-8")
        (tmp / HTML).write_text(render_html(data, title, plot), encoding="utf-8")
        write_json(tmp / JSON, data)
        write_manifest(tmp, stage="compare", config={"runs": list(map(str, paths))}, metrics={})
    log(
        f"compared {len(paths)} runs: {len(data['paired'])} paired differences, {len(data['config_differences'])} config keys differ"
    )
    lines = [f"comparison written to {out / HTML} and {out / MD}"]
    lines += [f"{p['level']} {p['a']} → {p['b']}: {100 * p['difference']:+.2f} pt "
              f"(95% CI {100 * p['ci95'][0]:+.2f} … {100 * p['ci95'][1]:+.2f}), {p['verdict']}" for p in data["paired"]]  # fmt: skip
    return StageResult(out / HTML, data, lines)
