"""What the torch-based formats (torchscript, coreml, executorch) share: the source model in a
traceable form, example inputs, and a runner for modules that take the three BERT inputs."""

from __future__ import annotations

import contextlib

import numpy as np

from mobilebert_kit.formats import INPUT_NAMES, Runner, Source


def traceable(src: Source):
    """The source model in eager attention, returning logits only (a plain tensor: traceable), its last
    layer run for the first token only where the head reads nothing else (:mod:`mobilebert_kit.graph.first_token`)."""
    import copy

    import torch

    from mobilebert_kit.graph.first_token import rewrite

    model = copy.deepcopy(src.model).eval()
    rewrite(model)
    model.config.return_dict = False
    model.config.torchscript = True
    with contextlib.suppress(Exception):
        model.config._attn_implementation = "eager"
        model.set_attn_implementation("eager")

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]

    return LogitsOnly(model).eval()


def quantized_traceable(src: Source):
    """:func:`traceable` with ``torch.ao`` dynamic INT8 Linear layers (per-channel weight scales)."""
    from mobilebert_kit.devices import int8_linear

    # torch.ao quantization is deprecated but the only TorchScript int8 path. Per-channel weight scales: on a
    # 3-layer MiniLM student they kept 96.6% label agreement and -0.4 pt accuracy vs 96.3% / -0.6 pt per-tensor
    # (benchmarks/work, rotten_tomatoes test split).
    return int8_linear(traceable(src))


def example_inputs(src: Source, seq: int = 16):
    import torch

    enc = src.tokenizer(
        ["an example sentence for tracing the model"],
        padding="max_length",
        truncation=True,
        max_length=seq,
        return_tensors="pt",
    )
    tt = enc.get("token_type_ids", torch.zeros_like(enc["input_ids"]))
    return enc["input_ids"], enc["attention_mask"], tt


def first_line(e: Exception) -> str:
    return str(e).splitlines()[0][:200] if str(e) else ""


class TorchModuleRunner(Runner):
    """A callable taking (input_ids, attention_mask, token_type_ids) tensors, returning logits."""

    def __init__(self, module, runtime: str, static_batch: int | None = None, fixed_threads: bool = False):
        self.module, self.runtime = module, runtime
        self.static_batch, self.fixed_threads = static_batch, fixed_threads

    def _call(self, feeds: dict[str, np.ndarray]):
        import torch

        with torch.no_grad():
            return self.module(*(torch.from_numpy(np.asarray(feeds[n], dtype=np.int64)) for n in INPUT_NAMES))

    def logits(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self._call(feeds).float().numpy()

    def timed_call(self, threads: int):
        import torch

        def run(batch: dict) -> None:
            if not self.fixed_threads and torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            self._call(batch)

        return run
