"""The parity harness every format's ``verify`` runs through: the PyTorch reference on the test split,
the tolerances, and how a runner's logits are judged (max |diff|, label agreement, accuracy drop), in
the host runtime, the apps' pinned versions, onnxruntime-node and ARM64 under emulation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobilebert_kit.compression.ort_quant import INT8_MIN_AGREEMENT
from mobilebert_kit.config import StageConfig, check_range
from mobilebert_kit.phone.emulation import ArmParity
from mobilebert_kit.phone.node import NodeRunner
from mobilebert_kit.phone.rows import row
from mobilebert_kit.phone.side_parity import SideRuntimes, side_checks


@dataclass
class Tolerance(StageConfig):
    """Pass/fail thresholds for one kind of artifact (None = reported, not gated)."""

    max_abs_diff: float | None = 1e-3
    min_agreement: float = 0.995
    max_accuracy_drop: float | None = 0.005

    def validate(self) -> list[str]:
        p: list[str] = []
        check_range(p, "max_abs_diff", self.max_abs_diff, 0, lo_open=True)
        check_range(p, "min_agreement", self.min_agreement, 0, 1)
        check_range(p, "max_accuracy_drop", self.max_accuracy_drop, 0, 1)
        return p


@dataclass
class Int8Tolerance(Tolerance):
    """INT8 changes logits by design: the difference is reported, agreement and accuracy are gated.
    Its own class so a partial ``int8:`` recipe section starts from these defaults, not fp32's."""

    max_abs_diff: float | None = None
    min_agreement: float = INT8_MIN_AGREEMENT  # the same number compress's guard promises
    max_accuracy_drop: float | None = 0.01


@dataclass
class Parity:
    """What a format's ``verify`` gets: the PyTorch reference on the test split, the tolerance, the
    format's report entry, and how to run a :class:`~mobilebert_kit.formats.Runner` and judge it."""

    ref: dict
    tol: Tolerance
    entry: dict
    batch_size: int
    node: NodeRunner
    sides: SideRuntimes | None = None
    arm: ArmParity | None = None
    host_logits: np.ndarray | None = None  # the main run's logits (side runtimes are compared to them)
    current_batch: int | None = None  # the batch the last Parity.logits runner was checked at
    provenance: dict | None = None  # where the last Parity.logits numbers came from
    row = staticmethod(row)

    def batches(self, static_batch: int | None = None):
        """(indices, int64 feeds) of the test split: length-sorted padded batches, as every runner sees them."""
        from mobilebert_kit.batching import padded_batches
        from mobilebert_kit.formats import full_feeds

        ref = self.ref
        size = static_batch or self.batch_size
        for idx, batch in padded_batches(ref["tokenizer"], ref["texts"], ref["pairs"], ref["max_length"], size):
            yield idx, full_feeds(batch)

    def batch_for(self, runner) -> int:
        """The batch ``runner`` is checked at: its fixed batch, else the phone's (``parity_batch``), else --batch-size."""
        return runner.static_batch or runner.parity_batch or self.batch_size

    def logits(self, runner) -> np.ndarray:
        """The runner's logits on the test split, in input order (length-sorted padded batches of
        :meth:`batch_for`; side runtimes then see the same batches)."""
        from mobilebert_kit.runtimes import provenance_of

        ref = self.ref
        self.provenance = provenance_of(runner)
        self.current_batch = self.batch_for(runner)
        out: np.ndarray | None = None
        for idx, feeds in self.batches(self.current_batch):
            logits = np.asarray(runner.logits(feeds), dtype=np.float32)
            if out is None:
                out = np.zeros((len(ref["texts"]), logits.shape[-1]), dtype=np.float32)
            out[idx] = logits
        return out if out is not None else np.zeros((0, ref["num_labels"]), dtype=np.float32)

    def compare(self, name: str, got: np.ndarray, prefix: str = "", provenance: dict | None = None) -> list[dict]:
        """✓/✗ rows for ``got`` vs the PyTorch logits; the numbers (and where they were measured: the
        last :meth:`logits` runner unless ``provenance`` says otherwise) go into the format's entry."""
        from mobilebert_kit.metrics import classification_metrics

        ref, tol = self.ref, self.tol
        want = ref["logits"]
        if got.shape != want.shape:
            shape_detail = "output shape differs from the source model"
            return [row(f"{prefix}logits shape", False, list(got.shape), list(want.shape), shape_detail)]
        diff = float(np.abs(got - want).max()) if got.size else 0.0
        agree = float((got.argmax(-1) == want.argmax(-1)).mean()) if len(got) else 1.0
        m = classification_metrics(got, ref["labels"], ref["num_labels"])
        labels = np.asarray(ref["labels"])
        right_got, right_want = got.argmax(-1) == labels, want.argmax(-1) == labels
        m["discordant"] = [int((right_want & ~right_got).sum()), int((right_got & ~right_want).sum())]
        self._record(prefix, diff, agree, m, provenance or self.provenance)
        if not prefix:
            self.host_logits = got
            self.entry["test_predicted"] = [int(x) for x in got.argmax(-1)]  # per test text, for mbk report A B
        return _tolerance_rows(name, prefix, diff, agree, m, ref["metrics"], tol)

    def _record(self, prefix: str, diff: float, agree: float, m: dict, prov: dict | None) -> None:
        base = self.ref["metrics"]
        if prefix:
            extra = {"max_abs_diff": diff, "agreement": agree, "accuracy": m["accuracy"], "n": m["n"]}
            self.entry.setdefault("extra_runtimes", {})[prefix.rstrip(": ")] = {**extra, "provenance": prov}
            return
        self.entry.update(
            {
                "max_abs_diff": diff,
                "agreement": agree,
                "accuracy": m["accuracy"],
                "macro_f1": m["macro_f1"],
                "pytorch_accuracy": base["accuracy"],
                "pytorch_macro_f1": base["macro_f1"],
                "n": m["n"],
                "provenance": prov,
            }
        )

    def runtime_checks(self, fmt, model_path: Path) -> list[dict]:
        """The same parity in every side onnxruntime version this run checks ``fmt`` in (runtime_parity)."""
        return side_checks(self, fmt, model_path)

    def node_check(self, model_path: Path, runner) -> dict:
        """The same graph in onnxruntime-node vs ``runner`` (Python ONNX Runtime) on identical batches."""
        return self.node.check(model_path, self.ref, runner, self.batch_size, self.entry)

    def arm_check(self, model_path: Path, runner) -> list[dict]:
        """The same file in the aarch64 onnxruntime on emulated phone CPUs (:mod:`mobilebert_kit.phone.emulation`)."""
        return self.arm.check(model_path, self, runner) if self.arm else []

    def arm_begin(self, model_path: Path, runner):
        """:meth:`arm_check` started now (emulator processes in the background); call the result for its rows."""
        return self.arm.begin(model_path, self, runner) if self.arm else list


def _tolerance_rows(name: str, prefix: str, diff: float, agree: float, m: dict, base: dict, tol: Tolerance) -> list:
    if tol.max_abs_diff is None:
        diff_ok, diff_detail = None, f"{diff:.3g} (not gated)"
    else:
        diff_ok = diff <= tol.max_abs_diff
        diff_detail = f"{diff:.3g} {'<=' if diff_ok else '>'} {tol.max_abs_diff:g}"
    agree_ok = agree >= tol.min_agreement
    drop = base["accuracy"] - m["accuracy"]
    drop_ok, drop_detail = _drop_verdict(m, base, tol.max_accuracy_drop)
    return [
        row(f"{prefix}{name} max_abs_diff", diff_ok, diff, tol.max_abs_diff, diff_detail),
        row(
            f"{prefix}{name} label agreement",
            agree_ok,
            agree,
            tol.min_agreement,
            f"{agree:.2%} {'>=' if agree_ok else '<'} {tol.min_agreement:.2%}",
        ),
        row(
            f"{prefix}accuracy drop",
            drop_ok,
            drop,
            tol.max_accuracy_drop,
            f"accuracy {m['accuracy']:.4f} vs PyTorch {base['accuracy']:.4f}, "
            f"macro-F1 {m['macro_f1']:.4f} vs {base['macro_f1']:.4f}; {drop_detail}",
        ),
    ]


def _drop_verdict(m: dict, base: dict, max_drop: float | None) -> tuple[bool | None, str]:
    """Whether the accuracy drop of ``m`` from ``base`` fails, judged by compress's accuracy guard:
    only a drop that is real (its paired 95% interval over the same test texts, from ``m["discordant"]``,
    lies wholly above ``max_drop``) fails, so one flipped text in a small test split is not a failure;
    the interval is said either way."""
    from mobilebert_kit.compression.guard import Guard

    guard = Guard("accuracy", max_drop if max_drop is not None else 0.0, 0, base)
    text = guard.interval_text(m, "texts")
    if max_drop is None:
        return None, text
    if guard.refuses(m):
        return False, text + ": a real drop"
    if guard.unresolved(m):
        text += f"; too few to resolve {100 * max_drop:g} pt: only a real drop fails"
    return True, text
