"""INT8 steps on the fused ONNX graph (``int8_dynamic``, ``int8_static``) with the accuracy guard's
fallback (:mod:`mobilebert_kit.compression.fallback`): when INT8 breaks the bound, the most
sensitive nodes go back to fp32 one by one until it holds, or the step fails with the best it found.
INT8 quantizes whatever is still fp32, so it is the last ONNX step (a 4-bit step comes before it)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

from mobilebert_kit.compression.base import Method, Work
from mobilebert_kit.compression.fallback import FallbackSearch, refuse_if_input_fails
from mobilebert_kit.config import check_choice, check_range
from mobilebert_kit.errors import ConfigError

STATIC_NOTE = (
    "static QDQ quantizes MatMul/Gemm only: ORT's fused Attention and EmbedLayerNormalization "
    "have no QDQ kernels and stay fp32 (the QKV projections and the embedding table)"
)


@dataclass
class Int8Step(Method):
    """What both INT8 steps share: ORT's names ``per_channel``, ``reduce_range``, ``weight_type``."""

    per_channel: bool = False
    reduce_range: bool = False
    weight_type: str = "qint8"

    kind: ClassVar[str] = "onnx"
    last: ClassVar[bool] = True
    mode: ClassVar[str] = ""

    def validate(self) -> list[str]:
        p: list[str] = []
        check_choice(p, "weight_type", self.weight_type, ("qint8", "quint8"))
        return p

    def ort_method(self, work: Work):
        """The :mod:`mobilebert_kit.compression.ort_quant` method config for this step."""
        raise NotImplementedError

    def settings(self) -> dict:
        """The step's ``compression.json`` fields."""
        return {
            "int8_mode": self.mode,
            "per_channel": self.per_channel,
            "reduce_range": self.reduce_range,
            "weight_type": self.weight_type,
            "calib_method": None,
            "calib_samples": None,
        }

    def apply(self, work: Work) -> None:
        refuse_if_input_fails(work, "INT8")
        t = time.perf_counter()
        with self.ort_method(work) as method:
            search = FallbackSearch(work, method, self.name, f"INT8 {self.mode}")
            search.run()
        work.timings["int8"] = time.perf_counter() - t
        work.metrics["guard_search"] = search.summary()
        search.refuse_if_failed()
        search.record()
        work.nodes_excluded = search.excluded


@dataclass
class Int8DynamicStep(Int8Step):
    """Dynamic INT8: weights INT8 offline, activations quantized at run time."""

    name: ClassVar[str] = "int8_dynamic"
    mode: ClassVar[str] = "dynamic"

    def ort_method(self, work: Work):
        from mobilebert_kit.compression import ort_quant as q

        return q.Int8Dynamic(per_channel=self.per_channel, reduce_range=self.reduce_range, weight_type=self.weight_type)


@dataclass
class Int8StaticStep(Int8Step):
    """Static INT8 (QDQ), activation ranges calibrated on ``calib_samples`` training examples."""

    calib_samples: int = 128
    calib_method: str = "minmax"

    name: ClassVar[str] = "int8_static"
    mode: ClassVar[str] = "static"
    seeded: ClassVar[bool] = True  # calibration texts are a seeded training subset

    def validate(self) -> list[str]:
        p = super().validate()
        check_range(p, "calib_samples", self.calib_samples, 1)
        check_choice(p, "calib_method", self.calib_method, ("minmax", "entropy", "percentile"))
        return p

    def settings(self) -> dict:
        return {**super().settings(), "calib_method": self.calib_method, "calib_samples": self.calib_samples}

    def preflight(self, work: Work) -> None:
        n = len(work.train)
        if self.calib_samples > n:
            raise ConfigError(
                f"--calib-samples {self.calib_samples} is more than the {n} training examples available; "
                f"use at most {n}"
            )

    def ort_method(self, work: Work):
        from mobilebert_kit.compression import ort_quant as q
        from mobilebert_kit.graph import onnx_tools as ot

        names = [i.name for i in ot.session(work.graph).get_inputs()]
        calib = work.train.subset(self.calib_samples, work.seed)
        feeds = q.calibration_feeds(names, work.tokenizer, calib.texts, calib.pairs, work.max_length)
        return q.Int8Static(
            calibration=feeds,
            method=self.calib_method,
            per_channel=self.per_channel,
            reduce_range=self.reduce_range,
            weight_type=self.weight_type,
        )

    def apply(self, work: Work) -> None:
        super().apply(work)
        work.note(STATIC_NOTE)
