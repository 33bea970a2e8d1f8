"""Typed configuration helpers shared by every stage.

Stage configs are plain dataclasses that inherit :class:`StageConfig`. They check their own
values in ``validate()`` (returning a list of problems rather than raising on the first), and
``from_dict`` refuses unknown keys with a did-you-mean, reporting *all* problems at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from collections.abc import Iterable
from typing import Any, TypeVar

from mobilebert_kit.errors import ConfigError

T = TypeVar("T", bound="StageConfig")


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _coerce(value: Any, annotation: Any, where: str, problems: list[str]) -> Any:
    """Coerce a YAML/CLI value to the annotated type, or record a problem (and keep the value)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, typing.get_args(annotation), where, problems)
    if origin in (list, tuple):
        return _coerce_sequence(value, origin, typing.get_args(annotation), where, problems)
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a mapping, got {value!r}")
        return value
    if annotation in _SCALARS:
        out, problem = _SCALARS[annotation](value)
        if problem:
            problems.append(f"{where}: {problem}, got {value!r}")
            return value
        return out
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a mapping, got {value!r}")
            return value
        return _from_dict(annotation, value, where, problems)
    return value


def _coerce_union(value: Any, args: tuple, where: str, problems: list[str]) -> Any:
    if value is None and type(None) in args:
        return None
    non_none = [a for a in args if a is not type(None)]
    if len(non_none) == 1:
        return _coerce(value, non_none[0], where, problems)
    for a in non_none:  # first type that accepts the value without complaint
        trial: list[str] = []
        out = _coerce(value, a, where, trial)
        if not trial:
            return out
    problems.append(f"{where}: {value!r} is not one of {', '.join(getattr(a, '__name__', str(a)) for a in non_none)}")
    return value


def _coerce_sequence(value: Any, origin: type, args: tuple, where: str, problems: list[str]) -> Any:
    if isinstance(value, str):  # "0,2,4" from the command line
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        problems.append(f"{where}: expected a list, got {value!r}")
        return value
    item = args[0] if args else Any
    out = [_coerce(v, item, f"{where}[{i}]", problems) for i, v in enumerate(value)]
    return tuple(out) if origin is tuple else out


# scalar coercers: value -> (coerced value, problem or None)
_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def _to_bool(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, bool):
        return value, None
    if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE, None
    return value, "expected true/false"


def _to_int(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, bool):
        return value, "expected an integer"
    if isinstance(value, int):
        return value, None
    try:
        f = float(value)
        if f.is_integer():
            return int(f), None
    except (TypeError, ValueError):
        pass
    return value, "expected an integer"


def _to_float(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, bool):
        return value, "expected a number"
    try:
        return float(value), None
    except (TypeError, ValueError):
        return value, "expected a number"


def _to_str(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value), None
    return value, "expected a string"


_SCALARS = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str}


def _suggest(key: str, cls: type, hints: dict, prefix: str) -> str:
    """Did-you-mean over this level's keys and those one section down (``finetune.epochs`` is
    ``finetune.train.epochs``)."""
    paths = {f.name: f.name for f in dataclasses.fields(cls) if f.init}
    for f in dataclasses.fields(cls):
        for sub in (hints[f.name], *typing.get_args(hints[f.name])):
            if dataclasses.is_dataclass(sub):
                for g in dataclasses.fields(sub):
                    paths.setdefault(g.name, f"{f.name}.{g.name}")
    match = difflib.get_close_matches(key, list(paths), n=1, cutoff=0.6)
    return f" (did you mean '{prefix + '.' if prefix else ''}{paths[match[0]]}'?)" if match else ""


def _from_dict(cls: type, data: dict, prefix: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        where = f"{prefix}.{key}" if prefix else key
        if key not in fields:
            problems.append(f"unknown key '{where}'{_suggest(key, cls, hints, prefix)}")
            continue
        kwargs[key] = _coerce(value, hints[key], where, problems)
    if problems:
        return None
    try:
        obj = cls(**kwargs)
    except ConfigError as e:  # __post_init__ validation
        problems.extend(f"{prefix}: {p}" if prefix else p for p in e.problems)
        return None
    return obj


@dataclasses.dataclass
class StageConfig:
    """Base for stage configs: validation on construction, strict loading from dicts."""

    def __post_init__(self) -> None:
        problems = self.validate()
        if problems:
            raise ConfigError(problems)

    def validate(self) -> list[str]:
        """Return every problem with this config (empty when valid)."""
        return []

    @classmethod
    def from_dict(cls: type[T], data: dict | None, section: str = "") -> T:
        """Build from a mapping, rejecting unknown keys and wrong types, reporting all problems."""
        problems: list[str] = []
        obj = _from_dict(cls, dict(data or {}), section, problems)
        if problems:
            raise ConfigError(problems)
        return obj

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def input_paths(self) -> tuple[str, ...]:
        """Every path this config names that exists on disk (model folders, data files, plans, caches), its
        ``output`` excepted: the folders a stage may replace with --overwrite must hold none of them."""
        found: list[str] = []
        for f in dataclasses.fields(self):
            if f.name != "output":
                _collect_paths(getattr(self, f.name), found)
        return tuple(dict.fromkeys(found))


def _collect_paths(value: Any, found: list[str]) -> None:
    if isinstance(value, StageConfig):
        found.extend(value.input_paths())
    elif isinstance(value, dict):
        for v in value.values():
            _collect_paths(v, found)
    elif isinstance(value, list | tuple):
        for v in value:
            _collect_paths(v, found)
    elif isinstance(value, str | os.PathLike) and str(value).strip() and os.path.exists(value):
        found.append(os.fspath(value))


def check_range(
    problems: list[str],
    name: str,
    value: Any,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    """Append a problem when ``value`` is outside [lo, hi] (or the open variants)."""
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        problems.append(f"{name} must be a finite number, got {value}")
        return
    bad = (lo is not None and (value <= lo if lo_open else value < lo)) or (
        hi is not None and (value >= hi if hi_open else value > hi)
    )
    if bad:
        left = "(" if lo_open or lo is None else "["
        right = ")" if hi_open or hi is None else "]"
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        problems.append(f"{name} must be in {left}{lo_s}, {hi_s}{right}, got {value}")


def check_choice(problems: list[str], name: str, value: Any, choices: Iterable[str]) -> None:
    choices = list(choices)
    if value not in choices:
        problems.append(
            f"{name} must be one of {', '.join(map(str, choices))}; got '{value}'"
            + did_you_mean(str(value), [str(c) for c in choices])  # numeric choices (block sizes) too
        )
