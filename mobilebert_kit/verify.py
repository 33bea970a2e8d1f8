"""Verify stage: prove every exported artifact still is the PyTorch model it came from.

For each format folder under the export dir:

1. **Integrity** — every file matches the sha256 in ``model_meta.json`` (nothing missing, nothing
   changed), the source model still hashes to what was exported, and its label count matches.
2. **Parity on the test split** — logits of the artifact vs the source PyTorch model (fp32):
   max abs difference, label agreement, accuracy and macro-F1 of both. ONNX / ORT run in ONNX
   Runtime; TorchScript runs both the frozen ``model.pt`` and the lite-interpreter ``model.ptl``.
   CoreML runs on macOS only; on Linux its spec is validated instead (inputs, outputs, shapes,
   weight dtypes) and the report says numeric parity needs macOS.
3. **Independent runtime** — ``.onnx`` / ``.ort`` also run in onnxruntime-node (npm) on the same
   inputs when node is available; skipped with a clear reason otherwise.

Tolerances (per output; fp32 vs int8 artifacts; all configurable):

* fp32: ``max_abs_diff <= 1e-3`` (export and graph fusion reorder float math, ~1e-6 in practice),
  label agreement >= 99.5 %, accuracy drop <= 0.5 pt.
* int8: max abs diff reported, not gated (INT8 legitimately moves logits by ~0.1), agreement
  >= 97 %, accuracy drop <= 1 pt (the "keep >= 99 %" target of the project).
* onnxruntime-node vs Python ORT: ``max_abs_diff <= 1e-4`` (same graph, another build).

``verify.json`` goes next to the format folders (never inside them, so their hashes stay valid).
All breaches are collected and reported together; any breach raises :class:`VerifyError`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mobilebert_kit.artifacts import file_hashes, read_json, sha256_tree, write_json
from mobilebert_kit.config import StageConfig, check_range
from mobilebert_kit.data import DataConfig
from mobilebert_kit.errors import ArtifactError, DataError, VerifyError
from mobilebert_kit.stage import RunContext, StageResult

FORMATS = ("onnx", "ort", "torchscript", "coreml", "executorch")
META = "model_meta.json"
REPORT = "verify.json"
ORT_NODE_VERSION = "1.30.0"
NODE_TOLERANCE = 1e-4


@dataclass
class Tolerance(StageConfig):
    """Pass/fail thresholds for one kind of artifact (None = reported, not gated)."""

    max_abs_diff: float | None = 1e-3
    min_agreement: float = 0.995
    max_accuracy_drop: float | None = 0.005

    def validate(self) -> list[str]:
        p: list[str] = []
        check_range(p, "max_abs_diff", self.max_abs_diff, 0, lo_open=True)
        check_range(p, "min_agreement", self.min_agreement, 0, 1)
        check_range(p, "max_accuracy_drop", self.max_accuracy_drop, 0, 1)
        return p


@dataclass
class Int8Tolerance(Tolerance):
    """INT8 changes logits by design: the difference is reported, agreement and accuracy are gated.
    Its own class so a partial ``int8:`` recipe section starts from these defaults, not fp32's."""

    max_abs_diff: float | None = None
    min_agreement: float = 0.97
    max_accuracy_drop: float | None = 0.01


@dataclass
class VerifyConfig(StageConfig):
    export_dir: str = "artifacts/export"
    formats: list[str] = field(default_factory=list)  # empty: every format folder present
    model: str | None = None  # source PyTorch folder (default: the one recorded in model_meta.json)
    data: DataConfig | None = None  # default: the data the source model was trained on (lineage)
    max_examples: int | None = None
    batch_size: int = 32
    fp32: Tolerance = field(default_factory=Tolerance)
    int8: Int8Tolerance = field(default_factory=Int8Tolerance)
    node: str = "auto"  # auto: use onnxruntime-node when node is available | on: required | off

    def validate(self) -> list[str]:
        p: list[str] = []
        for f in self.formats:
            if f not in FORMATS:
                p.append(f"unknown format '{f}'; known formats: {', '.join(FORMATS)}")
        check_range(p, "max_examples", self.max_examples, 1)
        check_range(p, "batch_size", self.batch_size, 1)
        if self.node not in ("auto", "on", "off"):
            p.append(f"node must be auto, on or off; got '{self.node}'")
        return p


def _check(name: str, passed: bool | None, value=None, threshold=None, detail: str = "") -> dict:
    """One line of the report. passed=None means skipped (not a breach)."""
    return {"name": name, "passed": passed, "value": value, "threshold": threshold, "detail": detail}


def run(config: VerifyConfig, ctx: RunContext | None = None) -> StageResult:
    """Verify the export folder; writes ``verify.json`` there and raises VerifyError on any breach."""
    log = (ctx or RunContext()).log
    export_dir = Path(config.export_dir)
    if not export_dir.is_dir():
        raise ArtifactError(f"export folder {export_dir} does not exist; run `mbk export` first or pass --export-dir")
    present = [f for f in FORMATS if (export_dir / f / META).exists()]
    formats = config.formats or present
    missing = [f for f in formats if f not in present]
    if missing:
        raise ArtifactError(
            f"{export_dir} has no exported {', '.join(missing)} (found: {', '.join(present) or 'none'}); "
            f"run `mbk export --format {missing[0]}` first"
        )
    if not formats:
        raise ArtifactError(f"{export_dir} holds no exported format (no */{META}); run `mbk export` first")

    report: dict = {
        "passed": False,
        "export_dir": str(export_dir.resolve()),
        "formats": {},
        "thresholds": {
            "fp32": config.fp32.to_dict(),
            "int8": config.int8.to_dict(),
            "onnxruntime_node_max_abs_diff": NODE_TOLERANCE,
        },
    }
    refs: dict[str, dict] = {}
    node = NodeRunner(config.node)
    for fmt in formats:
        folder = export_dir / fmt
        meta = read_json(folder / META)
        tol = config.int8 if meta.get("int8") else config.fp32
        checks = _integrity_checks(folder, meta)
        entry: dict = {"passed": False, "int8": bool(meta.get("int8")), "checks": checks}
        report["formats"][fmt] = entry
        source = Path(config.model) if config.model else Path(meta.get("source_model", {}).get("path", ""))
        src_checks, ref = _source_checks(source, meta, config, refs, log)
        checks.extend(src_checks)
        if ref is not None and all(c["passed"] is not False for c in checks):
            log(
                f"{fmt}: {'checking the spec' if fmt == 'coreml' and sys.platform != 'darwin' else 'running the test split'} ..."
            )
            checks.extend(_parity_checks(fmt, folder, meta, ref, tol, config, entry, node))
        entry["passed"] = all(c["passed"] is not False for c in checks)
        model_file = folder / str(meta.get("model_file") or "")
        entry["model_sha256"] = sha256_tree(model_file) if meta.get("model_file") and model_file.exists() else None
        failed = [c["name"] + (f" ({c['detail']})" if c["detail"] else "") for c in checks if c["passed"] is False]
        if failed:
            entry["reason"] = "; ".join(failed)
    # Keep earlier results of formats not re-verified this time (package reads them per format).
    previous = read_json(export_dir / REPORT) if (export_dir / REPORT).exists() else {}
    for fmt, e in (previous.get("formats") or {}).items():
        if fmt not in report["formats"] and fmt in present:
            report["formats"][fmt] = e
    report["passed"] = all(e["passed"] for e in report["formats"].values())
    if refs:
        only = next(iter(refs.values()))
        report["pytorch"] = {
            "model": only["path"],
            "accuracy": only["metrics"]["accuracy"],
            "macro_f1": only["metrics"]["macro_f1"],
            "n": only["metrics"]["n"],
            "data": only["data"],
        }
    write_json(export_dir / REPORT, report)
    breaches = [
        f"{fmt}: {c['name']}" + (f" ({c['detail']})" if c["detail"] else "")
        for fmt in formats
        for c in report["formats"][fmt]["checks"]
        if c["passed"] is False
    ]
    if breaches:
        raise VerifyError(
            f"{len(breaches)} check(s) failed: " + "; ".join(breaches) + f" (details in {export_dir / REPORT})"
        )
    return StageResult(export_dir, report, [f"All checks passed; report: {export_dir / REPORT}"])


# --------------------------------------------------------------------------- integrity


def _integrity_checks(folder: Path, meta: dict) -> list[dict]:
    checks = []
    expected: dict = meta.get("files") or {}
    actual = file_hashes(folder, exclude=(META,))
    problems = []
    for rel, sha in expected.items():
        if rel not in actual:
            problems.append(f"{rel} is missing")
        elif actual[rel] != sha:
            problems.append(f"{rel} sha256 mismatch (expected {sha[:12]}…, got {actual[rel][:12]}…)")
    extra = sorted(set(actual) - set(expected))
    if extra:
        problems.append(f"unexpected file(s) {', '.join(extra[:3])}")
    if not expected:
        problems.append(f"{META} lists no files")
    model_file = meta.get("model_file")
    if not model_file or not (folder / model_file).exists():
        problems.append(f"model file {model_file} is missing")
    checks.append(
        _check(
            "files match sha256 in model_meta.json",
            not problems,
            len(expected),
            None,
            "; ".join(problems) + ("; the artifact was modified after export: re-run `mbk export`" if problems else ""),
        )
    )
    return checks


# --------------------------------------------------------------------------- reference


def _source_checks(source: Path, meta: dict, config: VerifyConfig, refs: dict, log) -> tuple[list[dict], dict | None]:
    """Is this the model the artifact came from (hash, label count)? Then its logits on the test split."""
    checks: list[dict] = []
    if not source or not (source / "config.json").exists():
        raise ArtifactError(
            f"the source model {source or '(none recorded)'} of this export is gone; "
            "pass --model PATH to the PyTorch folder it was exported from"
        )
    sha = sha256_tree(source)
    recorded = (meta.get("source_model") or {}).get("sha256")
    same = recorded == sha
    checks.append(
        _check(
            "exported from this source model",
            same,
            None,
            None,
            ""
            if same
            else f"{source} hashes to {sha[:12]}…, the artifact was exported from "
            f"{recorded[:12] if recorded else '?'}…; pass --model with the folder it came from",
        )
    )
    n_src, n_meta = _num_labels(source), meta.get("num_labels")
    checks.append(
        _check(
            "label count matches",
            n_src == n_meta,
            n_meta,
            n_src,
            "" if n_src == n_meta else f"artifact has {n_meta} labels, the source model {n_src}: wrong model",
        )
    )
    if n_src != n_meta:
        return checks, None
    key = str(source.resolve())
    if key not in refs:
        refs[key] = _reference(source, meta, config, log)
    return checks, refs[key]


def _num_labels(source: Path) -> int:
    cfg = read_json(source / "config.json")
    if (source / "labels.json").exists():
        return len(read_json(source / "labels.json").get("labels") or [])
    return len(cfg.get("id2label") or {}) or int(cfg.get("num_labels", 2))


def _reference(source: Path, meta: dict, config: VerifyConfig, log) -> dict:
    from mobilebert_kit.batching import predict_logits
    from mobilebert_kit.data import data_config_for, load_dataset
    from mobilebert_kit.metrics import classification_metrics
    from mobilebert_kit.models import load_classifier_folder

    model, tokenizer, label_names = load_classifier_folder(source)
    dcfg = data_config_for(source, config.data)
    ds = load_dataset(dcfg)
    test = ds.splits["test"]
    if config.max_examples:
        test = test.subset(config.max_examples, dcfg.split_seed + 2)
    if ds.num_labels != len(label_names):
        raise DataError(
            f"the data {dcfg.data} has {ds.num_labels} labels but the model {source} has {len(label_names)}; "
            "pass the --data it was trained on"
        )
    max_length = int(meta.get("max_length") or 128)
    log(f"PyTorch reference: {source} on {len(test)} test examples ...")
    logits = predict_logits(
        model, tokenizer, test.texts, test.pairs, max_length=max_length, batch_size=config.batch_size
    )
    return {
        "path": str(source),
        "num_labels": len(label_names),
        "tokenizer": tokenizer,
        "texts": test.texts,
        "pairs": test.pairs,
        "labels": test.labels,
        "logits": logits,
        "max_length": max_length,
        "metrics": classification_metrics(logits, test.labels, len(label_names)),
        "data": dcfg.data,
    }


# --------------------------------------------------------------------------- parity


def _compare(name: str, got: np.ndarray, ref: dict, tol: Tolerance, entry: dict, prefix: str = "") -> list[dict]:
    from mobilebert_kit.metrics import classification_metrics

    want = ref["logits"]
    if got.shape != want.shape:
        return [
            _check(
                f"{prefix}logits shape",
                False,
                list(got.shape),
                list(want.shape),
                "output shape differs from the source model",
            )
        ]
    diff = float(np.abs(got - want).max()) if got.size else 0.0
    agree = float((got.argmax(-1) == want.argmax(-1)).mean()) if len(got) else 1.0
    m = classification_metrics(got, ref["labels"], ref["num_labels"])
    base = ref["metrics"]
    drop = base["accuracy"] - m["accuracy"]
    if not prefix:
        entry.update(
            {
                "max_abs_diff": diff,
                "agreement": agree,
                "accuracy": m["accuracy"],
                "macro_f1": m["macro_f1"],
                "pytorch_accuracy": base["accuracy"],
                "pytorch_macro_f1": base["macro_f1"],
                "n": m["n"],
            }
        )
    else:
        entry.setdefault("extra_runtimes", {})[prefix.rstrip(": ")] = {
            "max_abs_diff": diff,
            "agreement": agree,
            "accuracy": m["accuracy"],
        }
    checks = [
        _check(
            f"{prefix}{name} max_abs_diff",
            None if tol.max_abs_diff is None else diff <= tol.max_abs_diff,
            diff,
            tol.max_abs_diff,
            f"{diff:.3g} (not gated)"
            if tol.max_abs_diff is None
            else f"{diff:.3g} {'<=' if diff <= tol.max_abs_diff else '>'} {tol.max_abs_diff:g}",
        ),
        _check(
            f"{prefix}{name} label agreement",
            agree >= tol.min_agreement,
            agree,
            tol.min_agreement,
            f"{agree:.2%} {'>=' if agree >= tol.min_agreement else '<'} {tol.min_agreement:.2%}",
        ),
        _check(
            f"{prefix}accuracy drop",
            None if tol.max_accuracy_drop is None else drop <= tol.max_accuracy_drop + 1e-12,
            drop,
            tol.max_accuracy_drop,
            f"accuracy {m['accuracy']:.4f} vs PyTorch {base['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f} vs {base['macro_f1']:.4f}",
        ),
    ]
    return checks


def _parity_checks(
    fmt: str, folder: Path, meta: dict, ref: dict, tol: Tolerance, config: VerifyConfig, entry: dict, node: NodeRunner
) -> list[dict]:
    model_path = folder / meta["model_file"]
    if fmt in ("onnx", "ort"):
        from mobilebert_kit.onnx_tools import onnx_predict_logits, session

        sess = session(model_path, threads=2)
        got = onnx_predict_logits(
            sess, ref["tokenizer"], ref["texts"], ref["pairs"], ref["max_length"], config.batch_size
        )
        checks = _compare("logits", got, ref, tol, entry)
        checks.append(node.check(model_path, ref, sess, config.batch_size, entry))
        return checks
    if fmt == "torchscript":
        checks = _compare(
            "logits", _torchscript_logits(model_path, ref, config.batch_size, lite=False), ref, tol, entry
        )
        lite = folder / "model.ptl"
        if lite.exists():
            checks += _compare(
                "logits",
                _torchscript_logits(lite, ref, config.batch_size, lite=True),
                ref,
                tol,
                entry,
                prefix="lite interpreter: ",
            )
        return checks
    if fmt == "coreml":
        return _coreml_checks(model_path, meta, ref, tol, entry)
    if fmt == "executorch":
        try:
            got = _executorch_logits(model_path, ref)
        except ImportError:
            entry["numeric_parity"] = "skipped: executorch is not installed"
            return [
                _check(
                    "ExecuTorch parity",
                    None,
                    detail="executorch is not installed (pip install 'mobilebert_kit[executorch]'); not run",
                )
            ]
        return _compare("logits", got, ref, tol, entry)
    return [_check("known format", False, fmt, None, f"unknown format {fmt}")]


def _torchscript_logits(path: Path, ref: dict, batch_size: int, lite: bool) -> np.ndarray:
    import torch

    from mobilebert_kit.batching import padded_batches

    if lite:
        from torch.jit.mobile import _load_for_lite_interpreter

        module = _load_for_lite_interpreter(str(path))
    else:
        module = torch.jit.load(str(path))
    out = np.zeros((len(ref["texts"]), ref["num_labels"]), dtype=np.float32)
    with torch.no_grad():
        for idx, batch in padded_batches(ref["tokenizer"], ref["texts"], ref["pairs"], ref["max_length"], batch_size):
            ids = torch.from_numpy(np.asarray(batch["input_ids"], dtype=np.int64))
            mask = torch.from_numpy(np.asarray(batch["attention_mask"], dtype=np.int64))
            tt = torch.from_numpy(np.asarray(batch.get("token_type_ids", np.zeros_like(ids.numpy())), dtype=np.int64))
            out[idx] = module(ids, mask, tt).float().numpy()
    return out


def _executorch_logits(path: Path, ref: dict) -> np.ndarray:
    """Run the .pte in the ExecuTorch runtime, one text at a time (the program has batch 1)."""
    import torch

    try:
        from executorch.runtime import Runtime
    except ImportError as e:
        raise ImportError(str(e)) from e
    method = Runtime.get().load_program(str(path)).load_method("forward")
    enc = ref["tokenizer"](
        list(ref["texts"]), list(ref["pairs"]) if ref["pairs"] else None, truncation=True, max_length=ref["max_length"]
    )
    out = np.zeros((len(ref["texts"]), ref["num_labels"]), dtype=np.float32)
    for i in range(len(ref["texts"])):
        ids = torch.tensor([enc["input_ids"][i]], dtype=torch.long)
        mask = torch.tensor([enc["attention_mask"][i]], dtype=torch.long)
        tt = (
            torch.tensor([enc["token_type_ids"][i]], dtype=torch.long)
            if "token_type_ids" in enc
            else torch.zeros_like(ids)
        )
        out[i] = method.execute([ids, mask, tt])[0].numpy().reshape(-1)
    return out


def coreml_spec_summary(path: Path) -> dict:
    """Inputs/outputs/shape ranges/weight dtypes of an .mlpackage, readable on any OS."""
    from mobilebert_kit.export import _require_coremltools

    try:
        ct = _require_coremltools()
    except Exception as e:  # noqa: BLE001 - reported as a skipped check
        raise ImportError(str(e)) from e
    m = ct.models.MLModel(str(path), skip_model_load=True)
    spec = m.get_spec()
    inputs = {}
    for i in spec.description.input:
        arr = i.type.multiArrayType
        ranges = [(r.lowerBound, r.upperBound) for r in arr.shapeRange.sizeRanges] if arr.HasField("shapeRange") else []
        inputs[i.name] = {
            "dtype": ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(arr.dataType),
            "shape": list(arr.shape),
            "ranges": ranges,
        }
    outputs = [o.name for o in spec.description.output]
    ops: dict[str, int] = {}
    if spec.WhichOneof("Type") == "mlProgram":
        for fn in spec.mlProgram.functions.values():
            for block in fn.block_specializations.values():
                for op in block.operations:
                    ops[op.type] = ops.get(op.type, 0) + 1
    return {
        "type": spec.WhichOneof("Type"),
        "spec_version": spec.specificationVersion,
        "inputs": inputs,
        "outputs": outputs,
        "ops": ops,
    }


def _coreml_checks(path: Path, meta: dict, ref: dict, tol: Tolerance, entry: dict) -> list[dict]:
    try:
        info = coreml_spec_summary(path)
    except ImportError:
        return [
            _check(
                "CoreML spec",
                None,
                detail="coremltools is not installed (pip install coremltools==9.0); spec not checked",
            )
        ]
    except Exception as e:  # noqa: BLE001
        return [_check("CoreML spec loads", False, detail=f"{type(e).__name__}: {str(e)[:200]}")]
    entry["coreml_spec"] = {k: info[k] for k in ("type", "spec_version", "inputs", "outputs")}
    checks = [_check("CoreML is an mlprogram", info["type"] == "mlProgram", info["type"], "mlProgram")]
    want_inputs = list(meta.get("input_names") or [])
    checks.append(
        _check("CoreML inputs", sorted(info["inputs"]) == sorted(want_inputs), sorted(info["inputs"]), want_inputs)
    )
    checks.append(
        _check(
            "CoreML outputs",
            info["outputs"] == list(meta.get("output_names") or []),
            info["outputs"],
            meta.get("output_names"),
        )
    )
    bad_dtype = [n for n, i in info["inputs"].items() if i["dtype"] != "INT32"]
    checks.append(
        _check(
            "CoreML input dtypes int32",
            not bad_dtype,
            None,
            None,
            f"not INT32: {', '.join(bad_dtype)}" if bad_dtype else "",
        )
    )
    max_len = meta.get("max_length")
    flexible = all(
        i["ranges"] and i["ranges"][-1][0] <= 1 and i["ranges"][-1][1] == max_len for i in info["inputs"].values()
    )
    checks.append(
        _check(
            "CoreML flexible sequence length 1..max_length",
            flexible,
            {n: i["ranges"] for n, i in info["inputs"].items()},
            max_len,
        )
    )
    quant_ops = sum(v for k, v in info["ops"].items() if k.startswith("constexpr_"))
    if meta.get("int8"):
        checks.append(
            _check(
                "CoreML int8 weights",
                quant_ops > 0,
                quant_ops,
                "> 0 constexpr dequantize ops",
                "" if quant_ops else "no int8 weight ops found although model_meta.json says int8",
            )
        )
    else:
        checks.append(_check("CoreML fp weights", quant_ops == 0, quant_ops, 0))
    if sys.platform != "darwin":
        checks.append(
            _check(
                "CoreML numeric parity",
                None,
                detail="needs macOS (Core ML runs only on Apple platforms); spec validated instead",
            )
        )
        entry["numeric_parity"] = "skipped: needs macOS"
        return checks
    import coremltools as ct

    model = ct.models.MLModel(str(path))
    enc = ref["tokenizer"]([*ref["texts"]], ref["pairs"], truncation=True, max_length=ref["max_length"])
    out = np.zeros((len(ref["texts"]), ref["num_labels"]), dtype=np.float32)
    for i in range(len(ref["texts"])):
        feed = {
            n: np.asarray([enc[n][i] if n in enc else [0] * len(enc["input_ids"][i])], dtype=np.int32)
            for n in want_inputs
        }
        out[i] = np.asarray(model.predict(feed)["logits"]).reshape(-1)
    return checks + _compare("logits", out, ref, tol, entry)


# --------------------------------------------------------------------------- onnxruntime-node


def node_cache_dir() -> Path:
    base = Path(os.environ.get("MBK_CACHE", Path.home() / ".cache" / "mobilebert_kit"))
    return base / "node"


class NodeRunner:
    """Runs .onnx/.ort files in onnxruntime-node; installs the npm package on first use when allowed."""

    def __init__(self, mode: str):
        self.mode = mode
        self._ready: bool | None = None
        self.reason = ""

    def available(self) -> bool:
        if self._ready is not None:
            return self._ready
        self._ready = False
        if self.mode == "off":
            self.reason = "disabled (--no-node)"
            return False
        node = shutil.which("node")
        if not node:
            self.reason = "node is not installed (apt-get install nodejs); independent-runtime parity skipped"
            return False
        pkg = node_cache_dir() / "node_modules" / "onnxruntime-node" / "package.json"
        if not pkg.exists():
            npm = shutil.which("npm")
            if not npm:
                self.reason = "npm is not installed; cannot install onnxruntime-node"
                return False
            node_cache_dir().mkdir(parents=True, exist_ok=True)
            try:
                subprocess.run(
                    [
                        npm,
                        "install",
                        "--no-audit",
                        "--no-fund",
                        "--prefix",
                        str(node_cache_dir()),
                        f"onnxruntime-node@{ORT_NODE_VERSION}",
                        "--onnxruntime-node-install=skip",
                    ],
                    check=True,
                    capture_output=True,
                    timeout=300,
                )
            except (subprocess.SubprocessError, OSError) as e:
                self.reason = f"could not install onnxruntime-node@{ORT_NODE_VERSION} into {node_cache_dir()} ({type(e).__name__})"
                return False
            if not pkg.exists():
                self.reason = f"onnxruntime-node@{ORT_NODE_VERSION} did not install into {node_cache_dir()}"
                return False
        self.node = node
        self._ready = True
        return True

    def run(self, model_path: Path, batches: list[dict]) -> list[np.ndarray]:
        script = Path(__file__).parent / "resources" / "ort_node_parity.js"
        with tempfile.TemporaryDirectory(prefix="mbk-node-") as tmp:
            req, res = Path(tmp) / "req.json", Path(tmp) / "res.json"
            req.write_text(
                json.dumps(
                    {
                        "model": str(model_path.resolve()),
                        "batches": [
                            {
                                k: {"dims": list(np.asarray(v).shape), "data": np.asarray(v).reshape(-1).tolist()}
                                for k, v in b.items()
                            }
                            for b in batches
                        ],
                    }
                )
            )
            env = {**os.environ, "NODE_PATH": str(node_cache_dir() / "node_modules")}
            proc = subprocess.run(
                [self.node, str(script), str(req), str(res)], capture_output=True, text=True, env=env, timeout=600
            )
            if proc.returncode != 0:
                raise RuntimeError(
                    proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
                )
            data = json.loads(res.read_text())
        self.version = data.get("ort_node_version")
        return [np.asarray(o["data"], dtype=np.float32).reshape(o["dims"]) for o in data["outputs"]]

    def check(self, model_path: Path, ref: dict, sess, batch_size: int, entry: dict, max_examples: int = 256) -> dict:
        """Run the first ``max_examples`` test texts in node and in Python ORT on *identical* batches.

        Identical batches matter: dynamic INT8 quantizes activations with one scale per tensor, so
        other batch neighbours or padding lengths legitimately change the logits.
        """
        name = "onnxruntime-node parity"
        if not self.available():
            entry["onnxruntime_node"] = f"skipped: {self.reason}"
            if self.mode == "on":
                return _check(name, False, detail=self.reason)
            return _check(name, None, detail=f"skipped: {self.reason}")
        from mobilebert_kit.batching import padded_batches
        from mobilebert_kit.onnx_tools import feeds_for

        n = min(max_examples, len(ref["texts"]))
        pairs = ref["pairs"][:n] if ref["pairs"] else None
        idxs, batches = [], []
        for idx, batch in padded_batches(ref["tokenizer"], ref["texts"][:n], pairs, ref["max_length"], batch_size):
            ids = np.asarray(batch["input_ids"], dtype=np.int64)
            batches.append(
                {
                    "input_ids": ids,
                    "attention_mask": np.asarray(batch["attention_mask"], dtype=np.int64),
                    "token_type_ids": np.asarray(batch.get("token_type_ids", np.zeros_like(ids)), dtype=np.int64),
                }
            )
            idxs.append(idx)
        try:
            outs = self.run(model_path, batches)
        except Exception as e:  # noqa: BLE001
            return _check(name, False, detail=f"onnxruntime-node failed: {str(e)[:200]}")
        got = np.zeros((n, ref["num_labels"]), dtype=np.float32)
        python_logits = np.zeros_like(got)
        for idx, o, b in zip(idxs, outs, batches):
            got[idx] = o
            python_logits[idx] = sess.run(None, feeds_for(sess, b))[0]
        diff = float(np.abs(got - python_logits).max()) if n else 0.0
        entry["onnxruntime_node"] = {
            "version": getattr(self, "version", None),
            "n": n,
            "max_abs_diff_vs_python_ort": diff,
            "max_abs_diff_vs_pytorch": float(np.abs(got - ref["logits"][:n]).max()) if n else 0.0,
        }
        ok = diff <= NODE_TOLERANCE
        return _check(
            name,
            ok,
            diff,
            NODE_TOLERANCE,
            f"{n} examples, onnxruntime-node {getattr(self, 'version', '?')}: "
            f"max|Δ| vs Python ORT {diff:.3g} {'<=' if ok else '>'} {NODE_TOLERANCE:g}",
        )
