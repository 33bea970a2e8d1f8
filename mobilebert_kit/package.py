"""Package a verified export as a self-testing phone bundle (``mbk package``).

Reads one format folder written by ``mbk export`` and writes ``artifacts/package/<target>/`` plus
``<target>.zip`` beside it:

* the model (``model.ort`` for Android, ``model.mlpackage`` for iOS),
* ``vocab.txt`` and the HF tokenizer files, ``labels.json``,
* ``golden.json``: a handful of texts with their token ids and expected logits, so the app can
  self-test its tokenizer and runtime on the device,
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
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mobilebert_kit.artifacts import (
    LABELS,
    file_hashes,
    library_versions,
    read_json,
    sha256_tree,
    staged_output,
    write_json,
    write_labels,
    write_manifest,
)
from mobilebert_kit.config import StageConfig
from mobilebert_kit.errors import ArtifactError, PackageError
from mobilebert_kit.stage import RunContext, StageResult

META = "model_meta.json"
GOLDEN = "golden.json"
VERIFY = "verify.json"
BUNDLE_VERSION = 1

# target -> (export format folder, model file name inside the bundle)
TARGETS: dict[str, tuple[str, str]] = {"android": ("ort", "model.ort"), "ios": ("coreml", "model.mlpackage")}

# The Android demo pins this onnxruntime-android release (android_demo/app/build.gradle). ORT format
# v6 is what onnxruntime 1.16+ writes and reads; 1.32 still writes v6. A .ort with a newer format
# version than the pinned runtime reads is refused, rather than failing on the phone.
ANDROID_ORT_VERSION = "1.22.0"
ANDROID_MAX_ORT_FORMAT = 6

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

INSTALL_SUBDIR = {"android": Path("app/src/main/assets/bundle"), "ios": Path("MBKDemo/bundle")}


@dataclass
class PackageConfig(StageConfig):
    """Settings of ``mbk package``."""

    target: str = "android"
    export_dir: str = "artifacts/export"
    output: str | None = None  # default: artifacts/package/<target>
    make_zip: bool = True
    install_into: str | None = None  # android_demo/ or ios_demo/: copy the bundle into the app's assets
    golden_texts: list[str] = field(default_factory=lambda: list(DEFAULT_GOLDEN_TEXTS))
    golden_atol: float = 1e-3  # tolerance the on-device self-test applies to golden logits

    def validate(self) -> list[str]:
        problems = []
        if self.target not in TARGETS:
            problems.append(f"--target '{self.target}' is not supported; use one of: {', '.join(TARGETS)}")
        if not self.golden_texts:
            problems.append("golden_texts is empty; the on-device self-test needs at least one text")
        if not self.golden_atol > 0:
            problems.append(f"golden_atol must be > 0, got {self.golden_atol}")
        return problems

    @property
    def output_path(self) -> Path:
        return Path(self.output) if self.output else Path("artifacts/package") / self.target


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


def model_path(src: Path, meta: dict, fmt: str) -> Path:
    name = meta.get("model_file")
    if name:
        p = src / name
    else:
        suffix = ".ort" if fmt == "ort" else ".mlpackage"
        found = sorted(src.glob(f"*{suffix}"))
        if len(found) != 1:
            raise ArtifactError(
                f"{src / META} names no 'model_file' and {src} holds {len(found)} *{suffix} files; "
                f"re-run `mbk export --format {fmt}`"
            )
        p = found[0]
    if not p.exists():
        raise ArtifactError(f"model file {p} named in {src / META} does not exist; re-run `mbk export --format {fmt}`")
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
    import json

    rules = {
        "do_lower_case": meta.get("do_lower_case"),
        "strip_accents": meta.get("strip_accents"),
        "tokenize_chinese_chars": True,
        "clean_text": True,
    }
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        norm = state.get("normalizer") or {}
        if norm.get("type") != "BertNormalizer" or (state.get("model") or {}).get("type") != "WordPiece":
            raise PackageError(
                f"the tokenizer in {src} is {norm.get('type')}/{(state.get('model') or {}).get('type')}, "
                "not BERT WordPiece; the device tokenizers only implement BertNormalizer + WordPiece"
            )
        rules.update(
            do_lower_case=norm.get("lowercase", True),
            strip_accents=norm.get("strip_accents"),
            tokenize_chinese_chars=norm.get("handle_chinese_chars", True),
            clean_text=norm.get("clean_text", True),
        )
        rules["max_input_chars_per_word"] = state["model"].get("max_input_chars_per_word", 100)
    if rules["do_lower_case"] is None:
        rules["do_lower_case"] = bool(getattr(tokenizer, "do_lower_case", True))
    # HF: strip_accents=None means "strip when lowercasing"; write the resolved value too.
    rules["strip_accents_resolved"] = (
        rules["do_lower_case"] if rules["strip_accents"] is None else bool(rules["strip_accents"])
    )
    return rules


# ----------------------------------------------------------------------------------------------
# Model introspection


def ort_format_version(path: Path) -> int | None:
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs import InferenceSession

    buf = path.read_bytes()
    try:
        v = InferenceSession.InferenceSession.GetRootAs(buf, 0).OrtVersion()
        return int(v.decode() if isinstance(v, bytes) else v)
    except Exception:  # noqa: BLE001 - unreadable header: report as unknown, loading will tell more
        return None


class _OrtModel:
    """What the bundle needs from a .ort/.onnx: inputs, fixed length, labels, vocab rows, logits."""

    def __init__(self, path: Path):
        import onnxruntime as ort

        self.path = path
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.log_severity_level = 4  # the vocab probe triggers an expected Gather error; keep it off stderr
        if path.suffix == ".ort":
            so.add_session_config_entry("session.load_model_format", "ORT")
        try:
            self.sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001
            raise ArtifactError(
                f"ONNX Runtime could not load {path} ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                "re-run `mbk export`"
            ) from e
        self.input_names = [i.name for i in self.sess.get_inputs()]
        if "input_ids" not in self.input_names:
            raise PackageError(
                f"{path} has no 'input_ids' input (inputs: {', '.join(self.input_names)}); "
                "it is not a BERT classifier export"
            )
        seq = self.sess.get_inputs()[self.input_names.index("input_ids")].shape
        self.fixed_length = seq[1] if len(seq) > 1 and isinstance(seq[1], int) else None
        self.output_names = [o.name for o in self.sess.get_outputs()]

    def logits(self, ids: list[int], pad_id: int) -> list[float]:
        import numpy as np

        n = self.fixed_length or len(ids)
        arr = np.full((1, n), pad_id, dtype=np.int64)
        arr[0, : len(ids)] = ids
        mask = np.zeros((1, n), dtype=np.int64)
        mask[0, : len(ids)] = 1
        feeds = {"input_ids": arr, "attention_mask": mask, "token_type_ids": np.zeros_like(arr)}
        out = self.sess.run([self.output_names[0]], {k: v for k, v in feeds.items() if k in self.input_names})[0]
        return [float(x) for x in np.asarray(out).reshape(-1)]

    def embedding_rows_ok(self, vocab_size: int, pad_id: int) -> tuple[bool, bool]:
        """(id vocab_size-1 runs, id vocab_size is rejected): both True iff the embedding has exactly vocab_size rows."""

        def runs(i: int) -> bool:
            try:
                self.logits([i, i], pad_id)
                return True
            except Exception:  # noqa: BLE001 - ORT raises on out-of-range Gather indices
                return False

        return runs(vocab_size - 1), not runs(vocab_size)


def coreml_spec_summary(path: Path) -> dict:
    """Inspect an .mlpackage on Linux (no prediction): inputs, outputs, label count, embedding rows."""
    import coremltools as ct

    try:
        mlmodel = ct.models.MLModel(str(path), skip_model_load=True)
        spec = mlmodel.get_spec()
    except Exception as e:  # noqa: BLE001
        raise ArtifactError(
            f"coremltools could not read {path} ({type(e).__name__}: {str(e)[:200]}); "
            "re-run `mbk export --format coreml`"
        ) from e

    def shape_of(feature) -> dict:
        t = feature.type.multiArrayType
        info: dict[str, Any] = {"shape": list(t.shape)}
        if t.HasField("shapeRange"):
            info["ranges"] = [[r.lowerBound, r.upperBound] for r in t.shapeRange.sizeRanges]
        return info

    inputs = {f.name: shape_of(f) for f in spec.description.input}
    outputs = {f.name: shape_of(f) for f in spec.description.output}
    summary: dict[str, Any] = {
        "specification_version": spec.specificationVersion,
        "model_type": spec.WhichOneof("Type"),
        "inputs": inputs,
        "outputs": outputs,
    }
    # Embedding rows: the largest 2-D fixed-shape tensor feeding a gather in the ML program. With
    # int8 weights the table comes out of a constexpr_* dequantize op rather than a const.
    if spec.WhichOneof("Type") == "mlProgram":
        main = spec.mlProgram.functions.get("main")
        if main is not None:
            block = main.block_specializations[main.opset]
            const_shapes: dict[str, list[int]] = {}
            gathers: list[str] = []
            for op in block.operations:
                if (op.type == "const" or op.type.startswith("constexpr_")) and op.outputs:
                    dims = op.outputs[0].type.tensorType.dimensions
                    if all(d.WhichOneof("dimension") == "constant" for d in dims):
                        const_shapes[op.outputs[0].name] = [d.constant.size for d in dims]
                elif op.type == "gather":
                    for arg in op.inputs["x"].arguments:
                        gathers.append(arg.name)
            rows = [const_shapes[n][0] for n in gathers if n in const_shapes and len(const_shapes[n]) == 2]
            if rows:
                summary["embedding_rows"] = max(rows)
    return summary


# ----------------------------------------------------------------------------------------------
# The stage


def run(config: PackageConfig, ctx: RunContext | None = None) -> StageResult:
    """Build the bundle for ``config.target``; the result carries the bundle folder and its meta.

    Raises:
        ArtifactError: the export is missing, incomplete or changed after export/verify.
        PackageError: the export was never verified or failed, or labels/vocab do not match the model.
    """
    ctx = ctx or RunContext()
    ctx.log(f"packaging {config.target} bundle from {config.export_dir} ...")
    fmt, model_name = TARGETS[config.target]
    export_dir = Path(config.export_dir)
    out = config.output_path
    from mobilebert_kit.artifacts import check_output_dir

    check_output_dir(out, ctx.overwrite)
    zip_path = out.with_name(out.name + ".zip")
    install_dir = Path(config.install_into) / INSTALL_SUBDIR[config.target] if config.install_into else None
    if config.install_into and not Path(config.install_into).is_dir():
        raise PackageError(
            f"--install-into {config.install_into} is not a folder; pass the app folder "
            f"({'android_demo' if config.target == 'android' else 'ios_demo'})"
        )

    src, meta = load_export(export_dir, fmt)
    model = model_path(src, meta, fmt)
    verify = check_verified(export_dir, src, meta, fmt, model)
    vocab = read_vocab(src)

    from mobilebert_kit.models import load_tokenizer

    tokenizer = load_tokenizer(str(src))
    rules = tokenizer_rules(src, meta, tokenizer)
    labels = _labels(src, meta)
    max_length = int(meta.get("max_length") or 128)
    special_ids = {t: vocab.index(t) for t in SPECIAL_TOKENS if t in vocab}
    pad_id = special_ids.get("[PAD]", 0)

    # Model facts: input names, label count, embedding rows; and the runtime that computes golden logits.
    runtime: _OrtModel
    model_facts: dict[str, Any] = {}
    if fmt == "ort":
        version = ort_format_version(model)
        if version is not None and version > ANDROID_MAX_ORT_FORMAT:
            raise PackageError(
                f"{model} is ORT format v{version}; onnxruntime-android {ANDROID_ORT_VERSION} (pinned in "
                f"android_demo) reads up to v{ANDROID_MAX_ORT_FORMAT}. Raise the pin in "
                "android_demo/app/build.gradle and ANDROID_ORT_VERSION together"
            )
        model_facts["ort_format_version"] = version
        model_facts["onnxruntime_android"] = ANDROID_ORT_VERSION
        runtime = _OrtModel(model)
        input_names = runtime.input_names
        num_outputs = len(runtime.logits([special_ids["[CLS]"], special_ids["[SEP]"]], pad_id))
        first_ok, past_end_rejected = runtime.embedding_rows_ok(len(vocab), pad_id)
        if not (first_ok and past_end_rejected):
            more = "more" if first_ok else "fewer"
            raise PackageError(
                f"vocab.txt has {len(vocab)} tokens but the model's word embedding has {more} rows; "
                "the vocab does not belong to this model. Re-export with the model's own tokenizer"
            )
        embedding_rows = len(vocab)
    else:
        spec = coreml_spec_summary(model)
        model_facts["coreml_spec"] = spec
        input_names = list(spec["inputs"])
        out_shape = next(iter(spec["outputs"].values()))["shape"] if spec["outputs"] else []
        num_outputs = int(out_shape[-1]) if out_shape else len(labels)
        embedding_rows = spec.get("embedding_rows", len(vocab))
        if embedding_rows != len(vocab):
            raise PackageError(
                f"vocab.txt has {len(vocab)} tokens but the model's word embedding has {embedding_rows} rows; "
                "the vocab does not belong to this model. Re-export with the model's own tokenizer"
            )
        runtime, model_facts["golden_logits_from"] = _reference_runtime_for_ios(export_dir)
        if "input_ids" not in input_names:
            raise PackageError(
                f"{model} has no 'input_ids' input (inputs: {', '.join(input_names)}); "
                "it is not a BERT classifier export"
            )
        fixed = spec["inputs"]["input_ids"]
        model_facts["fixed_length"] = fixed["shape"][1] if "ranges" not in fixed and len(fixed["shape"]) > 1 else None
    if num_outputs != len(labels):
        raise PackageError(
            f"labels.json lists {len(labels)} labels ({', '.join(labels)}) but the model has {num_outputs} "
            "outputs; fix the labels or re-export the right model"
        )

    fixed_length = model_facts.get("fixed_length", getattr(runtime, "fixed_length", None))
    golden = _golden(
        tokenizer, runtime, config.golden_texts, max_length, pad_id, labels, config.golden_atol, fixed_length
    )

    # The zip is written from inside the staged folder; if anything fails afterwards it goes too.
    zip_before = zip_path.exists()
    try:
        with staged_output(out, overwrite=ctx.overwrite) as tmp:
            if model.is_dir():
                shutil.copytree(model, tmp / model_name)
            else:
                shutil.copy2(model, tmp / model_name)
            for name in TOKENIZER_FILES:
                if (src / name).exists():
                    shutil.copy2(src / name, tmp / name)
            write_labels(tmp, labels)
            write_json(tmp / GOLDEN, golden)
            bundle_meta = {
                "bundle_version": BUNDLE_VERSION,
                "target": config.target,
                "format": fmt,
                "model_file": model_name,
                "model_sha256": sha256_tree(tmp / model_name),
                "input_names": input_names,
                "output_name": meta.get("output_names", ["logits"])[0] if meta.get("output_names") else "logits",
                "max_length": max_length,
                "fixed_length": fixed_length,
                "tokenizer": {
                    **rules,
                    "vocab_file": "vocab.txt",
                    "vocab_size": len(vocab),
                    "special_tokens": special_ids,
                    "embedding_rows": embedding_rows,
                },
                "labels": labels,
                "num_labels": len(labels),
                "golden_file": GOLDEN,
                "golden_atol": config.golden_atol,
                "verify": verify,
                "source": {
                    "export_dir": str(export_dir),
                    "format_dir": str(src),
                    "export_meta_files": meta.get("files"),
                },
                **model_facts,
                "versions": library_versions(),
            }
            bundle_meta["files"] = file_hashes(tmp, exclude=(META, "manifest.json"))
            write_json(tmp / META, bundle_meta)
            write_manifest(
                tmp,
                stage="package",
                config=_jsonable(config),
                inputs={"export": {"path": str(src), "sha256": sha256_tree(src)}},
                metrics={"golden_texts": len(golden["vectors"])},
            )
            if config.make_zip:
                _zip(tmp, zip_path, arcroot=out.name)
            if install_dir is not None:
                # Replace the app's bundle folder atomically too (it is git-ignored).
                with staged_output(install_dir, overwrite=True) as inst:
                    for f in sorted(tmp.rglob("*")):
                        if f.is_file():
                            dest = inst / f.relative_to(tmp)
                            dest.parent.mkdir(parents=True, exist_ok=True)
                            shutil.copy2(f, dest)
    except BaseException:
        if config.make_zip and not zip_before:
            zip_path.unlink(missing_ok=True)
        raise
    return _result(config, out, bundle_meta)


def _result(config: PackageConfig, out: Path, meta: dict) -> StageResult:
    from mobilebert_kit.artifacts import folder_size

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
        from mobilebert_kit.artifacts import read_labels

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


def _reference_runtime_for_ios(export_dir: Path) -> tuple[_OrtModel, str]:
    """CoreML cannot predict on Linux: golden logits come from the sibling ORT/ONNX export of the same model.

    Verify has already proven the CoreML model matches PyTorch within its tolerance, and the ONNX
    export within its own, so these logits are what the iPhone must reproduce (within golden_atol).
    """
    for fmt, pattern in (("onnx", "*.onnx"), ("ort", "*.ort")):
        folder = export_dir / fmt
        if folder.is_dir():
            meta = read_json(folder / META) if (folder / META).exists() else {}
            try:
                path = model_path(folder, meta, fmt) if meta.get("model_file") else sorted(folder.glob(pattern))[0]
            except (ArtifactError, IndexError):
                continue
            return _OrtModel(path), f"{fmt}/{path.name}"
    raise PackageError(
        f"CoreML cannot run on this machine, so golden logits come from the ONNX export, but {export_dir} "
        "has no onnx/ or ort/ folder; run `mbk export --format onnx,coreml` first"
    )


def _golden(
    tokenizer,
    runtime: _OrtModel,
    texts: list[str],
    max_length: int,
    pad_id: int,
    labels: list[str],
    atol: float,
    fixed_length: int | None,
) -> dict:
    vectors = []
    for text in texts:
        enc = tokenizer(text, truncation=True, max_length=max_length)
        ids = [int(i) for i in enc["input_ids"]]
        logits = runtime.logits(ids, pad_id)
        best = max(range(len(logits)), key=logits.__getitem__)
        vectors.append({"text": text, "input_ids": ids, "logits": logits, "label": labels[best]})
    return {
        "max_length": max_length,
        "fixed_length": fixed_length,
        "pad_id": pad_id,
        "atol": atol,
        "note": "input_ids are unpadded; pad with pad_id (attention_mask 0) to fixed_length when it is set",
        "vectors": vectors,
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


def _jsonable(config: PackageConfig) -> dict:
    return dataclasses.asdict(config)


def verify_bundle(folder: str | os.PathLike) -> list[str]:
    """Re-check a bundle's recorded hashes; returns the problems (empty when intact)."""
    folder = Path(folder)
    meta = read_json(folder / META)
    actual = file_hashes(folder, exclude=(META, "manifest.json"))
    problems = [f"{f}: missing" for f in sorted(set(meta["files"]) - set(actual))]
    problems += [f"{f}: sha256 differs" for f in sorted(meta["files"]) if f in actual and actual[f] != meta["files"][f]]
    problems += [f"{f}: not recorded" for f in sorted(set(actual) - set(meta["files"]))]
    return problems
