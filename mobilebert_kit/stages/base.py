"""The stage contract: every stage is a config dataclass plus ``run(config, ctx) -> StageResult``.

The :class:`RunContext` carries what is about *this invocation* rather than about the stage's
configuration: may the output be replaced, should training resume, where log lines go, how
quiet to be. The :class:`StageResult` is what the caller prints or records: the output folder,
the headline metrics and a few summary lines. So ``mbk run`` calls every stage the same way,
and each CLI command is: build the config, call ``run``, print the result.

Stages are registered once, in :data:`STAGES`, by module name: modules are imported only when
the stage is used, so ``mbk --help`` stays instant.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mobilebert_kit.errors import ConfigError


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class RunContext:
    """How one stage invocation behaves (not what it computes).

    Attributes:
        overwrite: the stage may replace a non-empty output folder.
        resume: a training stage continues from its last checkpoint.
        quiet: no progress bars or log lines.
        log: where log lines go (stderr by default; silent when ``quiet``).
    """

    overwrite: bool = False
    resume: bool = False
    quiet: bool = False
    log: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        if self.log is None:
            self.log = (lambda m: None) if self.quiet else _stderr

    def child(self, prefix: str) -> RunContext:
        """The same context with every log line prefixed (``mbk run`` labels lines per stage)."""
        parent = self.log
        return RunContext(self.overwrite, self.resume, self.quiet, lambda m: parent(prefix + m))


@dataclass
class StageResult:
    """What a stage hands back: its output, its headline numbers, and lines worth printing.

    Attributes:
        output: the folder (or file) the stage wrote, ``None`` when it wrote nothing.
        metrics: the headline metrics (what ``--json`` prints besides ``output``).
        summary: human-readable lines for the CLI's final message.
        written: ``False`` when this process wrote nothing (a non-main rank of a distributed run).
    """

    output: Path | None
    metrics: dict[str, Any] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)
    written: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"output": str(self.output) if self.output is not None else None, **self.metrics}


@dataclass(frozen=True)
class StageSpec:
    """How ``mbk run`` drives one stage.

    Attributes:
        name: registry name, also the recipe section and the ``stages:`` entry.
        module: module under ``mobilebert_kit.stages`` with the config class and ``run``.
        config_class: name of the ``StageConfig`` subclass in that module.
        subdir: output location under the run folder (``None``: the stage writes no folder).
        output_key: config field holding the output folder.
        inputs: config field -> upstream stages that can feed it, nearest first.
        after: stages whose output this one reads without a config field (hashed for reuse).
        takes_data: the stage trains or evaluates on a ``DataConfig`` (gets the shared ``data:``).
        resumable: the stage trains and can continue from a checkpoint in ``<output>.ckpt/``.
        summary: one line for ``mbk run --plan`` and the docs.
    """

    name: str
    module: str
    config_class: str
    subdir: str | None
    output_key: str | None = "output"
    inputs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    after: tuple[str, ...] = ()
    takes_data: bool = False
    resumable: bool = False
    summary: str = ""


MODEL_STAGES = ("tune", "compress", "distill", "finetune")  # nearest first: the latest model a stage can take

STAGES: dict[str, StageSpec] = {
    s.name: s
    for s in (
        StageSpec(
            "finetune",
            "finetune",
            "FinetuneConfig",
            "teacher",
            takes_data=True,
            resumable=True,
            summary="fine-tune the teacher",
        ),
        StageSpec(
            "distill",
            "distill",
            "DistillConfig",
            "student",
            inputs={"teacher": ("finetune",)},
            takes_data=True,
            resumable=True,
            summary="distill the teacher into the student",
        ),
        StageSpec(
            "compress",
            "compress",
            "CompressConfig",
            "compressed",
            inputs={"model": ("distill", "finetune")},
            summary="prune + INT8 with the accuracy guard",
        ),
        StageSpec(
            "tune",
            "tune",
            "TuneConfig",
            "tuned",
            inputs={"model": ("distill", "finetune")},
            summary="try compression plans, keep the best for an objective",
        ),
        StageSpec(
            "export",
            "export",
            "ExportConfig",
            "export",
            inputs={"model": MODEL_STAGES},
            summary="export onnx / ort / torchscript / coreml",
        ),
        StageSpec(
            "verify",
            "verify",
            "VerifyConfig",
            None,
            output_key=None,
            inputs={"export_dir": ("export",)},
            summary="parity + integrity of every export",
        ),
        StageSpec(
            "bench",
            "bench",
            "BenchConfig",
            "bench",
            inputs={"export_dir": ("export",)},
            summary="latency / size / memory",
        ),
        StageSpec(
            "package",
            "package",
            "PackageConfig",
            "package",
            inputs={"export_dir": ("export",)},
            after=("verify",),
            summary="phone bundle",
        ),
        StageSpec("report", "report", "ReportConfig", None, output_key=None, summary="report.html + report.md"),
    )
}
ORDER = tuple(STAGES)


def stage_module(name: str):
    """Import a stage's module, or raise ConfigError saying it is not available."""
    spec = STAGES[name]
    try:
        mod = importlib.import_module(f"mobilebert_kit.stages.{spec.module}")
    except ModuleNotFoundError as e:
        if e.name == f"mobilebert_kit.stages.{spec.module}":
            raise ConfigError(f"stage '{name}' is not available in this version") from e
        raise
    if not hasattr(mod, spec.config_class) or not hasattr(mod, "run"):
        raise ConfigError(f"stage '{name}' is not available in this version")
    return mod


def stage_available(name: str) -> bool:
    try:
        stage_module(name)
        return True
    except ConfigError:
        return False


def config_class(name: str) -> type:
    return getattr(stage_module(name), STAGES[name].config_class)


def run_stage(name: str, config: Any, ctx: RunContext | None = None) -> StageResult:
    """Run the registered stage ``name`` with ``config``: the one way every caller runs a stage."""
    return stage_module(name).run(config, ctx or RunContext())
