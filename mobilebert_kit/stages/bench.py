"""Bench stage: latency, size on disk and memory of exported models on ONNX Runtime (PyTorch and
TorchScript for reference).

Method: every (model, threads, batch, sequence length) case is warmed up, then timed in several
*interleaved* rounds (round 1 of every case, then round 2 of every case, ...) so slow drift of a
shared machine spreads over all cases instead of penalising whichever ran last. Inputs are real
token ids (CLS ... SEP, seeded random vocabulary ids) with a full attention mask. Reported: p50,
p90, p99 and mean latency in ms, size of the model file, and memory as the growth of the process
RSS while the model was loaded and warmed up (plus the process's peak RSS at the end).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mobilebert_kit import formats as registry
from mobilebert_kit.artifacts import (
    META,
    check_output_dir,
    folder_size,
    library_versions,
    not_a_folder,
    read_json,
    staged_output,
    write_json,
)
from mobilebert_kit.config import StageConfig, check_range
from mobilebert_kit.errors import ArtifactError, ConfigError, MbkError, ModelError
from mobilebert_kit.locking import holds_output
from mobilebert_kit.stages.base import RunContext, StageResult


def _default_formats() -> list[str]:
    return [f.name for f in registry.every(benchable=True, bench_default=True)]


@dataclass
class BenchConfig(StageConfig):
    export_dir: str = "artifacts/export"
    formats: list[str] | None = None  # exported formats to time (None: the default ones that were exported)
    models: list[str] = field(default_factory=list)  # extra .onnx/.ort/.pt files or HF classifier folders
    pytorch: bool = True  # also time the source PyTorch model (reference)
    seq_lengths: list[int] = field(default_factory=lambda: [16, 64, 128])
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    threads: list[int] = field(default_factory=lambda: [1, 2])
    warmup: int = 5
    runs: int = 30  # timed runs per case, split over `rounds` interleaved rounds
    rounds: int = 3
    seed: int = 0
    # ONNX Runtime models also timed in these onnxruntime versions (side installs, see runtime_parity):
    # auto = the version the format's phone app pins (the .ort: the Android app's 1.22), skipped offline
    runtime_versions: list[str] = field(default_factory=lambda: ["auto"])
    output: str = "artifacts/bench"

    def validate(self) -> list[str]:
        p: list[str] = []
        known = [f.name for f in registry.every(benchable=True)]
        for f in self.formats or []:
            if f not in known:
                p.append(f"unknown bench format '{f}'; known: {', '.join(known)}")
        for name in ("seq_lengths", "batch_sizes", "threads"):
            vals = getattr(self, name)
            if not vals:
                p.append(f"{name} must not be empty")
            for v in vals:
                check_range(p, name, v, 1, 8192)
        check_range(p, "warmup", self.warmup, 0)
        check_range(p, "runs", self.runs, 1)
        check_range(p, "rounds", self.rounds, 1)
        if 1 <= self.runs < self.rounds:
            p.append(f"runs ({self.runs}) must be >= rounds ({self.rounds})")
        from mobilebert_kit.phone.side_parity import validate_versions

        return p + validate_versions(self.runtime_versions)


@dataclass
class Target:
    name: str
    runtime: str  # onnxruntime | pytorch | torchscript | executorch
    path: Path
    size_bytes: int
    max_length: int
    vocab_size: int
    make: Callable[[int], Callable[[dict], None]]  # threads -> run(batch)
    max_batch: int | None = None  # programs with a static batch (ExecuTorch: 1)
    fixed_threads: bool = False  # runtime picks its own thread count (reported as given)
    fmt: object | None = None  # the registered export format (side runtimes time ONNX Runtime ones)


def rss_mb() -> float:
    """Current resident set size of this process in MB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError):
        return 0.0


def peak_rss_mb() -> float:
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1e3 if os.uname().sysname == "Linux" else kb / 1e6


def _format_target(fmt, name: str, path: Path, meta: dict) -> Target:
    """A bench target for an artifact of a registered format (its runner makes the timed calls)."""
    try:
        runner = fmt.load(path, meta)
    except MbkError:
        raise
    except Exception as e:  # noqa: BLE001 - a file that is not what its suffix says, reported on one line
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ModelError(f"could not load {path} as {fmt.name} ({first}); pass a file `mbk export` wrote") from e
    return Target(
        name,
        runner.runtime,
        path,
        folder_size(path),
        int(meta.get("max_length") or 512),
        int(meta.get("vocab_size") or 30522),
        runner.timed_call,
        max_batch=runner.static_batch,
        fixed_threads=runner.fixed_threads,
        fmt=fmt,
    )


def _pytorch_target(name: str, folder: Path) -> Target:
    import torch

    from mobilebert_kit.models import load_classifier_folder

    model, _, _ = load_classifier_folder(folder)
    weights = sum(f.stat().st_size for f in folder.glob("*.safetensors")) or sum(
        f.stat().st_size for f in folder.glob("*.bin")
    )

    def make(threads: int):
        def run(batch: dict) -> None:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            with torch.inference_mode():
                model(**{k: torch.from_numpy(v) for k, v in batch.items()})

        return run

    return Target(
        name, "pytorch", folder, weights, int(model.config.max_position_embeddings), int(model.config.vocab_size), make
    )


Loader = tuple[str, Callable[[], Target]]


def _targets(config: BenchConfig) -> list[Loader]:
    """(name, loader) pairs; loaders run lazily so memory is measured per model."""
    export_dir = Path(config.export_dir)
    names = config.formats if config.formats is not None else _exported_defaults(export_dir, config.models)
    out, source = _exported_targets(export_dir, names)
    out += [_file_target(Path(m)) for m in config.models]  # exported formats and extra models add up
    if config.pytorch and source is not None:
        out.append(("pytorch fp32 (source)", lambda: _pytorch_target("pytorch fp32 (source)", source)))
    if not out:
        raise ArtifactError("nothing to benchmark: export a model first (`mbk export`) or pass --model FILE")
    return out


def _exported_defaults(export_dir: Path, models: list[str]) -> list[str]:
    """The default bench formats present in ``export_dir`` (an export of only ``onnx`` benches that)."""
    present = [n for n in registry.exported(export_dir) if n in _default_formats()]
    if not present and not models:
        if not export_dir.is_dir():
            raise ArtifactError(
                f"{not_a_folder(export_dir, 'export folder')}; run `mbk export` first or pass --export-dir"
            )
        raise ArtifactError(
            f"{export_dir} holds none of the formats bench times by default ({', '.join(_default_formats())}); "
            "run `mbk export`, pass --format, or pass --model FILE"
        )
    return present


def _exported_targets(export_dir: Path, names: list[str]) -> tuple[list[Loader], Path | None]:
    """Loaders of the exported formats ``names``, and the PyTorch model they were exported from."""
    out: list[Loader] = []
    source: Path | None = None
    for name in names:
        meta_path = export_dir / name / META
        if not meta_path.exists():
            raise ArtifactError(
                f"{export_dir / name} has no exported {name} model ({meta_path.name} missing); "
                f"run `mbk export --format {name}` first or pass --export-dir"
            )
        meta = read_json(meta_path)
        path = export_dir / name / meta["model_file"]
        if not path.is_file():
            raise ArtifactError(f"model file {path} is missing; re-run `mbk export --format {name}`")
        label = f"{name}{' int8' if meta.get('int8') else ' fp32'}"
        fmt = registry.get(name)
        out.append((label, lambda fmt=fmt, path=path, meta=meta, label=label: _format_target(fmt, label, path, meta)))
        src = Path((meta.get("source_model") or {}).get("path", ""))
        source = source or (src if (src / "config.json").exists() else None)
    return out, source


def _file_target(p: Path) -> Loader:
    """A loader for ``--model``: a classifier folder (PyTorch) or a model file of a benchable format."""
    if not p.exists():
        raise ArtifactError(f"model file {p} does not exist; check the path")
    if p.is_dir():
        return f"pytorch {p.name}", lambda: _pytorch_target(f"pytorch {p.name}", p)
    fmt = registry.for_file(p)
    if fmt is None:
        suffixes = [s for f in registry.every(benchable=True) for s in f.file_suffixes]
        listed = ", ".join(suffixes[:-1]) + f" or {suffixes[-1]}" if len(suffixes) > 1 else "".join(suffixes)
        raise ModelError(f"cannot bench {p}: expected a {listed} file or a classifier folder")
    return p.name, lambda: _format_target(fmt, p.name, p, _sibling_meta(p))


def _sibling_meta(p: Path) -> dict:
    """The ``model_meta.json`` beside a model file ``mbk export`` wrote (its vocabulary size and max length: a
    trimmed vocabulary refuses the default ids), or {} for a file without one."""
    try:
        meta = read_json(p.parent / META)
    except (MbkError, OSError):  # none, or unreadable: the defaults
        return {}
    return meta if isinstance(meta, dict) and meta.get("model_file") == p.name else {}


def make_inputs(batch: int, seq: int, vocab_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed + 7919 * seq + batch)
    ids = rng.integers(1000, max(1001, min(vocab_size, 30000)), size=(batch, seq), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP] in BERT vocabularies
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def percentiles(times_ms: list[float]) -> dict[str, float]:
    a = np.asarray(times_ms)
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "mean_ms": float(a.mean()),
        "min_ms": float(a.min()),
        "runs": int(len(a)),
    }


def measure(
    cases: list[tuple[str, Callable[[dict], None], dict]], warmup: int, runs: int, rounds: int, progress: bool = False
) -> list[list[float]]:
    """Warm up every case, then time them in ``rounds`` interleaved rounds; returns ms per case (``progress``:
    a bar on stderr counting timed runs, updated between blocks of runs, never inside one)."""
    import sys

    from tqdm.auto import tqdm

    from mobilebert_kit.phone.resources.ort_worker import (
        interleaved_times,  # the side runtimes' worker times the same way
    )

    calls = [lambda fn=fn, batch=batch: fn(batch) for _, fn, batch in cases]
    with tqdm(total=len(calls) * runs, desc="timing", unit="run", disable=not progress, file=sys.stderr) as bar:
        return interleaved_times(calls, warmup, runs, rounds, done=bar.update)


@holds_output
def run(config: BenchConfig, ctx: RunContext | None = None) -> StageResult:
    """Benchmark; writes ``bench.json`` and ``bench.md`` into ``config.output``."""
    import torch

    ctx = ctx or RunContext()
    threads = torch.get_num_threads()
    try:  # timing changes torch's thread count; give the caller its own back
        return _run(config, ctx)
    finally:
        torch.set_num_threads(threads)


def _run(config: BenchConfig, ctx: RunContext) -> StageResult:
    check_output_dir(config.output, ctx.overwrite, config.input_paths())
    loaders = _targets(config)
    import onnxruntime  # noqa: F401  - import the runtimes first so per-model memory excludes library code
    import torch  # noqa: F401

    targets, runners, memory = _load_targets(loaders, config.threads, ctx.log)
    cases, keys, skipped = _cases(targets, runners, config)
    if not cases:
        raise ConfigError(
            "nothing to time: every case was skipped ("
            + "; ".join(dict.fromkeys(skipped))
            + "); choose --seq-lengths / --batch-sizes the models can take"
        )
    ctx.log(
        f"timing {len(cases)} cases × {config.runs} runs ({config.rounds} interleaved rounds, {config.warmup} warm-up) ..."
    )
    times = measure(cases, config.warmup, config.runs, config.rounds, progress=not ctx.quiet)
    rows = [_row(t, th, b, s, ms, memory[t.name]) for (t, th, b, s), ms in zip(keys, times)]
    side_rows, side_skipped = _side_runtime_rows(targets, cases, keys, config, ctx.log)
    rows += side_rows
    skipped += side_skipped
    result = {
        "rows": rows,
        "skipped": list(dict.fromkeys(skipped)),
        "config": config.to_dict(),
        "peak_rss_mb": peak_rss_mb(),
        "cpu_count": os.cpu_count(),
        "versions": library_versions(),
        "method": "warm-up, then interleaved rounds over all cases; memory = RSS growth on load + first run; "
        "rows '@ onnxruntime X': the same cases timed the same way in that version, in a subprocess after "
        "the host's cases (memory not measured)",
    }
    with staged_output(config.output, ctx.overwrite, config.input_paths()) as tmp:
        write_json(tmp / "bench.json", result)
        (tmp / "bench.md").write_text(markdown_table(rows, result), encoding="utf-8")
    out = Path(config.output)
    table = markdown_table(rows).split("\n", 2)[2].rstrip("\n")
    return StageResult(out, result, [table, f"Wrote {out / 'bench.json'} and {out / 'bench.md'}"])


def _load_targets(loaders: list[Loader], threads: list[int], log) -> tuple[list[Target], dict, dict[str, float]]:
    """Load every model with a runner per thread count; memory = RSS growth over load + first run."""
    targets: list[Target] = []
    runners: dict[tuple[str, int], Callable] = {}
    memory: dict[str, float] = {}
    for name, load in loaders:
        gc.collect()
        before = rss_mb()
        t = load()
        for th in threads:
            runners[(t.name, th)] = t.make(th)
            runners[(t.name, th)](make_inputs(1, min(16, t.max_length), t.vocab_size))  # first run allocates arenas
        memory[t.name] = max(0.0, rss_mb() - before)
        targets.append(t)
        log(f"loaded {name}: {t.size_bytes / 1e6:.1f} MB on disk, +{memory[t.name]:.0f} MB RSS")
    return targets, runners, memory


def _cases(targets: list[Target], runners: dict, config: BenchConfig) -> tuple[list, list, list[str]]:
    """Every (model, threads, batch, seq) case a model can run, and why the others are skipped."""
    cases, keys, skipped = [], [], []
    for t in targets:
        for th in config.threads[:1] if t.fixed_threads else config.threads:
            for b in config.batch_sizes:
                for s in config.seq_lengths:
                    if s > t.max_length:
                        skipped.append(f"{t.name}: seq {s} > max_length {t.max_length}")
                    elif t.max_batch is not None and b > t.max_batch:
                        skipped.append(f"{t.name}: batch {b} > its static batch {t.max_batch}")
                    else:
                        cases.append((t.name, runners[(t.name, th)], make_inputs(b, s, t.vocab_size, config.seed)))
                        keys.append((t, th, b, s))
    return cases, keys, skipped


def _side_runtime_rows(
    targets: list[Target], cases: list, keys: list, config: BenchConfig, log
) -> tuple[list[dict], list[str]]:
    """The ONNX Runtime cases timed again in each side onnxruntime version (a subprocess per model and
    version, same inputs, warm-up, runs and rounds; after the host's cases, not interleaved with them)."""
    from mobilebert_kit.phone.side_parity import SideRuntimes

    sides = SideRuntimes(config.runtime_versions, log)
    sides.prepare()
    rows: list[dict] = []
    skipped: list[str] = []
    for t in (t for t in targets if t.runtime == "onnxruntime" and t.fmt is not None):
        mine = [(k, inputs) for (_, _, inputs), k in zip(cases, keys) if k[0] is t]
        if not mine:
            continue
        by_shape: dict[tuple[int, int], dict] = {}  # one feed per (batch, seq), timed at every thread count
        for (_, _, b, s), inputs in mine:
            by_shape.setdefault((b, s), inputs)
        shapes = list(by_shape)
        threads = list(dict.fromkeys(th for (_, th, _, _), _ in mine))
        for version, rt, why in sides.for_format(t.fmt):
            if rt is None:
                skipped.append(f"{t.name} in onnxruntime {version}: {why}")
                continue
            log(f"timing {t.name} in onnxruntime {version} ({len(mine)} cases) ...")
            got = rt.time(t.path, list(by_shape.values()), threads, config.warmup, config.runs, config.rounds)
            for (_, th, b, s), _ in mine:
                row = _row(t, th, b, s, list(got[th][shapes.index((b, s))]), None)
                rows.append({**row, "model": f"{t.name} @ onnxruntime {version}", "runtime": f"onnxruntime {version}"})
    return rows, skipped


def _row(t: Target, threads: int, batch: int, seq: int, ms: list[float], memory_mb: float | None) -> dict:
    return {
        "model": t.name,
        "runtime": t.runtime,
        "path": str(t.path),
        "threads": "runtime default" if t.fixed_threads else threads,
        "batch": batch,
        "seq_len": seq,
        **percentiles(ms),
        "size_mb": t.size_bytes / 1e6,
        "memory_mb": memory_mb,
    }


def markdown_table(rows: list[dict], result: dict | None = None) -> str:
    head = "| model | runtime | threads | batch | seq | p50 ms | p90 ms | p99 ms | size MB | memory MB |\n"
    head += "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    body = "".join(
        f"| {r['model']} | {r['runtime']} | {r['threads']} | {r['batch']} | {r['seq_len']} | {r['p50_ms']:.2f} | "
        f"{r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['size_mb']:.1f} | "
        f"{'' if r['memory_mb'] is None else format(r['memory_mb'], '.0f')} |\n"
        for r in rows
    )
    foot = ""
    if result:
        foot = (
            f"\n{result['method']}. {result['config']['runs']} timed runs per case, peak process RSS "
            f"{result['peak_rss_mb']:.0f} MB, {result['cpu_count']} CPUs, onnxruntime {result['versions'].get('onnxruntime')}, "
            f"torch {result['versions'].get('torch')}.\n"
        )
        if result["skipped"]:
            foot += "\nSkipped: " + "; ".join(result["skipped"]) + "\n"
    return "# mbk bench\n\n" + head + body + foot
