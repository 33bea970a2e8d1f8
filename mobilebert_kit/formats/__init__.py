"""The export-format contract and its registry.

An export format is one module that knows how to check its dependencies, build its artifact from
the loaded source model, describe it (file name, io spec, INT8 or not) and run it (a
:class:`Runner`: logits for a batch of feeds, plus a timed single call). ``mbk export``, ``verify``,
``bench``, ``package`` and ``report`` iterate over this registry; none of them compares format names.

Formats are registered once, in :data:`MODULES`, by module name, and imported only when used (so
``mbk --help`` stays instant; format modules import torch / onnxruntime / coremltools lazily).
The order of :data:`BUILTIN` is the canonical order of exports, reports and error messages.

To add a format: write one module defining ``FORMAT = MyFormat()`` (a subclass of
:class:`ExportFormat`) and add its name to :data:`BUILTIN` (or call :func:`register`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mobilebert_kit.artifacts import META
from mobilebert_kit.errors import ConfigError, PackageError

BUILTIN = ("onnx", "ort", "torchscript", "coreml", "executorch", "tflite")  # the registry: one name per format module
MODULES: dict[str, str] = {name: f"{__name__}.{name}" for name in BUILTIN}  # name -> importable module
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")

_loaded: dict[str, ExportFormat] = {}


def register(name: str, module: str) -> None:
    """Register the format ``name`` defined by ``module`` (which holds ``FORMAT``)."""
    MODULES[name] = module


def get(name: str) -> ExportFormat:
    """The registered format ``name`` (its module is imported on first use)."""
    if name not in MODULES:
        raise ConfigError(f"unknown export format '{name}'; known formats: {', '.join(MODULES)}")
    module = MODULES[name]
    if module not in _loaded:
        _loaded[module] = importlib.import_module(module).FORMAT
    return _loaded[module]


def names() -> list[str]:
    """Every registered format, in canonical order."""
    return list(MODULES)


def exported(export_dir: Path) -> list[str]:
    """The registered formats ``export_dir`` holds an export of (a ``<format>/model_meta.json``), canonical order."""
    return [n for n in MODULES if (Path(export_dir) / n / META).exists()]


def every(**flags: Any) -> list[ExportFormat]:
    """The registered formats whose attributes equal ``flags`` (e.g. ``every(benchable=True)``)."""
    formats = [get(n) for n in MODULES]
    return [f for f in formats if all(getattr(f, k) == v for k, v in flags.items())]


def for_target(target: str, runtime: str | None = None) -> ExportFormat | None:
    """The format a phone ``target`` (android, ios) is packaged from for ``runtime`` (default: the
    target's default runtime)."""
    found = [f for f in every() if f.package_target == target]
    if runtime is None:
        return next((f for f in found if f.package_default), None)
    return next((f for f in found if f.runtime_name == runtime), None)


def runtimes_for(target: str) -> list[str]:
    """The runtimes a phone ``target`` can be packaged for (``--runtime``), default first."""
    found = sorted((f for f in every() if f.package_target == target), key=lambda f: not f.package_default)
    return [f.runtime_name for f in found]


def for_file(path: Path) -> ExportFormat | None:
    """The benchable format whose model files end like ``path`` (``.onnx``, ``.pt``, ...)."""
    return next((f for f in every(benchable=True) if path.suffix in f.file_suffixes), None)


# --------------------------------------------------------------------------- the contract


@dataclass
class Source:
    """Everything about the model being exported that every format needs."""

    path: Path
    model: Any
    tokenizer: Any
    label_names: list[str]
    max_length: int
    int8: bool
    compression: dict
    sha256: str


@dataclass
class Build:
    """One ``mbk export`` invocation: its config, a scratch folder, and intermediates formats share
    (the ONNX graph that both ``onnx`` and ``ort`` are made from)."""

    config: Any
    work: Path
    shared: dict[str, Any] = field(default_factory=dict)


@dataclass
class BundleFacts:
    """What ``mbk package`` learns from a format's model: inputs, outputs, embedding rows, and a
    runtime that computes the golden logits (``logits(ids, pad_id) -> list[float]``)."""

    runtime: Any
    input_names: list[str]
    num_outputs: int | None  # None: the model does not say
    embedding_rows: int
    fixed_length: int | None
    facts: dict[str, Any] = field(default_factory=dict)


class Runner:
    """A loaded artifact: logits for a batch of int64 feeds, and a timed single call for bench."""

    runtime = ""  # bench's "runtime" column
    static_batch: int | None = None  # programs with a fixed batch (ExecuTorch, CoreML: 1)
    # batch verify checks the test split at (None: --batch-size): the phone's, where results depend on it
    parity_batch: int | None = None
    fixed_threads = False  # the runtime picks its own thread count

    def logits(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def timed_call(self, threads: int) -> Callable[[dict[str, np.ndarray]], Any]:
        """A function running one batch with ``threads`` intra-op threads (what bench times)."""
        raise NotImplementedError


class ExportFormat:
    """One export format. Subclasses set the attributes and implement :meth:`export` and :meth:`load`."""

    name = ""
    model_file = ""  # inside <export>/<name>/
    in_all = True  # part of `--format all`
    benchable = False  # `mbk bench --format NAME` can time it
    bench_default = False  # timed by `mbk bench` when no format is given
    file_suffixes: tuple[str, ...] = ()  # model files `mbk bench --model FILE` recognises
    package_target: str | None = None  # phone target bundled from this format (android, ios)
    demo_app: str | None = None  # the demo app folder `mbk package --install-into` expects
    app_bundle_dir: str | None = None  # where the bundle goes inside that app
    app_marker: str | None = None  # a file every such app has (--install-into refuses other folders)
    package_runtime: str | None = None  # `mbk package --runtime NAME` (default: the format's name)
    package_default = True  # packaged when no --runtime is given (one per target)
    app_runtime_version: str | None = None  # onnxruntime version the app pins (verify + package use it)
    headline_rank: int | None = None  # report headline: lowest rank with an accuracy wins
    input_dtype = "int64"
    dynamic_batch = True
    supports_int8 = True  # an explicit `--int8` can build an INT8 artifact of this format

    @property
    def runtime_name(self) -> str:
        """The name ``mbk package --runtime`` knows this format's phone runtime by."""
        return self.package_runtime or self.name

    def check_dependencies(self) -> None:
        """Raise ExportError with the install hint when a library this format needs is missing."""

    def check_request(self, src: Source, config: Any) -> list[str]:
        """Problems with this export request that only the loaded source reveals (its max length,
        its position embeddings); reported together before any format is built."""
        return []

    def export(self, src: Source, folder: Path, build: Build) -> dict:
        """Write the artifact into ``folder``; return format-specific ``model_meta.json`` fields."""
        raise NotImplementedError

    def applies_int8(self, src: Source) -> bool:
        """Whether the artifact built from ``src`` holds INT8 weights."""
        return src.int8

    def io_spec(self, src: Source) -> dict:
        names = list(INPUT_NAMES)
        if self.dynamic_batch:
            axes = {**{n: {"0": "batch", "1": "sequence"} for n in names}, "logits": {"0": "batch"}}
        else:
            axes = {n: {"1": "sequence"} for n in names}
        return {
            "input_names": names,
            "output_names": ["logits"],
            "dtypes": {**dict.fromkeys(names, self.input_dtype), "logits": "float32"},
            "dynamic_axes": axes,
        }

    def load(self, path: Path, meta: dict) -> Runner:
        """Load the artifact at ``path`` for inference."""
        raise NotImplementedError

    def verify_action(self) -> str:
        """What verify says it is doing with this format."""
        return "running the test split"

    def verify(self, folder: Path, meta: dict, parity: Any) -> list[dict]:
        """Parity checks against the PyTorch reference (``parity`` is verify's :class:`Parity`)."""
        runner = self.load(folder / meta["model_file"], meta)
        return parity.compare("logits", parity.logits(runner))

    def bundle_facts(self, model: Path, export_dir: Path, vocab: list[str], special_ids: dict, pad_id: int):
        """What a phone bundle records about the model (only formats with a ``package_target``)."""
        raise PackageError(f"the '{self.name}' format cannot be packaged for a phone")


def full_feeds(batch: dict) -> dict[str, np.ndarray]:
    """The three BERT inputs as int64 arrays (zeros for ``token_type_ids`` the tokenizer lacks)."""
    ids = np.asarray(batch["input_ids"], dtype=np.int64)
    return {
        "input_ids": ids,
        "attention_mask": np.asarray(batch["attention_mask"], dtype=np.int64),
        "token_type_ids": np.asarray(batch.get("token_type_ids", np.zeros_like(ids)), dtype=np.int64),
    }


def tokenizer_settings(tokenizer) -> dict:
    """Lower-casing / accent stripping as the fast tokenizer actually applies them."""
    from mobilebert_kit.models import bert_normalizer, tokenizer_spec

    do_lower = bool(getattr(tokenizer, "do_lower_case", False))
    strip = tokenizer.init_kwargs.get("strip_accents")
    norm = bert_normalizer(tokenizer_spec(tokenizer))
    if norm is not None:
        do_lower, strip = norm["lowercase"], norm["strip_accents"]
    if strip is None:  # HF: accents are stripped whenever lower-casing is on
        strip = do_lower
    return {"do_lower_case": do_lower, "strip_accents": bool(strip)}
