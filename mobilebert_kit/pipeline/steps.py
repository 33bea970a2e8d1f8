"""A resolved recipe: its steps (one per stage, config validated, output under the run folder,
inputs wired to earlier outputs) and the recipe's own keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOP_LEVEL_KEYS = ("name", "description", "run_dir", "stages", "data")


DATA_PATH_KEYS = ("data", "validation_data", "test_data", "label_map")  # their contents fingerprint a step


@dataclass
class Step:
    """One stage of a run, fully resolved (config with wired paths)."""

    stage: str
    key: str  # state/plan name: the stage, or stage-target for package
    config: Any  # the stage's config object
    output: Path | None  # folder (or file for verify) the stage writes
    inputs: dict[str, Path]  # what it reads: config field (or 'after:<stage>') -> path
    producers: dict[str, str]  # input name -> step key in this recipe that writes it (when one does)

    @property
    def label(self) -> str:
        return self.key if self.key == self.stage else f"{self.stage} ({self.key.split('-', 1)[1]})"


@dataclass
class Recipe:
    name: str
    path: Path | None
    run_dir: Path
    stages: list[str]
    steps: list[Step]
    raw: dict

    def step(self, key: str) -> Step:
        return next(s for s in self.steps if s.key == key)
