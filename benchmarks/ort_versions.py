"""Which onnxruntime version should the app pin? The packaged phone model timed in several versions.

On a finished `mbk run` folder: the packaged Android model (``package/android``), the same graph
with every (Skip)LayerNormalization rewritten as primitive ops (ReduceMean, Sub, Mul, Sqrt, Div,
Add: a diagnostic that isolates the LayerNorm kernels, not something mbk ships), and Optimum's
dynamic INT8 of the student (``lib.baselines.optimum_int8``), each timed in every requested
onnxruntime version (installed on first use as side runtimes), batch 1, 1 thread, interleaved, at
real test-text lengths and at sequence 128.

    python benchmarks/ort_versions.py --run artifacts/runs/default --versions android,1.29.0,1.30.0,host
Writes ``benchmarks/results/ort_versions.json`` and ``ort_versions.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lib.baselines import optimum_int8  # noqa: E402
from lib.inputs import encode_one, encode_texts, seeded_sample  # noqa: E402
from lib.ort_timing import HOST, expand_versions, time_in_runtime  # noqa: E402
from lib.results_io import write_results  # noqa: E402

from mobilebert_kit.artifacts import library_versions, read_json  # noqa: E402

PHONE, DECOMPOSED, OPTIMUM = (
    "phone model (mbk .ort)",
    "phone graph, LayerNorm as primitive ops (.onnx)",
    "Optimum dynamic INT8",
)


def decompose_layer_norm(src: Path, dst: Path) -> int:
    """Rewrite SkipLayerNormalization / LayerNormalization (last axis, no mean/inv-std outputs) as
    Add + ReduceMean/Sub/Mul/ReduceMean/Add/Sqrt/Div/Mul/Add; returns how many were rewritten."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(src)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    nodes, inits, done = [], [], 0
    if opset >= 18:
        inits.append(numpy_helper.from_array(np.array([-1], np.int64), "ln_axes"))

    def mean(x: str, y: str):
        if opset >= 18:
            return helper.make_node("ReduceMean", [x, "ln_axes"], [y], keepdims=1)
        return helper.make_node("ReduceMean", [x], [y], axes=[-1], keepdims=1)

    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain_ln = (
            node.op_type == "LayerNormalization" and node.domain in ("", "ai.onnx") and attrs.get("axis", -1) == -1
        )
        if not (node.op_type == "SkipLayerNormalization" or plain_ln) or any(node.output[1:3]):
            nodes.append(node)
            continue
        p, ins = f"ln{done}", list(node.input) + [""] * 5
        done += 1
        if node.op_type == "SkipLayerNormalization":
            total = node.output[3] if len(node.output) > 3 and node.output[3] else f"{p}_sum"
            if ins[4]:
                nodes += [
                    helper.make_node("Add", ins[:2], [f"{p}_xs"]),
                    helper.make_node("Add", [f"{p}_xs", ins[4]], [total]),
                ]
            else:
                nodes.append(helper.make_node("Add", ins[:2], [total]))
            x, gamma, beta = total, ins[2], ins[3]
        else:
            x, gamma, beta = ins[0], ins[1], ins[2]
        inits.append(numpy_helper.from_array(np.array(attrs.get("epsilon", 1e-5), np.float32), f"{p}_eps"))
        nodes += [
            mean(x, f"{p}_mean"),
            helper.make_node("Sub", [x, f"{p}_mean"], [f"{p}_d"]),
            helper.make_node("Mul", [f"{p}_d", f"{p}_d"], [f"{p}_d2"]),
            mean(f"{p}_d2", f"{p}_var"),
            helper.make_node("Add", [f"{p}_var", f"{p}_eps"], [f"{p}_ve"]),
            helper.make_node("Sqrt", [f"{p}_ve"], [f"{p}_sd"]),
            helper.make_node("Div", [f"{p}_d", f"{p}_sd"], [f"{p}_n"]),
        ]
        if beta:
            nodes += [
                helper.make_node("Mul", [f"{p}_n", gamma], [f"{p}_g"]),
                helper.make_node("Add", [f"{p}_g", beta], [node.output[0]]),
            ]
        else:
            nodes.append(helper.make_node("Mul", [f"{p}_n", gamma], [node.output[0]]))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits)
    onnx.save(model, dst)
    return done


def main() -> None:
    from mobilebert_kit.artifacts import lineage
    from mobilebert_kit.data import data_config_for, load_dataset
    from mobilebert_kit.models import load_tokenizer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="artifacts/runs/default")
    ap.add_argument("--versions", default="android,1.29.0,1.30.0,host")
    ap.add_argument("--real-texts", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", default="benchmarks/work/ort_versions")
    ap.add_argument("--results", default="benchmarks/results")
    args = ap.parse_args()
    run, work = Path(args.run), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    meta = read_json(run / "package" / "android" / "model_meta.json")
    phone = run / "package" / "android" / meta["model_file"]
    graph = run / "export" / "onnx" / "model.onnx"  # the graph the .ort was converted from
    n_ln = decompose_layer_norm(graph, work / "decomposed.onnx")
    print("Optimum export + dynamic INT8 of the student ...", file=sys.stderr)
    paths = {PHONE: phone, DECOMPOSED: work / "decomposed.onnx", OPTIMUM: optimum_int8(run / "student", work)}
    toks = {PHONE: phone.parent, DECOMPOSED: run / "export" / "onnx", OPTIMUM: run / "student"}
    test = load_dataset(data_config_for(run / "student", None)).splits["test"]
    max_length = int(lineage(run / "student").get("max_length") or 128)
    idx = seeded_sample(len(test), args.real_texts)
    long_text = " ".join(test.texts[:60])
    feeds = {}
    for n, t in toks.items():
        tok = load_tokenizer(str(t))
        enc = encode_texts(tok, test, max_length)
        feeds[n] = {"real": [enc[i] for i in idx], "128": [encode_one(tok, long_text, 128)]}
    timed = {"real": list(range(len(idx))), "128": [0] * 20}
    res = {"run": str(run), "layer_norms_rewritten": int(n_ln), "runtimes": {}, "versions": library_versions()}
    for v in expand_versions(args.versions):
        print(f"onnxruntime {v} ...", file=sys.stderr)
        r = time_in_runtime(v, paths, feeds, timed, args.rounds)
        label = r["version"] + (" (host)" if v == HOST else "")
        res["runtimes"][label] = {n: {s: float(np.median(r["times_ms"][s][n])) for s in ("real", "128")} for n in paths}
    write_results(args.results, "ort_versions", res, markdown(res))


def markdown(res: dict) -> str:
    rows = [
        "# The packaged phone model across onnxruntime versions",
        "",
        f"Run `{res['run']}`; p50 ms, batch 1, 1 thread, interleaved; real = seeded test texts unpadded. "
        f"The middle column rewrites the graph's {res['layer_norms_rewritten']} LayerNorms as primitive ops.",
        "",
        "| onnxruntime | " + " | ".join(f"{n} real / 128" for n in (PHONE, DECOMPOSED, OPTIMUM)) + " |",
        "|---|---:|---:|---:|",
    ]
    for v, m in res["runtimes"].items():
        rows.append(
            f"| {v} | "
            + " | ".join(f"{m[n]['real']:.2f} / {m[n]['128']:.2f}" for n in (PHONE, DECOMPOSED, OPTIMUM))
            + " |"
        )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
