"""The distillation teacher pass in fp32 and in dynamic INT8 (``mbk distill --teacher-precision int8``),
side by side in one process on the same texts: seconds (cold cache: each pass writes a fresh cache),
texts/s, and how close the INT8 teacher's outputs are to the fp32 teacher's (label agreement, KL at the
distillation temperature, largest logit difference). Passes alternate (fp32, int8, int8, fp32, ...);
medians are shown. Writes ``benchmarks/results/teacher_int8[-TAG].json`` and ``.md``.

    python benchmarks/teacher_int8.py --teacher artifacts/runs/default/teacher --threads 1 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from lib.results_io import provenance, write_results


def one_pass(model, tok, texts, precision: str, folder: Path, args) -> tuple[float, object, dict | None]:
    import torch

    from mobilebert_kit.training.teacher_cache import teacher_outputs, teacher_weights_sha

    with tempfile.TemporaryDirectory() as cache:
        out = teacher_outputs(
            model,
            tok,
            texts,
            None,
            max_length=args.max_length,
            hidden_layers=[],
            attention_layers=[],
            cache_dir=Path(cache),
            slot={"teacher": str(folder), "role": "benchmark"},
            teacher_sha=teacher_weights_sha(folder),
            batch_size=args.batch_size,
            device=torch.device("cpu"),
            log=lambda m: print(m, file=sys.stderr),
            precision=precision,
            temperature=args.temperature,
        )
    return out.seconds, out.logits, out.int8_check


def closeness(fp32, int8, temperature: float) -> dict:
    """The measures the INT8 teacher's check uses (``int8_teacher.soft_label_kl``), over every text."""
    import numpy as np

    from mobilebert_kit.training.int8_teacher import soft_label_kl

    return {
        "label_agreement": float((fp32.argmax(-1) == int8.argmax(-1)).mean()),
        "kl_fp32_to_int8": soft_label_kl(fp32, int8, temperature),
        "max_abs_logit_diff": float(np.abs(fp32 - int8).max()),
    }


def students(specs: list[str]) -> list[dict]:
    """``PRECISION=FOLDER`` pairs: each a student ``mbk distill`` wrote (its metrics.json)."""
    from mobilebert_kit.artifacts import read_json

    rows = []
    for spec in specs:
        precision, folder = spec.split("=", 1)
        m = read_json(Path(folder) / "metrics.json")
        c = read_json(Path(folder) / "manifest.json")["config"]
        init = f"--student {c['student']} " if c.get("student") else ""
        command = (
            f"mbk distill --teacher {c['teacher']} {init}--layers {','.join(map(str, c['layers']))} "
            f"--epochs {c['train']['epochs']} --lr {c['train']['lr']:g} --max-length {c['train']['max_length']} "
            f"--eval-batch-size {c['train']['eval_batch_size']} --data {c['data']['data']} "
            f"--teacher-precision {c.get('teacher_precision', 'fp32')} -o {folder}"
        )
        rows.append(
            {
                "precision": precision,
                "folder": folder,
                "recorded_precision": m["teacher_cache"].get("train_precision", "fp32"),
                "validation_accuracy": m["student"]["validation"]["accuracy"],
                "test_accuracy": m["student"]["test"]["accuracy"],
                "test_n": m["student"]["test"]["n"],
                "teacher_pass_seconds": m["teacher_cache"]["train_seconds"],
                "train_seconds": m["train_seconds"],
                "end_to_end_examples_per_second": m["end_to_end_examples_per_second"],
                "command": command,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="artifacts/runs/default/teacher")
    p.add_argument("--max-texts", type=int, default=None, help="first N training texts (default: all)")
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32, help="the pass's batch (train.eval_batch_size)")
    p.add_argument("--temperature", type=float, default=3.0)
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument(
        "--student",
        action="append",
        default=[],
        metavar="PRECISION=FOLDER",
        help="a student distilled with that teacher precision (its metrics.json joins the report); repeatable",
    )
    p.add_argument("--tag", default="", help="suffix of the results files: teacher_int8-<tag>.json/.md")
    p.add_argument("--output", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)

    import torch

    from mobilebert_kit.data import DataConfig, data_config_for, load_dataset
    from mobilebert_kit.models import load_classifier_folder

    folder = Path(args.teacher)
    model, tok, _ = load_classifier_folder(folder)
    texts = load_dataset(DataConfig.from_dict(data_config_for(folder).to_dict())).splits["train"].texts
    texts = texts[: args.max_texts] if args.max_texts else texts
    print(f"{len(texts)} training texts of {folder}", file=sys.stderr)
    rows, logits, check = [], {}, None
    for threads in args.threads:
        torch.set_num_threads(threads)
        seconds: dict[str, list[float]] = {"fp32": [], "int8": []}
        for r in range(args.repeats):
            for precision in ("fp32", "int8") if r % 2 == 0 else ("int8", "fp32"):
                s, logits[precision], c = one_pass(model, tok, texts, precision, folder, args)
                check = c or check
                seconds[precision].append(s)
                print(f"{threads} thread(s), {precision}: {s:.1f} s", file=sys.stderr)
        med = {k: statistics.median(v) for k, v in seconds.items()}
        rows.append(
            {"threads": threads, "seconds": seconds, "median_seconds": med, "speedup": med["fp32"] / med["int8"]}
        )
    result = {
        **provenance("teacher_int8", argv),
        "setup": {
            "teacher": str(folder),
            "parameters": sum(t.numel() for t in model.parameters()),
            "texts": len(texts),
            "max_length": args.max_length,
            "batch_size": args.batch_size,
            "temperature": args.temperature,
            "repeats": args.repeats,
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "quantized_engine": torch.backends.quantized.engine,
            "load_average_1min_after": os.getloadavg()[0],
        },
        "by_threads": rows,
        "closeness": closeness(logits["fp32"], logits["int8"], args.temperature),
        "int8_check": check,
        "students": students(args.student),
    }
    write_results(args.output, f"teacher_int8-{args.tag}" if args.tag else "teacher_int8", result, markdown(result))
    return result


def markdown(r: dict) -> str:
    s, c = r["setup"], r["closeness"]
    lines = [
        "# The distillation teacher pass: fp32 vs dynamic INT8 (`--teacher-precision int8`)",
        "",
        f"Teacher `{s['teacher']}` ({s['parameters']:,} params), {s['texts']} training texts, max length "
        f"{s['max_length']}, length-sorted batches of {s['batch_size']}, cold cache (each pass writes a fresh one); "
        f"torch {s['torch']} ({s['quantized_engine']} INT8 kernels), {s['cpu_count']} cores, {s['repeats']} passes "
        "per precision alternating, medians shown.",
        "",
        "| torch threads | fp32 s | int8 s | int8 speed-up | fp32 texts/s | int8 texts/s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["by_threads"]:
        m = row["median_seconds"]
        lines.append(
            f"| {row['threads']} | {m['fp32']:.1f} | {m['int8']:.1f} | {row['speedup']:.2f}x | "
            f"{s['texts'] / m['fp32']:.0f} | {s['texts'] / m['int8']:.0f} |"
        )
    lines += [
        "",
        f"INT8 vs fp32 teacher on these texts: labels agree on **{c['label_agreement']:.2%}**, "
        f"KL(fp32 || int8) at T={s['temperature']:g} is {c['kl_fp32_to_int8']:.5f}, largest logit difference "
        f"{c['max_abs_logit_diff']:.3f}. The int8 seconds include its check against fp32 on a sample of the texts, "
        "quantizing, and writing the cache.",
        "",
    ]
    k = r.get("int8_check")
    if k:
        lines += [
            f"The check (`mobilebert_kit/training/int8_teacher.py`, on {k['sample']} texts, soft-label KL at most {k['max_kl']}): "
            + "; ".join(
                f"{t['fp32_layers']} layers fp32: KL {t['kl']:.4f}, agreement {t['agreement']:.1%}" for t in k["tried"]
            )
            + f". The pass ran in **{k['precision']}**"
            + (
                f", these layers kept fp32: {', '.join(f'`{n}`' for n in k['fp32_layers'])}."
                if k["fp32_layers"]
                else "."
            ),
            "",
        ]
    if r.get("students"):
        lines += [
            "Students distilled from each pass (`mbk distill`, 2 epochs, full data, "
            f"{r['setup']['cpu_count']} threads; one text of {r['students'][0]['test_n']} is "
            f"{100 / r['students'][0]['test_n']:.2f} pt):",
            "",
            "| teacher pass | val acc | test acc | teacher pass s | training s | end-to-end ex/s |",
            "|---|---:|---:|---:|---:|---:|",
            *(
                f"| {x['recorded_precision']} | {x['validation_accuracy']:.4f} | {x['test_accuracy']:.4f} | "
                f"{x['teacher_pass_seconds']:.1f} | {x['train_seconds']:.1f} | {x['end_to_end_examples_per_second']:.1f} |"
                for x in r["students"]
            ),
            "",
            "The students (teacher pass seconds on a cold cache):",
            "",
            *(f"    {x['command']}" for x in r["students"]),
            "",
        ]
    lines += [
        f"Reproduce: `{r['command']}`",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
