"""One row of a verify report: a named check, passed or not, its value against its threshold."""

from __future__ import annotations


def row(name: str, passed: bool | None, value=None, threshold=None, detail: str = "") -> dict:
    """One line of the report. passed=None means skipped (not a breach)."""
    return {"name": name, "passed": passed, "value": value, "threshold": threshold, "detail": detail}
