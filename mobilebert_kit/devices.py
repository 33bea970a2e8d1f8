"""Which device a stage computes on, and which precision it can afford there: one choice for
training (the engine) and for the teacher pass of distillation (which may also run in INT8)."""

from __future__ import annotations

from mobilebert_kit.errors import TrainingError


def select_device(requested: str):
    """The ``torch.device`` for ``auto | cpu | cuda | cuda:N``; ``auto`` takes CUDA when visible.

    Raises:
        TrainingError: CUDA was requested but no GPU is visible.
    """
    import torch

    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise TrainingError(f"device '{requested}' requested but no CUDA GPU is visible; use --device cpu (or auto)")
    return torch.device("cuda" if requested == "auto" else requested)


def cpu_has_native_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(requested: str, device_type: str) -> str:
    """Map ``auto`` to what is fast on this device; refuse what the device can't do well."""
    import torch

    if device_type == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        if requested == "auto":
            return "bf16" if bf16_ok else "fp16"
        if requested == "bf16" and not bf16_ok:
            raise TrainingError(
                f"--precision bf16 is not supported by {torch.cuda.get_device_name()}; use --precision fp16 or auto"
            )
        return requested
    if requested == "auto":
        return "fp32"  # bf16 autocast on a CPU without native bf16 is ~20x slower than fp32
    if requested == "fp16":
        raise TrainingError("--precision fp16 needs a CUDA GPU; on CPU use --precision fp32 (or auto)")
    if requested == "bf16" and not cpu_has_native_bf16():
        raise TrainingError(
            "--precision bf16 on this CPU (no avx512_bf16/amx instructions) runs ~20x slower than fp32; "
            "use --precision fp32 (or auto), or train on a GPU"
        )
    return requested


# The teacher pass's precisions. ``int8`` is torch.ao dynamic INT8 Linear layers, a CPU kernel (fbgemm), checked
# against the fp32 teacher on a sample first (mobilebert_kit.training.int8_teacher; benchmarks/results/teacher_int8*.md).
TEACHER_PRECISIONS = ("fp32", "int8")


def teacher_pass_precision(requested: str, device_type: str) -> str:
    """The precision the teacher pass runs in: ``int8`` only on CPU (its kernels are CPU-only) with a torch
    build that has a quantized engine; a GPU pass runs the teacher as loaded, which is already fast there."""
    import torch

    engines = set(torch.backends.quantized.supported_engines) - {"none"}
    return "int8" if requested == "int8" and device_type == "cpu" and engines else "fp32"


def int8_linear(module, keep_fp32=()):
    """A copy of ``module`` whose ``nn.Linear`` layers (but those named in ``keep_fp32``) are torch.ao
    dynamic INT8 (per-channel weight scales, activations quantized per call); embeddings and LayerNorms
    stay fp32. torch.ao's eager dynamic quantization is deprecated in favour of torchao's pt2e flow, which
    needs an export and a compile step that would cost more than it saves on a one-off pass; this is 0.2 s."""
    import warnings

    import torch

    keep = set(keep_fp32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice, on every call
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        spec = {
            name: qconfig for name, m in module.named_modules() if isinstance(m, torch.nn.Linear) and name not in keep
        }
        return torch.ao.quantization.quantize_dynamic(module, spec, dtype=torch.qint8)
