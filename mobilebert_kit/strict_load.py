"""Strict model loading: the weights in a folder must be exactly the model its config describes.

transformers fills any weight it cannot find (or whose shape differs) with random values, drops any
weight it does not expect, and only logs it, which mbk turns down. A ``config.json`` that names another
depth or width than the weights then "trains" into a coin-flip model without a word. Here every load
asks transformers for its loading info and refuses anything that does not fit, with one line saying
what the config describes and what the weights hold.

The one re-initialisation allowed is a new classification head (and a base encoder's missing pooler,
which only the head reads) when fine-tuning starts from a base encoder or from a classifier with
another label count; the pretraining heads such a checkpoint carries (``cls.*``, ``lm_head.*``) are
dropped. Both are named in one log line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from mobilebert_kit.errors import ModelError

# top-level modules of a sequence-classification head across the BERT family (BERT/MPNet: classifier,
# DistilBERT: pre_classifier + classifier, others: score)
HEAD_PREFIXES = ("classifier.", "pre_classifier.", "score.")
# pretraining heads a base checkpoint may carry; a classifier does not use them
PRETRAINING_PREFIXES = ("cls.", "lm_head.", "predictions.", "generator_lm_head.", "sop_classifier.")
_LAYER = re.compile(r"\.layers?\.(\d+)\.")
_EXAMPLES = 3


def load_strictly(load: Callable, folder: Path, *, new_head_ok: bool = False, log: Callable | None = None):
    """Call ``load(output_loading_info=True, ignore_mismatched_sizes=True)`` and check what it reports.

    Args:
        load: ``functools.partial`` of a ``from_pretrained`` with everything but those two arguments.
        folder: the model folder (for the message and to read the weights' shapes).
        new_head_ok: fine-tuning: a missing or re-shaped classification head may be initialised afresh.
        log: where the one line naming a new head goes.

    Raises:
        ModelError: a weight the config expects is missing or has another shape, or the folder holds a
            weight the model does not use (other than a pretraining head when ``new_head_ok``).
    """
    model, info = load(output_loading_info=True, ignore_mismatched_sizes=True)
    missing = sorted(info.get("missing_keys") or [])
    unexpected = sorted(info.get("unexpected_keys") or [])
    mismatched = sorted(k if isinstance(k, str) else k[0] for k in info.get("mismatched_keys") or [])
    new_head, dropped = [], []
    if new_head_ok:
        new_head = [k for k in missing + mismatched if _is_head(k)]
        missing = [k for k in missing if k not in new_head]
        mismatched = [k for k in mismatched if k not in new_head]
        dropped = [k for k in unexpected if _is_pretraining_head(k)]
        unexpected = [k for k in unexpected if k not in dropped]
    if missing or unexpected or mismatched:
        raise ModelError(misfit_message(folder, model.config, missing, unexpected, mismatched))
    if (new_head or dropped) and log is not None:
        log(new_head_line(new_head, dropped))
    return model


def _is_head(key: str) -> bool:
    return key.startswith(HEAD_PREFIXES) or ".pooler." in key or key.startswith("pooler.")


def _is_pretraining_head(key: str) -> bool:
    # a pooler the classifier does not build (MPNet's classifier reads the first token, not the pooler)
    return key.startswith(PRETRAINING_PREFIXES) or ".pooler." in key or key.startswith("pooler.")


def new_head_line(new_head: list[str], dropped: list[str]) -> str:
    """The one log line naming the weights initialised afresh (and the pretraining head left out)."""
    parts = []
    if new_head:
        parts.append(f"model: new classification head, initialised randomly: {', '.join(sorted(new_head))}")
    if dropped:
        heads = sorted({k.split(".")[0] + ".*" for k in dropped})
        parts.append(f"the checkpoint's pretraining head is not used ({len(dropped)} tensors: {', '.join(heads)})")
    return "; ".join(parts)


def misfit_message(folder: Path, config, missing: list[str], unexpected: list[str], mismatched: list[str]) -> str:
    """One line: what the config describes, what the weights hold, which weights differ, and the fix."""
    shapes = checkpoint_shapes(folder)
    said = describe(_config_shape(config))
    found = describe(_weights_shape(shapes)) if shapes else "unreadable shapes"
    details = []
    if missing:
        details.append(f"{len(missing)} missing (e.g. {_some(missing)})")
    if unexpected:
        details.append(f"{len(unexpected)} not used by the config's model (e.g. {_some(unexpected)})")
    if mismatched:
        details.append(f"{len(mismatched)} with another shape (e.g. {_some(mismatched)})")
    return (
        f"the weights in {folder} do not fit its config.json: the config says {said}, the weights have {found} "
        f"({'; '.join(details)}); nothing was loaded. Fix config.json to describe these weights, or re-run the "
        "stage that wrote the folder"
    )


def _some(keys: list[str]) -> str:
    more = f", +{len(keys) - _EXAMPLES} more" if len(keys) > _EXAMPLES else ""
    return ", ".join(keys[:_EXAMPLES]) + more


def describe(shape: dict) -> str:
    names = (("layers", "{} layers"), ("hidden", "hidden {}"), ("ffn", "FFN {}"), ("vocab", "vocabulary {}"))
    return ", ".join(fmt.format(shape[k]) for k, fmt in names if shape.get(k) is not None) or "an unknown shape"


def _config_shape(config) -> dict:
    return {
        "layers": getattr(config, "num_hidden_layers", None),
        "hidden": getattr(config, "hidden_size", None),
        "ffn": getattr(config, "intermediate_size", None),
        "vocab": getattr(config, "vocab_size", None),
    }


def _weights_shape(shapes: dict[str, tuple]) -> dict:
    """Depth, width, FFN and vocabulary read off the tensors' names and shapes."""
    layers = {int(m.group(1)) for k in shapes for m in [_LAYER.search(k)] if m}
    out: dict = {"layers": max(layers) + 1 if layers else 0}
    for key, shape in shapes.items():
        if key.endswith("word_embeddings.weight") and len(shape) == 2:
            out["vocab"] = shape[0]
            out.setdefault("hidden", shape[1])
        elif re.search(r"attention\.self\.query\.weight$|attn\.q\.weight$", key) and len(shape) == 2:
            out["hidden"] = shape[0]
        elif key.endswith("intermediate.dense.weight") and len(shape) == 2:
            out["ffn"] = shape[0]
    return out


def checkpoint_shapes(folder: Path) -> dict[str, tuple]:
    """Every tensor's name and shape in a folder's weights, read from the file headers (safetensors)
    or a memory-mapped, weights-only torch load (pickle); empty when nothing can be read."""
    folder = Path(folder)
    shapes: dict[str, tuple] = {}
    try:
        files = sorted(folder.glob("*.safetensors"))
        if files:
            from safetensors import safe_open

            for f in files:
                with safe_open(str(f), framework="pt") as st:
                    for k in st.keys():  # noqa: SIM118 - safe_open is not a mapping
                        shapes[k] = tuple(st.get_slice(k).get_shape())
            return shapes
        import torch

        for f in sorted(folder.glob("*.bin")):
            state = torch.load(f, map_location="cpu", weights_only=True, mmap=True)
            shapes.update({k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")})
    except Exception:  # noqa: BLE001 - shapes only enrich the message; the refusal stands without them
        return {}
    return shapes
