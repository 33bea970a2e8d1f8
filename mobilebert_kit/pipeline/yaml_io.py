"""Recipe YAML read safely: ``yaml.safe_load`` semantics, duplicate keys refused, non-UTF-8 refused;
dotted ``key=value`` overrides applied to the parsed mapping.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from mobilebert_kit.bounded_input import (  # noqa: F401  (the recipes' loader; re-exported)
    DuplicateKeyError,
    UniqueKeyLoader,
    check_override,
    check_yaml_text,
    read_yaml,
)
from mobilebert_kit.config import did_you_mean
from mobilebert_kit.errors import ConfigError
from mobilebert_kit.pipeline.steps import TOP_LEVEL_KEYS
from mobilebert_kit.stages.base import (
    STAGES,
)


def load_yaml(path: str | os.PathLike) -> dict:
    """Read a recipe file into a dict (ConfigError when missing, unreadable or not a mapping)."""
    path = Path(path)
    if not path.is_file():
        hint = "check the path (the shipped recipes are in recipes/, e.g. recipes/default.yaml)"
        raise ConfigError(f"recipe {path} does not exist; " + (hint if path.suffix else "pass a .yaml file"))
    raw = read_yaml(path, f"recipe {path}")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"recipe {path} must be a mapping of sections (stages:, data:, finetune:, ...), got {type(raw).__name__}"
        )
    return raw


def parse_value(text: str) -> Any:
    """A command-line override value, typed as YAML would type it (2 -> int, true -> bool, [a, b] -> list)."""
    try:
        if not text.strip():
            return ""
        check_yaml_text(text, "an override value")
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict, overrides: list[str] | tuple[str, ...]) -> list[str]:
    """Apply ``a.b.c=value`` overrides to ``raw`` in place; returns the problems found."""
    problems: list[str] = []
    for item in overrides:
        check_override(item)
        if "=" not in item:
            problems.append(f"override '{item}' must look like key.path=value (e.g. finetune.train.epochs=2)")
            continue
        key, value = item.split("=", 1)
        parts = [p.strip() for p in key.strip().split(".")]
        if not all(parts):
            problems.append(f"override '{item}': empty key in '{key}'")
            continue
        top = parts[0]
        if top not in TOP_LEVEL_KEYS and top not in STAGES:
            problems.append(
                f"override '{item}': unknown section '{top}'{did_you_mean(top, (*TOP_LEVEL_KEYS, *STAGES))}"
            )
            continue
        node = raw
        for i, p in enumerate(parts[:-1]):
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                problems.append(f"override '{item}': '{'.'.join(parts[: i + 1])}' is not a section")
                break
            node = nxt
        else:
            node[parts[-1]] = parse_value(value)
    return problems
