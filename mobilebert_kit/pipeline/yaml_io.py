"""Recipe YAML read safely: ``yaml.safe_load`` semantics, duplicate keys refused, non-UTF-8 refused;
dotted ``key=value`` overrides applied to the parsed mapping.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from mobilebert_kit.bounded_input import check_override, check_yaml_text
from mobilebert_kit.config import did_you_mean
from mobilebert_kit.errors import ConfigError
from mobilebert_kit.pipeline.steps import TOP_LEVEL_KEYS
from mobilebert_kit.stages.base import (
    STAGES,
)


class DuplicateKeyError(yaml.YAMLError):
    """A mapping gives the same key twice; plain YAML would keep the last value and drop the first."""

    def __init__(self, key: Any, line: int, first_line: int):
        super().__init__(
            f"line {line}: duplicate key '{key}' (the earlier one, line {first_line}, would be ignored); merge them"
        )


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load`` semantics (no python tags), but a key repeated in one mapping is an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            # merge keys (<<) may legitimately be overridden by the keys beside them
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKeyError(key, line, seen[key])
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path, what: str) -> Any:
    """Parse a user's YAML file with :class:`UniqueKeyLoader`; ``what`` starts every error line."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{what} is not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}); save it as UTF-8"
        ) from e
    try:
        check_yaml_text(text, what)  # size, nesting, alias expansion: before anything is built
        return yaml.load(text, Loader=UniqueKeyLoader)  # safe: UniqueKeyLoader is a SafeLoader
    except DuplicateKeyError as e:
        raise ConfigError(f"{what} {e}") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{what} is not valid YAML{where}: {getattr(e, 'problem', None) or e}") from e


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
