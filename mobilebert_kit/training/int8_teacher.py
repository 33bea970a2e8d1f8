"""The distillation teacher in dynamic INT8, checked against itself in fp32 before it labels anything.

Dynamic INT8 quantizes each Linear layer's input with one scale per call, so a layer whose inputs carry
a few huge values (BERT-family FFN output layers after GELU) loses the rest of its range. On the MiniLM-L6
teacher that costs nothing measurable (KL 0.0009 at T=3 over 10k texts); on MPNet-base it flipped 18% of
the labels. So: run fp32 and INT8 on a sample of the texts, and keep the layers with the most
outlier-heavy inputs (largest max/RMS ratio, measured on the same fp32 pass) in fp32 until the INT8
teacher's soft labels are within :data:`MAX_KL` of the fp32 teacher's; if no such mix is found, the pass
stays fp32 and says so. This is Neural Compressor's accuracy-driven fallback at the granularity of one
Linear layer, ranked by a statistic one fp32 pass gives (a per-layer sensitivity pass, as compress does
for ONNX graphs, would cost more than the teacher pass it is meant to speed up).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Mean KL(fp32 || int8) of the soft labels at the distillation temperature, on the sample. Measured
# (benchmarks/results/teacher_int8*.md): MiniLM-L6 all-INT8 0.0009 (its student scored within noise of the
# fp32 one); MPNet-base all-INT8 0.048, 0.004 with its three most outlier-heavy FFN output layers in fp32.
MAX_KL = 0.005
FALLBACK_STEPS = (0, 1, 2, 4, 8, 16)  # layers kept fp32 at each try, most outlier-heavy first


def sample_indices(n: int) -> np.ndarray:
    """Evenly spaced texts: 1/16 of them, at least 64 (or all) and at most 256."""
    k = min(n, max(64, min(256, n // 16)))
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def int8_teacher(model, tokenizer, texts, pairs, *, max_length: int, temperature: float, log: Callable[[str], None]):
    """(the teacher to run the pass with, what was checked): an INT8 copy of ``model`` that passed the check,
    or ``model`` itself (fp32) when none did. ``model`` is never modified."""
    from mobilebert_kit.batching import predict_logits
    from mobilebert_kit.devices import int8_linear

    idx = sample_indices(len(texts))
    log(f"teacher pass: checking int8 against fp32 on {len(idx)} of {len(texts)} texts")
    sample = [texts[i] for i in idx]
    sample_pairs = [pairs[i] for i in idx] if pairs else None
    ref, ratios = _fp32_pass_with_input_ratios(model, tokenizer, sample, sample_pairs, max_length)
    order = sorted(ratios, key=ratios.get, reverse=True)
    tried = []
    for k in (s for s in FALLBACK_STEPS if s <= len(order)):
        candidate = int8_linear(model, keep_fp32=order[:k])
        logits = predict_logits(candidate, tokenizer, sample, sample_pairs, max_length=max_length)
        kl, agree = soft_label_kl(ref, logits, temperature), float((ref.argmax(-1) == logits.argmax(-1)).mean())
        tried.append({"fp32_layers": k, "kl": kl, "agreement": agree})
        if kl <= MAX_KL:
            log(
                f"teacher pass: int8 ({k} of {len(order)} Linear layers kept fp32), soft-label KL {kl:.4f} and "
                f"label agreement {agree:.1%} vs fp32 on {len(idx)} texts"
            )
            return candidate, _report("int8", len(idx), order[:k], tried)
    log(
        f"teacher pass: fp32 (int8 stayed above soft-label KL {MAX_KL} vs fp32 on {len(idx)} texts with up to "
        f"{tried[-1]['fp32_layers']} layers kept fp32)"
    )
    return model, _report("fp32", len(idx), [], tried)


def int8_as_checked(model, report: dict):
    """``model`` as an earlier :func:`int8_teacher` check on it decided: the same INT8 copy (same layers kept
    fp32), or ``model`` itself when that check fell back to fp32. ``model`` is never modified."""
    from mobilebert_kit.devices import int8_linear

    if report.get("precision") != "int8":
        return model
    return int8_linear(model, keep_fp32=list(report.get("fp32_layers") or []))


def soft_label_kl(ref: np.ndarray, other: np.ndarray, temperature: float) -> float:
    """Mean KL(softmax(ref/T) || softmax(other/T)) over the rows."""
    p, q = _log_softmax(ref / temperature), _log_softmax(other / temperature)
    return float((np.exp(p) * (p - q)).sum(-1).mean())


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _report(precision: str, n: int, fp32_layers: list[str], tried: list[dict]) -> dict:
    return {"precision": precision, "sample": n, "max_kl": MAX_KL, "fp32_layers": fp32_layers, "tried": tried}


def _fp32_pass_with_input_ratios(model, tokenizer, texts, pairs, max_length: int):
    """The fp32 logits on ``texts`` and, per Linear layer, the largest max|x| / RMS(x) of its input."""
    import torch

    from mobilebert_kit.batching import predict_logits

    ratios: dict[str, float] = {}

    def hook(name):
        def record(module, inputs, output):
            x = inputs[0].detach().float()
            ratio = float(x.abs().max() / (x.pow(2).mean().sqrt() + 1e-12))
            ratios[name] = max(ratios.get(name, 0.0), ratio)

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    try:
        logits = predict_logits(model, tokenizer, texts, pairs, max_length=max_length)
    finally:
        for h in handles:
            h.remove()
    return logits, ratios
