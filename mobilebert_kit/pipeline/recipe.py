"""Recipes: YAML over the stage configs, run as one pipeline with content-hash reuse.

A recipe is a mapping with one section per stage, using the same keys as the stage's config
dataclass (and the same names as its command-line options)::

    name: smoke                      # default: the file name without .yaml
    run_dir: artifacts/runs/smoke    # default: artifacts/runs/<name>
    stages: [finetune, distill, compress, export, verify, bench, package, report]
    data: {max_train_examples: 200}  # shared by every stage that trains (finetune, distill)
    finetune: {model: minilm-l6, train: {epochs: 1}}
    compress: {int8: true}

Each stage's output goes under ``run_dir`` (``teacher/``, ``student/``, ``compressed/``,
``export/``, ``bench/``, ``package/<target>/``), and each stage's input path (``distill.teacher``,
``compress.model``, ``export.model``, ``verify.export_dir``...) is wired to the output of the
stage before it, unless the recipe sets it. String values may use ``{run_dir}``.

Reuse: before a stage runs, its *fingerprint* is the hash of its resolved config plus the hash
of every input it reads (the upstream ``manifest.json``, or the file itself). It is stored in
``<run_dir>/.state/<step>.json`` when the stage succeeds; next time, a stage whose fingerprint
is unchanged and whose output is still the one it wrote is reused instead of re-run. So a run
that failed half-way continues where it stopped, and editing one stage re-runs only it and what
depends on it.

Stages are looked up by registry name (never by an importable dotted path); a stage whose module
is not part of this installation is reported at validate time, not as a crash.

This module is the public face; the parts: :mod:`.yaml_io` (safe YAML, overrides), :mod:`.steps` (the resolved recipe),
:mod:`.build` (YAML -> steps, wired and validated), :mod:`.fit_checks` (what the models can take),
:mod:`.reuse` (fingerprints and state), :mod:`.execute` (plan and run).
"""

from mobilebert_kit.pipeline.build import load
from mobilebert_kit.pipeline.execute import (
    PlanItem,
    execute,
    plan,
    plan_json,
    plan_lines,
    run_step,
    run_summary,
    select,
)
from mobilebert_kit.pipeline.fit_checks import LOCATABLE_BUILTINS
from mobilebert_kit.pipeline.reuse import (
    STATE_DIR,
    config_dict,
    fingerprint,
    input_fingerprint,
    output_fingerprint,
    read_state,
    reuse_reason,
    state_path,
    write_state,
)
from mobilebert_kit.pipeline.steps import DATA_PATH_KEYS, TOP_LEVEL_KEYS, Recipe, Step
from mobilebert_kit.pipeline.yaml_io import (
    DuplicateKeyError,
    UniqueKeyLoader,
    apply_overrides,
    load_yaml,
    parse_value,
    read_yaml,
)

__all__ = [
    "DuplicateKeyError",
    "UniqueKeyLoader",
    "apply_overrides",
    "load_yaml",
    "parse_value",
    "read_yaml",
    "DATA_PATH_KEYS",
    "Recipe",
    "Step",
    "TOP_LEVEL_KEYS",
    "load",
    "LOCATABLE_BUILTINS",
    "STATE_DIR",
    "config_dict",
    "fingerprint",
    "input_fingerprint",
    "output_fingerprint",
    "read_state",
    "reuse_reason",
    "state_path",
    "write_state",
    "PlanItem",
    "execute",
    "plan",
    "plan_json",
    "plan_lines",
    "run_step",
    "run_summary",
    "select",
]
