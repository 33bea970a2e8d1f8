"""Verify stage: prove every exported artifact still is the PyTorch model it came from.

For each format folder under the export dir:

1. **Integrity** — every file matches the sha256 in ``model_meta.json`` (nothing missing, nothing
   changed), the source model still hashes to what was exported, and its label count matches.
2. **Parity on the test split** — logits of the artifact vs the source PyTorch model (fp32):
   max abs difference, label agreement, accuracy and macro-F1 of both. Each format module
   (:mod:`mobilebert_kit.formats`) runs its own artifact through a :class:`Parity`: TorchScript
   checks the lite-interpreter file too, CoreML validates its spec where Core ML cannot run.
3. **Independent runtime** — ``.onnx`` / ``.ort`` also run in onnxruntime-node (npm) on the same
   inputs when node is available (:meth:`Parity.node_check`); skipped with a clear reason otherwise.
4. **Other onnxruntime versions** — ``.onnx`` / ``.ort`` parity again in side-installed onnxruntime
   versions (``--runtime-version``; by default also the one the Android app pins), gated alike
   (:mod:`mobilebert_kit.phone.side_parity`). Every number records its provenance (runtime, version, CPU,
   threads) and each format gets one ``runtimes`` record per version, which ``mbk package`` requires.
5. **The phone's CPU** — ``.onnx`` / ``.ort`` in the aarch64 onnxruntime under QEMU user mode, per
   CPU model and onnxruntime version, on a seeded subset (:meth:`Parity.arm_check`, ``--arm``).

Tolerances (per output; fp32 vs int8 artifacts; all configurable):

* fp32: ``max_abs_diff <= 1e-3`` (export and graph fusion reorder float math, ~1e-6 in practice),
  label agreement >= 99.5 %, accuracy drop <= 0.5 pt.
* int8: max abs diff reported, not gated (INT8 legitimately moves logits by ~0.1), agreement
  >= 97 %, accuracy drop <= 1 pt (the "keep >= 99 %" target of the project).
* An accuracy drop fails only when it is real: its paired 95% bootstrap interval over the same test
  texts lies wholly above the bound (compress's guard judges the same way), so on a small test split
  one flipped text is reported with its interval, not failed.
* onnxruntime-node vs Python ORT: ``max_abs_diff <= 1e-4`` (same graph, another build).

``verify.json`` goes next to the format folders (never inside them, so their hashes stay valid).
All breaches are collected and reported together; any breach raises :class:`VerifyError`.

"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from mobilebert_kit import formats as registry
from mobilebert_kit.artifacts import (
    LABELS,
    META,
    VERIFY,
    file_hashes,
    not_a_folder,
    read_json,
    sha256_tree,
    write_json,
)
from mobilebert_kit.config import StageConfig, check_range
from mobilebert_kit.data import DataConfig
from mobilebert_kit.errors import ArtifactError, DataError, VerifyError
from mobilebert_kit.phone.emulation import ArmConfig, ArmParity
from mobilebert_kit.phone.node import NODE_TOLERANCE, NodeRunner
from mobilebert_kit.phone.parity import Int8Tolerance, Parity, Tolerance
from mobilebert_kit.phone.rows import row
from mobilebert_kit.phone.side_parity import SideRuntimes, summarize, validate_versions
from mobilebert_kit.stages.base import RunContext, StageResult


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
    # side onnxruntime versions (runtime_parity): auto = also the app-pinned one when installable | none | X
    runtime_versions: list[str] = field(default_factory=lambda: ["auto"])
    arm: ArmConfig = field(default_factory=ArmConfig)  # ARM64 parity under QEMU (emulation.py)

    def validate(self) -> list[str]:
        p: list[str] = []
        known = registry.names()
        for f in self.formats:
            if f not in known:
                p.append(f"unknown format '{f}'; known formats: {', '.join(known)}")
        check_range(p, "max_examples", self.max_examples, 1)
        check_range(p, "batch_size", self.batch_size, 1)
        if self.node not in ("auto", "on", "off"):
            p.append(f"node must be auto, on or off; got '{self.node}'")
        return p + validate_versions(self.runtime_versions)


def run(config: VerifyConfig, ctx: RunContext | None = None) -> StageResult:
    """Verify the export folder; writes ``verify.json`` there and raises VerifyError on any breach."""
    log = (ctx or RunContext()).log
    export_dir = Path(config.export_dir)
    present, chosen = _formats_to_verify(export_dir, config.formats)
    report = _new_report(export_dir, config)
    refs: dict[str, dict] = {}
    node = NodeRunner(config.node)
    sides = SideRuntimes(config.runtime_versions, log)
    sides.prepare()
    runners = (node, sides, ArmParity(config.arm, log))
    timings: dict[str, float] = {"pytorch_reference_seconds": 0.0}
    for name in chosen:
        fmt = registry.get(name)
        report["formats"][name], reference_s, checks_s = _verify_format(
            fmt, export_dir / name, config, refs, runners, log
        )
        timings["pytorch_reference_seconds"] += reference_s
        timings[f"{name}_seconds"] = checks_s
    report["timings"] = timings  # where verify's minutes go (the run report's minutes-per-stage table)
    _keep_earlier_results(report, export_dir, present)
    report["passed"] = all(e["passed"] for e in report["formats"].values())
    if refs:
        report["pytorch"] = _pytorch_summary(next(iter(refs.values())))
        report["test_texts"] = _test_texts(next(iter(refs.values())))
    write_json(export_dir / VERIFY, report)
    _raise_breaches(report, chosen, export_dir)
    notes = [f"{n}: {report['formats'][n]['summary']}" for n in chosen if report["formats"][n].get("summary")]
    return StageResult(export_dir, report, [f"All checks passed; report: {export_dir / VERIFY}", *notes])


def _formats_to_verify(export_dir: Path, wanted: list[str]) -> tuple[list[str], list[str]]:
    """(formats exported in ``export_dir``, formats to verify now)."""
    if not export_dir.is_dir():
        raise ArtifactError(f"{not_a_folder(export_dir, 'export folder')}; run `mbk export` first or pass --export-dir")
    present = registry.exported(export_dir)
    chosen = wanted or present
    missing = [f for f in chosen if f not in present]
    if missing:
        metaless = [f for f in missing if (export_dir / f).is_dir()]
        why = f" ({export_dir / metaless[0]} has no {META}: a damaged or interrupted export)" if metaless else ""
        raise ArtifactError(
            f"{export_dir} has no exported {', '.join(missing)}{why} (found: {', '.join(present) or 'none'}); "
            f"run `mbk export --format {missing[0]}` first"
        )
    if not chosen:
        raise ArtifactError(f"{export_dir} holds no exported format (no */{META}); run `mbk export` first")
    return present, chosen


def _new_report(export_dir: Path, config: VerifyConfig) -> dict:
    return {
        "passed": False,
        "export_dir": str(export_dir.resolve()),
        "formats": {},
        "thresholds": {
            "fp32": config.fp32.to_dict(),
            "int8": config.int8.to_dict(),
            "onnxruntime_node_max_abs_diff": NODE_TOLERANCE,
        },
    }


def _verify_format(fmt, folder: Path, config: VerifyConfig, refs: dict, runners: tuple, log) -> tuple:
    """Integrity, source and parity checks of one format folder: its entry in verify.json, and the seconds
    spent on the PyTorch reference and on the checks."""
    meta = read_json(folder / META)
    checks = _integrity_checks(folder, meta)
    entry: dict = {"passed": False, "int8": bool(meta.get("int8")), "checks": checks}
    source = Path(config.model) if config.model else Path(meta.get("source_model", {}).get("path", ""))
    t0 = time.perf_counter()
    src_checks, ref = _source_checks(source, meta, config, refs, log)
    t1 = time.perf_counter()
    checks.extend(src_checks)
    if ref is not None and all(c["passed"] is not False for c in checks):
        log(f"{fmt.name}: {fmt.verify_action()} ...")
        lossy = meta.get("int8") or meta.get("lossy_weights")  # e.g. palettized CoreML weights
        tol = config.int8 if lossy else config.fp32
        checks.extend(fmt.verify(folder, meta, Parity(ref, tol, entry, config.batch_size, *runners)))
        summarize(entry, checks)
    entry["passed"] = all(c["passed"] is not False for c in checks)
    checks_s = time.perf_counter() - t1
    model_file = folder / str(meta.get("model_file") or "")
    entry["model_sha256"] = sha256_tree(model_file) if meta.get("model_file") and model_file.exists() else None
    failed = [c["name"] + (f" ({c['detail']})" if c["detail"] else "") for c in checks if c["passed"] is False]
    if failed:
        entry["reason"] = "; ".join(failed)
    return entry, t1 - t0, checks_s


def _keep_earlier_results(report: dict, export_dir: Path, present: list[str]) -> None:
    """Keep earlier results of formats not re-verified this time (package reads them per format)."""
    previous = read_json(export_dir / VERIFY) if (export_dir / VERIFY).exists() else {}
    for name, e in (previous.get("formats") or {}).items():
        if name not in report["formats"] and name in present:
            report["formats"][name] = e


def _pytorch_summary(ref: dict) -> dict:
    m = ref["metrics"]
    return {
        "model": ref["path"],
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "n": m["n"],
        "data": ref["data"],
    }


def _test_texts(ref: dict) -> dict:
    """Which test texts the formats' ``test_predicted`` lists answer (ids, not texts; see predictions.py)."""
    from mobilebert_kit.stages.predictions import text_ids

    return {"text_ids": text_ids(list(ref["texts"]), ref["pairs"]), "labels": [int(x) for x in ref["labels"]]}


def _raise_breaches(report: dict, chosen: list[str], export_dir: Path) -> None:
    breaches = [
        f"{name}: {c['name']}" + (f" ({c['detail']})" if c["detail"] else "")
        for name in chosen
        for c in report["formats"][name]["checks"]
        if c["passed"] is False
    ]
    if breaches:
        raise VerifyError(
            f"{len(breaches)} check(s) failed: " + "; ".join(breaches) + f" (details in {export_dir / VERIFY})"
        )


def _integrity_checks(folder: Path, meta: dict) -> list[dict]:
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
    fix = "; the artifact was modified after export: re-run `mbk export`" if problems else ""
    return [row("files match sha256 in model_meta.json", not problems, len(expected), None, "; ".join(problems) + fix)]


def _source_checks(source: Path, meta: dict, config: VerifyConfig, refs: dict, log) -> tuple[list[dict], dict | None]:
    """Is this the model the artifact came from (hash, label count)? Then its logits on the test split."""
    if not source or not (source / "config.json").exists():
        raise ArtifactError(
            f"the source model {source or '(none recorded)'} of this export is gone; "
            "pass --model PATH to the PyTorch folder it was exported from"
        )
    sha = sha256_tree(source)
    recorded = (meta.get("source_model") or {}).get("sha256")
    same = recorded == sha
    detail = (
        ""
        if same
        else f"{source} hashes to {sha[:12]}…, the artifact was exported from "
        f"{recorded[:12] if recorded else '?'}…; pass --model with the folder it came from"
    )
    src_labels, meta_labels = _labels(source), meta.get("labels")
    n_src, n_meta = len(src_labels), meta.get("num_labels")
    wrong = "" if n_src == n_meta else f"artifact has {n_meta} labels, the source model {n_src}: wrong model"
    checks = [
        row("exported from this source model", same, None, None, detail),
        row("label count matches", n_src == n_meta, n_meta, n_src, wrong),
    ]
    if n_src != n_meta:
        return checks, None
    if meta_labels is not None:  # an app shows these names: the same classes in the same order as the source's
        named = list(meta_labels) == src_labels
        checks.append(
            row(
                "label names and order match",
                named,
                None,
                None,
                "" if named else f"artifact labels {list(meta_labels)}, the source model's {src_labels}: re-export",
            )
        )
    key = str(source.resolve())
    if key not in refs:
        refs[key] = _reference(source, meta, config, log)
    return checks, refs[key]


def _labels(source: Path) -> list[str]:
    """The source model's class names in class order (labels.json, else config.json's id2label)."""
    if (source / LABELS).exists():
        return [str(x) for x in read_json(source / LABELS).get("labels") or []]
    cfg = read_json(source / "config.json")
    id2label = cfg.get("id2label") or {}
    if id2label:
        return [str(id2label[k]) for k in sorted(id2label, key=int)]
    return [f"LABEL_{i}" for i in range(int(cfg.get("num_labels", 2)))]


def _reference(source: Path, meta: dict, config: VerifyConfig, log) -> dict:
    from mobilebert_kit.batching import predict_logits
    from mobilebert_kit.data import data_config_for, load_dataset
    from mobilebert_kit.label_map import align_labels
    from mobilebert_kit.metrics import classification_metrics
    from mobilebert_kit.models import load_classifier_folder

    model, tokenizer, label_names = load_classifier_folder(source)
    dcfg = data_config_for(source, config.data)
    ds = load_dataset(dcfg)
    if ds.num_labels != len(label_names):
        raise DataError(
            f"the data {dcfg.data} has {ds.num_labels} labels but the model {source} has {len(label_names)}; "
            "pass the --data it was trained on"
        )
    aligned = align_labels(ds, label_names, f"the model {source}", "pass the --data it was trained on")
    if aligned is not ds:
        log(f"data: {aligned.notes[-1]}")
    ds = aligned
    test = ds.splits["test"]
    if config.max_examples:
        test = test.subset(config.max_examples, dcfg.split_seed + 2)
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
