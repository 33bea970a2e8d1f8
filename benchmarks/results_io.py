"""How every benchmark writes its results: ``<stem>.json`` and ``<stem>.md`` side by side in one folder,
the Markdown also printed."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def provenance(benchmark: str, argv: list[str] | None = None) -> dict:
    """The keys every result starts with: which benchmark, when (UTC), and the command line that made it."""
    return {
        "benchmark": benchmark,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
    }


def write_results(folder: str | Path, stem: str, result: dict, markdown: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / f"{stem}.md").write_text(markdown)
    print(markdown)
