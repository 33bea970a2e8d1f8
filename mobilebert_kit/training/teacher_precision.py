"""The precision of distillation's teacher pass: fp32, checked dynamic INT8, checked bf16 autocast, or ``auto``.

A bf16 teacher is checked like the INT8 one (:mod:`mobilebert_kit.training.int8_teacher`): its soft labels on a sample
of the texts must be within ``MAX_KL`` of the fp32 teacher's, else the pass stays fp32. ``auto`` on a CPU with
native bf16 (avx512_bf16 / amx_bf16) checks both and times each on that same sample (a warm-up batch, then one
timed pass each, logged), and runs the whole pass in the faster of those that passed: "whichever is faster at
the same agreement", measured on this machine and this teacher rather than assumed. On a CPU without native bf16
``auto`` is INT8 (bf16 would be emulated there, ~20x slower), on a GPU the pass runs as loaded, as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable

TEACHER_PASS_PRECISIONS = ("fp32", "int8", "bf16", "auto")


def teacher_pass_plan(requested: str, device_type: str) -> str:
    """What the pass will try on this device: ``fp32``, ``int8``, ``bf16`` or ``auto`` (check and time both).

    INT8 needs a CPU and a torch build with a quantized engine; bf16 needs a CPU with native bf16; a GPU pass runs
    the teacher as loaded (already fast there)."""
    import torch

    from mobilebert_kit.devices import cpu_has_native_bf16

    if device_type != "cpu" or requested == "fp32":
        return "fp32"
    int8_ok = bool(set(torch.backends.quantized.supported_engines) - {"none"})
    bf16_ok = cpu_has_native_bf16()
    if requested == "auto":
        return "auto" if int8_ok and bf16_ok else "int8" if int8_ok else "bf16" if bf16_ok else "fp32"
    return requested if {"int8": int8_ok, "bf16": bf16_ok}[requested] else "fp32"


def bf16_autocast(model):
    """``model`` run under CPU bf16 autocast (the weights stay fp32, shared, never modified); it keeps the
    ``config`` the teacher pass reads."""
    import torch

    class Bf16Autocast(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.config = inner.config

        def forward(self, **inputs):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self.inner(**inputs)

    return Bf16Autocast(model)


def checked_teacher(model, tokenizer, texts, pairs, *, plan: str, max_length: int, temperature: float, log):
    """(the teacher to run the pass with, the check's report) for ``plan`` ``int8`` / ``bf16`` / ``auto``;
    ``model`` itself (fp32) where no candidate passed the check. ``model`` is never modified."""
    from mobilebert_kit.training.int8_teacher import int8_teacher

    if plan == "int8":
        return int8_teacher(model, tokenizer, texts, pairs, max_length=max_length, temperature=temperature, log=log)
    if plan == "bf16":
        return _bf16_teacher(model, tokenizer, texts, pairs, max_length, temperature, log)
    return _faster_of_both(model, tokenizer, texts, pairs, max_length, temperature, log)


def as_checked(model, report: dict):
    """``model`` as an earlier check decided (the same INT8 copy, the bf16 autocast, or ``model`` in fp32)."""
    from mobilebert_kit.training.int8_teacher import int8_as_checked

    if report.get("precision") == "bf16":
        return bf16_autocast(model)
    return int8_as_checked(model, report)


def _bf16_teacher(model, tokenizer, texts, pairs, max_length: int, temperature: float, log):
    from mobilebert_kit.batching import predict_logits
    from mobilebert_kit.training.int8_teacher import MAX_KL, sample_indices, soft_label_kl

    idx = sample_indices(len(texts))
    sample, sample_pairs = [texts[i] for i in idx], [pairs[i] for i in idx] if pairs else None
    ref = predict_logits(model, tokenizer, sample, sample_pairs, max_length=max_length)
    candidate = bf16_autocast(model)
    logits = predict_logits(candidate, tokenizer, sample, sample_pairs, max_length=max_length)
    kl, agree = soft_label_kl(ref, logits, temperature), float((ref.argmax(-1) == logits.argmax(-1)).mean())
    ok = kl <= MAX_KL
    log(
        f"teacher pass: {'bf16 autocast' if ok else 'fp32 (bf16 failed the check)'}, soft-label KL {kl:.4f} and "
        f"label agreement {agree:.1%} vs fp32 on {len(idx)} texts"
    )
    report = {
        "precision": "bf16" if ok else "fp32",
        "sample": len(idx),
        "max_kl": MAX_KL,
        "fp32_layers": [],
        "tried": [{"bf16": True, "kl": kl, "agreement": agree}],
    }
    return (candidate if ok else model), report


def _faster_of_both(model, tokenizer, texts, pairs, max_length: int, temperature: float, log):
    """Check INT8 and bf16 against fp32, time each on the same sample, keep the faster one that passed."""
    from mobilebert_kit.training.int8_teacher import int8_teacher, sample_indices

    quiet: Callable[[str], None] = lambda m: None  # noqa: E731 - the two checks log through the one line below
    int8, int8_report = int8_teacher(
        model, tokenizer, texts, pairs, max_length=max_length, temperature=temperature, log=quiet
    )
    bf16, bf16_report = _bf16_teacher(model, tokenizer, texts, pairs, max_length, temperature, quiet)
    idx = sample_indices(len(texts))
    sample, sample_pairs = [texts[i] for i in idx], [pairs[i] for i in idx] if pairs else None
    passed = {r["precision"]: (m, r) for m, r in ((int8, int8_report), (bf16, bf16_report)) if r["precision"] != "fp32"}
    seconds = {p: _timed_pass(m, tokenizer, sample, sample_pairs, max_length) for p, (m, _) in passed.items()}
    if not passed:
        log(f"teacher pass: fp32 (neither int8 nor bf16 stayed within the soft-label check on {len(idx)} texts)")
        return model, {**int8_report, "auto": {"checked": {"int8": int8_report, "bf16": bf16_report}}}
    best = min(seconds, key=seconds.get)
    chosen, report = passed[best]
    timing = ", ".join(f"{p} {s * 1000:.0f} ms" for p, s in seconds.items())
    failed = [p for p in ("int8", "bf16") if p not in passed]
    log(
        f"teacher pass: {best} (auto: faster on {len(idx)} sample texts: {timing}"
        f"{'; ' + ' and '.join(failed) + ' failed the soft-label check' if failed else ''}; "
        f"KL {report['tried'][-1]['kl']:.4f} vs fp32)"
    )
    others = {"int8": int8_report, "bf16": bf16_report}
    return chosen, {**report, "auto": {"seconds_on_sample": seconds, "checked": others}}


def _timed_pass(model, tokenizer, texts, pairs, max_length: int) -> float:
    """Seconds for one pass over ``texts`` after a warm-up batch (first calls pay kernel selection)."""
    from mobilebert_kit.batching import predict_logits

    predict_logits(model, tokenizer, texts[:8], pairs[:8] if pairs else None, max_length=max_length)
    t0 = time.perf_counter()
    predict_logits(model, tokenizer, texts, pairs, max_length=max_length)
    return time.perf_counter() - t0
