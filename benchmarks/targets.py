"""Issue 12's targets, side by side in one run, on a finished `mbk run` folder.

On the run's test split, batch 1, 1 intra-op thread, interleaved rounds (every model timed on the
same input before the next input):

* the PyTorch fp32 teacher (``<run>/teacher``): size on disk, accuracy, latency;
* the packaged phone model (``<run>/package/android``'s model file, in ONNX Runtime);
* Optimum's dynamic INT8 of the same student (``optimum.exporters.onnx.main_export`` +
  ``ORTQuantizer`` with ``AutoQuantizationConfig.avx2(is_static=False)``), the peer path;
* with ``--litert`` (needs the ``litert`` extra), the Android LiteRT build of the same compressed
  model (``mbk export -f tflite``, as ``mbk package --target android --runtime litert`` bundles it,
  re-exported with a 128-token signature), in ``ai_edge_litert`` (XNNPACK, the kernels Android runs):
  each text padded to its length bucket, as the app pads it.

Latency at real text lengths (each test text tokenized without padding; a seeded sample) and at
sequence 128. The two ONNX Runtime models are timed in this environment's onnxruntime (beside the
teacher) and again in each ``--ort-versions`` runtime, by default the version the Android app pins
(``runtimes.ANDROID_ORT_VERSION``): what the phone runs, in a subprocess of its own (one process can
import one onnxruntime). The latency targets are checked in every runtime measured. Accuracy differences come with a paired 95% bootstrap interval over the same test
texts, so a difference inside the noise is reported as such. The default recipe's wall time is the
sum of the stage times recorded in ``<run>/.state``.

    python benchmarks/targets.py --run artifacts/runs/default
Writes ``benchmarks/results/targets.json`` and ``targets.md`` (``--name`` picks another stem).
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
from lib.inputs import encode_one, encode_texts, seeded_sample  # noqa: E402
from lib.ort_timing import HOST, expand_versions, time_in_runtime  # noqa: E402
from lib.results_io import cpu_line, write_results  # noqa: E402
from lib.runners import ort_runner, recipe_seconds, torch_runner  # noqa: E402
from lib.stats import paired_ci  # noqa: E402

from mobilebert_kit.artifacts import folder_size, library_versions, read_json  # noqa: E402
from mobilebert_kit.metrics import classification_metrics  # noqa: E402
from mobilebert_kit.runtimes import cpu_info  # noqa: E402

TEACHER, PHONE, OPTIMUM = "teacher (PyTorch fp32)", "phone model (mbk .ort)", "Optimum dynamic INT8"
LITERT = "phone model, LiteRT build (mbk .tflite, --runtime litert)"
TARGETS = {"accuracy_ratio": 0.99, "smaller": 10.0, "faster": 10.0, "vs_optimum_latency": 0.5, "recipe_minutes": 15}


def _litert_runner(path: Path, pad_id: int):
    from mobilebert_kit.formats.tflite import LiteRtRunner

    return LiteRtRunner(path, pad_id=pad_id, threads=1).logits


def litert_export(run_dir: Path, work: Path) -> Path:
    """The run's compressed model as ``mbk export -f tflite`` writes it (INT8 dynamic range, as compression.json
    asks), with signatures up to 128 tokens so that the seq-128 input runs unpadded."""
    from mobilebert_kit.stages.base import RunContext
    from mobilebert_kit.stages.export import ExportConfig, run

    cfg = ExportConfig(
        model=str(run_dir / "compressed"), output=str(work / "litert"), formats=["tflite"], max_length=128
    )
    run(cfg, RunContext(overwrite=True, quiet=True))
    return work / "litert" / "tflite" / "model.tflite"


def timed_texts(models: dict, enc: dict, idx, rounds: int, warmup: int = 5) -> dict[str, list[float]]:
    """ms per call of every model on the same inputs (``enc[model][i]``: text ``i`` through that model's own
    tokenizer), ``rounds`` times over ``idx``; per round, the models alternate order on every input."""
    names = list(models)
    for n in names:
        for i in idx[:warmup]:
            models[n]["runner"](enc[n][i])
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for j, i in enumerate(idx):
            for n in names if (j + r) % 2 == 0 else names[::-1]:
                t0 = time.perf_counter()
                models[n]["runner"](enc[n][i])
                out[n].append((time.perf_counter() - t0) * 1e3)
    return out


def accuracy(runner, enc: list[dict], labels: np.ndarray, n_labels: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """Metrics, which examples are right, and the predicted labels."""
    logits = np.concatenate([runner(x) for x in enc])
    return classification_metrics(logits, labels, n_labels), logits.argmax(-1) == labels, logits.argmax(-1)


def _host_ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _side_versions(spec: str) -> list[str]:
    """The ``--ort-versions`` other than this environment's (timed in-process already)."""
    return [v for v in expand_versions(spec) if v not in (HOST, _host_ort_version())]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="artifacts/runs/default", help="a finished `mbk run` folder")
    ap.add_argument("--real-texts", type=int, default=300, help="test texts timed at their real length")
    ap.add_argument("--runs-128", type=int, default=60, help="timed calls per model at seq 128")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", default="benchmarks/work/targets")
    ap.add_argument("--results", default="benchmarks/results")
    ap.add_argument("--name", default="targets", help="results file stem (e.g. targets-fast for recipes/fast.yaml)")
    ap.add_argument("--litert", action="store_true", help="also the LiteRT build (mbk export -f tflite)")
    ap.add_argument(
        "--ort-versions",
        default="android",
        help="other onnxruntime versions to time the ONNX Runtime models in, comma-separated "
        "('android': the version the Android app pins; 'none': only this environment's)",
    )
    args = ap.parse_args()
    res = measure(Path(args.run), Path(args.work), args)
    write_results(args.results, args.name, res, markdown(res))


def _models(run_dir: Path, work: Path, litert: bool = False) -> dict[str, dict]:
    meta = read_json(run_dir / "package" / "android" / "model_meta.json")
    phone = run_dir / "package" / "android" / meta["model_file"]
    teacher = run_dir / "teacher"
    print("Optimum export + dynamic INT8 of the student ...", file=sys.stderr)
    optimum = optimum_int8(run_dir / "student", work)
    models = {  # each with its own tokenizer: the bundle's trimmed vocabulary renumbers the word pieces
        TEACHER: {
            "path": teacher,
            "size": (teacher / "model.safetensors").stat().st_size,
            "runner": torch_runner(teacher),
            "tokenizer": teacher,
        },
        PHONE: {
            "path": phone,
            "size": folder_size(phone),
            "runner": ort_runner(phone),
            "tokenizer": phone.parent,
        },
        OPTIMUM: {
            "path": optimum,
            "size": folder_size(optimum),
            "runner": ort_runner(optimum),
            "tokenizer": run_dir / "student",
        },
    }
    if litert:
        print("LiteRT export of the compressed model ...", file=sys.stderr)
        tflite = litert_export(run_dir, work)
        tok = run_dir / "compressed"
        pad_id = int(read_json(tflite.parent / "model_meta.json").get("pad_token_id") or 0)
        models[LITERT] = {
            "path": tflite,
            "size": folder_size(tflite),
            "runner": _litert_runner(tflite, pad_id),
            "tokenizer": tok,
        }
    return models


def measure(run_dir: Path, work: Path, args) -> dict:
    from mobilebert_kit.artifacts import lineage
    from mobilebert_kit.data import data_config_for, load_dataset
    from mobilebert_kit.models import load_tokenizer

    work.mkdir(parents=True, exist_ok=True)
    student = run_dir / "student"
    max_length = int(lineage(student).get("max_length") or 128)
    ds = load_dataset(data_config_for(student, None))
    test = ds.splits["test"]
    labels = np.asarray(test.labels)
    models = _models(run_dir, work, getattr(args, "litert", False))
    tokenizers = {n: load_tokenizer(str(m["tokenizer"])) for n, m in models.items()}
    enc = {n: encode_texts(tok, test, max_length) for n, tok in tokenizers.items()}
    res: dict = {"run": str(run_dir), "n_test": len(test), "max_length": max_length, "models": {}, "side_runtimes": {}}
    correct, host_labels = {}, {}
    for name, m in models.items():
        print(f"accuracy: {name} ...", file=sys.stderr)
        metrics, correct[name], host_labels[name] = accuracy(m["runner"], enc[name], labels, len(ds.label_names))
        res["models"][name] = {"path": str(m["path"]), "size_bytes": m["size"], **metrics}
        if name == LITERT:
            from mobilebert_kit.formats.tflite import runtime_version

            res["models"][name]["runtime_version"] = runtime_version()
    idx = seeded_sample(len(test), args.real_texts)
    print("latency at real lengths ...", file=sys.stderr)
    t_real = timed_texts(models, enc, idx, args.rounds)
    print("latency at seq 128 ...", file=sys.stderr)
    long_text = " ".join(test.texts[:60])  # real words, truncated at 128 tokens by each model's tokenizer
    enc128 = {n: [encode_one(tok, long_text, 128)] for n, tok in tokenizers.items()}
    t128 = timed_texts(models, enc128, [0] * max(1, args.runs_128 // args.rounds), args.rounds)
    for n in models:
        res["models"][n]["p50_ms_real"] = float(np.median(t_real[n]))
        res["models"][n]["p50_ms_128"] = float(np.median(t128[n]))
    first = next(iter(enc.values()))
    res["real_length_median_tokens"] = int(np.median([int(first[i]["input_ids"].shape[1]) for i in idx]))
    res["host_onnxruntime"] = _host_ort_version()
    ort_models = {n: m["path"] for n, m in models.items() if n not in (TEACHER, LITERT)}
    for version in _side_versions(args.ort_versions):
        print(f"accuracy and latency in onnxruntime {version} ...", file=sys.stderr)
        feeds = {n: {"test": enc[n], "128": enc128[n]} for n in ort_models}
        timed = {"test": [int(i) for i in idx], "128": [0] * max(1, args.runs_128 // args.rounds)}
        r = time_in_runtime(version, ort_models, feeds, timed, args.rounds, logits_set="test")
        res["side_runtimes"][r["version"]] = {
            n: {
                **classification_metrics(np.asarray(r["logits"][n]), labels, len(ds.label_names)),
                "label_agreement_with_host": float((np.asarray(r["logits"][n]).argmax(-1) == host_labels[n]).mean()),
                "p50_ms_real": float(np.median(r["times_ms"]["test"][n])),
                "p50_ms_128": float(np.median(r["times_ms"]["128"][n])),
            }
            for n in ort_models
        }
    res["recipe_seconds"] = recipe_seconds(run_dir)
    res["checks"] = checks(res, correct)
    res["versions"] = library_versions()
    res["cpu"] = cpu_info()
    return res


def checks(res: dict, correct: dict) -> dict:
    t, total = res["models"][TEACHER], res["recipe_seconds"]["total"]
    return {
        **_accuracy_and_size_checks(res, correct, PHONE, ""),
        "recipe_minutes": {"value": total / 60 if total else None, "target": TARGETS["recipe_minutes"]},
        **_latency_checks(t, res["models"], res["host_onnxruntime"]),
        **{
            k: v for version, side in res["side_runtimes"].items() for k, v in _latency_checks(t, side, version).items()
        },
        **(_litert_checks(res, correct) if LITERT in res["models"] else {}),
    }


def _accuracy_and_size_checks(res: dict, correct: dict, name: str, suffix: str) -> dict:
    """Model ``name`` against the teacher (accuracy ratio with its paired interval, how much smaller) and
    against Optimum's graph (size, accuracy); each key ends in ``suffix``."""
    t, m, o = res["models"][TEACHER], res["models"][name], res["models"][OPTIMUM]
    return {
        f"accuracy_ratio{suffix}": {
            "value": m["accuracy"] / t["accuracy"],
            "target": TARGETS["accuracy_ratio"],
            "diff_vs_teacher": list(paired_ci(correct[name], correct[TEACHER])),
        },
        f"smaller{suffix}": {"value": t["size_bytes"] / m["size_bytes"], "target": TARGETS["smaller"]},
        f"vs_optimum_size{suffix}": {"value": m["size_bytes"] / o["size_bytes"], "target": 1.0},
        f"vs_optimum_accuracy{suffix}": {"diff": list(paired_ci(correct[name], correct[OPTIMUM]))},
    }


def _litert_checks(res: dict, correct: dict) -> dict:
    """The same targets for the LiteRT build; its latency against Optimum's in every onnxruntime measured."""
    t, lt = res["models"][TEACHER], res["models"][LITERT]
    optimums = {res["host_onnxruntime"]: res["models"][OPTIMUM]}
    optimums.update({v: side[OPTIMUM] for v, side in res["side_runtimes"].items()})
    return {
        **_accuracy_and_size_checks(res, correct, LITERT, " @ litert"),
        **_faster_checks(t, lt, " @ litert"),
        **{
            k: v
            for version, o in optimums.items()
            for k, v in _vs_optimum_latency_checks(lt, o, f" @ litert vs Optimum @ ort {version}").items()
        },
    }


def _latency_checks(t: dict, side: dict, version: str) -> dict:
    """The latency targets with the ONNX Runtime models timed in onnxruntime ``version`` (the teacher
    stays PyTorch, timed beside the host runtime's models)."""
    suffix = f" @ ort {version}"
    return {**_faster_checks(t, side[PHONE], suffix), **_vs_optimum_latency_checks(side[PHONE], side[OPTIMUM], suffix)}


def _faster_checks(t: dict, m: dict, suffix: str) -> dict:
    return {
        f"faster_{length}{suffix}": {
            "value": t[f"p50_ms_{length}"] / m[f"p50_ms_{length}"],
            "target": TARGETS["faster"],
        }
        for length in ("real", "128")
    }


def _vs_optimum_latency_checks(m: dict, o: dict, suffix: str) -> dict:
    return {
        f"vs_optimum_latency_{length}{suffix}": {
            "value": m[f"p50_ms_{length}"] / o[f"p50_ms_{length}"],
            "target": TARGETS["vs_optimum_latency"],
        }
        for length in ("real", "128")
    }


def _verdict(name: str, c: dict) -> str:
    if name.startswith("vs_optimum_accuracy"):
        d, lo, hi = c["diff"]
        if lo > 0:
            return "met (better, outside noise)"
        return "met within noise" if hi >= 0 else "NOT met (worse, outside noise)"
    if c["value"] is None:
        return "not measured"
    lower_is_better = name.startswith("vs_optimum") or name == "recipe_minutes"  # also the "@ ort X" rows
    ok = c["value"] <= c["target"] if lower_is_better else c["value"] >= c["target"]
    return "met" if ok else "NOT met"


def _runtime_role(version: str) -> str:
    from mobilebert_kit.runtimes import ANDROID_ORT_VERSION

    return "the Android app's" if version == ANDROID_ORT_VERSION else "side install"


def markdown(res: dict) -> str:
    rows = [
        "# Issue 12 targets, side by side in one run",
        "",
        f"Run `{res['run']}`, {res['n_test']} test texts, batch 1, 1 thread, interleaved; real lengths: "
        f"median {res['real_length_median_tokens']} tokens. CPU: {cpu_line(res.get('cpu'))}.",
        "",
        "| model | size MB | accuracy | macro-F1 | p50 ms real lengths | p50 ms seq 128 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    host = res.get("host_onnxruntime", "host")
    for n, m in res["models"].items():
        where = {TEACHER: "", LITERT: f", ai-edge-litert {m.get('runtime_version')} (XNNPACK)"}.get(
            n, f", onnxruntime {host} (this machine's)"
        )
        rows.append(f"| {n}{where} | {m['size_bytes'] / 1e6:.1f} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | "
                    f"{m['p50_ms_real']:.2f} | {m['p50_ms_128']:.2f} |")  # fmt: skip
    for version, side in res.get("side_runtimes", {}).items():
        for n, m in side.items():
            rows.append(f"| {n}, onnxruntime {version} ({_runtime_role(version)}) | {res['models'][n]['size_bytes'] / 1e6:.1f} | "
                        f"{m['accuracy']:.4f} | {m['macro_f1']:.4f} | {m['p50_ms_real']:.2f} | {m['p50_ms_128']:.2f} |")  # fmt: skip
    rows += ["", "| target | value | goal | verdict |", "|---|---:|---:|---|"]
    for name, c in res["checks"].items():
        if name.startswith("vs_optimum_accuracy"):
            d, lo, hi = c["diff"]
            value = f"{d * 100:+.2f} pt (95% CI {lo * 100:+.2f} … {hi * 100:+.2f})"
            goal = ">= Optimum"
        else:
            value = "n/a" if c["value"] is None else f"{c['value']:.3f}"
            goal = f"{c['target']}"
        rows.append(f"| {name} | {value} | {goal} | {_verdict(name, c)} |")
    d, lo, hi = res["checks"]["accuracy_ratio"]["diff_vs_teacher"]
    rows += ["", f"Phone model vs teacher, paired: {d * 100:+.2f} pt (95% CI {lo * 100:+.2f} … {hi * 100:+.2f}); "
             f"one test text is {100 / res['n_test']:.2f} pt."]  # fmt: skip
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
