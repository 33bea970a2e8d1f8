"""A recipe built: YAML -> one :class:`~.steps.Step` per stage, each config validated (every problem
at once), outputs under the run folder, inputs wired to earlier outputs, cross-stage checks run."""

from __future__ import annotations

import copy
import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mobilebert_kit.config import did_you_mean
from mobilebert_kit.errors import ConfigError
from mobilebert_kit.pipeline.fit_checks import model_fit_checks
from mobilebert_kit.pipeline.steps import DATA_PATH_KEYS, TOP_LEVEL_KEYS, Recipe, Step
from mobilebert_kit.pipeline.yaml_io import apply_overrides, load_yaml
from mobilebert_kit.stages.base import (
    ORDER,
    STAGES,
    StageSpec,
    config_class,
    stage_available,
)


def _substitute(value: Any, run_dir: str) -> Any:
    if isinstance(value, str):
        return value.replace("{run_dir}", run_dir)
    if isinstance(value, list):
        return [_substitute(v, run_dir) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, run_dir) for k, v in value.items()}
    return value


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init}


def _field_default(cls: type, name: str) -> Any:
    f = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    if f is None:
        return None
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def _field_is_data_config(cls: type, name: str) -> bool:
    from mobilebert_kit.data import DataConfig

    try:
        hint = typing.get_type_hints(cls).get(name)
    except Exception:  # noqa: BLE001 - unresolvable annotations: treat as not a DataConfig
        return False
    return hint is DataConfig or DataConfig in typing.get_args(hint)


def _looks_local(value: str) -> bool:
    return (
        value.startswith((".", "/", "~")) or value.count("/") > 1 or value.endswith((".csv", ".tsv", ".jsonl", ".json"))
    )


def load(
    source: str | os.PathLike | dict, overrides: list[str] | tuple[str, ...] = (), *, name: str | None = None
) -> Recipe:
    """Load, override and validate a recipe; raises one ConfigError listing *every* problem.

    Args:
        source: a recipe file, or an already-parsed mapping (tests, ``--save-recipe`` round trips).
        overrides: ``section.key.path=value`` strings applied before validation.
        name: recipe name when ``source`` is a mapping without ``name:``.
    """
    path = None if isinstance(source, dict) else Path(source)
    raw = copy.deepcopy(source) if isinstance(source, dict) else load_yaml(path)  # overrides edit it in place
    problems = apply_overrides(raw, overrides)
    _check_top_level_keys(raw, problems)
    rname = _recipe_name(raw, name, path, problems)
    run_dir = _run_dir(raw, rname, problems)
    stages = _stage_list(raw.get("stages"), problems)
    _check_sections(raw, problems)
    shared_data = _shared_data(raw.get("data"), problems)
    builder = _StepBuilder(run_dir, stages, shared_data, problems)
    for s in stages:
        builder.add_stage(s, raw.get(s) if isinstance(raw.get(s), dict) else {})
    steps = builder.steps
    _link_after_inputs(steps)
    problems.extend(_cross_checks(stages, {st.key: st.config for st in steps}, shared_data))
    problems.extend(model_fit_checks(steps))
    if problems:
        raise ConfigError(_dedupe(problems))
    return Recipe(rname, path, run_dir, stages, steps, raw)


def _check_top_level_keys(raw: dict, problems: list[str]) -> None:
    for key in raw:
        if key not in TOP_LEVEL_KEYS and key not in STAGES:
            problems.append(
                f"unknown key '{key}'{did_you_mean(str(key), (*TOP_LEVEL_KEYS, *STAGES))}; "
                f"top-level keys are {', '.join(TOP_LEVEL_KEYS)} and one section per stage ({', '.join(STAGES)})"
            )
    if raw.get("description") is not None and not isinstance(raw.get("description"), str):
        problems.append("description must be a string")


def _recipe_name(raw: dict, name: str | None, path: Path | None, problems: list[str]) -> str:
    rname = raw.get("name") if raw.get("name") is not None else (name or (path.stem if path else "recipe"))
    if not isinstance(rname, str) or not rname or "/" in rname or rname.startswith("."):
        problems.append(f"name must be a plain folder name, got {rname!r}")
        return "recipe"
    return rname


def _run_dir(raw: dict, rname: str, problems: list[str]) -> Path:
    run_dir_raw = raw.get("run_dir") if raw.get("run_dir") is not None else f"artifacts/runs/{rname}"
    if not isinstance(run_dir_raw, str) or not run_dir_raw:
        problems.append(f"run_dir must be a folder path, got {run_dir_raw!r}")
        run_dir_raw = f"artifacts/runs/{rname}"
    run_dir = Path(run_dir_raw)
    _check_run_dir_is_folder(run_dir, problems)
    return run_dir


def _check_run_dir_is_folder(run_dir: Path, problems: list[str]) -> None:
    """A file where the run folder (or one of its parents) belongs would only fail at the first write."""
    fix = "set run_dir to a folder (run_dir=PATH)"
    if run_dir.exists() and not run_dir.is_dir():
        problems.append(f"run_dir {run_dir} is a file, not a folder; {fix}")
        return
    blocking = next((p for p in run_dir.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        problems.append(f"run_dir {run_dir} lies under {blocking}, which is a file; {fix}")


def _stage_list(stages_raw: Any, problems: list[str]) -> list[str]:
    """The ``stages:`` entry as a list of known, available stage names in pipeline order."""
    if stages_raw is None:
        problems.append(f"stages: missing; list the stages to run in order, e.g. stages: [{', '.join(ORDER)}]")
        return []
    if isinstance(stages_raw, str):
        stages_raw = [s.strip() for s in stages_raw.split(",") if s.strip()]
    if not isinstance(stages_raw, list):
        problems.append(f"stages must be a list of stage names, got {stages_raw!r}")
        return []
    if not stages_raw:
        problems.append("stages is empty; list at least one stage")
    stages: list[str] = []
    for s in stages_raw:
        if not isinstance(s, str) or s not in STAGES:
            problems.append(f"unknown stage '{s}'{did_you_mean(str(s), STAGES)}; known stages: {', '.join(STAGES)}")
        elif s in stages:
            problems.append(f"stage '{s}' is listed twice in stages")
        elif not stage_available(s):
            problems.append(f"stage '{s}' is not available in this version")
        else:
            stages.append(s)
    for a, b in zip(stages, stages[1:]):
        if ORDER.index(b) < ORDER.index(a):
            problems.append(f"stage '{b}' must come before '{a}' (stages run in the order {' -> '.join(ORDER)})")
    return stages


def _check_sections(raw: dict, problems: list[str]) -> None:
    for s in STAGES:
        if raw.get(s) is not None and not isinstance(raw.get(s), dict):
            problems.append(f"section '{s}' must be a mapping of {s} settings, got {raw.get(s)!r}")


def _shared_data(data: Any, problems: list[str]) -> dict:
    """The top-level ``data:`` section, shared by every stage that trains or evaluates."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(
            f"data must be a mapping (data: {{data: rotten_tomatoes, max_train_examples: 200}}), got {data!r}"
        )
        return {}
    from mobilebert_kit.data import DataConfig

    shared: dict = {}
    try:
        DataConfig.from_dict(data, section="data")
        shared = dict(data)
    except ConfigError as e:
        problems.extend(e.problems)
    problems.extend(_missing_data_files(data, "data"))
    return shared


def _package_targets(section: dict, problems: list[str]) -> list[str | None]:
    """``package.target`` as a list (one step per target); ``[]`` after reporting a problem."""
    t = section.get("target", "android")
    targets = [x.strip() for x in t.split(",")] if isinstance(t, str) else t if isinstance(t, list) else [t]
    if not targets:
        problems.append("package.target is empty; use android, ios or [android, ios]")
        return []
    if not all(isinstance(x, str) and x for x in targets):  # found by the hostile campaign: null crashed
        problems.append(f"package.target must be android, ios or [android, ios], got {t!r}")
        return []
    if len(set(map(str, targets))) != len(targets):
        problems.append(f"package.target lists a target twice: {targets}")
        return []
    return targets


@dataclass
class _StepBuilder:
    """Turns recipe sections into :class:`Step` objects, wiring each stage's inputs to earlier outputs."""

    run_dir: Path
    stages: list[str]
    shared_data: dict
    problems: list[str]
    steps: list[Step] = field(default_factory=list)
    outputs: dict[str, Path | None] = field(default_factory=dict)  # step key -> its output

    def add_stage(self, s: str, section: dict) -> None:
        section = self._with_data(s, _substitute(dict(section), str(self.run_dir)))
        targets = _package_targets(section, self.problems) if s == "package" else [None]
        for target in targets:
            sec = dict(section)
            key = s
            if s == "package":
                sec["target"] = target
                key = f"package-{target}"
            self._add_step(s, key, sec, target)

    def _with_data(self, s: str, section: dict) -> dict:
        """Merge the shared ``data:`` into a stage that trains or evaluates; check data files exist."""
        cls = config_class(s)
        if STAGES[s].takes_data and "data" in _field_names(cls) and _field_is_data_config(cls, "data"):
            own = section.get("data")
            # Only when there is something to share: a stage whose data is optional (distill) otherwise
            # inherits the data recorded upstream instead of a default.
            if (own is None and self.shared_data) or isinstance(own, dict):
                section["data"] = {**self.shared_data, **(own or {})}
                self.problems.extend(_missing_data_files(own or {}, f"{s}.data"))
        elif isinstance(section.get("data"), (str, dict)):
            data = section["data"]
            where = s if isinstance(data, str) else f"{s}.data"
            self.problems.extend(_missing_data_files(data if isinstance(data, dict) else {"data": data}, where))
        return section

    def _add_step(self, s: str, key: str, sec: dict, target: str | None) -> None:
        spec, cls = STAGES[s], config_class(s)
        inputs, producers = self._wire_inputs(s, sec)
        for up in spec.after:
            if up in self.stages:
                producers[f"after:{up}"] = up
        out = self._default_output(s, sec, target)
        try:
            cfg = cls.from_dict(sec, section=s)
        except ConfigError as e:
            self.problems.extend(e.problems)
            cfg = None
        if s == "verify" and cfg is not None:
            out = Path(cfg.export_dir) / "verify.json"
        if s == "report":
            out = self.run_dir / "report.html"
        self.outputs[key] = out
        if cfg is not None:
            self.steps.append(Step(s, key, cfg, out, inputs, producers))
        self.problems.extend(_missing_model_paths(s, sec, spec, str(self.run_dir)))

    def _wire_inputs(self, s: str, sec: dict) -> tuple[dict[str, Path], dict[str, str]]:
        """Point each input field at the nearest earlier output (or check the path the recipe set)."""
        spec, cls = STAGES[s], config_class(s)
        fields = _field_names(cls)
        inputs: dict[str, Path] = {}
        producers: dict[str, str] = {}
        for fld, ups in spec.inputs.items():
            if fld not in fields:
                continue
            if sec.get(fld) is not None:  # set by the recipe: use as is
                self._check_given_input(s, fld, sec[fld], ups, inputs, producers)
                continue
            up = next((u for u in ups if u in self.outputs), None)  # an earlier stage of this recipe
            if up is not None:
                sec[fld] = str(self.outputs[up])
                inputs[fld] = self.outputs[up]
                producers[fld] = up
                continue
            # Nothing upstream in this recipe: the stage's own default, as its command would use
            # (one-stage recipes written by --save-recipe); plan() checks that it exists.
            default = _field_default(cls, fld)
            if not isinstance(default, str):
                self.problems.append(
                    f"{s}.{fld} is not set and no earlier stage in this recipe produces it "
                    f"(one of: {', '.join(ups)}); add one to stages or set {s}.{fld}"
                )
                continue
            sec[fld] = default
            inputs[fld] = Path(default)
        return inputs, producers

    def _check_given_input(self, s: str, fld: str, value: Any, ups: tuple[str, ...], inputs: dict, producers: dict):
        made_here = any(str(self.outputs.get(u)) == value for u in ups)
        if isinstance(value, str) and _looks_local(value) and not Path(value).expanduser().exists() and not made_here:
            self.problems.append(f"{s}.{fld}: {value} does not exist")
        if isinstance(value, str):
            inputs[fld] = Path(value)
            prod = next((u for u in ups if u in self.outputs and str(self.outputs[u]) == value), None)
            if prod:
                producers[fld] = prod

    def _default_output(self, s: str, sec: dict, target: str | None) -> Path | None:
        """The step's output folder; an unset one goes under the run folder. Sets ``report.run_dir``."""
        spec = STAGES[s]
        fields = _field_names(config_class(s))
        out: Path | None = None
        if spec.output_key and spec.output_key in fields:
            if sec.get(spec.output_key) is None:
                sub = self.run_dir / spec.subdir
                sec[spec.output_key] = str(sub / target if s == "package" else sub)
            if not isinstance(sec[spec.output_key], str):  # found by the hostile campaign: a mapping crashed Path()
                self.problems.append(
                    f"{s}.{spec.output_key} must be a folder path, got {type(sec[spec.output_key]).__name__}"
                )
                return None
            out = Path(sec[spec.output_key])
        if s == "report" and "run_dir" in fields:
            sec.setdefault("run_dir", str(self.run_dir))
        return out


def _link_after_inputs(steps: list[Step]) -> None:
    """``after:`` inputs (read without a config field, e.g. package reads verify.json) resolve to files."""
    for st in steps:
        for k, up in list(st.producers.items()):
            if k.startswith("after:"):
                upstep = next((x for x in steps if x.stage == up), None)
                if upstep is not None and upstep.output is not None:
                    st.inputs[k] = upstep.output


def _dedupe(items: list[str]) -> list[str]:
    seen: set[str] = set()
    return [x for x in items if not (x in seen or seen.add(x))]


def _missing_data_files(data: dict, where: str) -> list[str]:
    from mobilebert_kit.data import BUILTIN_DATASETS

    out = []
    for k in DATA_PATH_KEYS:
        v = data.get(k)
        if not isinstance(v, str) or not v or v in BUILTIN_DATASETS or Path(v).expanduser().exists():
            continue
        if k == "data" and "/" not in v and "." not in v:  # read as a built-in name, as data.load_dataset does
            out.append(
                f"{where}.{k}: unknown built-in dataset '{v}'{did_you_mean(v, BUILTIN_DATASETS)}; "
                f"known: {', '.join(BUILTIN_DATASETS)}; or pass a .csv/.tsv/.jsonl file"
            )
        else:
            out.append(f"{where}.{k}: file {v} does not exist")
    return out


def _missing_model_paths(stage: str, section: dict, spec: StageSpec, run_dir: str) -> list[str]:
    out = []
    for k in ("model", "student", "teacher", "install_into"):
        if k in spec.inputs:
            continue
        v = section.get(k)
        if isinstance(v, str) and _looks_local(v) and not Path(v).expanduser().exists():
            out.append(f"{stage}.{k}: {v} does not exist")
    models = section.get("models")
    for v in models if isinstance(models, list) else []:
        if isinstance(v, str) and not v.startswith(run_dir) and not Path(v).expanduser().exists():
            out.append(f"{stage}.models: {v} does not exist")
    return out


def _cross_checks(stages: list[str], cfgs: dict[str, Any], shared_data: dict) -> list[str]:
    """Combinations no single stage can see."""
    p: list[str] = []
    comp = cfgs.get("compress")
    if comp is not None:
        if not (comp.steps or comp.prune or comp.prune_heads or comp.prune_ffn or comp.trim_vocab or comp.int8):
            p.append("compress has nothing to do: set at least one of prune, prune_heads, prune_ffn, trim_vocab, int8")
        if getattr(comp, "static", False):
            n_train = shared_data.get("max_train_examples")
            if not comp.int8:
                pass  # CompressConfig.validate already says so
            elif comp.calib_samples < 1:
                p.append("compress.static needs calibration data: calib_samples must be >= 1")
            elif isinstance(n_train, int) and comp.calib_samples > n_train:
                p.append(
                    f"compress.static calibrates on the training split, but data.max_train_examples is {n_train} "
                    f"< compress.calib_samples {comp.calib_samples}; lower calib_samples or use dynamic INT8"
                )
    exp = cfgs.get("export")
    formats = set(exp.resolved_formats) if exp is not None and hasattr(exp, "resolved_formats") else None
    if formats is not None:
        bench = cfgs.get("bench")
        if bench is not None and not bench.models:
            for f in bench.formats or []:
                if f not in formats:
                    p.append(
                        f"bench.formats has '{f}' but export.formats ({', '.join(sorted(formats))}) does not make it"
                    )
        ver = cfgs.get("verify")
        if ver is not None:
            for f in ver.formats:
                if f not in formats:
                    p.append(
                        f"verify.formats has '{f}' but export.formats ({', '.join(sorted(formats))}) does not make it"
                    )
        from mobilebert_kit import formats as registry

        for key, cfg in cfgs.items():
            need = registry.for_target(cfg.target, cfg.runtime) if key.startswith("package-") else None
            if need and need.name not in formats:
                p.append(f"package target '{cfg.target}' needs the '{need.name}' export: add it to export.formats")
    if any(k.startswith("package-") for k in cfgs) and "export" in stages and "verify" not in stages:
        p.append(
            "package only bundles a verified export, and this recipe exports a new one: add 'verify' to stages before 'package'"
        )
    return p
