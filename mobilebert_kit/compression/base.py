"""What every compression method shares: the :class:`Method` contract and the :class:`Work` state
the steps of one run pass along (model, tokenizer, data, the current ONNX graph, measurements)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from mobilebert_kit.compression.measure import ort_latency, score_logits, state_size, torch_latency
from mobilebert_kit.config import StageConfig


class Outcome(NamedTuple):
    """What a PyTorch step hands back: its report for ``compression.json`` (under ``Method.record``)
    and the extra fields of its ``metrics.json`` step entry."""

    report: Any
    entry: dict


@dataclass
class Method(StageConfig):
    """One compression method: the dataclass fields are the step's keys (``validate`` checks them).

    Class attributes:
        name: registry name (``method: <name>`` in a step).
        kind: ``pytorch`` (changes the model before export) or ``onnx`` (changes the fused graph).
        label: the step's name in ``metrics.json`` and its timing key.
        record: ``compression.json`` key of the step's report (``None``: none).
        timed: record ``timings_s[label]``.
        last: an ``onnx`` step that must be the last ONNX step (INT8 quantizes whatever is still fp32).
        fusion: ORT transformer-optimizer options the fp32 graph must be fused with for this step
            (e.g. ``{"enable_embed_layer_norm": False}`` keeps the embedding Gathers visible).
        seeded: the step's result depends on compress's ``seed`` (a sampled subset, or training), so
            ``mbk tune --seeds`` repeats plans holding it.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "pytorch"
    label: ClassVar[str] = ""
    record: ClassVar[str | None] = None
    timed: ClassVar[bool] = True
    last: ClassVar[bool] = False
    fusion: ClassVar[dict] = {}
    seeded: ClassVar[bool] = False

    def preflight(self, work: Work) -> None:
        """Refuse a request that cannot work on this model/data, before anything is measured."""

    def apply(self, work: Work) -> Outcome | None:
        """Do the work: a ``pytorch`` step changes ``work.model`` and returns an :class:`Outcome`; an
        ``onnx`` step reads ``work.graph``, records its own step entry and moves ``work.graph`` on."""
        raise NotImplementedError

    def fuse(self, following: Method) -> Method | None:
        """One step doing this and ``following`` together, or None (the default: no fusion)."""
        return None


@dataclass
class Work:
    """The state one compress run's steps share and update."""

    model: Any
    tokenizer: Any
    label_names: list[str]
    model_dir: Path
    data_config: Any
    splits: dict[str, Any]
    max_length: int
    seed: int = 0
    latency_runs: int = 20
    teacher: str | None = None
    log: Callable[[str], None] = lambda msg: None
    quiet: bool = False  # no progress bars (training steps) either
    guard: Any = None  # compression.guard.Guard, set once the input is measured
    out: Path | None = None  # the staged output folder
    scratch: Path | None = None  # temp folder, removed at the end of the run
    metrics: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    records: dict = field(default_factory=dict)
    refs: dict = field(default_factory=dict)  # split -> the input model's predicted labels
    graph: Path | None = None  # the current ONNX graph (fp32 fused, then INT8)
    graph_scores: dict | None = None  # its validation scores (what the guard checks)
    graph_labels: Any = None  # the fp32 graph's labels on ``fidelity`` (what every quantized graph must agree with)
    fidelity: Any = None  # data.Split: validation first, then training texts up to fidelity_texts (labels unused)
    graph_label: str = ""  # how the guard names it
    nodes_excluded: list = field(default_factory=list)

    @property
    def train(self):
        return self.splits["train"]

    @property
    def val(self):
        return self.splits["validation"]

    @property
    def test(self):
        return self.splits["test"]

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def scores(self, logits, split: str) -> dict:
        """Metrics of ``logits`` on ``split`` plus agreement with the input model's labels."""
        return score_logits(logits, self.splits[split], self.num_labels, self.refs.get(split))

    def torch_logits(self, split: str) -> Any:
        """Logits of the PyTorch model as it is now on ``split``."""
        from mobilebert_kit.batching import predict_logits

        data = self.splits[split]
        return predict_logits(self.model, self.tokenizer, data.texts, data.pairs, max_length=self.max_length)

    def evaluate(self) -> dict:
        """``{"validation": ..., "test": ...}`` scores of the PyTorch model as it is now."""
        return {s: self.scores(self.torch_logits(s), s) for s in ("validation", "test")}

    def onnx_logits(self, path, split) -> Any:
        from mobilebert_kit.graph import onnx_tools as ot

        return ot.onnx_predict_logits(  # as the phone runs it (ot.PHONE_BATCH); costs no more time here
            ot.session(path), self.tokenizer, split.texts, split.pairs, self.max_length, batch_size=ot.PHONE_BATCH
        )

    def fidelity_logits(self, path) -> tuple[Any, Any]:
        """(validation logits, labels on every ``fidelity`` text) of an ONNX graph, from one pass over the
        pool, which starts with the validation split."""
        logits = self.onnx_logits(path, self.fidelity)
        return logits[: len(self.val)], logits.argmax(-1)

    def onnx_scores(self, path, split: str = "validation") -> dict:
        return self.scores(self.onnx_logits(path, self.splits[split]), split)

    def torch_latency(self) -> float | None:
        return torch_latency(self.model, self.max_length, self.latency_runs)

    def ort_latency(self, path: Path) -> float | None:
        return ort_latency(path, self.max_length, self.latency_runs, self.model.config.vocab_size)

    def note(self, text: str) -> None:
        self.metrics["notes"].append(text)

    def last_validation(self) -> dict:
        steps = self.metrics["steps"]
        return steps[-1]["validation"] if steps else self.metrics["input"]["validation"]

    def measure_step(self, label: str, extra: dict) -> None:
        """Evaluate the PyTorch model after step ``label`` and append its ``metrics.json`` entry."""
        from mobilebert_kit.models import count_parameters

        t = time.perf_counter()
        scores = self.evaluate()
        params = count_parameters(self.model)
        before, first = self.last_validation()["accuracy"], self.metrics["input"]["validation"]["accuracy"]
        entry = {"step": label, **scores, "params": params, "size_bytes": state_size(self.model), **extra}
        self.metrics["steps"].append(entry)
        self.timings[f"evaluate_{label}"] = time.perf_counter() - t
        since_input = "" if not self.metrics["steps"][:-1] else f" (input model {first:.4f})"
        self.log(
            f"{label}: validation accuracy {before:.4f} -> {scores['validation']['accuracy']:.4f}{since_input}, "
            f"params {params:,}"
        )
