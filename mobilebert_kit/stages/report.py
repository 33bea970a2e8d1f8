"""``mbk report``: one page for a run: teacher -> student -> compressed -> every export.

Reads what the stages left in the run folder (``teacher/``, ``student/``, ``compressed/``,
``export/`` with ``verify.json``, ``bench/bench.json``, ``package/``, ``.state/``) and writes
``report.md`` and ``report.html`` (PNG plots embedded as base64, so the file opens from disk with
no server) plus the PNGs in ``report_files/`` for the Markdown. Every piece is optional: a stage
that did not run shows as a dash, never as a crash.

Table columns: test accuracy, macro-F1, parameters, size on disk, p50/p90 latency (bench, batch 1,
1 thread by default) and parity against the PyTorch model (verify). Plots: training curves,
accuracy vs latency and accuracy vs size with the Pareto front (no other model is both more
accurate and faster / smaller) marked.
"""

from __future__ import annotations

import base64
import html
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobilebert_kit import formats as registry
from mobilebert_kit.artifacts import COMPRESSION, META, METRICS, VERIFY, not_a_folder, staged_output, write_text
from mobilebert_kit.config import StageConfig, check_range
from mobilebert_kit.errors import ArtifactError
from mobilebert_kit.stages import report_curves
from mobilebert_kit.stages.base import RunContext, StageResult
from mobilebert_kit.stages.stage_minutes import minutes_per_stage_lines

HTML = "report.html"
MD = "report.md"
FILES = "report_files"


@dataclass
class ReportConfig(StageConfig):
    """What to report on and which benchmark case the table shows."""

    run_dir: str = ""  # the run folder (mbk run fills it in)
    title: str | None = None  # default: "mobilebert_kit run: <folder name>"
    seq_len: int | None = None  # bench sequence length in the table (default: the one most models were timed at)
    threads: int = 1  # bench thread count in the table
    batch: int = 1

    def validate(self) -> list[str]:
        p: list[str] = []
        check_range(p, "seq_len", self.seq_len, 1, 8192)
        check_range(p, "threads", self.threads, 1, 1024)
        check_range(p, "batch", self.batch, 1, 4096)
        return p


# --------------------------------------------------------------------------- reading


def _read(path: Path) -> Any:
    """JSON or None: a missing or broken file is a missing piece, not an error."""
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _get(d: Any, *keys: str, default: Any = None) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def _size(path: Path) -> int | None:
    from mobilebert_kit.artifacts import folder_size

    return folder_size(path) if path.exists() else None


def _same(a: str | os.PathLike | None, b: Path) -> bool:
    if not a:
        return False
    try:
        return Path(a).resolve() == b.resolve()
    except OSError:
        return False


def _bench_rows(run_dir: Path) -> list[dict]:
    data = _read(run_dir / "bench" / "bench.json")
    return list(data.get("rows") or []) if isinstance(data, dict) else []


def _pick_case(rows: list[dict], cfg: ReportConfig) -> tuple[int | None, list[dict]]:
    """The rows of one benchmark case (threads, batch, seq): the table's latency columns."""
    rows = [r for r in rows if r.get("threads") == cfg.threads and r.get("batch") == cfg.batch]
    seqs = sorted({r.get("seq_len") for r in rows if isinstance(r.get("seq_len"), int)})
    if not seqs:
        return None, []
    if cfg.seq_len is not None:
        seq = cfg.seq_len if cfg.seq_len in seqs else None
    else:
        # The length at which the most models were timed (exports are only timed up to their own
        # max_length), the longest such length up to 128: teacher and exports side by side.
        def coverage(s: int) -> tuple[int, bool, int]:
            return len({r.get("model") for r in rows if r.get("seq_len") == s}), s <= 128, s if s <= 128 else -s

        seq = max(seqs, key=coverage)
    return seq, [r for r in rows if r.get("seq_len") == seq]


def _latency(rows: list[dict], *, path: Path | None = None, model: str | None = None) -> dict | None:
    for r in rows:
        if (model is not None and r.get("model") == model) or (path is not None and _same(r.get("path"), path)):
            return r
    return None


def _params_of(folder: Path) -> int | None:
    m = _read(folder / METRICS)
    for keys in (("parameters",), ("params",)):
        v = _get(m, *keys)
        if isinstance(v, int):
            return v
    return None


def collect(run_dir: Path, cfg: ReportConfig) -> dict:
    """Everything the report shows, as plain data (also handy for tests and --json)."""
    seq, case = _pick_case(_bench_rows(run_dir), cfg)
    notes: list[str] = []
    rows, curves = _pytorch_rows(run_dir, case)
    logs = report_curves.stage_logs(run_dir)
    rows += _compressed_rows(run_dir / "compressed", case, notes)
    ver = _read(run_dir / "export" / VERIFY) or {}
    rows += _export_rows(run_dir / "export", ver, case, rows)
    # PyTorch reference timing of the exported source (bench's "pytorch fp32 (source)"), when nothing else matched it.
    src = _latency(case, model="pytorch fp32 (source)")
    if src is not None and not any(_same(src.get("path"), Path(r["folder"])) for r in rows):
        notes.append(f"bench timed the exported source model in PyTorch fp32: p50 {src['p50_ms']:.2f} ms")
    notes.extend(_transfer_notes(_read(run_dir / "student" / METRICS)))
    return {
        "run_dir": str(run_dir),
        "seq_len": seq,
        "threads": cfg.threads,
        "batch": cfg.batch,
        "rows": rows,
        "curves": curves,
        "training_logs": {name: report_curves.summary(lines) for name, lines in logs.items()},
        "packages": _packages(run_dir / "package"),
        "stages": _stages(run_dir / ".state"),
        "notes": notes,
        "verify_passed": ver.get("passed") if ver else None,
        "headline": _headline(rows),
    }


def _transfer_notes(student_metrics: dict | None) -> list[str]:
    """distill's unlabeled text (windows kept, dropped for overlap) and its teacher pass's speed."""
    from mobilebert_kit.data.transfer import summary_line

    transfer = _get(student_metrics, "transfer")
    if not isinstance(transfer, dict):
        return []
    note = "distill's teacher-labelled transfer text: " + summary_line(transfer)
    cache = _get(student_metrics, "teacher_cache") or {}
    n, seconds = student_metrics.get("train_examples"), cache.get("train_seconds")
    if cache.get("train") == "built" and isinstance(n, int) and seconds:
        note += f"; teacher pass {n / seconds:.0f} texts/s ({cache.get('train_precision')})"
    return [note]


def _pytorch_rows(run_dir: Path, case: list[dict]) -> tuple[list[dict], dict[str, list[dict]]]:
    """The teacher and student rows, and their training curves."""
    rows: list[dict] = []
    curves: dict[str, list[dict]] = {}
    for name in ("teacher", "student"):
        folder = run_dir / name
        m = _read(folder / METRICS)
        if m is None:
            continue
        lat = _latency(case, path=folder)
        rows.append(
            {
                "name": name,
                "kind": "PyTorch fp32",
                "accuracy": _get(m, "test", "accuracy"),
                "macro_f1": _get(m, "test", "macro_f1"),
                "params": _params_of(folder),
                "size_bytes": _size(folder / "model.safetensors"),
                "p50_ms": _get(lat, "p50_ms"),
                "p90_ms": _get(lat, "p90_ms"),
                "parity": "",
                "folder": str(folder),
            }
        )
        if isinstance(m.get("history"), list) and m["history"]:
            curves[name] = m["history"]
    return rows, curves


def _compressed_rows(comp_dir: Path, case: list[dict], notes: list[str]) -> list[dict]:
    cm = _read(comp_dir / METRICS)
    if cm is None:
        return []
    steps = cm.get("steps") or []
    params = next(
        (s.get("params") for s in reversed(steps) if isinstance(s.get("params"), int)), _get(cm, "input", "params")
    )
    final = cm.get("final") or {}
    size = _get(cm, "size_on_disk", "onnx_bytes") or _get(cm, "size_on_disk", "output_model_bytes")
    kind = "ONNX int8" if (_read(comp_dir / COMPRESSION) or {}).get("int8") else "pruned fp32"
    lat = _latency(case, path=comp_dir)
    row = {
        "name": "compressed",
        "kind": f"{kind} ({final.get('step') or 'input'})",
        "accuracy": _get(final, "test", "accuracy"),
        "macro_f1": _get(final, "test", "macro_f1"),
        "params": params,
        "size_bytes": size,
        "p50_ms": _get(lat, "p50_ms"),
        "p90_ms": _get(lat, "p90_ms"),
        "parity": _guard_text(cm.get("guard")),
        "folder": str(comp_dir),
    }
    if lat is not None and lat.get("runtime") == "pytorch":  # bench timed the fp32 weights, not the int8 graph
        row["p50_ms"] = row["p90_ms"] = None
        notes.append(
            f"bench timed the compressed model's PyTorch fp32 weights (the export source): p50 {lat['p50_ms']:.2f} ms, "
            f"p90 {lat['p90_ms']:.2f} ms"
        )
    return [row]


def _export_rows(export_dir: Path, ver: dict, case: list[dict], earlier: list[dict]) -> list[dict]:
    """One row per exported format (every registered one present), with verify's parity."""
    manifest = _read(export_dir / "manifest.json") or {}
    rows = []
    for name in registry.names():
        meta = _read(export_dir / name / META)
        if meta is None:
            continue
        v = _get(ver, "formats", name) or {}
        label = f"{name}{' int8' if meta.get('int8') else ' fp32'}"
        lat = _latency(case, model=label) or _latency(case, path=export_dir / name / str(meta.get("model_file", "")))
        app = registry.get(name).app_runtime_version  # bench also timed it in the onnxruntime its phone app pins
        app_lat = _latency(case, model=f"{label} @ onnxruntime {app}") if app else None
        rows.append(
            {
                "name": f"export: {name}",
                "kind": "int8" if meta.get("int8") else "fp32",
                "accuracy": v.get("accuracy"),
                "macro_f1": v.get("macro_f1"),
                "params": _export_params(meta, earlier),
                "size_bytes": meta.get("size_bytes") or _get(manifest, "formats", name, "size_bytes"),
                "p50_ms": _get(lat, "p50_ms"),
                "p90_ms": _get(lat, "p90_ms"),
                "app_runtime": f"onnxruntime {app}" if app_lat else None,
                "app_p50_ms": _get(app_lat, "p50_ms"),
                "parity": _parity_text(v),
                "folder": str(export_dir / name),
            }
        )
    return rows


def _packages(pkg_root: Path) -> list[dict]:
    if not pkg_root.is_dir():
        return []
    packages = []
    for d in sorted(p for p in pkg_root.iterdir() if p.is_dir()):
        z = d.with_name(d.name + ".zip")
        packages.append(
            {
                "target": d.name,
                "folder": str(d),
                "size_bytes": _size(d),
                "zip": str(z) if z.exists() else None,
                "zip_bytes": _size(z) if z.exists() else None,
            }
        )
    return packages


def _stages(state_dir: Path) -> list[dict]:
    if not state_dir.is_dir():
        return []
    stages = []
    for f in sorted(state_dir.glob("*.json"), key=lambda p: p.stat().st_mtime):
        s = _read(f) or {}
        if f.stem != "report":
            stages.append(
                {"step": f.stem, "status": s.get("status"), "seconds": s.get("seconds"), "finished": s.get("finished")}
            )
    return stages


def _guard_text(guard: Any) -> str:
    if not isinstance(guard, dict):
        return ""
    ok = guard.get("passed")
    drop = guard.get("drop")
    limit = guard.get("max_drop")
    txt = "guard ✓" if ok else "guard ✗" if ok is False else "guard"
    ci = guard.get("drop_ci95")
    if isinstance(drop, (int, float)) and isinstance(ci, list) and isinstance(limit, (int, float)):
        # the guard's rule: a drop is refused only when its whole 95% interval lies above max_drop
        from mobilebert_kit.compression.guard import ci_text

        return f"{txt} drop {100 * drop:+.2f} pt (95% CI {ci_text(*ci)}; refused if all > {100 * limit:g} pt)"
    if isinstance(drop, (int, float)):
        txt += f" drop {drop:+.4f}" + (f" (≤ {limit:g})" if isinstance(limit, (int, float)) else "")
    return txt


def _parity_text(v: dict) -> str:
    if not v:
        return "not verified"
    mark = "✓" if v.get("passed") else "✗"
    bits = []
    if isinstance(v.get("max_abs_diff"), (int, float)):
        bits.append(f"max|Δ| {v['max_abs_diff']:.1e}")
    if isinstance(v.get("agreement"), (int, float)):
        bits.append(f"agree {v['agreement']:.1%}")
    if isinstance(v.get("summary"), str):
        bits.append(v["summary"])
    elif isinstance(v.get("numeric_parity"), str):
        bits.append("spec only (" + v["numeric_parity"].replace("skipped: ", "") + ")")
    if not v.get("passed") and v.get("reason"):
        bits.append(str(v["reason"]))
    return f"{mark} " + ", ".join(bits)


def _headline(rows: list[dict]) -> str | None:
    teacher = next((r for r in rows if r["name"] == "teacher"), None)
    if teacher is None or not teacher.get("accuracy"):
        return None
    ranked = sorted((f for f in registry.every() if f.headline_rank is not None), key=lambda f: f.headline_rank)
    best = next(
        (r for f in ranked for r in rows if r["name"] == f"export: {f.name}" and r.get("accuracy")),
        None,
    )
    if best is None:
        return None
    parts = [
        f"{best['name'].split(': ')[1]} keeps {best['accuracy'] / teacher['accuracy']:.1%} of the teacher's accuracy"
    ]
    if teacher.get("size_bytes") and best.get("size_bytes"):
        parts.append(f"{teacher['size_bytes'] / best['size_bytes']:.1f}x smaller")
    if teacher.get("p50_ms") and best.get("p50_ms"):
        parts.append(f"{teacher['p50_ms'] / best['p50_ms']:.1f}x faster (p50)")
        if best.get("app_p50_ms"):
            parts.append(f"{teacher['p50_ms'] / best['app_p50_ms']:.1f}x in the app's {best['app_runtime']}")
    return ", ".join(parts)


# --------------------------------------------------------------------------- plots


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats: lower-or-equal x and higher-or-equal y, one strictly."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


SCATTERS = (
    ("accuracy_vs_latency", "p50_ms", "p50 latency (ms)", 1.0),
    ("accuracy_vs_size", "size_bytes", "size on disk (MB)", 1e-6),
)


def _plots(data: dict, folder: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, Path] = {}
    rows = [r for r in data["rows"] if isinstance(r.get("accuracy"), (int, float))]
    for key, xkey, xlabel, scale in SCATTERS:
        pts = [(r[xkey] * scale, r["accuracy"], r["name"]) for r in rows if isinstance(r.get(xkey), (int, float))]
        if pts:
            if not key.endswith("size"):
                xlabel += f" — seq {data['seq_len']}, {data['threads']} thread(s)"
            out[key] = _save(plt, _scatter(plt, pts, key, xlabel), folder / f"{key}.png")
    logs = report_curves.stage_logs(Path(data["run_dir"]))
    if logs:  # per-step curves, the epochs' evaluations on top
        out["step_curves"] = _save(plt, report_curves.figure(plt, logs), folder / "step_curves.png")
    if data["curves"] and set(data["curves"]) - set(logs):  # per epoch, for stages without a step log
        curves = {k: v for k, v in data["curves"].items() if k not in logs}
        out["training_curves"] = _save(plt, _curves(plt, curves), folder / "training_curves.png")
    return out


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _scatter(plt, pts: list[tuple[float, float, str]], key: str, xlabel: str):
    """Accuracy against x, the Pareto front in red."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    front = set(pareto_front([(x, y) for x, y, _ in pts]))
    for i, (x, y, name) in enumerate(pts):
        on_front = i in front
        ax.scatter(
            [x],
            [y],
            s=60 if on_front else 35,
            marker="o" if on_front else "x",
            color="tab:red" if on_front else "tab:gray",
            zorder=3,
        )
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4 + 9 * (i % 3)), fontsize=8)
    fpts = sorted((pts[i][0], pts[i][1]) for i in front)
    if len(fpts) > 1:
        xs, ys = [p[0] for p in fpts], [p[1] for p in fpts]
        ax.step(xs, ys, where="post", color="tab:red", alpha=0.6, label="Pareto front")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy")
    ax.set_title(key.replace("_", " "))
    ax.grid(alpha=0.3)
    return fig


def _curves(plt, curves: dict[str, list[dict]]):
    """Training loss and validation metrics per epoch, one line per trained model."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
    for name, hist in curves.items():
        ep = [h.get("epoch", i + 1) for i, h in enumerate(hist)]
        if any("train_loss" in h for h in hist):
            a1.plot(ep, [h.get("train_loss") for h in hist], marker="o", label=name)
        for k in ("val_accuracy", "val_macro_f1"):
            if any(k in h for h in hist):
                a2.plot(ep, [h.get(k) for h in hist], marker="o", label=f"{name} {k[4:]}")
    a1.set_title("training loss")
    a2.set_title("validation")
    for a in (a1, a2):
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8)
    return fig


# --------------------------------------------------------------------------- rendering


def fmt_value(v: Any, kind: str) -> str:
    """A table cell: accuracy, parameter count, megabytes or milliseconds as the report prints them."""
    if v is None or (isinstance(v, float) and v != v):
        return "—"
    if kind == "acc":
        return f"{v:.4f}"
    if kind == "params":
        return f"{v / 1e6:.2f}M"
    if kind == "mb":
        return f"{v / 1e6:.1f} MB"
    if kind == "ms":
        return f"{v:.2f}"
    return str(v)


COLUMNS = (
    ("model", "name", ""),
    ("kind", "kind", ""),
    ("test accuracy", "accuracy", "acc"),
    ("macro-F1", "macro_f1", "acc"),
    ("params", "params", "params"),
    ("size", "size_bytes", "mb"),
    ("p50 ms", "p50_ms", "ms"),
    ("p90 ms", "p90_ms", "ms"),
    ("parity", "parity", ""),
)


def _table_cells(data: dict) -> list[list[str]]:
    return [[fmt_value(r.get(k), kind) if kind else (r.get(k) or "") for _, k, kind in COLUMNS] for r in data["rows"]]


def render_markdown(data: dict, title: str, plots: dict[str, Path]) -> str:
    lines = [f"# {title}", ""]
    if data["headline"]:
        lines += [f"**{data['headline']}**", ""]
    lines += [_latency_line(data), "", "| " + " | ".join(c for c, _, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in _table_cells(data)]
    if not data["rows"]:
        lines.append("| (no stage outputs found) |" + " |" * (len(COLUMNS) - 1))
    lines.append("")
    for n in data["notes"]:
        lines.append(f"- {n}")
    if data["notes"]:
        lines.append("")
    for key, title_ in PLOTS:
        if key in plots:
            lines += [f"## {title_}", "", f"![{title_}]({FILES}/{plots[key].name})", ""]
    lines += report_curves.summary_markdown(data.get("training_logs") or {})
    if data["packages"]:
        lines += ["## Packages", ""]
        for p in data["packages"]:
            lines.append(
                f"- {p['target']}: {p['folder']} ({fmt_value(p['size_bytes'], 'mb')})"
                + (f", zip {fmt_value(p['zip_bytes'], 'mb')}" if p["zip"] else "")
            )
        lines.append("")
    if data["stages"]:
        lines += ["## Stages", "", "| step | status | seconds |", "|---|---|---:|"]
        lines += [
            f"| {s['step']} | {s['status']} | {s['seconds'] if s['seconds'] is not None else '—'} |"
            for s in data["stages"]
        ]
        lines.append("")
    lines += minutes_per_stage_lines(Path(data["run_dir"]))  # where the run's minutes went (stage_minutes.py)
    lines.append(f"_Written by mbk report on {time.strftime('%Y-%m-%d %H:%M:%S')} from {data['run_dir']}._")
    return "\n".join(lines) + "\n"


PLOTS = (
    ("step_curves", "Training curves (per step)"),
    ("training_curves", "Training curves"),
    ("accuracy_vs_latency", "Accuracy vs latency"),
    ("accuracy_vs_size", "Accuracy vs size"),
)
STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    "td:first-child,td:nth-child(2),td:last-child,th{text-align:left}th{background:#f3f3f3}"
    "img{max-width:100%;border:1px solid #eee}"
)


def _latency_line(data: dict) -> str:
    if not data["seq_len"]:
        return "Latency: no bench results in this run."
    return f"Latency: bench, batch {data['batch']}, sequence {data['seq_len']}, {data['threads']} thread(s)."


def render_html(data: dict, title: str, plots: dict[str, Path]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c, _, _ in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in _table_cells(data))
    if not data["rows"]:
        body = f"<tr><td colspan='{len(COLUMNS)}'>(no stage outputs found)</td></tr>"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    if data["headline"]:
        parts.append(f"<p><strong>{e(data['headline'])}</strong></p>")
    parts.append(f"<p>{e(_latency_line(data))}</p>")
    parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    if data["notes"]:
        parts.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in data["notes"]) + "</ul>")
    parts += _html_plots(plots) + report_curves.summary_html(data.get("training_logs") or {})
    parts += _html_packages_and_stages(data)
    parts.append(
        f"<p><em>Written by mbk report on {time.strftime('%Y-%m-%d %H:%M:%S')} from {e(data['run_dir'])}.</em></p>"
    )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _html_plots(plots: dict[str, Path]) -> list[str]:
    parts = []
    for key, title_ in PLOTS:
        if key in plots:
            b64 = base64.b64encode(plots[key].read_bytes()).decode("ascii")
            parts.append(f"<h2>{title_}</h2><img alt='{title_}' src='data:image/png;base64,{b64}'>")
    return parts


def _html_packages_and_stages(data: dict) -> list[str]:
    e = html.escape
    parts = []
    if data["packages"]:
        items = "".join(
            f"<li>{e(p['target'])}: {e(p['folder'])} ({fmt_value(p['size_bytes'], 'mb')})</li>"
            for p in data["packages"]
        )
        parts.append(f"<h2>Packages</h2><ul>{items}</ul>")
    if data["stages"]:
        rows = "".join(
            f"<tr><td>{e(s['step'])}</td><td>{e(str(s['status']))}</td>"
            f"<td>{s['seconds'] if s['seconds'] is not None else '—'}</td></tr>"
            for s in data["stages"]
        )
        parts.append(f"<h2>Stages</h2><table><tr><th>step</th><th>status</th><th>seconds</th></tr>{rows}</table>")
    return parts


def _is_run_folder(run_dir: Path) -> bool:
    """A recipe's run folder: its reuse state, or a stage's output folder (teacher/, student/, export/ ...)."""
    from mobilebert_kit.stages.base import STAGES

    subdirs = {s.subdir for s in STAGES.values() if s.subdir}
    return (run_dir / ".state").is_dir() or any((run_dir / d).is_dir() for d in subdirs)


def run(config: ReportConfig, ctx: RunContext | None = None) -> StageResult:
    """Write ``report.md``, ``report.html`` and ``report_files/`` into the run folder (the result's output is the HTML)."""
    log = (ctx or RunContext()).log
    run_dir = Path(config.run_dir)
    if not config.run_dir or not run_dir.is_dir():
        raise ArtifactError(f"{not_a_folder(run_dir, 'run folder')}; run `mbk run RECIPE` first or pass the run folder")
    if not _is_run_folder(run_dir):
        raise ArtifactError(
            f"{run_dir} is not an mbk run folder (no .state/ and no stage output folder in it); "
            "pass the run folder of a recipe, e.g. artifacts/runs/default"
        )
    data = collect(run_dir, config)
    title = config.title or f"mobilebert_kit run: {run_dir.resolve().name}"
    # The plots first, the pages last, so a page never points at missing plots.
    with staged_output(run_dir / FILES, overwrite=True, owned=True) as files:
        plots = _plots(data, files)
        md = render_markdown(data, title, plots)
        page = render_html(data, title, plots)
    write_text(run_dir / MD, md)
    write_text(run_dir / HTML, page)
    log(f"report: {len(data['rows'])} model rows, {len(plots)} plots")
    out = run_dir / HTML
    line = f"report written to {out} and {out.with_name(MD)}" + (f": {data['headline']}" if data["headline"] else "")
    return StageResult(out, data, [line])


def _export_params(meta: dict, rows: list[dict]) -> int | None:
    """An export has the parameters of the model it was exported from (a row of this table when it is one)."""
    src = _get(meta, "source_model", "path")
    return next((r["params"] for r in rows if src and _same(src, Path(r["folder"]))), None)
