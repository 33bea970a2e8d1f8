"""mbk's INT8 ONNX vs today's Optimum path, side by side in one run on the same fine-tuned student.

Optimum path (what users do today): ``optimum.exporters.onnx.main_export`` (task
text-classification) + ``ORTQuantizer`` dynamic INT8 with ``AutoQuantizationConfig.avx2``.
mbk path: the student's ``compression.json`` ONNX graph when it has one (``--mbk-onnx`` to pass any
file), else mbk's own recipe: ``torch.onnx.export`` -> ORT transformer fusion (fused Attention,
EmbedLayerNorm, SkipLayerNorm, BiasGelu) -> dynamic INT8 (``DefaultTensorType`` float).

Measured on this machine, 1 intra-op thread, batch 1, interleaved rounds (A, B, A, B ...):
latency at sequence length 128 (full window) and at the data's real lengths (each test text
tokenized without padding), size on disk, test accuracy / macro-F1 of both graphs in ONNX Runtime
(and of the PyTorch fp32 student for reference). Target: mbk <= 0.8x Optimum's latency at equal or
better accuracy. Writes ``benchmarks/results/vs_optimum.json`` and ``.md``.

    python benchmarks/vs_optimum.py --student artifacts/student
    python benchmarks/vs_optimum.py --make-student   # no student yet: fine-tune a 3-layer MiniLM first
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lib.baselines import optimum_int8  # noqa: E402
from lib.inputs import encode_sample, fixed_inputs, seeded_sample  # noqa: E402
from lib.results_io import write_results  # noqa: E402
from lib.stats import latency_summary  # noqa: E402

from mobilebert_kit.artifacts import folder_size, library_versions, read_json  # noqa: E402
from mobilebert_kit.batching import predict_logits  # noqa: E402
from mobilebert_kit.compression.ort_quant import Int8Dynamic, quantize  # noqa: E402
from mobilebert_kit.graph import onnx_tools as ot  # noqa: E402
from mobilebert_kit.metrics import classification_metrics  # noqa: E402

OPTIMUM_HOW = "optimum main_export + ORTQuantizer AutoQuantizationConfig.avx2(is_static=False, per_channel=False)"


def make_student(out: Path, layers=(0, 2, 4), train_examples: int = 3000, max_length: int = 64) -> Path:
    """Fine-tune MiniLM-L6 truncated to ``layers`` (a distillation-style student init) for 1 epoch."""
    from transformers import AutoModel, AutoTokenizer

    from mobilebert_kit.data import DataConfig
    from mobilebert_kit.models import resolve_model
    from mobilebert_kit.stages.base import RunContext
    from mobilebert_kit.stages.finetune import FinetuneConfig, run
    from mobilebert_kit.training.engine import TrainConfig

    base = resolve_model("minilm-l6").path
    init = out.with_name(out.name + ".init")
    if not (init / "config.json").exists():
        m = AutoModel.from_pretrained(base)
        m.encoder.layer = m.encoder.layer.__class__([m.encoder.layer[i] for i in layers])
        m.config.num_hidden_layers = len(layers)
        m.save_pretrained(init)
        AutoTokenizer.from_pretrained(base).save_pretrained(init)
    cfg = FinetuneConfig(
        model=str(init),
        data=DataConfig(max_train_examples=train_examples),
        train=TrainConfig(epochs=1, max_length=max_length, lr=1e-4, early_stopping_patience=0),
        output=str(out),
    )
    return run(cfg, RunContext(overwrite=True)).output


def mbk_int8(student: Path, work: Path, given: str | None) -> tuple[Path, str]:
    if given:
        return Path(given), f"given file {given}"
    comp = student / "compression.json"
    if comp.exists():
        c = read_json(comp)
        if c.get("onnx_model") and c.get("int8"):
            return student / c[
                "onnx_model"
            ], f"compression.json onnx_model ({c.get('int8_mode')}, per_channel={c.get('per_channel')})"
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(student)
    ot.export_onnx(student, work / "mbk_fp32.onnx")
    fused = ot.optimize_onnx(work / "mbk_fp32.onnx", work / "mbk_fused.onnx", cfg.num_attention_heads, cfg.hidden_size)
    quantize(work / "mbk_fused.onnx", work / "mbk_int8.onnx", Int8Dynamic(per_channel=False, weight_type="qint8"))
    return work / "mbk_int8.onnx", f"mbk recipe: export + ORT fusion {fused} + dynamic qint8 per-tensor"


def time_interleaved(sessions: dict, inputs: list[dict], rounds: int, warmup: int = 3) -> dict[str, list[float]]:
    """ms per run for every session; per round, sessions alternate order on every input."""
    names = list(sessions)
    feeds = {n: [ot.feeds_for(sessions[n], x) for x in inputs] for n in names}
    for n in names:
        for f in feeds[n][:warmup] * (1 if len(inputs) > warmup else warmup):
            sessions[n].run(None, f)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for i in range(len(inputs)):
            order = names if (i + r) % 2 == 0 else names[::-1]
            for n in order:
                t0 = time.perf_counter()
                sessions[n].run(None, feeds[n][i])
                out[n].append((time.perf_counter() - t0) * 1e3)
    return out


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--student", default="artifacts/student", help="fine-tuned student classifier folder")
    ap.add_argument(
        "--make-student", action="store_true", help="fine-tune a 3-layer MiniLM student into --student if missing"
    )
    ap.add_argument(
        "--mbk-onnx", default=None, help="mbk INT8 .onnx to compare (default: from compression.json or built here)"
    )
    ap.add_argument("--max-test", type=int, default=None, help="evaluate on a seeded subset of the test split")
    ap.add_argument("--real-texts", type=int, default=200, help="test texts timed at their real token length")
    ap.add_argument("--runs-128", type=int, default=60, help="timed runs per model at seq 128")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", default="benchmarks/work/vs_optimum")
    ap.add_argument("--results", default="benchmarks/results")
    return ap.parse_args()


def ensure_student(student: Path, make: bool) -> None:
    """The student folder, fine-tuned here first when it is missing and ``--make-student`` asks for it."""
    if not (student / "config.json").exists():
        if not make:
            sys.exit(f"Error: student folder {student} does not exist; run `mbk distill` or pass --make-student")
        print(f"fine-tuning a 3-layer MiniLM student into {student} ...", file=sys.stderr)
        make_student(student)


def build_graphs(student: Path, work: Path, mbk_onnx: str | None) -> dict[str, dict]:
    """Both INT8 graphs, each with how it was made and how long that took."""
    print("exporting: Optimum main_export + ORTQuantizer avx2 dynamic ...", file=sys.stderr)
    t0 = time.perf_counter()
    opt_path = optimum_int8(student, work)
    opt_secs = time.perf_counter() - t0
    print("exporting: mbk fused INT8 ...", file=sys.stderr)
    t0 = time.perf_counter()
    mbk_path, mbk_how = mbk_int8(student, work, mbk_onnx)
    mbk_secs = time.perf_counter() - t0
    return {
        "optimum": {"path": opt_path, "how": OPTIMUM_HOW, "export_seconds": opt_secs},
        "mbk": {"path": mbk_path, "how": mbk_how, "export_seconds": mbk_secs},
    }


def score(model, tok, test, paths: dict[str, Path], max_length: int, n_labels: int) -> dict[str, dict]:
    """Test metrics of the PyTorch fp32 student and of each graph (with its label agreement with PyTorch)."""
    print(f"accuracy on {len(test)} test texts ...", file=sys.stderr)
    ref = predict_logits(model, tok, test.texts, test.pairs, max_length=max_length)
    acc = {"pytorch_fp32": classification_metrics(ref, test.labels, n_labels)}
    for name, p in paths.items():
        logits = ot.onnx_predict_logits(ot.session(p, threads=2), tok, test.texts, test.pairs, max_length)
        acc[name] = {
            **classification_metrics(logits, test.labels, n_labels),
            "agreement_with_pytorch": float((logits.argmax(-1) == ref.argmax(-1)).mean()),
        }
    return acc


def latencies(paths: dict[str, Path], tok, test, max_length: int, args) -> tuple[dict, dict, list[int]]:
    """ms per call of each graph at seq 128 and at the real lengths of a seeded sample of test texts
    (and those lengths), one intra-op thread."""
    sessions = {name: ot.session(p, threads=1) for name, p in paths.items()}
    print("latency at seq 128 ...", file=sys.stderr)
    t128 = time_interleaved(
        sessions, [fixed_inputs(min(128, max(max_length, 128)))] * (args.runs_128 // args.rounds), args.rounds
    )
    real_inputs = encode_sample(tok, test, seeded_sample(len(test), args.real_texts), max_length)
    lengths = [int(x["input_ids"].shape[1]) for x in real_inputs]
    print(
        f"latency at real lengths ({len(real_inputs)} texts, median {int(np.median(lengths))} tokens) ...",
        file=sys.stderr,
    )
    treal = time_interleaved(sessions, real_inputs, args.rounds)
    return t128, treal, lengths


def main() -> None:
    from mobilebert_kit.artifacts import lineage
    from mobilebert_kit.data import data_config_for, load_dataset
    from mobilebert_kit.models import load_classifier_folder

    args = parse_args()
    student = Path(args.student)
    ensure_student(student, args.make_student)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model, tok, labels = load_classifier_folder(student)
    max_length = int(lineage(student).get("max_length") or 128)
    dcfg = data_config_for(student, None)
    test = load_dataset(dcfg).splits["test"]
    if args.max_test:
        test = test.subset(args.max_test, 7)
    graphs = build_graphs(student, work, args.mbk_onnx)
    paths = {name: g["path"] for name, g in graphs.items()}
    acc = score(model, tok, test, paths, max_length, len(labels))
    t128, treal, lengths = latencies(paths, tok, test, max_length, args)
    rows = {}
    for name, p in paths.items():
        rows[name] = {
            "file": str(p),
            "size_mb": folder_size(p) / 1e6,
            "ops": {k: v for k, v in ot.op_counts(p).items() if k in ot.FUSED_OPS},
            "latency_seq128": latency_summary(t128[name]),
            "latency_real": latency_summary(treal[name]),
            **acc[name],
            "how": graphs[name]["how"],
            "export_seconds": graphs[name]["export_seconds"],
        }
    setup = {
        "student": str(student),
        "student_params": sum(p.numel() for p in model.parameters()),
        "data": dcfg.data,
        "test_examples": len(test),
        "max_length": max_length,
        "real_length_median_tokens": float(np.median(lengths)),
        "threads": 1,
        "batch": 1,
        "rounds": args.rounds,
    }
    result = summarise(setup, acc["pytorch_fp32"], rows)
    write_results(args.results, "vs_optimum", result, markdown(result), record_cpu=False)


def summarise(setup: dict, pytorch: dict, rows: dict[str, dict]) -> dict:
    """The result: the setup, both graphs' rows, their latency ratios and whether the target is met."""
    ratio128 = rows["mbk"]["latency_seq128"]["p50_ms"] / rows["optimum"]["latency_seq128"]["p50_ms"]
    ratio_real = rows["mbk"]["latency_real"]["p50_ms"] / rows["optimum"]["latency_real"]["p50_ms"]
    acc_ok = rows["mbk"]["accuracy"] >= rows["optimum"]["accuracy"]
    return {
        **setup,
        "pytorch_fp32": pytorch,
        "optimum": rows["optimum"],
        "mbk": rows["mbk"],
        "latency_ratio_seq128": ratio128,
        "latency_ratio_real": ratio_real,
        "target": "mbk <= 0.8x Optimum latency at equal or better accuracy",
        "target_met_seq128": bool(ratio128 <= 0.8 and acc_ok),
        "target_met_real": bool(ratio_real <= 0.8 and acc_ok),
        "versions": library_versions(),
    }


def markdown(result: dict) -> str:
    rows, pt = {name: result[name] for name in ("optimum", "mbk")}, result["pytorch_fp32"]
    md = [
        "# mbk INT8 ONNX vs Optimum export + ORTQuantizer (avx2 dynamic)",
        "",
        f"Student `{result['student']}` ({result['student_params'] / 1e6:.1f}M params), data `{result['data']}`, "
        f"{result['test_examples']} test texts, max_length {result['max_length']}; 1 thread, batch 1, interleaved; "
        f"real-length median {result['real_length_median_tokens']:.0f} tokens.",
        "",
        "| | size MB | p50 ms seq 128 | p50 ms real lengths | accuracy | macro-F1 | agreement w/ PyTorch |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        md.append(
            f"| {name} | {r['size_mb']:.1f} | {r['latency_seq128']['p50_ms']:.2f} | {r['latency_real']['p50_ms']:.2f} | "
            f"{r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['agreement_with_pytorch']:.2%} |"
        )
    md += [
        f"| PyTorch fp32 student | | | | {pt['accuracy']:.4f} | {pt['macro_f1']:.4f} | |",
        "",
        f"mbk / Optimum latency: **{result['latency_ratio_seq128']:.2f}x** at seq 128, "
        f"**{result['latency_ratio_real']:.2f}x** at real lengths (target <= 0.8x at equal or better accuracy: "
        f"seq 128 {'met' if result['target_met_seq128'] else 'NOT met'}, "
        f"real lengths {'met' if result['target_met_real'] else 'NOT met'}).",
        "",
        f"- optimum: {rows['optimum']['how']}; ops {rows['optimum']['ops']}",
        f"- mbk: {rows['mbk']['how']}; ops {rows['mbk']['ops']}",
        "",
    ]
    return "\n".join(md)


if __name__ == "__main__":
    main()
