"""How every benchmark writes its results: ``<stem>.json`` and ``<stem>.md`` side by side in one folder,
the Markdown also printed."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path


def provenance(benchmark: str, argv: list[str] | None = None) -> dict:
    """The keys every result starts with: which benchmark, when (UTC), and the command line that made it."""
    return {
        "benchmark": benchmark,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": shlex.join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
    }


def cpu_line(cpu: dict | None) -> str:
    """``x86_64 AMD EPYC (avx2, avx512_vnni, ...)``: which machine timed a result (timings differ between CPUs)."""
    if not cpu:
        return "CPU not recorded"
    return f"{cpu.get('arch')} {cpu.get('model')} ({', '.join(cpu.get('isa') or []) or 'no listed ISA extensions'})"


def write_results(folder: str | Path, stem: str, result: dict, markdown: str, record_cpu: bool = True) -> None:
    """Write ``<stem>.json`` (with the timing machine's CPU under ``cpu`` unless the result names one, or
    ``record_cpu`` is False) and ``<stem>.md``, and print the Markdown."""
    if record_cpu:
        from mobilebert_kit.runtimes import cpu_info

        result.setdefault("cpu", cpu_info())
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / f"{stem}.md").write_text(markdown)
    print(markdown)
