"""Export stage: a classifier folder -> self-contained runtime folders under ``artifacts/export/<format>/``.

The formats are the registered ones (:mod:`mobilebert_kit.formats`: onnx, ort, torchscript,
coreml, and the optional executorch); each format module says how its artifact is built.

Every folder holds the model file, tokenizer files, ``labels.json`` and ``model_meta.json``
(inputs, dtypes, dynamic axes, max length, normalisation settings, labels, sha256 of every file).
All requested formats are built in hidden temp folders first and moved into place only when
every one succeeded, so a failure never leaves a half-written export.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mobilebert_kit import formats as registry
from mobilebert_kit.artifacts import (
    COMPRESSION,
    MANIFEST,
    META,
    VERIFY,
    check_output_dir,
    file_hashes,
    folder_size,
    is_mbk_output,
    library_versions,
    not_a_folder,
    read_json,
    scratch_dir,
    sha256_tree,
    staged_output,
    write_json,
    write_labels,
    write_manifest,
)
from mobilebert_kit.config import StageConfig, check_choice, check_range, did_you_mean
from mobilebert_kit.errors import ConfigError, MbkError, ModelError
from mobilebert_kit.formats import Build, ExportFormat, Source, tokenizer_settings
from mobilebert_kit.locking import holds_output
from mobilebert_kit.stages.base import RunContext, StageResult

DEFAULT_MAX_LENGTH = 128
COREML_TARGETS = ("iOS15", "iOS16", "iOS17", "iOS18")
# Core ML accepts EnumeratedShapes on more than one input only from iOS 18 (coremltools raises
# "Expected a single enumerated shape input for deployment targets below iOS 18"); BERT has three.
COREML_ENUMERATED_TARGET = "iOS18"
PALETTE_BITS = (1, 2, 3, 4, 6, 8)  # what coremltools' OpPalettizerConfig accepts
PALETTE_MODES = ("kmeans", "uniform")


@dataclass
class ExportConfig(StageConfig):
    """What to export and how."""

    model: str = "artifacts/compressed"  # any classifier folder (compress/distill/finetune output)
    output: str = "artifacts/export"
    formats: list[str] = field(default_factory=lambda: ["all"])
    opset: int = 17
    max_length: int | None = None  # default: what the model was trained with (lineage), else 128
    int8: bool | None = None  # default: what compression.json asks for (fp32 without it)
    coreml_precision: str = "fp32"  # fp32 | fp16 compute precision of the mlprogram
    coreml_target: str | None = None  # default: iOS16, or iOS18 with coreml_lengths
    # Enumerated sequence lengths (the Neural Engine runs only enumerated or default shapes,
    # coremltools#1764); empty: one flexible length 1..max_length (runs on CPU/GPU).
    coreml_lengths: list[int] = field(default_factory=list)
    coreml_palettize_bits: int | None = None  # palettized CoreML weights (replaces CoreML's int8 weights)
    coreml_palettize_mode: str = "kmeans"  # kmeans (needs scikit-learn) | uniform

    def validate(self) -> list[str]:
        p: list[str] = []
        known = registry.names()
        for f in self.formats:
            if f not in (*known, "all"):
                p.append(f"unknown export format '{f}'{did_you_mean(f, known)}; known formats: {', '.join(known)}, all")
        if not self.formats:
            p.append(f"no export format given; known formats: {', '.join(known)}, all")
        check_range(p, "opset", self.opset, 14, 21)
        check_range(p, "max_length", self.max_length, 2, 8192)
        if self.coreml_precision not in ("fp32", "fp16"):
            p.append(f"coreml_precision must be fp32 or fp16; got '{self.coreml_precision}'")
        p += self._coreml_problems()
        return p

    def _coreml_problems(self) -> list[str]:
        p: list[str] = []
        if self.coreml_target is not None:
            check_choice(p, "coreml_target", self.coreml_target, COREML_TARGETS)
        lengths = self.coreml_lengths
        if any(n < 2 for n in lengths):
            p.append(f"coreml_lengths must be >= 2 (a text is at least [CLS] [SEP]); got {_ints(lengths)}")
        if any(a >= b for a, b in zip(lengths, lengths[1:])):
            p.append(f"coreml_lengths must be strictly increasing (e.g. 32,64,128); got {_ints(lengths)}")
        if lengths and self.coreml_target not in (None, COREML_ENUMERATED_TARGET):
            p.append(
                f"coreml_lengths needs coreml_target {COREML_ENUMERATED_TARGET} (Core ML accepts enumerated shapes on "
                f"several inputs only from iOS 18); got '{self.coreml_target}'"
            )
        if self.coreml_palettize_bits is not None and self.coreml_palettize_bits not in PALETTE_BITS:
            bits = ", ".join(map(str, PALETTE_BITS))
            p.append(
                f"coreml_palettize_bits must be one of {bits} (coremltools palettization); got {self.coreml_palettize_bits}"
            )
        check_choice(p, "coreml_palettize_mode", self.coreml_palettize_mode, PALETTE_MODES)
        return p

    @property
    def resolved_coreml_target(self) -> str:
        return self.coreml_target or (COREML_ENUMERATED_TARGET if self.coreml_lengths else "iOS16")

    @property
    def resolved_formats(self) -> list[str]:
        every = "all" in self.formats
        return [f.name for f in registry.every() if f.name in self.formats or (every and f.in_all)]  # canonical order


@holds_output
def run(config: ExportConfig, ctx: RunContext | None = None) -> StageResult:
    """Export ``config.model`` to every requested format; the result lists each format's folder."""
    ctx = ctx or RunContext()
    chosen = [registry.get(name) for name in config.resolved_formats]
    out = _check_outputs(Path(config.output), chosen, ctx.overwrite, config.input_paths())
    _check_int8(config, chosen)
    for fmt in chosen:
        fmt.check_dependencies()
    src = _load_source(Path(config.model), config)
    problems = [p for fmt in chosen for p in fmt.check_request(src, config)]
    if problems:
        raise ConfigError(problems)
    results = _build_all(chosen, src, config, out, ctx)
    _forget_verification(out, list(results))
    _write_export_manifest(out, config, src, results)
    return _result(out, results)


def _check_outputs(out: Path, chosen: list[ExportFormat], overwrite: bool, inputs: tuple[str, ...]) -> Path:
    """Refuse before any work: the output is a file, or a format folder would be replaced without --overwrite."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output path {out} exists and is not a folder; choose another --output")
    stage = _manifest_stage(out)
    if stage not in (None, "export"):
        raise ConfigError(
            f"output folder {out} holds the output of `mbk {stage}` ({MANIFEST}); an export there would replace its "
            "record: choose another --output"
        )
    mine = {*registry.names(), MANIFEST, VERIFY}  # what an export folder holds (an interrupted one: no manifest yet)
    if out.is_dir() and not is_mbk_output(out) and any(p.name not in mine and p.name[0] != "." for p in out.iterdir()):
        raise ConfigError(
            f"output folder {out} holds files mbk did not write (no {MANIFEST}); the export would mix its format "
            "folders and manifest into them: choose a new --output"
        )
    for fmt in chosen:
        check_output_dir(out / fmt.name, overwrite, inputs)
    return out


def _manifest_stage(folder: Path) -> str | None:
    """The stage that wrote ``folder``'s manifest (None without a readable one)."""
    try:
        manifest = read_json(folder / MANIFEST)
    except MbkError:
        return None
    return str(manifest.get("stage")) if isinstance(manifest, dict) and manifest.get("stage") else None


def _check_int8(config: ExportConfig, chosen: list[ExportFormat]) -> None:
    """An explicit --int8 is refused for a format that has no INT8 path (rather than silently fp32)."""
    unable = [fmt.name for fmt in chosen if not fmt.supports_int8]
    if config.int8 and unable:
        able = [f.name for f in registry.every() if f.supports_int8]
        raise ConfigError(
            f"--int8: the {', '.join(unable)} format cannot be exported as INT8; drop --int8 for it "
            f"(export it separately with --fp32) or choose from: {', '.join(able)}"
        )


def _load_source(path: Path, config: ExportConfig) -> Source:
    from mobilebert_kit.artifacts import lineage
    from mobilebert_kit.models import load_classifier_folder, usable_positions

    if not path.is_dir():
        raise ModelError(f"{not_a_folder(path, 'model folder')}; run `mbk compress` first or pass --model PATH")
    model, tokenizer, labels = load_classifier_folder(path)
    compression = read_json(path / COMPRESSION) if (path / COMPRESSION).exists() else {}
    int8 = bool(compression.get("int8")) if config.int8 is None else config.int8
    usable = usable_positions(model.config)
    if config.max_length and usable is not None and config.max_length > usable:
        raise ConfigError(
            f"--max-length {config.max_length} is more than {path} can take ({usable} positions); "
            f"use --max-length {usable} or less"
        )
    max_length = config.max_length or lineage(path).get("max_length") or DEFAULT_MAX_LENGTH
    max_length = min(int(max_length), usable or int(max_length))  # a recorded/default length past the positions
    return Source(path, model, tokenizer, labels, max_length, int8, compression, sha256_tree(path))


def _build_all(chosen: list[ExportFormat], src: Source, config: ExportConfig, out: Path, ctx: RunContext) -> dict:
    """Build every format in its own staged folder; they replace the old ones only once all succeeded (an
    output folder this call created goes too when nothing was built: a failure leaves no empty export)."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with contextlib.ExitStack() as staged:
            folders = {
                fmt.name: staged.enter_context(staged_output(out / fmt.name, ctx.overwrite, config.input_paths()))
                for fmt in chosen
            }
            with scratch_dir("export", parent=out) as work:  # .export.tmp-PID-*: a killed run's is swept
                build = Build(config, work)
                return {fmt.name: _build_one(fmt, src, folders[fmt.name], build, ctx) for fmt in chosen}
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


def _build_one(fmt: ExportFormat, src: Source, folder: Path, build: Build, ctx: RunContext) -> dict:
    t0 = time.perf_counter()
    ctx.log(f"exporting {fmt.name} ...")
    extra = fmt.export(src, folder, build)
    extra["export_seconds"] = round(time.perf_counter() - t0, 2)
    return _finish_folder(fmt, folder, src, extra)


def _finish_folder(fmt: ExportFormat, folder: Path, src: Source, extra: dict) -> dict:
    """Tokenizer files, labels.json and model_meta.json beside the model file."""
    src.tokenizer.save_pretrained(str(folder))
    write_labels(folder, src.label_names)
    cfg = src.model.config
    meta = {
        "format": fmt.name,
        "model_file": fmt.model_file,
        **fmt.io_spec(src),
        "max_length": src.max_length,
        **tokenizer_settings(src.tokenizer),
        "labels": src.label_names,
        "num_labels": len(src.label_names),
        "vocab_size": int(cfg.vocab_size),
        "pad_token_id": src.tokenizer.pad_token_id,
        "int8": fmt.applies_int8(src),
        "model_type": getattr(cfg, "model_type", None),
        "hidden_size": cfg.hidden_size,
        "num_layers": cfg.num_hidden_layers,
        "num_heads": cfg.num_attention_heads,
        "source_model": {"path": str(src.path.resolve()), "sha256": src.sha256},
        **extra,
        "versions": library_versions(),
    }
    meta["files"] = file_hashes(folder, exclude=(META,))
    meta["size_bytes"] = folder_size(folder / fmt.model_file)
    write_json(folder / META, meta)
    return meta


def _forget_verification(out: Path, formats: list[str]) -> None:
    """Drop verify.json entries of re-exported formats: an old verification no longer describes them."""
    path = out / VERIFY
    if not path.exists():
        return
    try:
        report = read_json(path)
        kept = {k: v for k, v in (report.get("formats") or {}).items() if k not in formats}
    except Exception:  # noqa: BLE001 - an unreadable report is simply discarded
        kept = {}
    if not kept:
        path.unlink()
        return
    report["formats"] = kept
    report["passed"] = all(v.get("passed") is True for v in kept.values())
    write_json(path, report)


def _write_export_manifest(out: Path, config: ExportConfig, src: Source, results: dict[str, dict]) -> None:
    """manifest.json of the whole export: every format present (earlier ones kept) and their files."""
    from mobilebert_kit.artifacts import lineage

    summary = {
        name: {"size_bytes": r["size_bytes"], "model_file": r["model_file"], "int8": r["int8"]}
        for name, r in results.items()
    }
    present = sorted(p.name for p in out.iterdir() if p.is_dir() and (p / META).exists())
    previous = read_json(out / MANIFEST) if (out / MANIFEST).exists() else {}
    kept = {k: v for k, v in {**(previous.get("formats") or {}), **summary}.items() if k in present}
    with tempfile.TemporaryDirectory(prefix=".manifest-", dir=out) as tmp:  # write_manifest hashes its folder
        m = write_manifest(
            tmp,
            stage="export",
            config=config.to_dict(),
            inputs={"model": {"path": str(src.path.resolve()), "sha256": src.sha256}},
            extra={"formats": kept, "data": lineage(src.path).get("data"), "max_length": src.max_length},
        )
    m["files"] = {f"{fmt}/{k}": v for fmt in present for k, v in file_hashes(out / fmt).items()}
    write_json(out / MANIFEST, m)


def _result(out: Path, results: dict[str, dict]) -> StageResult:
    formats = {
        name: {
            "folder": str(out / name),
            "model_file": r["model_file"],
            "size_bytes": r["size_bytes"],
            "int8": r["int8"],
            "weights": r.get("weights") or ("int8" if r["int8"] else "fp32"),
            "fused_ops": r.get("fused_ops"),
        }
        for name, r in results.items()
    }
    lines = [f"Exported {len(formats)} format(s) to {out}:"]
    for name, r in formats.items():
        precision = r["weights"]
        lines.append(f"  {name:<12} {r['size_bytes'] / 1e6:8.2f} MB  {precision}  {r['folder']}/{r['model_file']}")
    lines.append(f"Next: mbk verify --export-dir {out}")
    return StageResult(out, {"formats": formats}, lines)


def _ints(values: list[int]) -> str:
    return ",".join(map(str, values))


__all__ = ["ExportConfig", "run"]
