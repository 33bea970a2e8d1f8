"""A compression method written in one file, to show that adding one takes this file plus one
registry line (``compression.METHODS["scale_bias"] = "dummy_method:ScaleClassifierBias"``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mobilebert_kit.compression.base import Method, Outcome, Work
from mobilebert_kit.config import check_range


@dataclass
class ScaleClassifierBias(Method):
    """Multiply the classifier's output bias by ``factor`` (1.0 leaves the model as it is)."""

    factor: float = 1.0

    name: ClassVar[str] = "scale_bias"
    label: ClassVar[str] = "scale_bias"
    record: ClassVar[str | None] = "scale_bias"

    def validate(self) -> list[str]:
        problems: list[str] = []
        check_range(problems, "factor", self.factor, 0, 10, lo_open=True)
        return problems

    def apply(self, work: Work) -> Outcome:
        import torch

        with torch.no_grad():
            work.model.classifier.bias.mul_(self.factor)
        return Outcome({"factor": self.factor}, {"factor": self.factor})
