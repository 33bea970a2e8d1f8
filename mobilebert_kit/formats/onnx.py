"""``onnx``: fp32 graph with dynamic batch/sequence axes and ORT transformer fusion (fused
``Attention`` is checked), or INT8 when the source's ``compression.json`` asks for it.

When compression already produced an ONNX graph (``compression.json["onnx_model"]``) that graph is
*the* export: it was fused, quantized and accuracy-checked there, so it is copied as is. The graph
is built once per export and shared with the ``ort`` format.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from mobilebert_kit.artifacts import COMPRESSION
from mobilebert_kit.errors import ConfigError, ExportError
from mobilebert_kit.formats import Build, ExportFormat, Runner, Source
from mobilebert_kit.graph.onnx_tools import PHONE_BATCH


class OrtRunner(Runner):
    """A ``.onnx`` / ``.ort`` file in ONNX Runtime (CPU)."""

    runtime = "onnxruntime"
    parity_batch = PHONE_BATCH  # dynamic INT8 labels depend on batch-mates: checked as the phone runs it

    def __init__(self, path: Path, threads: int = 2):
        self.path, self.threads = path, threads
        self._sess = None  # created on first use: bench measures the memory of each session it times

    @property
    def sess(self):
        from mobilebert_kit.graph.onnx_tools import session

        if self._sess is None:
            self._sess = session(self.path, threads=self.threads)
        return self._sess

    def logits(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        from mobilebert_kit.graph.onnx_tools import feeds_for

        return self.sess.run(None, feeds_for(self.sess, feeds))[0]

    def timed_call(self, threads: int):
        runner = OrtRunner(self.path, threads)
        runner.sess  # noqa: B018 - load now, not inside the first timed call
        return runner.logits


class Onnx(ExportFormat):
    name = "onnx"
    model_file = "model.onnx"
    benchable = True
    bench_default = True
    file_suffixes = (".onnx",)
    headline_rank = 1

    def export(self, src: Source, folder: Path, build: Build) -> dict:
        graph, extra = onnx_graph(src, build)
        shutil.copy2(graph, folder / self.model_file)
        return dict(extra)

    def load(self, path: Path, meta: dict) -> Runner:
        return OrtRunner(path)

    def verify(self, folder: Path, meta: dict, parity) -> list[dict]:
        path = folder / meta["model_file"]
        runner = self.load(path, meta)
        arm_rows = parity.arm_begin(path, runner)  # the emulated ARM64 runs go on beside the x86 checks below
        checks = [*parity.compare("logits", parity.logits(runner)), parity.node_check(path, runner)]
        return checks + parity.runtime_checks(self, path) + arm_rows()


FORMAT = Onnx()


def onnx_graph(src: Source, build: Build) -> tuple[Path, dict]:
    """The export's ONNX graph and its ``model_meta.json`` fields, built once per export."""
    if "onnx" not in build.shared:
        work = build.work / "_onnx"
        work.mkdir(exist_ok=True)
        given = src.compression.get("onnx_model")
        config = build.config
        if given and (config.int8 is None or config.int8 == bool(src.compression.get("int8"))):
            build.shared["onnx"] = _graph_from_compression(src, given, work)
        else:
            build.shared["onnx"] = _exported_graph(src, work, config.opset)
    return build.shared["onnx"]


def _graph_from_compression(src: Source, given: str, work: Path) -> tuple[Path, dict]:
    from mobilebert_kit.graph import onnx_tools as ot

    given_path = src.path / given
    if not given_path.is_file():
        raise ExportError(
            f"{src.path / COMPRESSION} names onnx_model '{given}' but {given_path} is missing; re-run `mbk compress`"
        )
    final = work / "model.onnx"
    shutil.copy2(given_path, final)
    return final, {
        "onnx_source": f"compression ({given})",
        "fused_ops": ot.fused_ops(final),
        "opset": _opset(final),
        "quantization": _compression_quant_info(src.compression) if src.int8 else None,
    }


def _exported_graph(src: Source, work: Path, opset: int) -> tuple[Path, dict]:
    from mobilebert_kit.graph import onnx_tools as ot

    cfg = src.model.config
    fp32 = ot.export_onnx(src.path, work / "fp32.onnx", opset=opset)
    pruned = bool(getattr(cfg, "pruned_heads", None))  # per-layer head counts differ: let the optimizer read them
    fused = ot.optimize_onnx(
        fp32,
        work / "fused.onnx",
        num_heads=0 if pruned else cfg.num_attention_heads,
        hidden_size=0 if pruned else cfg.hidden_size,
        require_attention=getattr(cfg, "model_type", "") in ot.FUSABLE_MODEL_TYPES,
    )
    final = work / "model.onnx"
    quant = _quantize(work / "fused.onnx", final, src.compression) if src.int8 else None
    if not src.int8:
        os.replace(work / "fused.onnx", final)
    return final, {
        "onnx_source": "mbk export (torch.onnx.export + ORT transformer fusion)",
        "fused_ops": fused,
        "fused_ops_after_quantization": ot.fused_ops(final) if src.int8 else None,
        "opset": opset,
        "quantization": quant,
    }


def _quantize(fused: Path, final: Path, comp: dict) -> dict:
    """Dynamic INT8 with the settings compression.json asks for (the one INT8 path: quantize.py)."""
    from mobilebert_kit.compression.ort_quant import Int8Dynamic, quantize
    from mobilebert_kit.errors import CompressError

    quant = {
        "mode": "dynamic",
        "per_channel": bool(comp.get("per_channel", False)),
        "weight_type": comp.get("weight_type", "qint8"),
        "nodes_excluded": list(comp.get("nodes_excluded") or []),
    }
    try:
        method = Int8Dynamic(per_channel=quant["per_channel"], weight_type=quant["weight_type"])
        quantize(fused, final, method, nodes_to_exclude=quant["nodes_excluded"])
    except (ConfigError, CompressError) as e:
        raise ExportError(str(e)) from e
    return quant


def _opset(path: Path) -> int | None:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)


def _compression_quant_info(comp: dict) -> dict:
    return {k: comp.get(k) for k in ("int8_mode", "per_channel", "weight_type", "nodes_excluded")}
