"""Which fused graph is fastest for the phone? ORT transformer-optimizer variants of one compressed model.

compress fuses the student with ORT's transformer optimizer (``Attention``, ``BiasGelu``,
``SkipLayerNormalization``, ``EmbedLayerNormalization``) and then applies per-channel dynamic INT8, so
attention becomes ``QAttention``; the export runs the last layer for the [CLS] token only
(:mod:`mobilebert_kit.graph.first_token`). This benchmark rebuilds the same PyTorch model (a compress output
folder) with the last layer run for every position, other fusion choices, INT8 attention products, and
ORT's flash-attention kernel, and times every graph side by side: batch 1,
1 intra-op thread, interleaved, in this environment's onnxruntime and in the version the Android app
pins. Each graph's validation accuracy (batch 1, unpadded) and its label agreement with the default
graph say whether a variant changes answers.

    python benchmarks/graph_variants.py --model artifacts/runs/default/compressed

Writes ``benchmarks/results/graph_variants.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lib.inputs import encode_one, seeded_sample  # noqa: E402
from lib.ort_timing import HOST, p50_by_version  # noqa: E402
from lib.results_io import write_results  # noqa: E402

from mobilebert_kit.artifacts import library_versions  # noqa: E402
from mobilebert_kit.graph import onnx_tools as ot  # noqa: E402


@dataclass(frozen=True)
class Variant:
    """One graph of the same model: export and fusion options, and what is done to it after fusion."""

    what: str
    fusion: dict = field(default_factory=dict)  # ORT FusionOptions overrides
    first_token: bool = True  # export_onnx's first_token (mobilebert_kit.graph.first_token)
    int8_attention: bool = False  # also INT8 the activation x activation MatMuls (scores, context), as Optimum does
    drop_attention_mask: bool = False  # MultiHeadAttention without its mask: ORT's CPU flash-attention path


# the first is what compress builds
VARIANTS = {
    "default": Variant(
        "compress's graph: Attention -> QAttention, BiasGelu, SkipLayerNormalization; last layer for [CLS] only"
    ),
    "every position": Variant(
        "the same, with the last layer run for every position (as exported before mobilebert_kit.graph.first_token)",
        first_token=False,
    ),
    "attention unfused": Variant(
        "no Attention fusion: Q, K, V as INT8 MatMuls, scores/softmax/context as fp32 ops",
        {"enable_attention": False},
    ),
    "INT8 attention products": Variant(
        "attention unfused, and its scores and context MatMuls INT8 too (Optimum's graph does this)",
        {"enable_attention": False},
        int8_attention=True,
    ),
    "MultiHeadAttention": Variant(
        "INT8 Q/K/V MatMuls feeding fp32 MultiHeadAttention", {"use_multi_head_attention": True}
    ),
    "MultiHeadAttention, no mask": Variant(
        "the same without its mask input, so ORT takes its CPU flash-attention kernel (right for one unpadded "
        "text only: not a graph to ship)",
        {"use_multi_head_attention": True},
        drop_attention_mask=True,
    ),
    "FastGelu": Variant(
        "tanh-approximated GELU (FastGelu) instead of erf BiasGelu", {"enable_gelu_approximation": True}
    ),
    "no SkipLayerNorm": Variant(
        "Add + LayerNormalization instead of SkipLayerNormalization",
        {"enable_skip_layer_norm": False, "enable_bias_skip_layer_norm": False},
    ),
    "embeddings unfused": Variant(
        "no EmbedLayerNormalization: INT8 Gathers + Add + LayerNormalization", {"enable_embed_layer_norm": False}
    ),
}


def build(model_dir: Path, work: Path) -> dict[str, dict]:
    from mobilebert_kit.compression.ort_quant import Int8Dynamic, quantize

    raws = {}  # one export per first_token setting; the variants differ after it
    for first_token in {v.first_token for v in VARIANTS.values()}:
        raws[first_token] = ot.export_onnx(model_dir, work / f"raw-{first_token}.onnx", first_token=first_token)
    out = {}
    for name, v in VARIANTS.items():
        fused, q = (work / f"{len(out)}-{stem}.onnx" for stem in ("fp32", "int8"))
        ot.optimize_onnx(raws[v.first_token], fused, 0, 0, require_attention=False, fusion=v.fusion)
        if v.drop_attention_mask:
            _drop_attention_masks(fused)
        if v.int8_attention:
            _quantize_every_matmul(fused, q)
        else:
            quantize(fused, q, Int8Dynamic(per_channel=True))
        out[name] = {**asdict(v), "path": q, "size_bytes": q.stat().st_size, "ops": ot.op_counts(q)}
    return out


def _drop_attention_masks(path: Path) -> None:
    import onnx

    m = onnx.load(str(path))
    for node in m.graph.node:
        if node.op_type == "MultiHeadAttention":
            del node.input[4:]  # key_padding_mask and what follows it
    onnx.save(m, str(path))


def _quantize_every_matmul(fused: Path, out: Path) -> None:
    """mbk's per-channel dynamic INT8, but with ORT's ``MatMulConstBOnly`` off: MatMuls of two activations
    (attention scores and context) are quantized as well. quantize.py keeps them fp32, as ORT's default does."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from mobilebert_kit.compression.ort_quant import DYNAMIC_OPS

    with ot.quiet_ort():
        quantize_dynamic(
            str(fused),
            str(out),
            op_types_to_quantize=list(DYNAMIC_OPS),
            per_channel=True,
            weight_type=QuantType.QInt8,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": False},
        )


def score(graphs: dict, tok, val) -> None:
    """Validation accuracy at batch 1, unpadded (as compress scores graphs), and agreement with the default."""
    labels = np.asarray(val.labels)
    preds = {}
    for name, g in graphs.items():
        sess = ot.session(g["path"])
        preds[name] = ot.onnx_predict_logits(sess, tok, val.texts, val.pairs, 128, batch_size=1).argmax(-1)
        g["val_accuracy"] = float((preds[name] == labels).mean())
        g["agreement_with_default"] = float((preds[name] == preds["default"]).mean())


def timings(graphs: dict, tok, test, args) -> dict:
    idx = sorted(seeded_sample(len(test), args.texts, args.seed).tolist())
    real = [encode_one(tok, test.texts[i], 128) for i in idx]
    long = encode_one(tok, " ".join(test.texts), 128)  # real words, truncated to 128 tokens
    if long["input_ids"].shape[1] < 128:
        raise SystemExit(
            f"Error: the whole test split is under 128 tokens ({long['input_ids'].shape[1]}); use more data"
        )
    feeds = {n: {"real": real, "s128": [long]} for n in graphs}
    timed = {"real": list(range(len(real))), "s128": [0] * args.runs_128}
    return p50_by_version(args.ort_versions, {n: g["path"] for n, g in graphs.items()}, feeds, timed, args.rounds)


def markdown(res: dict) -> str:
    versions = list(res["p50_ms"])
    head = "| graph | size MB | val acc | agrees with default | " + " | ".join(
        f"p50 ms real / 128 @ {v}" for v in versions
    )
    lines = [
        "# Fused-graph variants of one compressed model (per-channel dynamic INT8)",
        "",
        f"Model `{res['model']}`; {res['setup']}",
        "",
        head + " |",
        "|---|---:|---:|---:|" + "---:|" * len(versions),
    ]
    for name, g in res["graphs"].items():
        cells = [
            f"{res['p50_ms'][v]['real'][name]:.3f} / {res['p50_ms'][v]['s128'][name]:.3f}"
            f" ({res['p50_ms'][v]['s128'][name] / res['p50_ms'][v]['s128']['default']:.2f}x)"
            for v in versions
        ]
        lines.append(
            f"| {name}: {g['what']} | {g['size_bytes'] / 1e6:.2f} | {g['val_accuracy']:.4f} | "
            f"{g['agreement_with_default']:.2%} | " + " | ".join(cells) + " |"
        )
    for v in versions:
        s128 = res["p50_ms"][v]["s128"]
        best = min(s128, key=s128.get)
        lines.append(
            f"Fastest at 128 tokens in onnxruntime {v}: {best} ({s128[best] / s128['default']:.2f}x the default)."
        )
    lines += ["", f"Reproduce: `{res['command']}`", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="artifacts/runs/default/compressed", help="a compress output folder")
    p.add_argument("--data", default="rotten_tomatoes")
    p.add_argument("--texts", type=int, default=200, help="seeded test texts timed at their real length")
    p.add_argument("--runs-128", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--ort-versions", default=f"android,{HOST}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "graph_variants"))
    args = p.parse_args()
    if args.texts < 1 or args.runs_128 < 1 or args.rounds < 1:
        p.error("--texts, --runs-128 and --rounds must be >= 1")

    from transformers import AutoTokenizer

    from mobilebert_kit.data import DataConfig, load_dataset

    model = Path(args.model)
    tok = AutoTokenizer.from_pretrained(model)
    ds = load_dataset(DataConfig(data=args.data))
    args.texts = min(args.texts, len(ds.splits["test"]))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mbk-graphs-") as tmp:
        graphs = build(model, Path(tmp))
        score(graphs, tok, ds.splits["validation"])
        p50 = timings(graphs, tok, ds.splits["test"], args)
    res = {
        "benchmark": "graph_variants",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python benchmarks/graph_variants.py " + " ".join(sys.argv[1:]),
        "model": str(model),
        "setup": (
            f"batch 1, 1 intra-op thread, interleaved; 'real': {args.texts} seeded test "
            f"texts each at its own length, x{args.rounds} rounds; '128': one 128-token input x{args.runs_128}, "
            f"x{args.rounds} rounds; (Nx): seq-128 time relative to the default graph. Validation accuracy in this "
            f"environment's onnxruntime, batch 1, unpadded, {len(ds.splits['validation'])} texts."
        ),
        "graphs": {n: {k: v for k, v in g.items() if k != "path"} for n, g in graphs.items()},
        "p50_ms": p50,
        "libraries": library_versions(),
        "seconds": time.perf_counter() - t0,
    }
    out = Path(args.out)
    write_results(out.parent, out.stem, res, markdown(res))


if __name__ == "__main__":
    main()
