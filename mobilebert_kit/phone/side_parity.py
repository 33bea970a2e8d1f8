"""Verify's parity in other onnxruntime versions (side runtimes) and the per-runtime record in verify.json.

``mbk verify --runtime-version X`` (repeatable) re-runs the ONNX Runtime parity checks of the
``onnx`` / ``ort`` formats in ``onnxruntime==X`` (:class:`~mobilebert_kit.phone.side_runtime.SideRuntime`), on
the same batches, gated by the same tolerances as the host run. The values:

* ``auto`` (default): also the version the phone app pins, for the format packaged for it
  (``ExportFormat.app_runtime_version``): used when installed or installable; when it cannot be
  installed (offline) the check is *skipped* with the reason, never silently passed.
* ``none``: no side runtime.
* ``X``: required; an unknown version or an unreachable index is an error before any work.

Every format entry gets ``runtimes``: one record per runtime version its numbers were measured in
(``"onnxruntime 1.22.0": {passed, max_abs_diff, agreement, accuracy, provenance}``); ``mbk package``
reads it to refuse a bundle whose runtime version was never verified.
"""

from __future__ import annotations

import numpy as np

from mobilebert_kit.errors import RuntimeModelError, RuntimeVersionError
from mobilebert_kit.phone.side_runtime import SideRuntime, check_version
from mobilebert_kit.runtimes import ORT, host_ort_version, provenance, runtime_key

AUTO, NONE = "auto", "none"
# the ISA flags the summary names (the ones that switch INT8 kernels); verify.json keeps them all
KERNEL_ISA = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm", "sve", "sme")
VERIFY_THREADS = 2  # the host OrtRunner's default: side runtimes run with the same intra-op threads


def validate_versions(values: list[str]) -> list[str]:
    """Config problems of a ``runtime_versions`` list."""
    problems = []
    if NONE in values and len(values) > 1:
        problems.append("--runtime-version none cannot be combined with other versions")
    for v in values:
        if v in (AUTO, NONE):
            continue
        try:
            check_version(v)
        except RuntimeVersionError as e:
            problems.append(f"--runtime-version: {e}")
    return problems


class SideRuntimes:
    """The side runtimes one verify run uses; explicit versions are installed up front (fail fast)."""

    def __init__(self, values: list[str], log=None):
        self.explicit = [v for v in dict.fromkeys(values) if v not in (AUTO, NONE)]
        self.auto = AUTO in values
        self.log = log
        self._got: dict[str, SideRuntime | str] = {}  # version -> runtime, or why it is unavailable

    def prepare(self) -> None:
        """Install every explicitly requested version now: an unknown version is one error, not a late surprise."""
        for version in self.explicit:
            if version != host_ort_version():
                self._got[version] = SideRuntime(version).ensure(self.log)

    def for_format(self, fmt) -> list[tuple[str, SideRuntime | None, str]]:
        """(version, runtime or None, why it is skipped) for each side version ``fmt`` is checked in."""
        wanted = list(self.explicit)
        pinned = getattr(fmt, "app_runtime_version", None)
        if self.auto and pinned and pinned not in wanted:
            wanted.append(pinned)
        out = []
        for version in wanted:
            if version == host_ort_version():
                continue  # the host run already is this version
            got = self._got[version] if version in self._got else self._auto(version)
            if isinstance(got, SideRuntime):
                out.append((version, got, ""))
            else:
                out.append((version, None, f"{got} (the version {fmt.demo_app} pins)"))
        return out

    def _auto(self, version: str) -> SideRuntime | str:
        try:
            self._got[version] = SideRuntime(version).ensure(self.log)
        except RuntimeVersionError as e:
            self._got[version] = f"{e} (pass --runtime-version {version} to require it)"
        return self._got[version]


def side_checks(parity, fmt, model_path) -> list[dict]:
    """Parity rows of ``model_path`` in every side runtime ``fmt`` is checked in (see module doc)."""
    rows: list[dict] = []
    sides: SideRuntimes | None = parity.sides
    for version, rt, skipped in sides.for_format(fmt) if sides else []:
        name = runtime_key(ORT, version)
        prov = provenance(ORT, version, VERIFY_THREADS, environment=str(rt.path) if rt else None)
        record = parity.entry.setdefault("extra_runtimes", {}).setdefault(name, {"provenance": prov})
        if rt is None:
            record["skipped"] = skipped
            rows.append(parity.row(f"{name}: parity", None, detail=f"skipped: {skipped}"))
            continue
        try:
            got = _side_logits(parity, rt, model_path)
        except RuntimeModelError as e:
            record["error"] = str(e)
            rows.append(parity.row(f"{name}: loads {model_path.name}", False, detail=str(e)))
            continue
        rows += parity.compare("logits", got, prefix=f"{name}: ", provenance=prov)
        rows.append(_vs_host_row(parity, name, got))
    return rows


def _side_logits(parity, rt: SideRuntime, model_path) -> np.ndarray:
    """The side runtime's logits on exactly the batches the host runner saw (same order, same padding)."""
    idxs, feeds = zip(*parity.batches(parity.current_batch)) if len(parity.ref["texts"]) else ((), ())
    outs = rt.run(model_path, list(feeds), threads=(VERIFY_THREADS,))[VERIFY_THREADS]
    got = np.zeros((len(parity.ref["texts"]), parity.ref["num_labels"]), dtype=np.float32)
    for idx, logits in zip(idxs, outs):
        got[idx] = logits
    return got


def _vs_host_row(parity, name: str, got: np.ndarray) -> dict:
    """How far this version's logits are from the host runtime's (reported: what moves between versions)."""
    host = parity.host_logits
    if host is None or host.shape != got.shape:
        return parity.row(f"{name}: max|Δ| vs host onnxruntime", None, detail="no host logits to compare")
    diff = float(np.abs(got - host).max()) if got.size else 0.0
    flips = int((got.argmax(-1) != host.argmax(-1)).sum())
    parity.entry["extra_runtimes"][name].update(max_abs_diff_vs_host=diff, label_flips_vs_host=flips)
    detail = (
        f"{diff:.3g}, {flips} label flip(s) of {len(got)} vs onnxruntime {host_ort_version()} (reported, not gated)"
    )
    return parity.row(f"{name}: max|Δ| vs host onnxruntime", None, diff, None, detail)


# --------------------------------------------------------------------------- verify.json records


def summarize(entry: dict, checks: list[dict]) -> None:
    """``entry["runtimes"]``: one record per runtime version measured, with its own pass/fail."""
    extras = entry.get("extra_runtimes") or {}
    prefixes = [f"{name}: " for name in extras]

    def passed(rows: list[dict]) -> bool | None:
        if any(r["passed"] is False for r in rows):
            return False
        return True if any(r["passed"] is True for r in rows) else None

    shared = [c for c in checks if not any(c["name"].startswith(p) for p in prefixes)]
    runtimes = {}
    if entry.get("provenance"):
        p = entry["provenance"]
        numbers = {k: entry[k] for k in ("max_abs_diff", "agreement", "accuracy", "n") if k in entry}
        runtimes[runtime_key(p["runtime"], p["version"])] = {"passed": passed(shared), **numbers, "provenance": p}
    for name, rec in extras.items():
        p = rec.get("provenance")
        if not p:
            continue
        own = [c for c in checks if c["name"].startswith(f"{name}: ")]
        ok = None if rec.get("skipped") else passed([*shared, *own])
        runtimes[runtime_key(p["runtime"], p["version"])] = {"passed": ok, **rec}
    entry["runtimes"] = runtimes


def proved_lines(report: dict, formats: tuple[str, ...] = ()) -> list[str]:
    """The CLI's short "what was proved" table: one line per format x runtime version."""
    lines = []
    for fmt, e in report.get("formats", {}).items():
        if formats and fmt not in formats:
            continue
        for key, r in (e.get("runtimes") or {}).items():
            p = r.get("provenance") or {}
            cpu = p.get("cpu") or {}
            isa = " ".join(f for f in cpu.get("isa") or [] if f in KERNEL_ISA)
            where = f"{cpu.get('arch', '?')}{' (emulated)' if p.get('emulated') else ''}" + (f" [{isa}]" if isa else "")
            if r.get("passed") is None:
                what = f"skipped: {r.get('skipped') or 'nothing gated'}"
            elif "agreement" in r:
                what = (
                    f"max|Δ| {r['max_abs_diff']:.3g}, agreement {r['agreement']:.2%}, "
                    f"accuracy {r['accuracy']:.4f} (n={r.get('n', '?')})"
                )
            else:
                what = r.get("error", "")
            mark = {True: "✓", False: "✗", None: "–"}[r.get("passed")]
            lines.append(f"  {mark} {fmt:<12} {key:<22} {where}, {p.get('threads') or '?'} thread(s): {what}")
    return ["What was proved (vs PyTorch on the test split, per runtime version and CPU):", *lines] if lines else []
