"""The accuracy guard's fallback for the quantizing ONNX steps (INT8, 4-bit): quantize the current
graph, and while the guard refuses it, put the most sensitive node back to what it was (ranked by
the logit error each causes alone) until it holds, or fail with the best configuration found.
The quantization itself is :func:`mobilebert_kit.compression.ort_quant.quantize`; each step brings its method.

Every quantized graph is held to the same two promises whatever ran before it: the accuracy drop
against the uncompressed input (the guard), and label agreement with the *fp32* graph
(``Work.graph_labels``: what ``mbk verify`` will check of the export). So a 4-bit step followed by
INT8 is checked for what both do together."""

from __future__ import annotations

from pathlib import Path

from mobilebert_kit.compression.base import Work
from mobilebert_kit.errors import CompressError


def refuse_if_input_fails(work: Work, what: str) -> None:
    """Refuse before quantizing when the graph ``what`` starts from already breaks the bound."""
    drop = work.guard.drop(work.graph_scores)
    if work.guard.refuses(work.graph_scores):
        raise CompressError(
            work.guard.failure(
                work.graph_scores,
                drop,
                f"before {what}: the steps before it alone exceed the bound, its fallback cannot help; "
                "prune less or recover with training",
            )
        )


class FallbackSearch:
    """Quantize ``work.graph`` with ``method``; fall the most sensitive nodes back until the guard holds.

    ``step``: the step's name in ``metrics.json`` and its output file; ``what``: how logs and errors
    name the quantization ("INT8 dynamic", "4-bit Gather")."""

    def __init__(self, work: Work, method, step: str, what: str) -> None:
        from mobilebert_kit.compression import ort_quant as q

        self.work, self.method, self.step, self.what = work, method, step, what
        self.source = work.graph
        self.out = Path(work.scratch) / f"{step}.onnx"
        self.candidates = q.candidate_nodes(self.source, method)
        self.excluded: list[str] = []
        self.tried: list[dict] = []
        self.sensitivity: list | None = None
        # what verify compares a quantized export with: the fp32 graph's labels (scored when it was exported)
        self.fp32_labels = work.graph_labels

    def run(self) -> None:
        guard, log = self.work.guard, self.work.log
        log(f"{self.what}: quantizing {len(self.candidates)} nodes")
        self._attempt()
        log(f"{self.what}: validation accuracy {self.scores['accuracy']:.4f} ({guard.describe(self.scores)}, "
            f"bound {guard.max_drop}); {self._fidelity_text()}")  # fmt: skip
        if self.ok:
            return
        for node, _err in self._ranking():
            self.excluded.append(node)
            self._attempt()
            log(f"accuracy guard: {len(self.excluded)} node(s) left unquantized (+{node}): drop {self.drop:+.4f}; "
                f"{self._fidelity_text()}")  # fmt: skip
            if self.ok:
                break

    def _attempt(self) -> None:
        from mobilebert_kit.compression import ort_quant as q

        work = self.work
        self.report = q.quantize(self.source, self.out, self.method, nodes_to_exclude=self.excluded)
        val_logits, self.labels = work.fidelity_logits(self.out)
        self.scores = work.scores(val_logits, "validation")
        self.drop = work.guard.drop(self.scores)
        agree = float((self.labels == self.fp32_labels).mean())
        low, fid_ok = work.guard.fidelity(agree, len(self.fp32_labels))
        self.scores.update(
            {"agreement_with_fp32": agree, "agreement_with_fp32_low95": low, "agreement_n": len(self.labels)}
        )
        self.ok = not work.guard.refuses(self.scores) and fid_ok
        self.tried.append(
            {"nodes_excluded": list(self.excluded), "validation": self.scores, "drop": self.drop, "ok": self.ok}
        )

    def _fidelity_text(self) -> str:
        s, n = self.scores, len(self.fp32_labels)
        if not self.work.guard.resolves(n):
            return (
                f"agreement with fp32 {s['agreement_with_fp32']:.2%} (observed: {self._pool_text()} are too few "
                f"to bound it at {self.work.guard.min_agreement:.0%} with 95% confidence)"
            )
        return (
            f"agreement with fp32 {s['agreement_with_fp32']:.2%} on {self._pool_text()} (95% low "
            f"{s['agreement_with_fp32_low95']:.2%}, verify needs {self.work.guard.min_agreement:.0%})"
        )

    def _pool_text(self) -> str:
        n, n_val = len(self.fp32_labels), len(self.work.val)
        if n == n_val:
            return f"{n} validation texts"
        return f"{n} texts ({n_val} validation + {n - n_val} training, labels unused)"

    def _ranking(self) -> list[tuple[str, float]]:
        from mobilebert_kit.compression import ort_quant as q

        work = self.work
        sub = work.fidelity.subset(work.guard.samples, work.seed)  # label-free: logit error vs the fp32 graph
        ref = work.onnx_logits(self.source, sub)
        work.log(
            f"accuracy guard: ranking {len(self.candidates)} nodes by sensitivity (logit error) on {len(sub)} texts"
        )
        self.sensitivity = q.sensitivity(
            self.source, self.method, self.candidates, lambda p: work.onnx_logits(p, sub), ref, work.scratch
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
        kept = (
            f"best {self.what} configuration left {len(best['nodes_excluded'])} of {len(self.candidates)} "
            "quantizable nodes unquantized"
        )
        if self.work.guard.refuses(best["validation"]):
            raise CompressError(self.work.guard.failure(best["validation"], best["drop"], kept))
        v = best["validation"]
        raise CompressError(
            f"accuracy guard failed: the {self.what} graph agrees with its fp32 graph's labels on "
            f"{v['agreement_with_fp32']:.2%} of {self._pool_text()} (95% lower bound "
            f"{v['agreement_with_fp32_low95']:.2%}), below the {self.work.guard.min_agreement:.0%} that mbk "
            f"verify requires ({kept}). Nothing was written; lower --min-agreement (and verify's "
            f"--int8-min-agreement) or skip {self.step}"
        )

    def record(self) -> dict:
        """Append the step to ``metrics.json``, make its graph the current one; returns the entry.

        ``work.graph_labels`` stays the fp32 graph's: a later quantizing step is held to it too."""
        work = self.work
        entry = {
            "step": self.step,
            "validation": self.scores,
            "test": work.onnx_scores(self.out, "test"),
            "nodes_excluded": self.excluded,
            "size_bytes": self.out.stat().st_size,
            "ops": self.report["ops"],
            "latency_ms_ort": work.ort_latency(self.out),
        }
        work.metrics["steps"].append(entry)
        work.graph, work.graph_scores, work.graph_label = self.out, self.scores, f"onnx {self.step.replace('_', ' ')}"
        return entry
