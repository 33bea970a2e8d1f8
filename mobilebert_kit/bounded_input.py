"""Limits on the configuration a user hands mbk: recipes, plan files, label maps and dotted overrides, and
the one reader of a user's YAML file (:func:`read_yaml`: safe, bounded, duplicate keys refused).

YAML aliases let a few hundred bytes stand for billions of values ("billion laughs"): PyYAML builds the
aliased value once and shares it, so loading is cheap, but anything that later walks, copies or prints
the value (validation, fingerprints, error messages) expands it and runs out of memory. Deep nesting
overflows the recursion of the same code. So before a YAML text is constructed it is checked, from its
event stream and its composed node graph (both of which keep aliases shared), against:

* :data:`MAX_CONFIG_BYTES`: the text's size,
* :data:`MAX_DEPTH`: nesting, counted through aliases,
* :data:`MAX_ALIASES`: alias uses,
* :data:`MAX_NODES`: values after every alias is expanded.

A shipped recipe holds under a hundred values, four levels deep: the limits are far above any real one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mobilebert_kit.errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20  # 1 MiB
MAX_OVERRIDE_CHARS = 64 << 10  # one `key=value` on the command line
MAX_DEPTH = 32
MAX_ALIASES = 1000
MAX_NODES = 100_000
MAX_JSON_BYTES = 64 << 20  # manifests, configs, label files mbk reads back


def check_yaml_text(text: str, what: str) -> None:
    """Refuse a YAML text past the limits, before it is constructed into Python objects.

    Raises:
        ConfigError: too big, nested too deep, too many aliases, an alias that contains itself, or too
            many values once aliases are expanded. ``yaml.YAMLError`` for text that is not YAML.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{what} is {size:,} bytes; configuration is limited to {MAX_CONFIG_BYTES:,} bytes: is this the right file?"
        )
    if not _scan_events(text, what):
        return  # no alias: the text itself bounds the value
    for doc in yaml.compose_all(text, Loader=yaml.SafeLoader):
        if doc is not None:
            nodes, depth = _expanded(doc, {}, set(), what)
            if nodes > MAX_NODES:
                raise ConfigError(
                    f"{what}: its aliases expand to {nodes:,} values (limit {MAX_NODES:,}); "
                    "write the values out or use fewer aliases"
                )


def _scan_events(text: str, what: str) -> int:
    """Nesting depth and alias count from the event stream (no recursion, nothing built); returns the
    number of aliases."""
    depth = aliases = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(
                    f"{what} nests deeper than {MAX_DEPTH} levels (line {event.start_mark.line + 1}); "
                    "a configuration is a few levels deep: flatten it"
                )
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise ConfigError(
                    f"{what} uses more than {MAX_ALIASES} aliases (*name, line {event.start_mark.line + 1}); "
                    "write the values out"
                )
    return aliases


def _expanded(node: yaml.Node, memo: dict[int, tuple[int, int]], active: set[int], what: str) -> tuple[int, int]:
    """(values, depth) of ``node`` with every alias expanded, each shared node counted once per use but
    computed once (memo), so a billion laughs costs a few dozen steps to measure."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise ConfigError(f"{what}: an alias refers to the value that contains it (an endless value); remove it")
    if not isinstance(node, (yaml.SequenceNode, yaml.MappingNode)):
        return 1, 0
    active.add(key)
    children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
    total, deepest = 1, 0
    for child in children:
        n, d = _expanded(child, memo, active, what)
        total += n
        deepest = max(deepest, d)
        if total > MAX_NODES or deepest + 1 > MAX_DEPTH:
            break
    active.discard(key)
    if deepest + 1 > MAX_DEPTH:
        raise ConfigError(f"{what}: its aliases nest the values deeper than {MAX_DEPTH} levels; write the values out")
    memo[key] = (total, deepest + 1)
    return memo[key]


def check_override(item: str) -> None:
    """A ``key=value`` override: bounded in length (its value is then checked as YAML)."""
    if len(item) > MAX_OVERRIDE_CHARS:
        raise ConfigError(
            f"an override is {len(item):,} characters (limit {MAX_OVERRIDE_CHARS:,}); put long values in the recipe"
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
