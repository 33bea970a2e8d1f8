"""What benchmarks score models with: a PyTorch classifier and an ONNX Runtime session as batch -> logits
callables (one intra-op thread, as the phone runs them), and a run's minutes per stage. (A model's size on disk:
``mobilebert_kit.artifacts.folder_size``.)"""

from __future__ import annotations

from pathlib import Path


def torch_runner(folder: Path):
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.set_num_threads(1)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()

    def run(x: dict):
        with torch.inference_mode():
            return model(**{k: torch.from_numpy(v) for k, v in x.items()}).logits.numpy()

    return run


def ort_runner(path: Path):
    from mobilebert_kit.graph import onnx_tools as ot

    sess = ot.session(path, threads=1)

    def run(x: dict):
        return sess.run(None, ot.feeds_for(sess, x))[0]

    return run


def recipe_seconds(run_dir: Path) -> dict:
    """Seconds per stage of an `mbk run` folder, from its step state files, and their total."""
    from mobilebert_kit.artifacts import read_json

    state = run_dir / ".state"
    recs = {p.stem: read_json(p) for p in sorted(state.glob("*.json"))} if state.is_dir() else {}
    per = {k: v.get("seconds") for k, v in recs.items() if v.get("seconds") is not None}
    return {"per_stage": per, "total": sum(per.values()) if per else None}
