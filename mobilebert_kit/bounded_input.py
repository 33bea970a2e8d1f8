"""Limits on the configuration a user hands mbk: recipes, plan files and dotted overrides.

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
