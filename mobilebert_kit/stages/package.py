"""Package a verified export as a self-testing phone bundle (``mbk package``).

Reads one format folder written by ``mbk export`` and writes ``artifacts/package/<target>/`` plus
``<target>.zip`` beside it:

* the model (``model.ort`` for Android, ``model.tflite`` with ``--runtime litert``, ``model.mlpackage`` for iOS),
* ``vocab.txt`` and the HF tokenizer files, ``labels.json``,
* ``golden.json``: a handful of texts with their token ids, expected logits, label, and a per-vector
  ``atol`` derived from measured spread (:mod:`mobilebert_kit.phone.golden`), so the app can self-test its
  tokenizer and runtime on the device,
* ``model_meta.json``: input names, sequence length, lowercase/accent rules, special token ids,
  label names, verify metrics, sha256 of every other file, tool and runtime versions.

Export folder contract assumed here (issue 5 owns the writer; this reader is tolerant)::

    <export_dir>/verify.json               {"passed": bool,
                                            "formats": {"ort": {"passed": bool, ...metrics,
                                                                "model_sha256"?: str}, ...}}
    <export_dir>/<format>/model_meta.json  {"format": "ort"|"coreml"|..., "model_file": "model.ort",
                                            "input_names": [...], "max_length": int,
                                            "do_lower_case"?: bool, "strip_accents"?: bool|null,
                                            "labels": [...],            # or labels.json beside it
                                            "files": {relpath: sha256}, # every file of the folder
                                            "verify"?: {"passed": bool, ...}}
    <export_dir>/<format>/vocab.txt, tokenizer.json, tokenizer_config.json, labels.json

``verify.json`` wins over ``model_meta.json["verify"]``; an export never verified, failed, or
changed after export/verify (hash mismatch) is refused before anything is written.

**One runtime version per bundle.** The golden logits are computed in one onnxruntime version: for a
target whose app pins one (Android: ``runtimes.ANDROID_ORT_VERSION``) that version, run as a side
runtime, else the host's. ``model_meta.json["runtime"]`` and ``golden.json["runtime"]`` name it, and
the bundle is refused unless ``verify.json`` holds a passing record for that format in that version
(``mbk verify --runtime-version X``), or ``--allow-unverified-runtime`` (then ``verified: false``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mobilebert_kit import formats as registry
from mobilebert_kit.artifacts import (
    LABELS,
    MANIFEST,
    META,
    VERIFY,
    check_output_dir,
    file_hashes,
    folder_size,
    library_versions,
    read_json,
    read_labels,
    sha256_file,
    sha256_tree,
    staged_output,
    write_json,
    write_labels,
    write_manifest,
)
from mobilebert_kit.config import StageConfig
from mobilebert_kit.errors import ArtifactError, ConfigError, PackageError, warn
from mobilebert_kit.formats import BundleFacts, ExportFormat
from mobilebert_kit.locking import holds_output
from mobilebert_kit.phone.golden import THREADS, reference_runtime
from mobilebert_kit.runtimes import ORT, host_ort_version, runtime_key
from mobilebert_kit.stages.base import RunContext, StageResult

GOLDEN = "golden.json"
BUNDLE_VERSION = 1

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# Short, varied texts: accents, CJK, emoji, a literal special token, and one long enough to truncate.
DEFAULT_GOLDEN_TEXTS = [
    "a wonderful, moving film",
    "A dull, boring mess. Terrible acting!",
    "Café naïve résumé — ÜBER cool 😀",
    "电影很好看 [SEP] but the ending…",
    "",
    " ".join(["long"] * 600),
]


def targets() -> list[str]:
    """The phone targets some registered format is packaged for (android, ios)."""
    return list(dict.fromkeys(f.package_target for f in registry.every() if f.package_target))


def target_format(target: str, runtime: str | None = None) -> str:
    """The registered export format a phone ``target`` is bundled from for ``runtime`` (android -> ort,
    or tflite with ``--runtime litert``; ios -> coreml)."""
    fmt = registry.for_target(target, runtime)
    if fmt is None and runtime is not None and target in targets():
        raise ConfigError(_runtime_problem(target, runtime))
    if fmt is None:
        raise ConfigError(f"--target '{target}' is not supported; use one of: {', '.join(targets())}")
    return fmt.name


def _runtime_problem(target: str, runtime: str) -> str:
    return f"--runtime '{runtime}' is not available for --target {target}; use one of: " + ", ".join(
        registry.runtimes_for(target)
    )


@dataclass
class PackageConfig(StageConfig):
    """Settings of ``mbk package``."""

    target: str = "android"
    runtime: str | None = None  # default: the target's default runtime (android: ort, ios: coreml)
    export_dir: str = "artifacts/export"
    output: str | None = None  # default: artifacts/package/<target>
    make_zip: bool = True
    install_into: str | None = None  # android_demo/ or ios_demo/: copy the bundle into the app's assets
    golden_texts: list[str] = field(default_factory=lambda: list(DEFAULT_GOLDEN_TEXTS))
    golden_atol: float | None = None  # a minimum per-vector atol; None: derived from measured spread (golden.py)
    allow_unverified_runtime: bool = False  # bundle even if verify never ran the golden's runtime version

    def validate(self) -> list[str]:
        problems = []
        if self.target not in targets():
            problems.append(f"--target '{self.target}' is not supported; use one of: {', '.join(targets())}")
        elif self.runtime is not None and self.runtime not in registry.runtimes_for(self.target):
            problems.append(_runtime_problem(self.target, self.runtime))
        if not self.golden_texts:
            problems.append("golden_texts is empty; the on-device self-test needs at least one text")
        if self.golden_atol is not None and not self.golden_atol > 0:
            problems.append(f"golden_atol must be > 0, got {self.golden_atol}")
        return problems

    @property
    def output_path(self) -> Path:
        if self.output:
            return Path(self.output)
        default = self.runtime is None or self.runtime == registry.runtimes_for(self.target)[0]
        return Path("artifacts/package") / (self.target if default else f"{self.target}-{self.runtime}")


# ----------------------------------------------------------------------------------------------
# Reading and checking the export


def load_export(export_dir: Path, fmt: str) -> tuple[Path, dict]:
    """Return (format folder, model_meta) after checking that every recorded file is intact."""
    src = export_dir / fmt
    if not src.is_dir():
        raise ArtifactError(
            f"no '{fmt}' export in {export_dir} (missing {src}); run `mbk export --format {fmt}` first "
            "or pass --export-dir"
        )
    meta = read_json(src / META)
    if not isinstance(meta, dict):
        raise ArtifactError(f"{src / META} is not a JSON object; re-run `mbk export --format {fmt}`")
    files = meta.get("files")
    if not isinstance(files, dict) or not files:
        raise ArtifactError(f"{src / META} records no file hashes ('files'); re-run `mbk export --format {fmt}`")
    actual = file_hashes(src, exclude=(META,))
    missing = sorted(set(files) - set(actual))
    changed = sorted(f for f in files if f in actual and actual[f] != files[f])
    if missing or changed:
        what = "; ".join(
            x
            for x in (
                f"missing: {', '.join(missing)}" if missing else "",
                f"changed: {', '.join(changed)}" if changed else "",
            )
            if x
        )
        raise ArtifactError(
            f"export {src} was modified after `mbk export` ({what}); re-run `mbk export` and `mbk verify`"
        )
    return src, meta


def model_path(src: Path, meta: dict, fmt: ExportFormat) -> Path:
    name = meta.get("model_file")
    if name:
        p = src / name
    else:
        suffix = Path(fmt.model_file).suffix
        found = sorted(src.glob(f"*{suffix}"))
        if len(found) != 1:
            raise ArtifactError(
                f"{src / META} names no 'model_file' and {src} holds {len(found)} *{suffix} files; "
                f"re-run `mbk export --format {fmt.name}`"
            )
        p = found[0]
    if not p.exists():
        raise ArtifactError(
            f"model file {p} named in {src / META} does not exist; re-run `mbk export --format {fmt.name}`"
        )
    return p


def check_verified(export_dir: Path, src: Path, meta: dict, fmt: str, model: Path) -> dict:
    """Return the verify record for ``fmt``; refuse an export that failed or never ran ``mbk verify``."""
    record: dict | None = None
    vpath = export_dir / VERIFY
    if vpath.exists():
        data = read_json(vpath)
        formats = data.get("formats") if isinstance(data, dict) else None
        if isinstance(formats, dict) and fmt in formats and isinstance(formats[fmt], dict):
            record = dict(formats[fmt])
        elif isinstance(data, dict) and not isinstance(formats, dict) and "passed" in data:
            record = dict(data)  # a single-format verify result
        if (
            record is not None
            and isinstance(data, dict)
            and data.get("passed") is False
            and record.get("passed") is None
        ):
            record["passed"] = False
    if record is None and isinstance(meta.get("verify"), dict):
        record = dict(meta["verify"])
    if record is None:
        raise PackageError(
            f"the '{fmt}' export in {export_dir} was never verified (no '{fmt}' entry in {vpath}); "
            f"run `mbk verify --formats {fmt}` before packaging"
        )
    if record.get("passed") is not True:
        failed = [
            c.get("name", "?") + (f" ({c['detail']})" if c.get("detail") else "")
            for c in record.get("checks") or []
            if isinstance(c, dict) and c.get("passed") is False
        ]
        why = record.get("reason") or record.get("error") or "; ".join(failed) or "see " + str(vpath)
        raise PackageError(
            f"the '{fmt}' export failed `mbk verify` ({why}); fix the export and re-run `mbk verify` before packaging"
        )
    want = record.get("model_sha256") or record.get("sha256")
    if want and want != sha256_tree(model):
        raise ArtifactError(
            f"{model} changed after `mbk verify` (sha256 differs from the verified one); "
            "re-run `mbk export` and `mbk verify`"
        )
    return record


def read_vocab(src: Path) -> list[str]:
    vocab = src / "vocab.txt"
    if not vocab.exists():
        raise ArtifactError(
            f"{src} has no vocab.txt; the on-device WordPiece tokenizer needs it. "
            "Re-run `mbk export` from a BERT WordPiece model"
        )
    tokens = vocab.read_text(encoding="utf-8").split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    missing = [t for t in ("[CLS]", "[SEP]", "[UNK]") if t not in tokens]
    if missing:
        raise PackageError(f"{vocab} lacks {', '.join(missing)}; only BERT WordPiece vocabularies can be packaged")
    return tokens


def tokenizer_rules(src: Path, meta: dict, tokenizer) -> dict:
    """Normalization rules the device tokenizer must apply, read from the HF fast tokenizer itself."""
    from mobilebert_kit.models import bert_normalizer, tokenizer_model_type, tokenizer_spec

    rules = {
        "do_lower_case": meta.get("do_lower_case"),
        "strip_accents": meta.get("strip_accents"),
        "tokenize_chinese_chars": True,
        "clean_text": True,
    }
    if getattr(tokenizer, "backend_tokenizer", None) is not None:
        spec = tokenizer_spec(tokenizer)
        norm, model_type = bert_normalizer(spec), tokenizer_model_type(spec)
        if norm is None or model_type != "WordPiece":
            raise PackageError(
                f"the tokenizer in {src} is {(spec.get('normalizer') or {}).get('type')}/{model_type}, "
                "not BERT WordPiece; the device tokenizers only implement BertNormalizer + WordPiece"
            )
        rules.update(
            do_lower_case=norm["lowercase"],
            strip_accents=norm["strip_accents"],
            tokenize_chinese_chars=norm["handle_chinese_chars"],
            clean_text=norm["clean_text"],
        )
        rules["max_input_chars_per_word"] = spec["model"].get("max_input_chars_per_word", 100)
    if rules["do_lower_case"] is None:
        rules["do_lower_case"] = bool(getattr(tokenizer, "do_lower_case", True))
    # HF: strip_accents=None means "strip when lowercasing"; write the resolved value too.
    rules["strip_accents_resolved"] = (
        rules["do_lower_case"] if rules["strip_accents"] is None else bool(rules["strip_accents"])
    )
    return rules


# ----------------------------------------------------------------------------------------------
# The stage


@dataclass
class _Inputs:
    """What the bundle takes from the export folder besides the model."""

    vocab: list[str]
    tokenizer: Any
    rules: dict
    labels: list[str]
    max_length: int
    special_ids: dict[str, int]
    pad_id: int


@holds_output
def run(config: PackageConfig, ctx: RunContext | None = None) -> StageResult:
    """Build the bundle for ``config.target``; the result carries the bundle folder and its meta.

    Raises:
        ArtifactError: the export is missing, incomplete or changed after export/verify.
        PackageError: the export was never verified or failed, or labels/vocab do not match the model.
    """
    ctx = ctx or RunContext()
    ctx.log(f"packaging {config.target} bundle from {config.export_dir} ...")
    fmt = registry.get(target_format(config.target, config.runtime))
    export_dir = Path(config.export_dir)
    out = config.output_path
    check_output_dir(out, ctx.overwrite, config.input_paths())
    _check_zip(config, out, ctx.overwrite)
    install_dir = _install_dir(config, fmt)
    src, meta = load_export(export_dir, fmt.name)
    model = model_path(src, meta, fmt)
    verify = check_verified(export_dir, src, meta, fmt.name, model)
    inputs = _read_inputs(src, meta)
    facts = fmt.bundle_facts(model, export_dir, inputs.vocab, inputs.special_ids, inputs.pad_id)
    _check_label_count(facts, inputs.labels)
    side = reference_runtime(fmt, ctx.log)
    runtime = runtime_record(export_dir, fmt, facts, side, config.allow_unverified_runtime)
    ctx.log(f"golden vectors: logits in {runtime['key']}, spread over versions x {THREADS} threads ...")
    golden = _golden(inputs, facts, config, side, bool(meta.get("int8")), runtime, export_dir)
    bundle_meta = _bundle_meta(config, fmt, export_dir, src, meta, inputs, facts, verify)
    bundle_meta.update(runtime=runtime, golden_atol=golden["atol"])
    _write_bundle(config, out, install_dir, model, src, inputs.labels, golden, bundle_meta, ctx.overwrite)
    return _result(config, out, bundle_meta)


def _check_zip(config: PackageConfig, out: Path, overwrite: bool) -> None:
    """Refuse before any work to replace a ``<output>.zip`` without --overwrite, or one mbk did not write
    (a zip whose top folder holds no bundle's model_meta.json)."""
    zip_path = out.with_name(out.name + ".zip")
    if not config.make_zip or not zip_path.exists():
        return
    if not overwrite:
        raise ArtifactError(f"{zip_path} exists; pass --overwrite to replace it or choose another --output")
    try:
        with zipfile.ZipFile(zip_path) as z:
            ours = f"{out.name}/{META}" in z.namelist()
    except (zipfile.BadZipFile, OSError):
        ours = False
    if not ours:
        raise ArtifactError(
            f"--overwrite refused: {zip_path} was not written by mbk package (no {out.name}/{META} inside), so "
            "replacing it could delete your file; move it or choose another --output"
        )


def _install_dir(config: PackageConfig, fmt: ExportFormat) -> Path | None:
    if not config.install_into:
        return None
    if not Path(config.install_into).is_dir():
        raise PackageError(
            f"--install-into {config.install_into} is not a folder; pass the app folder ({fmt.demo_app})"
        )
    if fmt.app_bundle_dir is None:
        raise PackageError(
            f"no demo app runs the '{fmt.runtime_name}' runtime; drop --install-into (the bundle is in {config.output_path})"
        )
    app = Path(config.install_into)
    if fmt.app_marker and not (app / fmt.app_marker).is_file():
        raise PackageError(
            f"--install-into {app} does not look like the {config.target} app (no {fmt.app_marker}); "
            f"pass the app folder ({fmt.demo_app})"
        )
    return app / str(fmt.app_bundle_dir)


def _read_inputs(src: Path, meta: dict) -> _Inputs:
    from mobilebert_kit.models import load_tokenizer

    vocab = read_vocab(src)
    tokenizer = load_tokenizer(str(src))
    rules = tokenizer_rules(src, meta, tokenizer)
    labels = _labels(src, meta)
    special_ids = {t: vocab.index(t) for t in SPECIAL_TOKENS if t in vocab}
    max_length = int(meta.get("max_length") or 128)
    return _Inputs(vocab, tokenizer, rules, labels, max_length, special_ids, special_ids.get("[PAD]", 0))


def _check_label_count(facts: BundleFacts, labels: list[str]) -> None:
    if facts.num_outputs is not None and facts.num_outputs != len(labels):
        raise PackageError(
            f"labels.json lists {len(labels)} labels ({', '.join(labels)}) but the model has {facts.num_outputs} "
            "outputs; fix the labels or re-export the right model"
        )


def _bundle_meta(
    config: PackageConfig,
    fmt: ExportFormat,
    export_dir: Path,
    src: Path,
    meta: dict,
    inputs: _Inputs,
    facts: BundleFacts,
    verify: dict,
) -> dict:
    """model_meta.json of the bundle (the model hash and file hashes are added once the files are in place)."""
    return {
        "bundle_version": BUNDLE_VERSION,
        "target": config.target,
        "format": fmt.name,
        "package_runtime": fmt.runtime_name,  # `--runtime` (ort, litert); "runtime" below: the exact version
        "model_file": fmt.model_file,
        "model_sha256": None,
        "input_names": facts.input_names,
        "output_name": meta.get("output_names", ["logits"])[0] if meta.get("output_names") else "logits",
        "max_length": inputs.max_length,
        "fixed_length": facts.fixed_length,
        "tokenizer": {
            **inputs.rules,
            "vocab_file": "vocab.txt",
            "vocab_size": len(inputs.vocab),
            "special_tokens": inputs.special_ids,
            "embedding_rows": facts.embedding_rows,
        },
        "labels": inputs.labels,
        "num_labels": len(inputs.labels),
        "golden_file": GOLDEN,
        "golden_atol": config.golden_atol,
        "verify": verify,
        "source": {"export_dir": str(export_dir), "format_dir": str(src), "export_meta_files": meta.get("files")},
        **facts.facts,
        "versions": library_versions(),
    }


def _write_bundle(
    config: PackageConfig,
    out: Path,
    install_dir: Path | None,
    model: Path,
    src: Path,
    labels: list[str],
    golden: dict,
    bundle_meta: dict,
    overwrite: bool,
) -> None:
    """Write the bundle (and its zip, and the app's copy) atomically; the zip goes too if anything fails."""
    zip_path = out.with_name(out.name + ".zip")
    zip_before = zip_path.exists()
    try:
        with staged_output(out, overwrite=overwrite, inputs=config.input_paths()) as tmp:
            _copy_model_and_tokenizer(model, src, tmp / bundle_meta["model_file"], tmp)
            write_labels(tmp, labels)
            write_json(tmp / GOLDEN, golden)
            bundle_meta["model_sha256"] = sha256_tree(tmp / bundle_meta["model_file"])
            bundle_meta["files"] = file_hashes(tmp, exclude=(META, MANIFEST))
            write_json(tmp / META, bundle_meta)
            write_manifest(
                tmp,
                stage="package",
                config=dataclasses.asdict(config),
                inputs={"export": {"path": str(src), "sha256": sha256_tree(src)}},
                metrics={"golden_texts": len(golden["vectors"])},
            )
            if config.make_zip:
                _zip(tmp, zip_path, arcroot=out.name)
            if install_dir is not None:
                _install(tmp, install_dir)
    except BaseException:
        if config.make_zip and not zip_before:
            zip_path.unlink(missing_ok=True)
        raise


def _copy_model_and_tokenizer(model: Path, src: Path, dest: Path, folder: Path) -> None:
    if model.is_dir():
        shutil.copytree(model, dest)
    else:
        shutil.copy2(model, dest)
    for name in TOKENIZER_FILES:
        if (src / name).exists():
            shutil.copy2(src / name, folder / name)


def _install(bundle: Path, install_dir: Path) -> None:
    """Replace the app's bundle folder atomically too (it is git-ignored)."""
    with staged_output(install_dir, overwrite=True) as inst:
        for f in sorted(bundle.rglob("*")):
            if f.is_file():
                dest = inst / f.relative_to(bundle)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, dest)


def _result(config: PackageConfig, out: Path, meta: dict) -> StageResult:
    size_mb = folder_size(out) / 1e6
    summary = (
        f"{out}: {meta['model_file']} ({meta['num_labels']} labels, {len(meta['files'])} files, {size_mb:.1f} MB, "
        f"model sha256 {meta['model_sha256'][:12]})"
    )
    if config.make_zip:
        summary += f" + {out.name}.zip"
    if config.install_into:
        summary += f"; installed into {config.install_into}"
    return StageResult(out, dict(meta), [summary])


def _labels(src: Path, meta: dict) -> list[str]:
    if (src / LABELS).exists():
        labels = read_labels(src)
    elif isinstance(meta.get("labels"), list):
        labels = [str(x) for x in meta["labels"]]
    else:
        raise ArtifactError(f"{src} has no labels.json and {META} lists no 'labels'; re-run `mbk export`")
    if isinstance(meta.get("labels"), list) and [str(x) for x in meta["labels"]] != labels:
        raise PackageError(
            f"{src / LABELS} ({', '.join(labels)}) disagrees with {META} labels "
            f"({', '.join(map(str, meta['labels']))}); re-run `mbk export`"
        )
    return labels


def runtime_record(export_dir: Path, fmt: ExportFormat, facts: BundleFacts, side, allow: bool) -> dict:
    """The one runtime version the bundle's golden logits come from; refused unless verify passed in it."""
    from mobilebert_kit.phone.golden import other_runtime

    if other_runtime(facts.runtime):  # LiteRT: verify ran it in this very runtime
        return _other_runtime_record(export_dir, fmt, facts.runtime, allow)
    version = side.version if side is not None else host_ort_version()
    key = runtime_key(ORT, version)
    golden_format = Path(facts.runtime.path).parent.name  # the export folder whose model computes them
    entry = _verify_entry(export_dir, golden_format)
    record = (entry.get("runtimes") or {}).get(key) or {}
    verified = record.get("passed") is True and entry.get("passed") is True
    if not verified and not allow:
        state = "failed" if record.get("passed") is False else "was never verified"
        why = f" (skipped: {record['skipped']})" if record.get("skipped") else ""
        raise PackageError(
            f"the '{golden_format}' export {state} in {key}{why}, the runtime the bundle's golden vectors are "
            f"computed in{_pinned_by(fmt, version)}; run `mbk verify --runtime-version {version}` first "
            "(or pass --allow-unverified-runtime)"
        )
    return {
        "name": ORT,
        "version": version,
        "key": key,
        "verified": verified,
        "verified_format": golden_format,
        "app_pinned_version": getattr(fmt, "app_runtime_version", None),
    }


def _other_runtime_record(export_dir: Path, fmt: ExportFormat, runtime, allow: bool) -> dict:
    name, version = runtime.runtime_name, runtime.runtime_version
    verified = _verify_entry(export_dir, fmt.name).get("passed") is True
    if not verified and not allow:
        raise PackageError(
            f"the '{fmt.name}' export was never verified in {name} {version}; run `mbk verify --format {fmt.name}` "
            "first (or pass --allow-unverified-runtime)"
        )
    key = f"{name}=={version}"
    return {"name": name, "version": version, "key": key, "verified": verified, "verified_format": fmt.name}


def _pinned_by(fmt: ExportFormat, version: str) -> str:
    return f", pinned by {fmt.demo_app}" if getattr(fmt, "app_runtime_version", None) == version else ""


def _verify_entry(export_dir: Path, fmt: str) -> dict:
    data = read_json(export_dir / VERIFY) if (export_dir / VERIFY).exists() else {}
    entry = ((data.get("formats") if isinstance(data, dict) else None) or {}).get(fmt)
    return entry if isinstance(entry, dict) else {}


def _measured_drift(export_dir: Path, fmt: str) -> tuple[float, str]:
    """The largest logit change verify measured between onnxruntime versions on the test split (INT8 drift)."""
    from mobilebert_kit.phone.golden import INT8_DRIFT, Spec

    drift, source = INT8_DRIFT, Spec(True).drift_from
    for key, rec in ((_verify_entry(export_dir, fmt).get("runtimes")) or {}).items():
        value = rec.get("max_abs_diff_vs_host")
        if isinstance(value, (int, float)) and value > drift:
            drift, source = float(value), f"mbk verify: {key} vs host onnxruntime on the test split (n={rec.get('n')})"
    return drift, source


def _golden(
    inputs: _Inputs, facts: BundleFacts, config: PackageConfig, side, int8: bool, runtime: dict, export_dir: Path
) -> dict:
    """golden.json: vectors with logits in the bundle's runtime version and per-vector atol (golden.py)."""
    from mobilebert_kit.phone import golden as g

    texts = list(config.golden_texts) + g.LABEL_CANDIDATES
    ids = [
        [int(i) for i in inputs.tokenizer(t, truncation=True, max_length=inputs.max_length)["input_ids"]] for t in texts
    ]
    m = g.measure(facts.runtime, ids, inputs.pad_id, side)
    floor = config.golden_atol if config.golden_atol is not None else facts.facts.get("golden_atol_floor")
    spec = g.Spec(int8, floor, *_measured_drift(export_dir, runtime["verified_format"]))
    every = g.vectors(texts, ids, m, inputs.labels, spec)
    chosen = every[: len(config.golden_texts)]
    extra = [v for v in every[len(chosen) :] if v["check_label"]]
    chosen += extra[: g.label_candidates_needed(chosen)]
    if g.label_candidates_needed(chosen):
        warn(
            f"only {sum(v['check_label'] for v in chosen)} golden vector(s) have a top-2 logit margin above "
            f"{g.MARGIN_FACTOR:g} x their atol: the self-test checks the label on those only"
        )
    return {
        "max_length": inputs.max_length,
        "fixed_length": facts.fixed_length,
        "pad_id": inputs.pad_id,
        "atol": max(v["atol"] for v in chosen),  # the loosest vector's: for apps that read one number
        "rule": g.RULE,
        "runtime": {**m.reference.provenance, "verified": runtime["verified"]},
        "tolerance": g.tolerance_info(m, spec),
        "note": "input_ids are unpadded; pad with pad_id (attention_mask 0) to fixed_length when it is set",
        "vectors": chosen,
    }


def _zip(folder: Path, zip_path: Path, arcroot: str) -> None:
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_zip = zip_path.with_name(f".{zip_path.name}.tmp-{os.getpid()}")
    try:
        with zipfile.ZipFile(tmp_zip, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for f in sorted(folder.rglob("*")):
                if f.is_file():
                    z.write(f, f"{arcroot}/{f.relative_to(folder).as_posix()}")
        os.replace(tmp_zip, zip_path)
    except BaseException:
        tmp_zip.unlink(missing_ok=True)
        raise


def verify_bundle(folder: str | os.PathLike) -> list[str]:
    """Re-check a bundle's recorded hashes; returns the problems (empty when intact)."""
    folder = Path(folder)
    meta = read_json(folder / META)
    actual = file_hashes(folder, exclude=(META, MANIFEST))
    problems = [f"{f}: missing" for f in sorted(set(meta["files"]) - set(actual))]
    problems += [f"{f}: sha256 differs" for f in sorted(meta["files"]) if f in actual and actual[f] != meta["files"][f]]
    problems += [f"{f}: not recorded" for f in sorted(set(actual) - set(meta["files"]))]
    # model_meta.json cannot hold its own hash: the manifest, written after it, records it
    recorded = (read_json(folder / MANIFEST).get("files") or {}).get(META) if (folder / MANIFEST).exists() else None
    if recorded is None:
        problems.append(f"{META}: its sha256 is not recorded in {MANIFEST}")
    elif sha256_file(folder / META) != recorded:
        problems.append(f"{META}: sha256 differs from {MANIFEST} (edited after packaging?)")
    return problems
