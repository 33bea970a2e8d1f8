"""Compression methods, each one config class plus one handler, found by registry name.

A compress run is an ordered list of steps, e.g. in a recipe::

    compress:
      steps:
        - {method: prune_ffn, fraction: 0.25}
        - {method: int4_embeddings, block_size: 32}
        - {method: int8_dynamic}

Steps run in the order written: PyTorch steps (pruning, trimming, recovery) first, then the ONNX
steps on the exported graph (4-bit, then INT8, which quantizes whatever is still fp32).
``mbk compress``'s flags (``--prune 0.2 --int8 ...``) are shorthands that build such a list
(:meth:`mobilebert_kit.stages.compress.CompressConfig.plan`).

To add a method: write one module with a :class:`~mobilebert_kit.compression.base.Method` subclass
(its dataclass fields are the step's keys, ``validate`` checks them, ``apply`` does the work) and add
one line to :data:`METHODS`. Modules are imported when a plan names them; none imports torch at
import time.
"""

from __future__ import annotations

import importlib

from mobilebert_kit.compression.base import Method
from mobilebert_kit.config import did_you_mean
from mobilebert_kit.errors import ConfigError

METHODS: dict[str, str] = {
    "prune": "mobilebert_kit.compression.pruning:L1Unstructured",
    "prune_heads": "mobilebert_kit.compression.pruning:PruneHeads",
    "prune_ffn": "mobilebert_kit.compression.pruning:PruneFfn",
    "recover": "mobilebert_kit.compression.recovery:Recover",
    "trim_vocab": "mobilebert_kit.compression.vocab:TrimVocab",
    "int8_dynamic": "mobilebert_kit.compression.int8:Int8DynamicStep",
    "int8_static": "mobilebert_kit.compression.int8:Int8StaticStep",
    "int4_embeddings": "mobilebert_kit.compression.int4:Int4Embeddings",
    "int4_matmul": "mobilebert_kit.compression.int4:Int4MatMul",
}


def method_class(name: str) -> type[Method]:
    """The config class registered as ``name`` (ConfigError with a did-you-mean when unknown)."""
    if name not in METHODS:
        raise ConfigError(
            f"unknown compression method '{name}'{did_you_mean(name, METHODS)}; known: {', '.join(METHODS)}"
        )
    module, _, attr = METHODS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def record_keys() -> list[str]:
    """``compression.json`` keys the registered methods report under, in registry order."""
    keys: list[str] = []
    for name in METHODS:
        key = method_class(name).record
        if key and key not in keys:
            keys.append(key)
    return keys


def build_plan(steps: list, where: str = "steps") -> list[Method]:
    """Turn ``[{method: ..., key: value}, ...]`` into method configs, in order.

    Adjacent steps that work better as one (heads + FFN neurons ranked on one importance pass) are
    fused (:meth:`Method.fuse`).

    Raises:
        ConfigError: every problem at once: unknown methods (with a did-you-mean), unknown keys,
            out-of-range values, PyTorch steps after an ONNX step, an ONNX method twice, more than
            one INT8 step, an ONNX step after INT8.
    """
    problems: list[str] = []
    plan = [_build_step(raw, f"{where}[{i}]", problems) for i, raw in enumerate(steps)]
    problems += _order_problems([s for s in plan if s is not None], where)
    if problems:
        raise ConfigError(problems)
    return _fused(plan)


def plan_problems(steps: list, where: str = "steps") -> list[str]:
    """:func:`build_plan`'s problems, as a list (empty when the steps are valid)."""
    try:
        build_plan(steps, where)
    except ConfigError as e:
        return e.problems
    return []


def _build_step(raw, where: str, problems: list[str]) -> Method | None:
    if not isinstance(raw, dict) or "method" not in raw:
        problems.append(f"{where}: expected a mapping with a 'method' key (one of {', '.join(METHODS)}), got {raw!r}")
        return None
    settings = {k: v for k, v in raw.items() if k != "method"}
    try:
        return method_class(str(raw["method"])).from_dict(settings, section=where)
    except ConfigError as e:
        problems.extend(p if p.startswith(("unknown key", where)) else f"{where}: {p}" for p in e.problems)
        return None


def _order_problems(plan: list[Method], where: str) -> list[str]:
    onnx = [i for i, s in enumerate(plan) if s.kind == "onnx"]
    problems = _onnx_order_problems([plan[i] for i in onnx], where)
    late = [s.name for i, s in enumerate(plan) if s.kind == "pytorch" and onnx and i > onnx[0]]
    if late:
        problems.append(
            f"{where}: {', '.join(late)} change(s) the PyTorch model, so must come before "
            f"{plan[onnx[0]].name} (it works on the exported ONNX graph)"
        )
    return problems


def _onnx_order_problems(steps: list[Method], where: str) -> list[str]:
    """Each ONNX method once; one ``last`` step (INT8), and nothing after it."""
    problems: list[str] = []
    names = [s.name for s in steps]
    for name in dict.fromkeys(n for n in names if names.count(n) > 1):
        problems.append(f"{where}: {name} appears {names.count(name)} times; an ONNX step runs once per run")
    finals = [s.name for s in steps if s.last]
    if len(set(finals)) > 1:
        problems.append(f"{where}: only one INT8 step per run ({', then '.join(finals)})")
    first_last = next((i for i, s in enumerate(steps) if s.last), None)
    after = [s.name for s in steps[first_last + 1 :] if not s.last] if first_last is not None else []
    if after:
        problems.append(
            f"{where}: {', '.join(after)} must come before {steps[first_last].name}: INT8 quantizes whatever "
            "is still fp32 (the embedding Gathers and MatMuls included), so it is the last ONNX step"
        )
    return problems


def _fused(plan: list[Method]) -> list[Method]:
    out: list[Method] = []
    for step in plan:
        merged = out[-1].fuse(step) if out else None
        if merged is not None:
            out[-1] = merged
        else:
            out.append(step)
    return out


__all__ = ["METHODS", "Method", "build_plan", "method_class", "plan_problems", "record_keys"]
