"""How every benchmark writes its results: ``<stem>.json`` and ``<stem>.md`` side by side in one folder,
the Markdown also printed."""

from __future__ import annotations

import json
from pathlib import Path


def write_results(folder: str | Path, stem: str, result: dict, markdown: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / f"{stem}.md").write_text(markdown)
    print(markdown)
