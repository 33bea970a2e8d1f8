"""4-bit weight-only steps on the fused ONNX graph, with the accuracy guard's fallback:

* ``int4_embeddings``: the embedding tables' Gathers -> ``GatherBlockQuantized`` (4-bit blocks along
  the hidden axis). The word-embedding table is most of a small student (11.7M of 17.4M
  parameters), so this is the size lever INT8 leaves. ORT's transformer optimizer folds the
  embedding Gathers into ``EmbedLayerNormalization``, which has no 4-bit form, so a plan with this
  step fuses the fp32 graph without that one fusion (attention, skip-LayerNorm and GELU still fuse).
* ``int4_matmul``: MatMuls -> ``MatMulNBits``. Fused ``Attention`` keeps its QKV weights (it has
  no 4-bit form); a following ``int8_dynamic`` quantizes those, and the Gemms, to INT8.

Both are ORT's ``MatMulNBitsQuantizer`` (:class:`mobilebert_kit.compression.ort_quant.Int4Weights`). They run
before INT8 (which quantizes whatever is still fp32), and the guard judges the graph they leave
against the uncompressed input and the fp32 graph, as for INT8.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

from mobilebert_kit.compression.base import Method, Work
from mobilebert_kit.compression.fallback import FallbackSearch, refuse_if_input_fails
from mobilebert_kit.compression.ort_quant import ACCURACY_LEVELS, INT4_BITS, INT4_BLOCK_SIZES
from mobilebert_kit.config import check_choice
from mobilebert_kit.errors import CompressError

# What runs these graphs, checked 2026-11-24 on x86 (onnxruntime 1.32.0 and 1.22.0, the version the
# Android app pins): the .onnx loads and runs in both. An .ort converted by 1.32 does not load in
# 1.22 (the converter writes attributes 1.22 does not know: MatMulNBits ``weight_prepacked``,
# GatherBlockQuantized ``bits``), and ORT format cannot hold GatherBlockQuantized's uint4 tables at
# all (1.32 refuses its own .ort: "Unsupported tensor data type").
RUNTIMES = {
    "int4_embeddings": {
        "ops": ["GatherBlockQuantized"],
        "onnx_runs_in_onnxruntime": ["1.22.0", "1.32.0"],
        "ort_format_loads_in": [],
        "note": "ORT format cannot store uint4 tensors: ship the .onnx (the .ort export of this graph does not load)",
    },
    "int4_matmul": {
        "ops": ["MatMulNBits"],
        "onnx_runs_in_onnxruntime": ["1.22.0", "1.32.0"],
        "ort_format_loads_in": ["1.32.0"],
        "note": "an .ort converted by onnxruntime 1.32 needs >= 1.32 to load (1.22.0 refuses MatMulNBits' "
        "weight_prepacked attribute): the Android app's pinned 1.22.0 must load the .onnx",
    },
}


@dataclass
class Int4Step(Method):
    """What both 4-bit steps share: ORT's ``block_size``, ``is_symmetric`` (here ``symmetric``), ``bits``."""

    block_size: int = 32
    symmetric: bool = False
    bits: int = 4

    kind: ClassVar[str] = "onnx"
    op_types: ClassVar[tuple[str, ...]] = ()

    def validate(self) -> list[str]:
        p: list[str] = []
        check_choice(p, "bits", self.bits, INT4_BITS)
        check_choice(p, "block_size", self.block_size, INT4_BLOCK_SIZES)
        return p

    def ort_method(self):
        from mobilebert_kit.compression import ort_quant as q

        return q.Int4Weights(
            op_types_to_quantize=self.op_types, block_size=self.block_size, is_symmetric=self.symmetric, bits=self.bits
        )

    def settings(self) -> dict:
        return {"block_size": self.block_size, "symmetric": self.symmetric, "bits": self.bits}

    def apply(self, work: Work) -> None:
        what = f"{self.bits}-bit {'+'.join(self.op_types)}"
        refuse_if_input_fails(work, what)
        t = time.perf_counter()
        search = FallbackSearch(work, self.ort_method(), self.name, what)
        if not search.candidates:
            raise CompressError(
                f"{self.name}: the fused graph has no {'/'.join(self.op_types)} node with a constant fp32 weight "
                "to quantize; nothing was written"
            )
        search.run()
        work.timings[self.name] = time.perf_counter() - t
        search.refuse_if_failed()
        entry = search.record()
        work.records[self.record] = {
            **self.settings(),
            "nodes_quantized": [n for n in search.candidates if n not in search.excluded],
            "nodes_excluded": search.excluded,
            "size_bytes": entry["size_bytes"],
            "guard_search": search.summary(),
            "runtimes": RUNTIMES[self.name],
        }
        work.note(f"{self.name}: {RUNTIMES[self.name]['note']}")


@dataclass
class Int4Embeddings(Int4Step):
    """Embedding tables (word, position, token type) -> 4-bit ``GatherBlockQuantized``."""

    name: ClassVar[str] = "int4_embeddings"
    record: ClassVar[str | None] = "int4_embeddings"
    op_types: ClassVar[tuple[str, ...]] = ("Gather",)
    fusion: ClassVar[dict] = {"enable_embed_layer_norm": False}


@dataclass
class Int4MatMul(Int4Step):
    """MatMul weights -> 4-bit ``MatMulNBits``; ``accuracy_level`` picks its compute type (ORT's name)."""

    accuracy_level: int | None = None

    name: ClassVar[str] = "int4_matmul"
    record: ClassVar[str | None] = "int4_matmul"
    op_types: ClassVar[tuple[str, ...]] = ("MatMul",)

    def validate(self) -> list[str]:
        p = super().validate()
        if self.accuracy_level is not None:
            check_choice(p, "accuracy_level", self.accuracy_level, ACCURACY_LEVELS)
        return p

    def ort_method(self):
        from mobilebert_kit.compression import ort_quant as q

        return q.Int4Weights(
            op_types_to_quantize=self.op_types,
            block_size=self.block_size,
            is_symmetric=self.symmetric,
            bits=self.bits,
            accuracy_level=self.accuracy_level,
        )

    def settings(self) -> dict:
        return {**super().settings(), "accuracy_level": self.accuracy_level}
