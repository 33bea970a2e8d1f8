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
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobilebert_kit.config import StageConfig, check_range
from mobilebert_kit.errors import ArtifactError
from mobilebert_kit.stage import RunContext, StageResult

HTML = "report.html"
MD = "report.md"
FILES = "report_files"
EXPORT_FORMATS = ("onnx", "ort", "torchscript", "coreml")


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
    m = _read(folder / "metrics.json")
    for keys in (("parameters",), ("params",)):
        v = _get(m, *keys)
        if isinstance(v, int):
            return v
    return None


def collect(run_dir: Path, cfg: ReportConfig) -> dict:
    """Everything the report shows, as plain data (also handy for tests and --json)."""
    seq, case = _pick_case(_bench_rows(run_dir), cfg)
    rows: list[dict] = []
    curves: dict[str, list[dict]] = {}
    notes: list[str] = []

    for name, sub, kind in (("teacher", "teacher", "PyTorch fp32"), ("student", "student", "PyTorch fp32")):
        folder = run_dir / sub
        m = _read(folder / "metrics.json")
        if m is None:
            continue
        lat = _latency(case, path=folder)
        rows.append(
            {
                "name": name,
                "kind": kind,
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

    comp_dir = run_dir / "compressed"
    cm = _read(comp_dir / "metrics.json")
    if cm is not None:
        steps = cm.get("steps") or []
        params = next(
            (s.get("params") for s in reversed(steps) if isinstance(s.get("params"), int)), _get(cm, "input", "params")
        )
        final = cm.get("final") or {}
        size = _get(cm, "size_on_disk", "onnx_bytes") or _get(cm, "size_on_disk", "output_model_bytes")
        comp_json = _read(comp_dir / "compression.json") or {}
        kind = "ONNX int8" if comp_json.get("int8") else "pruned fp32"
        lat = _latency(case, path=comp_dir)
        rows.append(
            {
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
        )
        if lat is not None and lat.get("runtime") == "pytorch":  # bench timed the fp32 weights, not the int8 graph
            rows[-1]["p50_ms"] = rows[-1]["p90_ms"] = None
            notes.append(
                f"bench timed the compressed model's PyTorch fp32 weights (the export source): p50 {lat['p50_ms']:.2f} ms, "
                f"p90 {lat['p90_ms']:.2f} ms"
            )

    export_dir = run_dir / "export"
    ver = _read(export_dir / "verify.json") or {}
    manifest = _read(export_dir / "manifest.json") or {}
    for fmt in EXPORT_FORMATS:
        meta = _read(export_dir / fmt / "model_meta.json")
        if meta is None:
            continue
        v = _get(ver, "formats", fmt) or {}
        label = f"{fmt}{' int8' if meta.get('int8') else ' fp32'}"
        lat = _latency(case, model=label) or _latency(case, path=export_dir / fmt / str(meta.get("model_file", "")))
        rows.append(
            {
                "name": f"export: {fmt}",
                "kind": "int8" if meta.get("int8") else "fp32",
                "accuracy": v.get("accuracy"),
                "macro_f1": v.get("macro_f1"),
                "params": _export_params(meta, rows),
                "size_bytes": meta.get("size_bytes") or _get(manifest, "formats", fmt, "size_bytes"),
                "p50_ms": _get(lat, "p50_ms"),
                "p90_ms": _get(lat, "p90_ms"),
                "parity": _parity_text(v),
                "folder": str(export_dir / fmt),
            }
        )

    # PyTorch reference timing of the exported source (bench's "pytorch fp32 (source)"), when nothing else matched it.
    src = _latency(case, model="pytorch fp32 (source)")
    if src is not None and not any(_same(src.get("path"), Path(r["folder"])) for r in rows):
        notes.append(f"bench timed the exported source model in PyTorch fp32: p50 {src['p50_ms']:.2f} ms")

    packages = []
    pkg_root = run_dir / "package"
    if pkg_root.is_dir():
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

    stages = []
    state_dir = run_dir / ".state"
    if state_dir.is_dir():
        for f in sorted(state_dir.glob("*.json"), key=lambda p: p.stat().st_mtime):
            s = _read(f) or {}
            if f.stem == "report":
                continue
            stages.append(
                {"step": f.stem, "status": s.get("status"), "seconds": s.get("seconds"), "finished": s.get("finished")}
            )

    return {
        "run_dir": str(run_dir),
        "seq_len": seq,
        "threads": cfg.threads,
        "batch": cfg.batch,
        "rows": rows,
        "curves": curves,
        "packages": packages,
        "stages": stages,
        "notes": notes,
        "verify_passed": ver.get("passed") if ver else None,
        "headline": _headline(rows),
    }


def _guard_text(guard: Any) -> str:
    if not isinstance(guard, dict):
        return ""
    ok = guard.get("passed")
    drop = guard.get("drop")
    limit = guard.get("max_drop")
    txt = "guard ✓" if ok else "guard ✗" if ok is False else "guard"
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
    if isinstance(v.get("numeric_parity"), str):
        bits.append("spec only (" + v["numeric_parity"].replace("skipped: ", "") + ")")
    if not v.get("passed") and v.get("reason"):
        bits.append(str(v["reason"]))
    return f"{mark} " + ", ".join(bits)


def _headline(rows: list[dict]) -> str | None:
    teacher = next((r for r in rows if r["name"] == "teacher"), None)
    if teacher is None or not teacher.get("accuracy"):
        return None
    best = next(
        (r for name in ("export: ort", "export: onnx") for r in rows if r["name"] == name and r.get("accuracy")), None
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


def _plots(data: dict, folder: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, Path] = {}
    rows = [r for r in data["rows"] if isinstance(r.get("accuracy"), (int, float))]
    for key, xkey, xlabel, scale in (
        ("accuracy_vs_latency", "p50_ms", "p50 latency (ms)", 1.0),
        ("accuracy_vs_size", "size_bytes", "size on disk (MB)", 1e-6),
    ):
        pts = [(r[xkey] * scale, r["accuracy"], r["name"]) for r in rows if isinstance(r.get(xkey), (int, float))]
        if not pts:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
        front = set(pareto_front([(x, y) for x, y, _ in pts]))
        for i, (x, y, name) in enumerate(pts):
            ax.scatter(
                [x],
                [y],
                s=60 if i in front else 35,
                marker="o" if i in front else "x",
                color="tab:red" if i in front else "tab:gray",
                zorder=3,
            )
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4 + 9 * (i % 3)), fontsize=8)
        fpts = sorted((pts[i][0], pts[i][1]) for i in front)
        if len(fpts) > 1:
            ax.step(
                [p[0] for p in fpts],
                [p[1] for p in fpts],
                where="post",
                color="tab:red",
                alpha=0.6,
                label="Pareto front",
            )
            ax.legend(loc="lower right", fontsize=8)
        ax.set_xlabel(
            xlabel + ("" if key.endswith("size") else f" — seq {data['seq_len']}, {data['threads']} thread(s)")
        )
        ax.set_ylabel("test accuracy")
        ax.set_title(key.replace("_", " "))
        ax.grid(alpha=0.3)
        fig.tight_layout()
        out[key] = folder / f"{key}.png"
        fig.savefig(out[key])
        plt.close(fig)
    if data["curves"]:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
        for name, hist in data["curves"].items():
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
        fig.tight_layout()
        out["training_curves"] = folder / "training_curves.png"
        fig.savefig(out["training_curves"])
        plt.close(fig)
    return out


# --------------------------------------------------------------------------- rendering


def _fmt(v: Any, kind: str) -> str:
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
    return [[_fmt(r.get(k), kind) if kind else (r.get(k) or "") for _, k, kind in COLUMNS] for r in data["rows"]]


def render_markdown(data: dict, title: str, plots: dict[str, Path]) -> str:
    lines = [f"# {title}", ""]
    if data["headline"]:
        lines += [f"**{data['headline']}**", ""]
    lat = (
        f"Latency: bench, batch {data['batch']}, sequence {data['seq_len']}, {data['threads']} thread(s)."
        if data["seq_len"]
        else "Latency: no bench results in this run."
    )
    lines += [lat, "", "| " + " | ".join(c for c, _, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in _table_cells(data)]
    if not data["rows"]:
        lines.append("| (no stage outputs found) |" + " |" * (len(COLUMNS) - 1))
    lines.append("")
    for n in data["notes"]:
        lines.append(f"- {n}")
    if data["notes"]:
        lines.append("")
    for key, title_ in (
        ("training_curves", "Training curves"),
        ("accuracy_vs_latency", "Accuracy vs latency"),
        ("accuracy_vs_size", "Accuracy vs size"),
    ):
        if key in plots:
            lines += [f"## {title_}", "", f"![{title_}]({FILES}/{plots[key].name})", ""]
    if data["packages"]:
        lines += ["## Packages", ""]
        for p in data["packages"]:
            lines.append(
                f"- {p['target']}: {p['folder']} ({_fmt(p['size_bytes'], 'mb')})"
                + (f", zip {_fmt(p['zip_bytes'], 'mb')}" if p["zip"] else "")
            )
        lines.append("")
    if data["stages"]:
        lines += ["## Stages", "", "| step | status | seconds |", "|---|---|---:|"]
        lines += [
            f"| {s['step']} | {s['status']} | {s['seconds'] if s['seconds'] is not None else '—'} |"
            for s in data["stages"]
        ]
        lines.append("")
    lines.append(f"_Written by mbk report on {time.strftime('%Y-%m-%d %H:%M:%S')} from {data['run_dir']}._")
    return "\n".join(lines) + "\n"


def render_html(data: dict, title: str, plots: dict[str, Path]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c, _, _ in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in _table_cells(data))
    if not data["rows"]:
        body = f"<tr><td colspan='{len(COLUMNS)}'>(no stage outputs found)</td></tr>"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "td:first-child,td:nth-child(2),td:last-child,th{text-align:left}th{background:#f3f3f3}"
        "img{max-width:100%;border:1px solid #eee}</style></head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    if data["headline"]:
        parts.append(f"<p><strong>{e(data['headline'])}</strong></p>")
    lat = (
        f"Latency: bench, batch {data['batch']}, sequence {data['seq_len']}, {data['threads']} thread(s)."
        if data["seq_len"]
        else "Latency: no bench results in this run."
    )
    parts.append(f"<p>{e(lat)}</p>")
    parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    if data["notes"]:
        parts.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in data["notes"]) + "</ul>")
    for key, title_ in (
        ("training_curves", "Training curves"),
        ("accuracy_vs_latency", "Accuracy vs latency"),
        ("accuracy_vs_size", "Accuracy vs size"),
    ):
        if key in plots:
            b64 = base64.b64encode(plots[key].read_bytes()).decode("ascii")
            parts.append(f"<h2>{title_}</h2><img alt='{title_}' src='data:image/png;base64,{b64}'>")
    if data["packages"]:
        parts.append(
            "<h2>Packages</h2><ul>"
            + "".join(
                f"<li>{e(p['target'])}: {e(p['folder'])} ({_fmt(p['size_bytes'], 'mb')})</li>" for p in data["packages"]
            )
            + "</ul>"
        )
    if data["stages"]:
        parts.append(
            "<h2>Stages</h2><table><tr><th>step</th><th>status</th><th>seconds</th></tr>"
            + "".join(
                f"<tr><td>{e(s['step'])}</td><td>{e(str(s['status']))}</td><td>{s['seconds'] if s['seconds'] is not None else '—'}</td></tr>"
                for s in data["stages"]
            )
            + "</table>"
        )
    parts.append(
        f"<p><em>Written by mbk report on {time.strftime('%Y-%m-%d %H:%M:%S')} from {e(data['run_dir'])}.</em></p>"
    )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def run(config: ReportConfig, ctx: RunContext | None = None) -> StageResult:
    """Write ``report.md``, ``report.html`` and ``report_files/`` into the run folder (the result's output is the HTML)."""
    log = (ctx or RunContext()).log
    run_dir = Path(config.run_dir)
    if not config.run_dir or not run_dir.is_dir():
        raise ArtifactError(f"run folder {run_dir} does not exist; run `mbk run RECIPE` first or pass the run folder")
    data = collect(run_dir, config)
    title = config.title or f"mobilebert_kit run: {run_dir.resolve().name}"
    tmp = Path(tempfile.mkdtemp(prefix=".report.tmp-", dir=run_dir))
    try:
        (tmp / FILES).mkdir()
        plots = _plots(data, tmp / FILES)
        (tmp / MD).write_text(render_markdown(data, title, plots), encoding="utf-8")
        (tmp / HTML).write_text(render_html(data, title, plots), encoding="utf-8")
        # Move into place: the plots first, the pages last, so a page never points at missing plots.
        old = run_dir / f".{FILES}.old-{os.getpid()}"
        if (run_dir / FILES).exists():
            os.replace(run_dir / FILES, old)
        os.replace(tmp / FILES, run_dir / FILES)
        shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp / MD, run_dir / MD)
        os.replace(tmp / HTML, run_dir / HTML)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"report: {len(data['rows'])} model rows, {len(plots)} plots")
    out = run_dir / HTML
    line = f"report written to {out} and {out.with_name(MD)}" + (f": {data['headline']}" if data["headline"] else "")
    return StageResult(out, data, [line])


def _export_params(meta: dict, rows: list[dict]) -> int | None:
    """An export has the parameters of the model it was exported from (a row of this table when it is one)."""
    src = _get(meta, "source_model", "path")
    return next((r["params"] for r in rows if src and _same(src, Path(r["folder"]))), None)
