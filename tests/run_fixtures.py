"""Tiny fake run folders (no training): what the stages leave that ``mbk report`` reads, written
directly, so report and comparison tests run in a second. The numbers are made up but consistent:
metrics.json's test accuracy is the accuracy of the test_predictions.json it sits beside."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

from mobilebert_kit.stages.predictions import text_ids

BASE_CONFIG = {
    "finetune": {"model": "minilm-l6", "output": "{run}/teacher", "train": {"lr": 5e-5, "epochs": 2, "seed": 42}},
    "distill": {"teacher": "{run}/teacher", "output": "{run}/student", "temperature": 3.0, "alpha": 0.5,
                "train": {"lr": 1e-4, "epochs": 2, "seed": 42}},
    "compress": {"model": "{run}/student", "output": "{run}/compressed", "prune_ffn": 0.25, "recover_epochs": 1},
    "bench": {"threads": [1], "seq_lengths": [128]},
}  # fmt: skip


LEVEL_SEEDS = {"teacher": 1, "student": 2, "phone": 3}


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [
        f"review {i} " + " ".join(rng.choice(["good", "bad", "dull", "fine", "great"]) for _ in range(4))
        for i in range(n)
    ]


def labels_for(n: int, classes: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed + 1)
    return [rng.randrange(classes) for _ in range(n)]


def answers(labels: list[int], right: list[bool], classes: int) -> list[int]:
    """Predicted labels that are right exactly where ``right`` says."""
    return [y if ok else (y + 1) % classes for y, ok in zip(labels, right)]


def right_mask(n: int, accuracy: float, seed: int) -> list[bool]:
    rng = random.Random(seed)
    idx = list(range(n))
    rng.shuffle(idx)
    good = set(idx[: round(accuracy * n)])
    return [i in good for i in range(n)]


def step_log(steps: int, *, terms=(), phase=None, epochs: int = 2, seed: int = 0, lr: float = 5e-5) -> list[dict]:
    rng = random.Random(seed)
    lines = []
    per_epoch = max(steps // epochs, 1)
    for s in range(1, steps + 1):
        loss = 0.7 * math.exp(-s / (steps / 3)) + 0.2 + 0.05 * rng.random()
        rec = {"kind": "step", "step": s, "epoch": (s - 1) // per_epoch + 1, "loss": loss}
        rec.update({f"loss_{t}": loss * w for t, w in zip(terms, (0.6, 0.4, 0.2, 0.1))})
        rec.update(
            {"lr": lr * (1 - (s - 1) / steps), "grad_norm": 1 + rng.random(), "examples_per_second": 50.0, "batches": 1}
        )
        lines.append(rec)
        if s % per_epoch == 0:
            lines.append({"kind": "eval", "step": s, "epoch": s // per_epoch, "val_accuracy": 0.8 + 0.01 * s / steps,
                          "val_macro_f1": 0.79, "train_loss": loss})  # fmt: skip
    if phase:
        for r in lines:
            r["phase"] = phase
    return lines


def fake_run(
    root: Path,
    name: str,
    *,
    n_test: int = 400,
    classes: int = 2,
    steps: int = 60,
    accuracy: dict | None = None,
    right: dict | None = None,
    overrides: dict | None = None,
    texts_seed: int = 0,
    bench: dict | None = None,
    transfer_set: bool = False,
) -> Path:
    """A run folder with teacher, student, compressed (recovery), export (ort, verified) and bench.

    ``accuracy`` / ``right``: per level (teacher, student, phone) the test accuracy, or the exact right/wrong
    mask; ``overrides``: dotted config keys changed from :data:`BASE_CONFIG`; ``bench``: bench.json fields
    to change (``threads``, ``onnxruntime``)."""
    run = root / name
    texts, labels = test_texts(n_test, texts_seed), labels_for(n_test, classes, texts_seed)
    acc = {"teacher": 0.86, "student": 0.84, "phone": 0.835, **(accuracy or {})}
    masks = {lvl: (right or {}).get(lvl) or right_mask(n_test, acc[lvl], seed=LEVEL_SEEDS[lvl]) for lvl in acc}
    _state(run, overrides or {})
    _trained(run / "teacher", texts, labels, masks["teacher"], classes, step_log(steps, seed=1), 22_700_000)
    log = step_log(steps, terms=("soft", "hard"), seed=2, phase="transfer set" if transfer_set else None)
    _trained(run / "student", texts, labels, masks["student"], classes, log, 11_000_000)
    comp = run / "compressed"
    _write(comp / "metrics.json", {"final": {"step": "int8", "test": {"accuracy": acc["phone"], "macro_f1": 0.83}},
                                   "input": {"params": 11_000_000}, "steps": [{"params": 9_000_000}],
                                   "size_on_disk": {"onnx_bytes": 10_000_000}})  # fmt: skip
    _jsonl(comp / "train_log.jsonl", step_log(max(steps // 4, 2), terms=("soft", "hard"), seed=3, phase="recovery"))
    _export(run, texts, labels, masks["phone"], classes)
    _bench(run, bench or {})
    return run


def _state(run: Path, overrides: dict) -> None:
    config = json.loads(json.dumps(BASE_CONFIG).replace("{run}", str(run)))
    for key, value in overrides.items():
        d = config
        *path, last = key.split(".")
        for k in path:
            d = d.setdefault(k, {})
        d[last] = value
    for step, cfg in config.items():
        _write(run / ".state" / f"{step}.json", {"status": "done", "seconds": 1.0, "config": cfg})


def _jsonl(path: Path, lines: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")


def _trained(folder: Path, texts, labels, right, classes, log, params) -> None:
    predicted = answers(labels, right, classes)
    accuracy = sum(right) / len(right)
    hist = [{"epoch": r["epoch"], "step": r["step"], "train_loss": r["train_loss"], "val_accuracy": r["val_accuracy"]}
            for r in log if r["kind"] == "eval"]  # fmt: skip
    _write(folder / "metrics.json", {"test": {"accuracy": accuracy, "macro_f1": accuracy - 0.01}, "parameters": params,
                                     "history": hist, "train_examples_per_second": 50.0,
                                     "steps": max(r["step"] for r in log)})  # fmt: skip
    (folder / "model.safetensors").write_bytes(b"\0" * 1000)
    _jsonl(folder / "train_log.jsonl", log)
    _write(folder / "test_predictions.json", {"split": "test", "text_ids": text_ids(texts), "labels": labels,
                                              "predicted": predicted})  # fmt: skip


def _export(run: Path, texts, labels, right, classes) -> None:
    export = run / "export"
    _write(export / "ort" / "model_meta.json", {"model_file": "model.ort", "int8": True, "size_bytes": 19_300_000})
    predicted = answers(labels, right, classes)
    verify = {
        "passed": True,
        "formats": {"ort": {"passed": True, "int8": True, "accuracy": sum(right) / len(right), "macro_f1": 0.8,
                            "agreement": 0.99, "max_abs_diff": 0.01, "checks": [], "test_predicted": predicted}},
        "test_texts": {"text_ids": text_ids(texts), "labels": labels},
    }  # fmt: skip
    _write(export / "verify.json", verify)


def _bench(run: Path, changes: dict) -> None:
    threads = changes.get("threads", 1)
    row = {"model": "ort int8", "runtime": "onnxruntime", "path": str(run / "export" / "ort" / "model.ort"),
           "threads": threads, "batch": 1, "seq_len": 128, "p50_ms": 2.0, "p90_ms": 2.4}  # fmt: skip
    teacher = {**row, "model": "pytorch teacher", "runtime": "pytorch", "path": str(run / "teacher"), "p50_ms": 15.0}
    _write(run / "bench" / "bench.json", {"rows": [row, teacher], "cpu_count": 2,
                                          "versions": {"onnxruntime": changes.get("onnxruntime", "1.32.0"), "torch": "2.13.0"}})  # fmt: skip
