"""Reuse by content hash: a step's fingerprint (resolved config + every input it reads), its state
file under ``<run_dir>/.state/``, and whether its output is still the one it wrote.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from mobilebert_kit.pipeline.steps import DATA_PATH_KEYS, Recipe, Step
from mobilebert_kit.stages.base import (
    STAGES,
)

STATE_DIR = ".state"


def config_dict(cfg: Any) -> dict:
    d = cfg.to_dict() if hasattr(cfg, "to_dict") else dataclasses.asdict(cfg)
    return d


def input_fingerprint(path: Path) -> str | None:
    """What a stage's input is, by content: its manifest.json when it has one, else the file or folder."""
    from mobilebert_kit.artifacts import MANIFEST, sha256_file, sha256_tree

    path = Path(path)
    if path.is_dir() and (path / MANIFEST).is_file():
        return sha256_file(path / MANIFEST)
    if path.exists():
        return sha256_tree(path, exclude=())
    return None


def _referenced_files(d: Any, skip: set[str]) -> dict[str, str]:
    """sha256 of user files named in a config (data files...), so editing one invalidates the stage."""
    from mobilebert_kit.artifacts import sha256_tree

    out: dict[str, str] = {}

    def walk(v: Any, key: str) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                if k not in skip:
                    walk(x, k)
        elif isinstance(v, list):
            for x in v:
                walk(x, key)
        elif isinstance(v, str) and key in DATA_PATH_KEYS and Path(v).expanduser().exists():
            out[v] = sha256_tree(Path(v).expanduser(), exclude=())

    walk(d, "")
    return out


def fingerprint(step: Step) -> str:
    spec = STAGES[step.stage]
    cfg = config_dict(step.config)
    from mobilebert_kit import __version__

    payload = {
        "mobilebert_kit": __version__,  # a new release may compute a stage differently
        "stage": step.stage,
        "config": cfg,
        "inputs": {k: input_fingerprint(p) for k, p in sorted(step.inputs.items())},
        "files": _referenced_files(cfg, skip={*spec.inputs, spec.output_key or ""}),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def output_fingerprint(step: Step) -> str | None:
    return input_fingerprint(step.output) if step.output is not None else None


def state_path(recipe: Recipe, step: Step) -> Path:
    return recipe.run_dir / STATE_DIR / f"{step.key}.json"


def read_state(recipe: Recipe, step: Step) -> dict:
    p = state_path(recipe, step)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def write_state(recipe: Recipe, step: Step, data: dict) -> None:
    from mobilebert_kit.artifacts import write_json

    p = state_path(recipe, step)
    p.parent.mkdir(parents=True, exist_ok=True)
    write_json(p, data)


def reuse_reason(recipe: Recipe, step: Step, fp: str) -> str | None:
    """None when the step can be reused, else why it must run."""
    if step.stage == "report":
        return "always rebuilt"
    st = read_state(recipe, step)
    if not st or st.get("status") != "done":
        return "not run yet" if not st else "did not finish last time"
    if st.get("fingerprint") != fp:
        changed = "config changed" if st.get("config") != config_dict(step.config) else "input changed"
        return changed
    if step.output is not None and not step.output.exists():
        return f"output {step.output} is missing"
    if st.get("output_fingerprint") != output_fingerprint(step):
        return f"output {step.output} was changed outside this run"
    damaged = _damaged_files(step.output)
    if damaged:
        return f"output {step.output} was changed outside this run ({damaged[0]} differs from its manifest)"
    return None


def _damaged_files(output: Path | None) -> list[str]:
    """Files of a reused output whose content no longer matches the sha256 its manifest recorded."""
    from mobilebert_kit.artifacts import MANIFEST, read_json, sha256_file

    if output is None or not (output / MANIFEST).is_file():
        return []
    files = read_json(output / MANIFEST).get("files") or {}
    return [
        name for name, digest in files.items() if not (output / name).is_file() or sha256_file(output / name) != digest
    ]
