"""Cross-stage checks of what the models can take, before any work: lengths against position
embeddings, distill layers against the teacher's depth, read from the built-in models' config.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mobilebert_kit.errors import ConfigError
from mobilebert_kit.pipeline.steps import Step
from mobilebert_kit.stages.base import (
    STAGES,
)

# Built-in models whose folder is found without work. mpnet-base is joined and extracted from a zip
# of several hundred MB on first use: too costly for a check that promises to run nothing.
LOCATABLE_BUILTINS = ("minilm-l6",)


_ORIGIN = "_mbk_origin"  # attribute naming the built-in a model config descends from, for messages


def _builtin_model_config(name: Any) -> SimpleNamespace | None:
    """A built-in model's config.json, read without loading weights; None when not cheaply known."""
    from mobilebert_kit.errors import MbkError
    from mobilebert_kit.models import BUILTIN_MODELS

    if name not in LOCATABLE_BUILTINS or name not in BUILTIN_MODELS:
        return None
    try:
        folder = BUILTIN_MODELS[name][0]()
        values = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (MbkError, OSError, ValueError):
        return None  # a missing package is the stage's to report, with its install command
    return SimpleNamespace(**values, **{_ORIGIN: name}) if isinstance(values, dict) else None


def model_fit_checks(steps: list[Step]) -> list[str]:
    """Layers and lengths that the built-in models' config.json already rules out, reported by
    validate instead of by a stage after the ones before it have run."""
    problems: list[str] = []
    models: dict[str, SimpleNamespace] = {}  # step key -> config of the model it writes
    for st in steps:
        field_name = next(iter(STAGES[st.stage].inputs), "")
        upstream = models.get(st.producers.get(field_name, ""))
        cfg = st.config
        if st.stage == "finetune":
            model = _builtin_model_config(cfg.model)
            problems += _fit_problems("finetune", model, cfg.train, cfg.model)
        elif st.stage == "distill":
            problems += _teacher_layer_problems(cfg, upstream)
            model = _student_config(cfg, upstream)
            problems += _fit_problems("distill", model, cfg.train, "the student")
        elif st.stage == "export":
            model = None
            problems += _export_length_problems(cfg, upstream)
        else:
            model = upstream  # compression keeps the layers' positions
        if model is not None:
            models[st.key] = model
    return problems


def _fit_problems(section: str, model: SimpleNamespace | None, train: Any, name: str) -> list[str]:
    from mobilebert_kit.training.common import check_fits_model

    if model is None:
        return []
    try:
        check_fits_model(SimpleNamespace(config=model), train, name)
    except ConfigError as e:
        return [f"{section}.train: {p}" for p in e.problems]
    return []


def _teacher_layer_problems(cfg: Any, teacher: SimpleNamespace | None) -> list[str]:
    n = getattr(teacher, "num_hidden_layers", None)
    if cfg.init_method != "layers" or not cfg.layers or not isinstance(n, int):
        return []
    bad = [i for i in cfg.layers if i >= n]  # negative ones: DistillConfig.validate
    if not bad:
        return []
    # students.copy_layers_student's message at run time
    return [f"distill.layers {','.join(map(str, bad))} out of range: the teacher has {n} layers (0..{n - 1})"]


def _student_config(cfg: Any, teacher: SimpleNamespace | None) -> SimpleNamespace | None:
    """The student's config as distill builds it (its layer count; positions are its base model's)."""
    from mobilebert_kit.training.students import every_other_layer

    base = _builtin_model_config(cfg.student) if cfg.init_method == "student" else teacher
    n = getattr(base, "num_hidden_layers", None)
    if base is None or not isinstance(n, int):
        return None
    if cfg.layers:
        n = len(cfg.layers)
    elif cfg.init_method == "student_config":
        n = cfg.student_config.num_layers or n
    elif cfg.init_method == "layers":
        n = len(every_other_layer(n))
    return SimpleNamespace(**{**vars(base), "num_hidden_layers": n})


def _export_length_problems(cfg: Any, model: SimpleNamespace | None) -> list[str]:
    from mobilebert_kit.models import usable_positions

    usable = usable_positions(model) if model is not None else None
    if not cfg.max_length or usable is None or cfg.max_length <= usable:
        return []
    return [
        f"export.max_length {cfg.max_length} is more than the model can take ({usable} positions, "
        f"from {getattr(model, _ORIGIN, 'its base model')}); set export.max_length to {usable} or less"
    ]
