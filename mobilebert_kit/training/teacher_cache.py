"""The teacher's outputs for distillation, computed once and cached on disk.

One inference pass in length-sorted batches (:func:`mobilebert_kit.batching.pad_encoded`) gives
the logits, plus the hidden states / attention maps the intermediate losses need, stored flat
(no padding) in a safetensors file. The file's name comes from the *slot* (teacher path, role of
the data, what is cached); the *key* stored inside covers everything the outputs depend on
(teacher weights, texts, max length, what is cached). A file whose key no longer matches, or
that cannot be read, is rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mobilebert_kit.training.int8_teacher import MAX_KL
from mobilebert_kit.training.teacher_precision import as_checked, checked_teacher

CACHE_FORMAT = "1"


def default_cache_dir() -> Path:
    return Path(os.environ.get("MBK_CACHE", Path.home() / ".cache" / "mobilebert_kit")) / "teacher_cache"


def teacher_weights_sha(folder: str | Path) -> str:
    """One digest of a model folder's weights and config.json (what the teacher outputs depend on)."""
    from mobilebert_kit.artifacts import sha256_file

    folder = Path(folder)
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if f.is_file() and (f.suffix in (".safetensors", ".bin") or f.name == "config.json"):
            h.update(f.name.encode())
            h.update(sha256_file(f).encode())
    return h.hexdigest()


@dataclass
class TeacherOutputs:
    logits: np.ndarray  # [N, C] float32
    hidden: list[np.ndarray] | None = None  # per example [seq, mapped layers, hidden] float16
    attentions: list[Any] | None = None  # per example torch float16 [mapped layers, heads, seq, seq]
    status: str = "built"  # built | hit | stale-rebuilt
    path: str = ""
    seconds: float = 0.0
    int8_check: dict | None = None  # an int8/bf16 pass's check against the fp32 teacher (teacher_precision)

    def __add__(self, other: TeacherOutputs) -> TeacherOutputs:
        """Both sets of rows, ``self``'s first (the training text, then the unlabeled text)."""
        return TeacherOutputs(
            logits=np.concatenate([self.logits, other.logits]),
            hidden=None if self.hidden is None else self.hidden + other.hidden,
            attentions=None if self.attentions is None else self.attentions + other.attentions,
            status=self.status if self.status == other.status else f"{self.status}+{other.status}",
            path=self.path,
            seconds=self.seconds + other.seconds,
            int8_check=self.int8_check,
        )


def teacher_outputs(
    teacher,
    tokenizer,
    texts: list[str],
    pairs: list[str] | None,
    *,
    max_length: int,
    hidden_layers: list[int],
    attention_layers: list[int],
    cache_dir: Path,
    slot: dict,
    teacher_sha: str,
    batch_size: int,
    device,
    log: Callable[[str], None],
    progress: bool = False,
    precision: str = "fp32",
    temperature: float = 3.0,
    checked: dict | None = None,
) -> TeacherOutputs:
    """The teacher's outputs for ``texts``, from the cache when its key matches, else computed
    once and written atomically. ``slot`` names the cache file (teacher path, role of the data);
    the key stored inside covers everything the outputs depend on. ``precision`` ``int8`` runs the
    pass with dynamic INT8 Linear layers (CPU; the caller resolves it with the device), checked against
    the fp32 teacher's soft labels at ``temperature`` on a sample first; ``checked``, the report of a check
    already made on this teacher (another text of the same run), is applied instead of checking again."""
    what: dict[str, Any] = {"logits": True, "hidden_layers": hidden_layers, "attention_layers": attention_layers}
    if precision != "fp32":  # fp32 keys stay as they were, so existing caches still hit
        what.update(precision=precision, temperature=temperature, max_kl=MAX_KL)
    key = _cache_key(teacher_sha, texts, pairs, max_length, what)
    name = hashlib.sha256(
        json.dumps({**slot, "max_length": max_length, "what": what}, sort_keys=True, default=str).encode()
    ).hexdigest()[:24]
    path = Path(cache_dir) / f"{name}.safetensors"
    t0 = time.perf_counter()
    status = "built"
    if path.exists():
        out = _read_cache(path, key, len(texts), hidden_layers, attention_layers, log)
        if out is not None:
            out.status, out.path, out.seconds = "hit", str(path), time.perf_counter() - t0
            return out
        status = "stale-rebuilt"
    else:
        log(f"teacher cache: computing teacher outputs for {len(texts)} texts -> {path}")
    check = None
    if precision != "fp32" and checked:
        teacher, check = as_checked(teacher, checked), checked
    elif precision != "fp32":  # int8 | bf16 | auto (mobilebert_kit.training.teacher_precision)
        teacher, check = checked_teacher(
            teacher, tokenizer, texts, pairs, plan=precision, max_length=max_length, temperature=temperature, log=log
        )
    tensors = _teacher_pass(
        teacher, tokenizer, texts, pairs, max_length, hidden_layers, attention_layers, batch_size, device, progress
    )
    metadata = {
        "key": key,
        "format": CACHE_FORMAT,
        "what": json.dumps(what),
        "teacher_sha256": teacher_sha,
        "n": str(len(texts)),
        **({"int8_check": json.dumps(check)} if check else {}),
    }
    _write_cache(path, tensors, metadata)
    out = _unpack(tensors, len(texts), hidden_layers, attention_layers)
    out.status, out.path, out.seconds, out.int8_check = status, str(path), time.perf_counter() - t0, check
    return out


def _texts_sha(texts: list[str], pairs: list[str] | None) -> str:
    h = hashlib.sha256()
    for i, t in enumerate(texts):
        h.update(t.encode())
        h.update(b"\x1e" + (pairs[i].encode() if pairs else b"") + b"\x1f")
    return h.hexdigest()


def _cache_key(teacher_sha: str, texts: list[str], pairs: list[str] | None, max_length: int, what: dict) -> str:
    """Everything the cached outputs depend on; a stored key that differs means a stale file."""
    parts = {
        "format": CACHE_FORMAT,
        "teacher": teacher_sha,
        "texts": _texts_sha(texts, pairs),
        "n": len(texts),
        "max_length": max_length,
        "what": what,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _read_cache(path: Path, key: str, n: int, hidden_layers, attention_layers, log) -> TeacherOutputs | None:
    """The cached outputs when ``path`` holds ``key``; ``None`` (logged) when stale or unreadable."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get("key") == key:
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no items()
                out = _unpack(tensors, n, hidden_layers, attention_layers)
                out.int8_check = json.loads(f.metadata()["int8_check"]) if "int8_check" in f.metadata() else None
                log(f"teacher cache: hit {path} ({n} texts)")
                return out
        log(f"teacher cache: stale {path} (teacher weights, texts or max length changed), rebuilding")
    except Exception as e:  # noqa: BLE001 - a corrupt cache file is rebuilt, never trusted
        log(f"teacher cache: unreadable {path} ({type(e).__name__}), rebuilding")
    return None


def _write_cache(path: Path, tensors: dict, metadata: dict) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _teacher_pass(
    model, tokenizer, texts, pairs, max_length, hidden_layers, attention_layers, batch_size, device, progress=False
) -> dict:
    """One inference pass in length-sorted batches; per-token outputs are stored flat (no padding)."""
    import torch

    from mobilebert_kit.batching import encode, pad_encoded, text_progress

    enc = encode(tokenizer, texts, pairs, max_length)
    lengths = np.array([len(x) for x in enc["input_ids"]], dtype=np.int64)
    store = _FlatStore(model.config, lengths, hidden_layers, attention_layers)
    model = model.to(device)
    model.eval()
    with torch.inference_mode(), text_progress(len(texts), "teacher pass" if progress else None) as bar:
        for idx, batch in pad_encoded(tokenizer, enc, batch_size, return_tensors="pt"):
            batch = {k: v.to(device) for k, v in batch.items()}
            out = model(**batch, output_hidden_states=bool(hidden_layers), output_attentions=bool(attention_layers))
            store.add(idx, out)
            bar.update(len(idx))
    return store.tensors()


class _FlatStore:
    """The pass's outputs in example order: logits ``[N, C]``; hidden states and attention maps
    of every example one after the other (``lengths`` says where each starts), in float16."""

    def __init__(self, config, lengths: np.ndarray, hidden_layers: list[int], attention_layers: list[int]):
        import torch

        self.lengths, self.hidden_layers, self.attention_layers = lengths, hidden_layers, attention_layers
        self.heads = config.num_attention_heads
        self.logits = torch.zeros((len(lengths), config.num_labels), dtype=torch.float32)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        self.hidden = (
            torch.zeros((int(self.offsets[-1]), len(hidden_layers), config.hidden_size), dtype=torch.float16)
            if hidden_layers
            else None
        )
        self.a_offsets = np.concatenate([[0], np.cumsum(len(attention_layers) * self.heads * lengths**2)])
        self.attn = torch.zeros(int(self.a_offsets[-1]), dtype=torch.float16) if attention_layers else None

    def add(self, idx: np.ndarray, out) -> None:
        import torch

        self.logits[idx] = out.logits.float().cpu()
        for r, i in enumerate(idx):
            n = int(self.lengths[i])
            if self.hidden is not None:
                self.hidden[self.offsets[i] : self.offsets[i + 1]] = (
                    torch.stack([out.hidden_states[layer + 1][r, :n] for layer in self.hidden_layers], dim=1)
                    .half()
                    .cpu()
                )
            if self.attn is not None:
                self.attn[self.a_offsets[i] : self.a_offsets[i + 1]] = (
                    torch.stack([out.attentions[layer][r, :, :n, :n] for layer in self.attention_layers])
                    .half()
                    .reshape(-1)
                    .cpu()
                )

    def tensors(self) -> dict:
        import torch

        tensors = {"logits": self.logits, "lengths": torch.from_numpy(self.lengths)}
        if self.hidden is not None:
            tensors["hidden"] = self.hidden
        if self.attn is not None:
            tensors["attention"] = self.attn
            tensors["attention_heads"] = torch.tensor([self.heads], dtype=torch.int64)
        return tensors


def _unpack(tensors: dict, n: int, hidden_layers: list[int], attention_layers: list[int]) -> TeacherOutputs:
    logits = tensors["logits"].numpy()
    lengths = tensors["lengths"].numpy()
    if logits.shape[0] != n or lengths.shape[0] != n:
        raise ValueError(f"cache holds {logits.shape[0]} rows, expected {n}")
    hidden = attn = None
    if hidden_layers:
        flat = tensors["hidden"].numpy()
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        hidden = [flat[offsets[i] : offsets[i + 1]] for i in range(n)]  # views, no copy
    if attention_layers:
        heads = int(tensors["attention_heads"][0])
        flat = tensors["attention"]
        sizes = len(attention_layers) * heads * lengths**2
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        attn = [
            flat[offsets[i] : offsets[i + 1]].view(len(attention_layers), heads, int(lengths[i]), int(lengths[i]))
            for i in range(n)
        ]
    return TeacherOutputs(logits=logits, hidden=hidden, attentions=attn)
