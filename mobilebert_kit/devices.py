"""Which device a stage computes on, and which precision it can afford there: one choice for
training (the engine) and for the teacher pass of distillation."""

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
