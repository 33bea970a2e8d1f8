"""Planning and running a recipe: which steps run, are reused or skipped; each step through the
stage contract with its RunContext; state recorded before and after so an interrupted run continues.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mobilebert_kit.config import did_you_mean
from mobilebert_kit.errors import ArtifactError, ConfigError
from mobilebert_kit.locking import hold_output
from mobilebert_kit.pipeline.reuse import (
    config_dict,
    fingerprint,
    output_fingerprint,
    read_state,
    reuse_reason,
    write_state,
)
from mobilebert_kit.pipeline.steps import Recipe, Step
from mobilebert_kit.stages.base import (
    STAGES,
    RunContext,
    stage_module,
)


@dataclass
class PlanItem:
    step: Step
    action: str  # run | reuse | skip
    reason: str


def select(recipe: Recipe, start: str | None = None, until: str | None = None) -> list[Step]:
    """The steps between --from and --until (stage names; inclusive)."""
    names = [s.stage for s in recipe.steps]
    for flag, v in (("--from", start), ("--until", until)):
        if v is not None and v not in names:
            hint = did_you_mean(v, names) or did_you_mean(v, STAGES)
            known = f"stages of this recipe: {', '.join(dict.fromkeys(names))}"
            if v in STAGES:
                raise ConfigError(f"{flag} {v}: stage '{v}' is not in this recipe's stages; {known}")
            raise ConfigError(f"{flag} {v}: unknown stage '{v}'{hint}; {known}")
    i0 = names.index(start) if start else 0
    i1 = len(names) - 1 - names[::-1].index(until) if until else len(names) - 1
    if i0 > i1:
        raise ConfigError(f"--from {start} comes after --until {until}; nothing to run")
    return recipe.steps[i0 : i1 + 1]


def plan(recipe: Recipe, start: str | None = None, until: str | None = None) -> list[PlanItem]:
    """What a run would do, without doing it. Raises ArtifactError when a selected stage's input
    is missing and no selected stage before it will produce it."""
    chosen = select(recipe, start, until)
    chosen_keys = {s.key for s in chosen}
    items: list[PlanItem] = []
    will_run: set[str] = set()
    for step in recipe.steps:
        if step.key not in chosen_keys:
            items.append(PlanItem(step, "skip", "outside --from/--until"))
            continue
        for name, path in step.inputs.items():
            prod = step.producers.get(name)
            produced_now = prod is not None and any(k == prod or k.startswith(prod + "-") for k in will_run)
            if not produced_now and not Path(path).exists():
                fld = name.split(":", 1)[-1]
                if prod is not None:
                    raise ArtifactError(
                        f"stage '{step.stage}' needs {path}, which does not exist: stage '{prod}' is not "
                        f"part of this run (--from/--until); run it first (e.g. --from {prod})"
                    )
                raise ArtifactError(
                    f"stage '{step.stage}' needs {path} ({step.stage}.{fld}), which does not exist; "
                    "check the path or add the stage that produces it"
                )
        upstream_runs = [p for p in step.producers.values() if any(k == p or k.startswith(p + "-") for k in will_run)]
        if upstream_runs:
            items.append(PlanItem(step, "run", f"after {', '.join(dict.fromkeys(upstream_runs))} re-runs"))
            will_run.add(step.key)
            continue
        reason = reuse_reason(recipe, step, fingerprint(step))
        if reason is None:
            items.append(PlanItem(step, "reuse", "unchanged"))
        else:
            items.append(PlanItem(step, "run", reason))
            will_run.add(step.key)
    return items


def _owned(recipe: Recipe, step: Step) -> bool:
    """True when mbk run may replace the step's output: it is inside the run folder, or this run wrote it."""
    if step.output is None or _is_under(step.output, recipe.run_dir):
        return True
    return read_state(recipe, step).get("output") == str(step.output)


def run_step(recipe: Recipe, step: Step, ctx: RunContext):
    """Run one step through the stage contract; ``ctx.overwrite``: it may replace its output."""
    try:
        return stage_module(step.stage).run(step.config, ctx)
    except ArtifactError as e:
        raise ArtifactError(_recipe_fix(str(e), recipe, step)) from e
    except ConfigError as e:
        raise ConfigError([_recipe_fix(p, recipe, step) for p in e.problems]) from e


_OUTPUT_FLAG_FIX = re.compile(r"choose (?:another|a new) --output")


def _recipe_fix(message: str, recipe: Recipe, step: Step) -> str:
    """A stage names ``--output`` as the fix for an occupied output; ``mbk run`` has no such option:
    the output is the run folder's, unless the recipe set the stage's output key."""
    where = "run_dir"
    if step.output is not None and not _is_under(step.output, recipe.run_dir):
        where = f"{step.stage}.{STAGES[step.stage].output_key or 'output'}"
    return _OUTPUT_FLAG_FIX.sub(f"choose another {where}", message)


def _is_under(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _can_resume(recipe: Recipe, step: Step, fp: str) -> bool:
    """A training stage interrupted last time with the same fingerprint left checkpoints to continue from."""
    st = read_state(recipe, step)
    if st.get("status") != "running" or st.get("fingerprint") != fp or step.output is None:
        return False
    if not STAGES[step.stage].resumable:
        return False
    from mobilebert_kit.training.checkpoint import checkpoints

    # a complete checkpoint, not just a folder: a write cut short (disk full, kill) leaves none to resume from
    return bool(checkpoints(step.output.with_name(step.output.name + ".ckpt")))


def plan_json(recipe: Recipe, items: list[PlanItem]) -> dict:
    rows = [
        {"step": it.step.key, "action": it.action, "reason": it.reason, "output": str(it.step.output or "") or None}
        for it in items
    ]
    return {"recipe": recipe.name, "run_dir": str(recipe.run_dir), "plan": rows}


def plan_lines(recipe: Recipe, items: list[PlanItem]) -> list[str]:
    width = max(len(it.step.label) for it in items)
    lines = [f"Plan for {recipe.name} (run folder {recipe.run_dir}):"]
    lines += [f"  {i}. {it.step.label:<{width}}  {it.action:<5}  {it.reason}" for i, it in enumerate(items, 1)]
    return lines


def run_summary(recipe: Recipe, records: list[dict]) -> str:
    ran = [x["step"] for x in records if x["action"] == "run"]
    reused = [x["step"] for x in records if x["action"] == "reuse"]
    report = recipe.run_dir / "report.html"
    tail = f"; report: {report}" if any(x["step"] == "report" and x["action"] == "run" for x in records) else ""
    return (
        f"{recipe.name}: ran {len(ran)} stage(s){' (' + ', '.join(ran) + ')' if ran else ''}, reused {len(reused)}"
        f"{' (' + ', '.join(reused) + ')' if reused else ''}; outputs in {recipe.run_dir}{tail}"
    )


def execute(
    recipe: Recipe,
    *,
    start: str | None = None,
    until: str | None = None,
    quiet: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """Run the recipe; returns one record per step (key, action, reason, seconds, output)."""
    log = log or (lambda m: None)
    items = plan(recipe, start, until)  # fails before any work when an input is missing
    records: list[dict] = []
    n = sum(1 for it in items if it.action != "skip")
    recipe.run_dir.mkdir(parents=True, exist_ok=True)
    i = 0
    with hold_output(recipe.run_dir):  # one `mbk run` per run folder: its .state/ and every stage output
        for it in items:
            if it.action == "skip":
                records.append({"step": it.step.key, "action": "skip", "reason": it.reason})
                continue
            i += 1
            records.append(_execute_step(recipe, it.step, f"[{i}/{n}] {it.step.label}", quiet, overwrite, log))
    return records


def _execute_step(recipe: Recipe, step: Step, label: str, quiet: bool, overwrite: bool, log) -> dict:
    """Reuse the step when unchanged, else run it, recording its state before and after."""
    fp = fingerprint(step)
    reason = reuse_reason(recipe, step, fp)
    if reason is None:
        log(f"{label}: reused (unchanged) -> {step.output}")
        return {"step": step.key, "action": "reuse", "reason": "unchanged", "output": str(step.output)}
    resume = _can_resume(recipe, step, fp)
    log(f"{label}: running ({'resuming from its last checkpoint' if resume else reason}) ...")
    may_replace = overwrite or _owned(recipe, step)  # decided before this run claims the output
    state = {"fingerprint": fp, "config": config_dict(step.config), "output": str(step.output or "") or None}
    write_state(recipe, step, {"status": "running", **state, "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
    t0 = time.perf_counter()
    prefix = f"  {step.label}: "
    ctx = RunContext(overwrite=may_replace, resume=resume, quiet=quiet, log=lambda m: log(prefix + m))
    run_step(recipe, step, ctx)
    secs = time.perf_counter() - t0
    done = {"output_fingerprint": output_fingerprint(step), "seconds": round(secs, 2)}
    write_state(recipe, step, {"status": "done", **state, **done, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
    log(f"{label}: done in {secs:.1f} s -> {step.output}")
    return {"step": step.key, "action": "run", "reason": reason, "seconds": round(secs, 2), "output": str(step.output)}
