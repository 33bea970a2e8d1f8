"""onnxruntime-node: a second, independent runtime (the npm package, JavaScript bindings over the same
model file) that runs .onnx/.ort files for parity, installed on first use into mbk's cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from mobilebert_kit.artifacts import scratch_dir
from mobilebert_kit.phone.rows import row

ORT_NODE_VERSION = "1.30.0"


NODE_TOLERANCE = 1e-4


def node_cache_dir() -> Path:
    base = Path(os.environ.get("MBK_CACHE", Path.home() / ".cache" / "mobilebert_kit"))
    return base / "node"


class NodeRunner:
    """Runs .onnx/.ort files in onnxruntime-node; installs the npm package on first use when allowed."""

    def __init__(self, mode: str):
        self.mode = mode
        self._ready: bool | None = None
        self.reason = ""

    def available(self) -> bool:
        if self._ready is None:
            self.reason = self._why_unavailable()
            self._ready = not self.reason
        return self._ready

    def _why_unavailable(self) -> str:
        if self.mode == "off":
            return "disabled (--no-node)"
        node = shutil.which("node")
        if not node:
            return "node is not installed (apt-get install nodejs); independent-runtime parity skipped"
        self.node = node
        pkg = node_cache_dir() / "node_modules" / "onnxruntime-node" / "package.json"
        return "" if pkg.exists() else self._install(pkg)

    def _install(self, pkg: Path) -> str:
        """npm-install onnxruntime-node into the cache; returns why it failed ("" on success)."""
        npm = shutil.which("npm")
        if not npm:
            return "npm is not installed; cannot install onnxruntime-node"
        cache = node_cache_dir()
        cache.mkdir(parents=True, exist_ok=True)
        package = f"onnxruntime-node@{ORT_NODE_VERSION}"
        cmd = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(cache), package]
        try:
            subprocess.run([*cmd, "--onnxruntime-node-install=skip"], check=True, capture_output=True, timeout=300)
        except (subprocess.SubprocessError, OSError) as e:
            return f"could not install {package} into {cache} ({type(e).__name__})"
        return "" if pkg.exists() else f"{package} did not install into {cache}"

    def run(self, model_path: Path, batches: list[dict]) -> list[np.ndarray]:
        script = Path(__file__).parent / "resources" / "ort_node_parity.js"
        with scratch_dir("node") as tmp:
            req, res = Path(tmp) / "req.json", Path(tmp) / "res.json"
            arrays = [
                {
                    k: {"dims": list(np.asarray(v).shape), "data": np.asarray(v).reshape(-1).tolist()}
                    for k, v in b.items()
                }
                for b in batches
            ]
            req.write_text(json.dumps({"model": str(model_path.resolve()), "batches": arrays}))
            env = {**os.environ, "NODE_PATH": str(node_cache_dir() / "node_modules")}
            proc = subprocess.run(
                [self.node, str(script), str(req), str(res)], capture_output=True, text=True, env=env, timeout=600
            )
            if proc.returncode != 0:
                raise RuntimeError(
                    proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
                )
            data = json.loads(res.read_text())
        self.version = data.get("ort_node_version")
        return [np.asarray(o["data"], dtype=np.float32).reshape(o["dims"]) for o in data["outputs"]]

    def check(self, model_path: Path, ref: dict, runner, batch_size: int, entry: dict, max_examples: int = 256) -> dict:
        """Run the first ``max_examples`` test texts in node and in Python ORT (``runner``) on *identical* batches.

        Identical batches matter: dynamic INT8 quantizes activations with one scale per tensor, so
        other batch neighbours or padding lengths legitimately change the logits.
        """
        name = "onnxruntime-node parity"
        if not self.available():
            entry["onnxruntime_node"] = f"skipped: {self.reason}"
            if self.mode == "on":
                return row(name, False, detail=self.reason)
            return row(name, None, detail=f"skipped: {self.reason}")
        n = min(max_examples, len(ref["texts"]))
        idxs, batches = _first_batches(ref, n, batch_size)
        try:
            outs = self.run(model_path, batches)
        except Exception as e:  # noqa: BLE001
            return row(name, False, detail=f"onnxruntime-node failed: {str(e)[:200]}")
        got = np.zeros((n, ref["num_labels"]), dtype=np.float32)
        python_logits = np.zeros_like(got)
        for idx, o, b in zip(idxs, outs, batches):
            got[idx] = o
            python_logits[idx] = runner.logits(b)
        diff = float(np.abs(got - python_logits).max()) if n else 0.0
        version = getattr(self, "version", None)
        entry["onnxruntime_node"] = {
            "version": version,
            "n": n,
            "max_abs_diff_vs_python_ort": diff,
            "max_abs_diff_vs_pytorch": float(np.abs(got - ref["logits"][:n]).max()) if n else 0.0,
        }
        ok = diff <= NODE_TOLERANCE
        detail = (
            f"{n} examples, onnxruntime-node {getattr(self, 'version', '?')}: "
            f"max|Δ| vs Python ORT {diff:.3g} {'<=' if ok else '>'} {NODE_TOLERANCE:g}"
        )
        return row(name, ok, diff, NODE_TOLERANCE, detail)


def _first_batches(ref: dict, n: int, batch_size: int) -> tuple[list, list[dict]]:
    """The first ``n`` test texts as padded int64 batches (and their indices)."""
    from mobilebert_kit.batching import padded_batches
    from mobilebert_kit.formats import full_feeds

    pairs = ref["pairs"][:n] if ref["pairs"] else None
    idxs, batches = [], []
    for idx, batch in padded_batches(ref["tokenizer"], ref["texts"][:n], pairs, ref["max_length"], batch_size):
        batches.append(full_feeds(batch))
        idxs.append(idx)
    return idxs, batches
