"""Per-step training curves for ``mbk report``: each training stage's ``train_log.jsonl`` (written by the
engine, :mod:`mobilebert_kit.training.metrics_log`) drawn as loss and loss terms, learning rate and
gradient norm, with the end-of-epoch evaluations on top and phases (compress's recovery, distillation
on a transfer set) shaded and named.

Long runs stay legible: a curve is bucketed to at most :data:`MAX_POINTS` points (the bucket mean as the
line, its min-max as a light band, so a spike still shows). Many runs share one axis per stage, one
colour each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mobilebert_kit.artifacts import TRAIN_LOG
from mobilebert_kit.training.metrics_log import read_log

MAX_POINTS = 300
TRAINING_STAGES = ("teacher", "student", "compressed")  # run-folder subfolders whose stages train
PHASE_COLOURS = {"recovery": "tab:orange", "transfer set": "tab:green"}


def stage_logs(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """``{stage folder: its log lines}`` for the training stages of a run that left a log."""
    out = {}
    for name in TRAINING_STAGES:
        lines = read_log(Path(run_dir) / name / TRAIN_LOG)
        if lines:
            out[name] = lines
    return out


def summary(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """What a stage's log holds, in a few numbers (the report's JSON and tables)."""
    steps = [r for r in lines if r.get("kind") == "step"]
    evals = [r for r in lines if r.get("kind") == "eval"]
    terms = sorted({k for r in steps for k in r if k.startswith("loss_")})
    last = steps[-1] if steps else {}
    return {
        "logged_steps": len(steps),
        "last_step": last.get("step"),
        "final_loss": last.get("loss"),
        "loss_terms": [t.removeprefix("loss_") for t in terms],
        "eval_points": len(evals),
        "phases": sorted({r["phase"] for r in lines if r.get("phase")}),
        "mean_examples_per_second": _mean([r.get("examples_per_second") for r in steps]),
    }


def _mean(values: list) -> float | None:
    nums = [v for v in values if isinstance(v, (int, float))]
    return sum(nums) / len(nums) if nums else None


def downsample(xs: list[float], ys: list[float], max_points: int = MAX_POINTS) -> tuple[list, list, list, list]:
    """(x, mean y, min y, max y) per bucket of consecutive points; unchanged (min = max = y) when short."""
    pts = [(x, y) for x, y in zip(xs, ys) if isinstance(y, (int, float)) and y == y]
    if len(pts) <= max_points:
        return [p[0] for p in pts], [p[1] for p in pts], [p[1] for p in pts], [p[1] for p in pts]
    size = -(-len(pts) // max_points)
    bx, bm, blo, bhi = [], [], [], []
    for i in range(0, len(pts), size):
        chunk = pts[i : i + size]
        vals = [p[1] for p in chunk]
        bx.append(sum(p[0] for p in chunk) / len(chunk))
        bm.append(sum(vals) / len(vals))
        blo.append(min(vals))
        bhi.append(max(vals))
    return bx, bm, blo, bhi


def _series(lines: list[dict], key: str, kind: str = "step") -> tuple[list, list]:
    rows = [r for r in lines if r.get("kind") == kind and isinstance(r.get(key), (int, float))]
    return [r["step"] for r in rows], [r[key] for r in rows]


def _line(ax, lines: list[dict], key: str, band: float = 0.15, **style) -> bool:
    xs, ys = _series(lines, key)
    x, mean, lo, hi = downsample(xs, ys)
    if not x:
        return False
    ax.plot(x, mean, linewidth=1.1, **style)
    if lo != hi:
        ax.fill_between(x, lo, hi, alpha=band, color=ax.lines[-1].get_color(), linewidth=0)
    return True


def phase_spans(lines: list[dict]) -> list[tuple[str, float, float]]:
    """(phase, first step, last step) of each run of consecutive lines with the same ``phase``."""
    spans: list[list] = []
    for r in lines:
        phase, step = r.get("phase"), r.get("step")
        if not phase or not isinstance(step, (int, float)):
            continue
        if spans and spans[-1][0] == phase and step >= spans[-1][2]:
            spans[-1][2] = step
        else:
            spans.append([phase, step, step])
    return [tuple(s) for s in spans]


def _shade_phases(ax, lines: list[dict]) -> None:
    for phase, a, b in phase_spans(lines):
        colour = PHASE_COLOURS.get(phase, "tab:purple")
        ax.axvspan(a, max(b, a + 0.5), color=colour, alpha=0.08, linewidth=0)
        ax.text(a, 1.0, f" {phase}", transform=ax.get_xaxis_transform(), va="top", fontsize=7, color=colour)


def _eval_points(ax, lines: list[dict], colour: str | None = None, label_prefix: str = "") -> None:
    """End-of-epoch validation accuracy / macro-F1 as markers on a right-hand axis of ``ax``."""
    keys = [k for k in ("val_accuracy", "val_macro_f1") if _series(lines, k, "eval")[0]]
    if not keys:
        return
    twin = ax.twinx()
    for key, marker in zip(keys, ("o", "s")):
        xs, ys = _series(lines, key, "eval")
        twin.plot(xs, ys, marker=marker, linestyle=":", markersize=5, color=colour or "black", linewidth=0.8,
                  label=f"{label_prefix}{key[4:]}")  # fmt: skip
    twin.set_ylabel("validation", fontsize=8)
    twin.tick_params(labelsize=7)
    twin.legend(loc="lower right", fontsize=7)


def draw_stage(axes, lines: list[dict], title: str) -> None:
    """One stage of one run: loss + terms with eval points (left), learning rate + gradient norm (right)."""
    a_loss, a_lr = axes
    _line(a_loss, lines, "loss", label="loss", color="black")
    for key in sorted({k for r in lines for k in r if k.startswith("loss_")}):
        _line(a_loss, lines, key, label=key.removeprefix("loss_"))
    _shade_phases(a_loss, lines)
    _eval_points(a_loss, lines)
    if _line(a_lr, lines, "lr", label="learning rate", color="tab:blue"):
        a_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    twin = a_lr.twinx()
    if _line(twin, lines, "grad_norm", band=0.06, label="grad norm", color="tab:red"):
        twin.set_ylabel("grad norm", fontsize=8, color="tab:red")
        twin.tick_params(labelsize=7)
    _shade_phases(a_lr, lines)
    a_loss.set_title(f"{title}: loss", fontsize=9)
    a_lr.set_title(f"{title}: learning rate (blue), grad norm (red)", fontsize=9)
    _finish(axes)


def _finish(axes) -> None:
    for a in axes:
        a.set_xlabel("optimizer step", fontsize=8)
        a.tick_params(labelsize=7)
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend(loc="upper center", fontsize=7, ncol=4)


def figure(plt, logs: dict[str, list[dict]]):
    """One row per stage of one run."""
    fig, axes = plt.subplots(len(logs), 2, figsize=(10, 3.1 * len(logs)), dpi=100, squeeze=False)
    for row, (name, lines) in zip(axes, logs.items()):
        draw_stage(row, lines, name)
    return fig


def compare_figure(plt, runs: dict[str, dict[str, list[dict]]]):
    """One row per training stage, every run's loss (left, validation accuracy as dots) and learning rate
    (right) on the same axes, one colour per run."""
    stages = [s for s in TRAINING_STAGES if any(s in logs for logs in runs.values())]
    fig, axes = plt.subplots(len(stages), 2, figsize=(10, 3.1 * len(stages)), dpi=100, squeeze=False)
    colours = plt.get_cmap("tab10" if len(runs) <= 10 else "tab20").colors
    for row, stage in zip(axes, stages):
        twin = None
        for i, (run, logs) in enumerate(runs.items()):
            lines = logs.get(stage)
            if not lines:
                continue
            c = colours[i % len(colours)]
            _line(row[0], lines, "loss", label=run, color=c)
            _line(row[1], lines, "lr", label=run, color=c)
            xs, ys = _series(lines, "val_accuracy", "eval")
            if xs:
                twin = twin or row[0].twinx()
                twin.plot(xs, ys, marker="o", linestyle=":", color=c, markersize=5, linewidth=0.8)
        if twin is not None:
            twin.set_ylabel("validation accuracy (dots)", fontsize=8)
            twin.tick_params(labelsize=7)
        row[0].set_title(f"{stage}: loss", fontsize=9)
        row[1].set_title(f"{stage}: learning rate", fontsize=9)
        _finish(row)
        if len(runs) > 6:  # many runs: one legend (same colours) beside the right plot, not over the curves
            row[0].get_legend().remove()
            row[1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=6)
    return fig


SUMMARY_COLUMNS = (
    ("stage", None),
    ("logged steps", "logged_steps"),
    ("last step", "last_step"),
    ("final loss", "final_loss"),
    ("loss terms", "loss_terms"),
    ("eval points", "eval_points"),
    ("phases", "phases"),
    ("mean ex/s", "mean_examples_per_second"),
)


def summary_cells(summaries: dict[str, dict]) -> list[list[str]]:
    rows = []
    for stage, s in summaries.items():
        cells = [stage]
        for _, key in SUMMARY_COLUMNS[1:]:
            v = s.get(key)
            if isinstance(v, list):
                cells.append(", ".join(v) or "—")
            elif isinstance(v, float):
                cells.append(f"{v:.4g}")
            else:
                cells.append("—" if v is None else str(v))
        rows.append(cells)
    return rows


def summary_markdown(summaries: dict[str, dict]) -> list[str]:
    if not summaries:
        return []
    head = "| " + " | ".join(c for c, _ in SUMMARY_COLUMNS) + " |"
    lines = ["## Training logs", "", head, "|" + "---|" * len(SUMMARY_COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in summary_cells(summaries)]
    return [*lines, "", f"Per-step lines: `<stage>/{TRAIN_LOG}`; TensorBoard: `tensorboard --logdir <run folder>`.", ""]


def summary_html(summaries: dict[str, dict]) -> list[str]:
    import html

    if not summaries:
        return []
    head = "".join(f"<th>{html.escape(c)}</th>" for c, _ in SUMMARY_COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in summary_cells(summaries)
    )
    return [f"<h2>Training logs</h2><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"]
