"""INT8 steps on the fused ONNX graph (``int8_dynamic``, ``int8_static``) with the accuracy guard's
fallback: when INT8 breaks the bound, the most sensitive nodes go back to fp32 one by one (ranked
by the logit error each causes alone) until it holds, or the step fails with the best it found.
The quantization itself is :func:`mobilebert_kit.quantize.quantize`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from mobilebert_kit.compression.base import Method, Work
from mobilebert_kit.config import check_choice, check_range
from mobilebert_kit.errors import CompressError, ConfigError

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
    mode: ClassVar[str] = ""

    def validate(self) -> list[str]:
        p: list[str] = []
        check_choice(p, "weight_type", self.weight_type, ("qint8", "quint8"))
        return p

    def ort_method(self, work: Work):
        """The :mod:`mobilebert_kit.quantize` method config for this step."""
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
        _refuse_if_fp32_fails(work)
        t = time.perf_counter()
        with self.ort_method(work) as method:
            search = _FallbackSearch(work, method)
            search.run()
        work.timings["int8"] = time.perf_counter() - t
        work.metrics["guard_search"] = search.summary()
        search.refuse_if_failed()
        search.record()


@dataclass
class Int8DynamicStep(Int8Step):
    """Dynamic INT8: weights INT8 offline, activations quantized at run time."""

    name: ClassVar[str] = "int8_dynamic"
    mode: ClassVar[str] = "dynamic"

    def ort_method(self, work: Work):
        from mobilebert_kit import quantize as q

        return q.Int8Dynamic(per_channel=self.per_channel, reduce_range=self.reduce_range, weight_type=self.weight_type)


@dataclass
class Int8StaticStep(Int8Step):
    """Static INT8 (QDQ), activation ranges calibrated on ``calib_samples`` training examples."""

    calib_samples: int = 128
    calib_method: str = "minmax"

    name: ClassVar[str] = "int8_static"
    mode: ClassVar[str] = "static"

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
        from mobilebert_kit import onnx_tools as ot
        from mobilebert_kit import quantize as q

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


def _refuse_if_fp32_fails(work: Work) -> None:
    drop = work.guard.drop(work.graph_scores)
    if work.guard.refuses(work.graph_scores):
        raise CompressError(
            work.guard.failure(
                work.graph_scores,
                drop,
                "before INT8: pruning/trimming alone exceed the bound, INT8 fallback cannot help; "
                "prune less or recover with training",
            )
        )


class _FallbackSearch:
    """Quantize the fp32 graph, then fall the most sensitive nodes back to fp32 until the guard holds."""

    def __init__(self, work: Work, method) -> None:
        from mobilebert_kit import quantize as q

        self.work, self.method, self.fp32 = work, method, work.graph
        self.out = Path(work.scratch) / "int8.onnx"
        self.candidates = q.candidate_nodes(self.fp32, method)
        self.excluded: list[str] = []
        self.tried: list[dict] = []
        self.sensitivity: list | None = None
        # what verify compares an INT8 export with: the fp32 graph's labels (scored when it was exported)
        self.fp32_labels = work.graph_labels

    def run(self) -> None:
        guard, log = self.work.guard, self.work.log
        log(f"INT8 {self.method.name}: quantizing {len(self.candidates)} nodes")
        self._attempt()
        log(f"INT8: validation accuracy {self.scores['accuracy']:.4f} ({guard.describe(self.scores)}, "
            f"bound {guard.max_drop}); {self._fidelity_text()}")  # fmt: skip
        if self.ok:
            return
        for node, _err in self._ranking():
            self.excluded.append(node)
            self._attempt()
            log(f"accuracy guard: {len(self.excluded)} node(s) fp32 (+{node}): drop {self.drop:+.4f}; "
                f"{self._fidelity_text()}")  # fmt: skip
            if self.ok:
                break

    def _attempt(self) -> None:
        from mobilebert_kit import quantize as q

        work = self.work
        self.report = q.quantize(self.fp32, self.out, self.method, nodes_to_exclude=self.excluded)
        logits = work.onnx_logits(self.out, work.val)
        self.scores = work.scores(logits, "validation")
        self.drop = work.guard.drop(self.scores)
        self.labels = logits.argmax(-1)
        agree = float((self.labels == self.fp32_labels).mean())
        low, fid_ok = work.guard.fidelity(agree, len(self.fp32_labels))
        self.scores.update({"agreement_with_fp32": agree, "agreement_with_fp32_low95": low})
        self.ok = not work.guard.refuses(self.scores) and fid_ok
        self.tried.append(
            {"nodes_excluded": list(self.excluded), "validation": self.scores, "drop": self.drop, "ok": self.ok}
        )

    def _fidelity_text(self) -> str:
        s, n = self.scores, len(self.fp32_labels)
        if not self.work.guard.resolves(n):
            return (
                f"agreement with fp32 {s['agreement_with_fp32']:.2%} (observed: {n} validation examples are too few "
                f"to bound it at {self.work.guard.min_agreement:.0%} with 95% confidence)"
            )
        return (
            f"agreement with fp32 {s['agreement_with_fp32']:.2%} (95% low {s['agreement_with_fp32_low95']:.2%}, "
            f"verify needs {self.work.guard.min_agreement:.0%})"
        )

    def _ranking(self) -> list[tuple[str, float]]:
        from mobilebert_kit import quantize as q

        work = self.work
        sub = work.val.subset(work.guard.samples, work.seed)
        ref = work.onnx_logits(self.fp32, sub)
        work.log(
            f"accuracy guard: ranking {len(self.candidates)} nodes by sensitivity on {len(sub)} validation examples"
        )
        self.sensitivity = q.sensitivity(
            self.fp32, self.method, self.candidates, lambda p: work.onnx_logits(p, sub), ref, work.scratch
        )
        return self.sensitivity

    def summary(self) -> dict:
        return {
            "candidates": self.candidates,
            "sensitivity_mse": self.sensitivity and [[k, v] for k, v in self.sensitivity],
            "tried": [
                {"nodes_excluded": len(r["nodes_excluded"]), "drop": r["drop"], "accuracy": r["validation"]["accuracy"]}
                for r in self.tried
            ],
        }

    def refuse_if_failed(self) -> None:
        passed = [r for r in self.tried if r["ok"]]
        if passed:
            return
        best = min(self.tried, key=lambda r: (r["drop"], len(r["nodes_excluded"])))
        kept = f"best INT8 configuration kept {len(best['nodes_excluded'])} of {len(self.candidates)} quantizable nodes in fp32"
        if self.work.guard.refuses(best["validation"]):
            raise CompressError(self.work.guard.failure(best["validation"], best["drop"], kept))
        v = best["validation"]
        raise CompressError(
            f"accuracy guard failed: the INT8 graph agrees with its fp32 graph on {v['agreement_with_fp32']:.2%} of "
            f"validation labels (95% lower bound {v['agreement_with_fp32_low95']:.2%}), below the "
            f"{self.work.guard.min_agreement:.0%} that mbk verify requires ({kept}). Nothing was written; "
            "lower --min-agreement (and verify's --int8-min-agreement) or skip INT8"
        )

    def record(self) -> None:
        """Append the INT8 step to ``metrics.json`` and make its graph the current one."""
        work = self.work
        work.metrics["steps"].append(
            {
                "step": f"int8_{self.method.name}",
                "validation": self.scores,
                "test": work.onnx_scores(self.out, "test"),
                "nodes_excluded": self.excluded,
                "size_bytes": self.out.stat().st_size,
                "ops": self.report["ops"],
                "latency_ms_ort": work.ort_latency(self.out),
            }
        )
        work.graph, work.graph_scores, work.graph_label = self.out, self.scores, f"onnx int8 {self.method.name}"
        work.graph_labels = self.labels
        work.nodes_excluded = self.excluded
