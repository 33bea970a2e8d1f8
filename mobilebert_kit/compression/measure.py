"""Measurements every compression step reports: scores against the labels and the input model,
size of the saved weights, single-thread latency in PyTorch and ONNX Runtime."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from mobilebert_kit.artifacts import scratch_dir


def score_logits(logits: np.ndarray, split, num_labels: int, ref_preds: np.ndarray | None = None) -> dict:
    """Classification metrics of ``logits`` on ``split``; with ``ref_preds``, also the share of
    predictions equal to them (``agreement_with_input``)."""
    from mobilebert_kit.metrics import classification_metrics

    out = classification_metrics(logits, split.labels, num_labels)
    if ref_preds is not None:
        preds, labels = logits.argmax(-1), np.asarray(split.labels)
        out["agreement_with_input"] = float((preds == ref_preds).mean()) if len(ref_preds) else float("nan")
        # paired over the same examples: right before and wrong now, and the other way round
        was_right, is_right = ref_preds == labels, preds == labels
        out["discordant"] = [int((was_right & ~is_right).sum()), int((~was_right & is_right).sum())]
    return out


def state_size(model) -> int:
    """Bytes of the model saved as safetensors (what ``save_pretrained`` writes)."""
    from safetensors.torch import save_file

    with scratch_dir("size") as d:
        f = Path(d) / "m.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(f))
        return f.stat().st_size


def torch_latency(model, seq: int, runs: int) -> float | None:
    """Median ms of ``runs`` batch-1 forward passes at length ``seq`` on 1 thread (after 3 warm-up)."""
    import torch

    if runs <= 0:
        return None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    vocab = model.config.vocab_size
    ids = torch.randint(min(1000, vocab - 1), vocab, (1, seq), generator=torch.Generator().manual_seed(0))
    ids[0, 0] = 0  # any id exists; values do not matter for dense kernels
    ids = ids.clamp(max=vocab - 1)
    mask = torch.ones_like(ids)
    try:
        with torch.inference_mode():
            return _median_ms(lambda: model(input_ids=ids, attention_mask=mask), runs)
    finally:
        torch.set_num_threads(threads)


def ort_latency(path: Path, seq: int, runs: int, vocab: int) -> float | None:
    """:func:`torch_latency` for an ONNX file in ONNX Runtime (random ids below ``vocab``)."""
    from mobilebert_kit.graph.onnx_tools import session

    if runs <= 0:
        return None
    sess = session(path, threads=1)
    rng = np.random.default_rng(0)
    feeds = {}
    for i in sess.get_inputs():
        if i.name == "input_ids":
            feeds[i.name] = rng.integers(0, vocab, (1, seq), dtype=np.int64)
        elif i.name == "attention_mask":
            feeds[i.name] = np.ones((1, seq), dtype=np.int64)
        else:
            feeds[i.name] = np.zeros((1, seq), dtype=np.int64)
    return _median_ms(lambda: sess.run(None, feeds), runs)


def _median_ms(call, runs: int, warmup: int = 3) -> float:
    times = []
    for i in range(runs + warmup):
        t = time.perf_counter()
        call()
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)
