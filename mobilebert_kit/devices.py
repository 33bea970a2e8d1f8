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


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs with native bf16 arithmetic
# an override for ``auto`` (e.g. MBK_PRECISION=fp32 on a machine where bf16 autocast turns out slower)
PRECISION_ENV = "MBK_PRECISION"


def cpu_bf16_flags() -> list[str]:
    """The native-bf16 flags this CPU reports in /proc/cpuinfo (empty where it has none or no /proc)."""
    try:
        with open("/proc/cpuinfo") as f:
            words = set(f.read().split())
    except OSError:
        return []
    return [flag for flag in BF16_CPU_FLAGS if flag in words]


def cpu_has_native_bf16() -> bool:
    return bool(cpu_bf16_flags())


def resolve_precision(requested: str, device_type: str) -> str:
    """Map ``auto`` to what is fast on this device; refuse what the device can't do well."""
    return choose_precision(requested, device_type)[0]


def choose_precision(requested: str, device_type: str) -> tuple[str, str]:
    """``(precision, reason)``: ``auto`` becomes bf16/fp16 on CUDA; on CPU bf16 autocast where the CPU has
    native bf16 (avx512_bf16 / amx_bf16: a MiniLM-L6 training step ran 1.9x faster than fp32 there) and fp32
    where it has not (bf16 is emulated there: ~20x slower). ``MBK_PRECISION`` overrides ``auto``.

    Raises:
        TrainingError: the device cannot run the requested precision (well).
    """
    import os

    import torch

    forced = os.environ.get(PRECISION_ENV, "").strip().lower()
    if requested == "auto" and forced and forced != "auto":
        if forced not in ("fp32", "bf16", "fp16"):
            raise TrainingError(f"{PRECISION_ENV}={forced!r} is not a precision; use fp32, bf16, fp16 or auto")
        return _check_precision(forced, device_type), f"{PRECISION_ENV}={forced}"
    if requested != "auto":
        return _check_precision(requested, device_type), "requested"
    if device_type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "CUDA device supports bf16"
        return "fp16", "CUDA device without bf16"
    flags = cpu_bf16_flags()
    if flags:
        return "bf16", f"CPU has {flags[0]}"
    return "fp32", "CPU has no native bf16 (avx512_bf16/amx_bf16); bf16 autocast would be emulated"


def precision_line(precision: str, reason: str) -> str:
    """The one log line of the decision: ``precision: bf16 autocast (CPU has avx512_bf16)``."""
    what = precision if precision == "fp32" else f"{precision} autocast"
    return f"precision: {what} ({reason})"


def _check_precision(requested: str, device_type: str) -> str:
    import torch

    if device_type == "cuda":
        if requested == "bf16" and not torch.cuda.is_bf16_supported():
            raise TrainingError(
                f"--precision bf16 is not supported by {torch.cuda.get_device_name()}; use --precision fp16 or auto"
            )
        return requested
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
