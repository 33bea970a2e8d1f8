"""``mbk distill``: turn the fine-tuned teacher into a small student with knowledge distillation.

The student starts from one of three places: a copy of some teacher layers (``layers``, the
DistilBERT/PKD trick; default every other layer), another HF model sharing the tokenizer
(``student``), or a fresh architecture (``student_config``, random init).

Loss per batch: ``alpha * KL(student/T || teacher/T) * T^2 + (1 - alpha) * CE(student, labels)``
plus optional TinyBERT/TextBrewer-style intermediate losses: hidden-state MSE (through a learned
projection when widths differ) and attention-map MSE, each with its own weight.

Fast by design: the teacher runs *once* over the data, and its logits (plus the hidden states /
attention maps the losses need) are cached on disk, keyed by the teacher weights, the texts, the
max length and what is cached. Training then goes through the shared engine (``engine.train``)
with the cached outputs attached to each example, so a step costs one student forward/backward.
A cache whose key no longer matches (retrained teacher, edited data) is rebuilt, never reused.

Output folder (default ``artifacts/student/``): save_pretrained model + tokenizer, labels.json,
metrics.json (teacher and student side by side), manifest.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mobilebert_kit.config import StageConfig, check_range
from mobilebert_kit.data import DataConfig
from mobilebert_kit.engine import TrainConfig
from mobilebert_kit.errors import ConfigError, DataError, ModelError
from mobilebert_kit.stage import RunContext, StageResult

CACHE_FORMAT = "1"
_LAYER_KEY = re.compile(r"(^|\.)layer\.(\d+)\.")


@dataclass
class StudentArch(StageConfig):
    """A fresh student architecture (random init); omitted sizes are taken from the teacher."""

    hidden_size: int | None = None
    num_layers: int | None = None
    num_heads: int | None = None
    intermediate_size: int | None = None  # default 4 x hidden_size

    def validate(self) -> list[str]:
        p: list[str] = []
        for name in ("hidden_size", "num_layers", "num_heads", "intermediate_size"):
            check_range(p, f"student_config.{name}", getattr(self, name), 1)
        if self.hidden_size and self.num_heads and self.hidden_size % self.num_heads:
            p.append(
                f"student_config.hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})"
            )
        return p


@dataclass
class DistillConfig(StageConfig):
    teacher: str = "artifacts/teacher"  # fine-tuned classifier folder (mbk finetune output)
    layers: list[int] | None = None  # copy these teacher layers (0-based); default: every other layer
    student: str | None = None  # or: any HF model/folder with the teacher's tokenizer
    student_config: StudentArch | None = None  # or: a fresh architecture, random init
    temperature: float = 3.0
    alpha: float = 0.5  # weight of the soft loss (KL * T^2); 1 - alpha weighs the hard-label CE
    hidden_weight: float = 0.0  # hidden-state MSE (0 = off)
    attention_weight: float = 0.0  # attention-map MSE (0 = off)
    layer_map: list[int] | None = None  # teacher layer (0-based) each student layer mimics; default uniform
    unlabeled: str | None = None  # 'builtin' (the dataset's own raw text) or a .txt/.csv/.tsv/.jsonl file
    max_unlabeled: int | None = None  # seeded subset of the unlabeled text
    cache_dir: str | None = None  # default $MBK_CACHE/teacher_cache (~/.cache/mobilebert_kit/teacher_cache)
    data: DataConfig | None = None  # None = the data recorded in the teacher's manifest
    train: TrainConfig = field(default_factory=TrainConfig)
    output: str = "artifacts/student"

    def validate(self) -> list[str]:
        p: list[str] = []
        check_range(p, "temperature", self.temperature, 0, lo_open=True)
        check_range(p, "alpha", self.alpha, 0, 1)
        check_range(p, "hidden_weight", self.hidden_weight, 0)
        check_range(p, "attention_weight", self.attention_weight, 0)
        check_range(p, "max_unlabeled", self.max_unlabeled, 1)
        chosen = [
            n
            for n, v in (("layers", self.layers), ("student", self.student), ("student_config", self.student_config))
            if v is not None
        ]
        if len(chosen) > 1:
            p.append(f"choose one student initialisation: {' or '.join(chosen)}, not both")
        for name, values in (("layers", self.layers), ("layer_map", self.layer_map)):
            if values is None:
                continue
            if not values:
                p.append(f"{name} must list at least one teacher layer")
            if any(v < 0 for v in values):
                p.append(f"{name} must be teacher layer indices >= 0; got {','.join(map(str, values))}")
            if name == "layers" and len(set(values)) != len(values):
                dup = sorted({v for v in values if values.count(v) > 1})
                p.append(
                    f"layers lists teacher layer {','.join(map(str, dup))} more than once; got {','.join(map(str, values))}"
                )
        if self.layer_map is not None and not (self.hidden_weight or self.attention_weight):
            p.append("layer_map only matters with hidden_weight or attention_weight > 0")
        return p

    @property
    def init_method(self) -> str:
        return "student" if self.student else "student_config" if self.student_config else "layers"


# --------------------------------------------------------------------------- config helpers for the CLI / recipes


def inherit_from_teacher(section: dict, teacher: str, data_given: dict) -> dict:
    """Fill a distill config section from the teacher's lineage: its data (with the user's data
    options laid over it) and its max_length, unless given. Returns the section."""
    from mobilebert_kit.data import lineage

    found = lineage(teacher)
    if "data" in data_given:
        section["data"] = data_given
    elif data_given:
        if found["data"] is None and Path(teacher).is_dir():  # a missing teacher is reported by run()
            raise DataError(
                f"{teacher} records no training data (no manifest.json with a 'data' entry); pass --data explicitly"
            )
        section["data"] = {**(found["data"] or {}), **data_given}
    train = section.setdefault("train", {})
    if "max_length" not in train and found["max_length"] is not None:
        train["max_length"] = found["max_length"]
    return section


# --------------------------------------------------------------------------- students


def every_other_layer(n: int) -> list[int]:
    return list(range(0, n, 2))


def uniform_layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """TinyBERT's uniform map: student layer j mimics teacher layer (j+1)*Lt/Ls - 1 (last ↔ last)."""
    return [(j + 1) * teacher_layers // student_layers - 1 for j in range(student_layers)]


def copy_layers_student(teacher, layers: list[int]):
    """A student with the teacher's embeddings, the chosen encoder layers (in that order), pooler
    and classifier, copied weight for weight."""
    import copy

    from transformers import AutoModelForSequenceClassification

    n = _num_layers(teacher.config)
    bad = [i for i in layers if not 0 <= i < n]
    if bad:
        raise ConfigError(f"layers {','.join(map(str, bad))} out of range: the teacher has {n} layers (0..{n - 1})")
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layers)
    student = AutoModelForSequenceClassification.from_config(config)
    src = teacher.state_dict()
    state = {}
    for key in student.state_dict():
        m = _LAYER_KEY.search(key)
        tkey = key if m is None else key[: m.start(2)] + str(layers[int(m.group(2))]) + key[m.end(2) :]
        if tkey not in src:
            raise ModelError(
                f"cannot copy layers from this teacher ({type(teacher).__name__}): no weight '{tkey}'; "
                "use --student PATH or --student-config instead"
            )
        state[key] = src[tkey].detach().clone()
    student.load_state_dict(state)
    return student


def fresh_student(teacher, arch: StudentArch):
    import copy

    from transformers import AutoModelForSequenceClassification

    config = copy.deepcopy(teacher.config)
    hidden = arch.hidden_size or config.hidden_size
    heads = arch.num_heads or config.num_attention_heads
    if hidden % heads:
        raise ConfigError(f"student hidden_size ({hidden}) must be divisible by its number of heads ({heads})")
    config.hidden_size = hidden
    config.num_hidden_layers = arch.num_layers or _num_layers(config)
    config.num_attention_heads = heads
    config.intermediate_size = arch.intermediate_size or 4 * hidden
    if hasattr(config, "embedding_size"):  # ALBERT-style factorised embeddings follow the width
        config.embedding_size = hidden
    return AutoModelForSequenceClassification.from_config(config)


def pretrained_student(source: str, label_names: list[str]):
    from transformers import AutoConfig

    from mobilebert_kit.models import load_pretrained_for_classification, load_tokenizer, resolve_model

    resolved = resolve_model(source)
    try:
        config = AutoConfig.from_pretrained(resolved.path)
    except Exception as e:  # noqa: BLE001
        raise ModelError(
            f"could not read the student config at {resolved.path} ({str(e).splitlines()[0][:200]})"
        ) from e
    if any(a.endswith("ForSequenceClassification") for a in (config.architectures or [])) and config.num_labels != len(
        label_names
    ):
        raise ModelError(
            f"student {source} has {config.num_labels} labels but the teacher has {len(label_names)} "
            f"({', '.join(label_names)}); pass a student with {len(label_names)} labels or a base model"
        )
    return load_pretrained_for_classification(resolved, label_names), load_tokenizer(resolved.path), resolved


def same_tokenizer(a, b) -> bool:
    """Same vocabulary, normalizer and pre-tokenizer (token ids mean the same thing)."""

    def spec(t):
        backend = getattr(t, "backend_tokenizer", None)
        if backend is not None:
            d = json.loads(backend.to_str())
            return {k: d.get(k) for k in ("normalizer", "pre_tokenizer", "model")}
        return {"vocab": t.get_vocab(), "class": type(t).__name__}

    return spec(a) == spec(b)


def _num_layers(config) -> int:
    n = getattr(config, "num_hidden_layers", None)
    if n is None:
        raise ModelError(f"the teacher config ({type(config).__name__}) has no num_hidden_layers; cannot pick layers")
    return int(n)


# --------------------------------------------------------------------------- teacher cache


def default_cache_dir() -> Path:
    return Path(os.environ.get("MBK_CACHE", Path.home() / ".cache" / "mobilebert_kit")) / "teacher_cache"


def teacher_weights_sha(folder: str | Path) -> str:
    from mobilebert_kit.artifacts import sha256_file

    folder = Path(folder)
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if f.is_file() and (f.suffix in (".safetensors", ".bin") or f.name == "config.json"):
            h.update(f.name.encode())
            h.update(sha256_file(f).encode())
    return h.hexdigest()


def _texts_sha(texts: list[str], pairs: list[str] | None) -> str:
    h = hashlib.sha256()
    for i, t in enumerate(texts):
        h.update(t.encode())
        h.update(b"\x1e" + (pairs[i].encode() if pairs else b"") + b"\x1f")
    return h.hexdigest()


@dataclass
class TeacherOutputs:
    logits: np.ndarray  # [N, C] float32
    hidden: list[np.ndarray] | None = None  # per example [seq, mapped layers, hidden] float16
    attentions: list[Any] | None = None  # per example torch float16 [mapped layers, heads, seq, seq]
    status: str = "built"  # built | hit | stale-rebuilt
    path: str = ""
    seconds: float = 0.0


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
) -> TeacherOutputs:
    """The teacher's outputs for ``texts``, from the cache when its key matches, else computed
    once and written atomically. ``slot`` names the cache file (teacher path, role of the data);
    the key stored inside covers everything the outputs depend on."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    what = {"logits": True, "hidden_layers": hidden_layers, "attention_layers": attention_layers}
    key = hashlib.sha256(
        json.dumps(
            {
                "format": CACHE_FORMAT,
                "teacher": teacher_sha,
                "texts": _texts_sha(texts, pairs),
                "n": len(texts),
                "max_length": max_length,
                "what": what,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()
    name = hashlib.sha256(
        json.dumps({**slot, "max_length": max_length, "what": what}, sort_keys=True, default=str).encode()
    ).hexdigest()[:24]
    path = Path(cache_dir) / f"{name}.safetensors"
    t0 = time.perf_counter()
    status = "built"
    if path.exists():
        try:
            with safe_open(str(path), framework="pt") as f:
                stored = (f.metadata() or {}).get("key")
                if stored == key:
                    tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no items()
                    out = _unpack(tensors, len(texts), hidden_layers, attention_layers)
                    out.status, out.path, out.seconds = "hit", str(path), time.perf_counter() - t0
                    log(f"teacher cache: hit {path} ({len(texts)} texts)")
                    return out
            log(f"teacher cache: stale {path} (teacher weights, texts or max length changed), rebuilding")
        except Exception as e:  # noqa: BLE001 - a corrupt cache file is rebuilt, never trusted
            log(f"teacher cache: unreadable {path} ({type(e).__name__}), rebuilding")
        status = "stale-rebuilt"
    else:
        log(f"teacher cache: computing teacher outputs for {len(texts)} texts -> {path}")
    tensors = _teacher_pass(
        teacher, tokenizer, texts, pairs, max_length, hidden_layers, attention_layers, batch_size, device
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(
            tensors,
            str(tmp),
            metadata={
                "key": key,
                "format": CACHE_FORMAT,
                "what": json.dumps(what),
                "teacher_sha256": teacher_sha,
                "n": str(len(texts)),
            },
        )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    out = _unpack(tensors, len(texts), hidden_layers, attention_layers)
    out.status, out.path, out.seconds = status, str(path), time.perf_counter() - t0
    return out


def _teacher_pass(
    model, tokenizer, texts, pairs, max_length, hidden_layers, attention_layers, batch_size, device
) -> dict:
    """One inference pass in length-sorted batches; per-token outputs are stored flat (no padding)."""
    import torch

    from mobilebert_kit.batching import encode

    enc = encode(tokenizer, texts, pairs, max_length)
    lengths = np.array([len(x) for x in enc["input_ids"]], dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    n_labels = model.config.num_labels
    logits = torch.zeros((len(texts), n_labels), dtype=torch.float32)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    hidden = (
        torch.zeros((int(offsets[-1]), len(hidden_layers), model.config.hidden_size), dtype=torch.float16)
        if hidden_layers
        else None
    )
    heads = model.config.num_attention_heads
    a_sizes = len(attention_layers) * heads * lengths**2
    a_offsets = np.concatenate([[0], np.cumsum(a_sizes)])
    attn = torch.zeros(int(a_offsets[-1]), dtype=torch.float16) if attention_layers else None
    model = model.to(device)
    model.eval()
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            batch = tokenizer.pad([{k: enc[k][i] for k in enc.keys()} for i in idx], return_tensors="pt")
            batch = {k: v.to(device) for k, v in batch.items()}
            out = model(**batch, output_hidden_states=bool(hidden_layers), output_attentions=bool(attention_layers))
            logits[idx] = out.logits.float().cpu()
            for r, i in enumerate(idx):
                n = int(lengths[i])
                if hidden is not None:
                    hidden[offsets[i] : offsets[i + 1]] = (
                        torch.stack([out.hidden_states[layer + 1][r, :n] for layer in hidden_layers], dim=1)
                        .half()
                        .cpu()
                    )
                if attn is not None:
                    attn[a_offsets[i] : a_offsets[i + 1]] = (
                        torch.stack([out.attentions[layer][r, :, :n, :n] for layer in attention_layers])
                        .half()
                        .reshape(-1)
                        .cpu()
                    )
    tensors = {"logits": logits, "lengths": torch.from_numpy(lengths)}
    if hidden is not None:
        tensors["hidden"] = hidden
    if attn is not None:
        tensors["attention"] = attn
        tensors["attention_heads"] = torch.tensor([heads], dtype=torch.int64)
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


def _concat(a: TeacherOutputs, b: TeacherOutputs) -> TeacherOutputs:
    return TeacherOutputs(
        logits=np.concatenate([a.logits, b.logits]),
        hidden=None if a.hidden is None else a.hidden + b.hidden,
        attentions=None if a.attentions is None else a.attentions + b.attentions,
        status=a.status if a.status == b.status else f"{a.status}+{b.status}",
        path=a.path,
        seconds=a.seconds + b.seconds,
    )


# --------------------------------------------------------------------------- loss


def make_loss(cfg: DistillConfig, map_hidden: bool, map_attention: bool, attention_store: list | None):
    """The distillation loss for the engine: ``loss_fn(model, batch, extra)``."""
    import torch

    from mobilebert_kit.batching import TOKEN_KEYS
    from mobilebert_kit.losses import soft_hard_loss

    T, alpha = cfg.temperature, cfg.alpha

    def loss_fn(model, batch, extra):
        inputs = {k: batch[k] for k in TOKEN_KEYS if k in batch}
        out = model(**inputs, output_hidden_states=map_hidden, output_attentions=map_attention)
        logits = out.logits.float()
        loss = soft_hard_loss(logits, batch.get("teacher_logits"), batch.get("labels"), T, alpha)
        mask = batch["attention_mask"].float()
        if map_hidden:
            teacher_h = batch["teacher_hidden"].float()  # [B, W, mapped layers, H_teacher]
            projs = extra["hidden_proj"] if "hidden_proj" in extra else None
            total = 0.0
            for j in range(teacher_h.shape[2]):
                h = out.hidden_states[j + 1].float()
                if projs is not None:
                    h = projs[j](h)
                err = ((h - teacher_h[:, :, j]) ** 2).mean(-1)
                total = total + (err * mask).sum() / mask.sum().clamp(min=1)
            loss = loss + cfg.hidden_weight * total / teacher_h.shape[2]
        if map_attention:
            width = inputs["input_ids"].shape[1]
            rows = [attention_store[i] for i in batch["idx"].tolist()]
            teacher_a = torch.zeros((len(rows), *rows[0].shape[:2], width, width), dtype=torch.float32)
            for b, a in enumerate(rows):
                n = a.shape[-1]
                teacher_a[b, :, :, :n, :n] = a.float()
            teacher_a = teacher_a.to(logits.device)
            pair_mask = (mask[:, :, None] * mask[:, None, :])[:, None]  # [B, 1, W, W]
            total = 0.0
            for j in range(teacher_a.shape[1]):
                s_att, t_att = out.attentions[j].float(), teacher_a[:, j]
                if s_att.shape[1] != t_att.shape[1]:  # different head counts: compare head-averaged maps
                    s_att, t_att = s_att.mean(1, keepdim=True), t_att.mean(1, keepdim=True)
                err = ((s_att - t_att) ** 2 * pair_mask).sum() / (pair_mask.sum() * s_att.shape[1]).clamp(min=1)
                total = total + err
            loss = loss + cfg.attention_weight * total / teacher_a.shape[1]
        return loss

    return loss_fn


# --------------------------------------------------------------------------- unlabeled text


def read_unlabeled(source: str, ds, data: DataConfig) -> list[str]:
    if source == "builtin":
        if not ds.unlabeled:
            raise DataError(
                f"the dataset {ds.source} has no built-in unlabeled text; pass --unlabeled FILE "
                "(.txt one text per line, or .csv/.tsv/.jsonl with the text column)"
            )
        return list(ds.unlabeled)
    path = Path(source).expanduser()
    if not path.is_file():
        raise DataError(f"unlabeled text file {source} does not exist; pass a .txt/.csv/.tsv/.jsonl file or 'builtin'")
    try:
        if path.suffix in (".txt", ""):
            texts = path.read_text(encoding="utf-8").splitlines()
        elif path.suffix in (".csv", ".tsv"):
            import csv

            with open(path, encoding="utf-8", newline="") as f:
                reader = csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ",")
                if data.text_column not in (reader.fieldnames or []):
                    raise DataError(
                        f"{path} has no column '{data.text_column}'; columns are: {', '.join(reader.fieldnames or [])}; "
                        "set --text-column"
                    )
                texts = [r[data.text_column] or "" for r in reader]
        elif path.suffix in (".jsonl", ".json"):
            texts = []
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    try:
                        texts.append(str(json.loads(line).get(data.text_column) or ""))
                    except (json.JSONDecodeError, AttributeError) as e:
                        raise DataError(f"{path} line {i} is not a JSON object; JSONL needs one object per line") from e
        else:
            raise DataError(f"{path}: unsupported unlabeled file type '{path.suffix}'; use .txt, .csv, .tsv or .jsonl")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text; re-save it as UTF-8") from e
    texts = [t.strip() for t in texts if t and t.strip()]
    if not texts:
        raise DataError(f"unlabeled text file {path} holds no text")
    return texts


# --------------------------------------------------------------------------- run


def run(cfg: DistillConfig, ctx: RunContext | None = None) -> StageResult:
    """Distill ``cfg.teacher`` into a student; the result carries the output folder and metrics."""
    import random

    import torch

    from mobilebert_kit import artifacts
    from mobilebert_kit.batching import make_features
    from mobilebert_kit.data import data_config_for, load_dataset
    from mobilebert_kit.engine import TrainModule, fingerprint, train
    from mobilebert_kit.finetune import data_hash, evaluate_splits, training_dirs
    from mobilebert_kit.metrics import classification_metrics
    from mobilebert_kit.models import count_parameters, load_classifier_folder

    ctx = ctx or RunContext()
    log, overwrite, resume, quiet = ctx.log, ctx.overwrite, ctx.resume, ctx.quiet
    t0 = time.perf_counter()
    out, work = training_dirs(cfg.output, overwrite, resume)

    teacher_dir = Path(cfg.teacher)
    if not teacher_dir.is_dir():
        raise ModelError(
            f"teacher folder {teacher_dir} does not exist; run `mbk finetune` first or pass --teacher PATH"
        )
    teacher, teacher_tok, label_names = load_classifier_folder(teacher_dir)
    teacher_layers = _num_layers(teacher.config)
    data_cfg = data_config_for(teacher_dir, cfg.data)
    ds = load_dataset(data_cfg)
    if ds.label_names != label_names:
        raise DataError(
            f"the data has labels {ds.label_names} but the teacher {teacher_dir} was trained on {label_names}; "
            "distill on the teacher's data (omit --data) or fine-tune a teacher on this data first"
        )
    log(f"data: {ds.source}: " + ", ".join(f"{k} {len(v)}" for k, v in ds.splits.items()))

    # ---------------------------------------------------------------- student
    student_tok, student_source = teacher_tok, None
    if cfg.init_method == "student":
        student, student_tok, resolved = pretrained_student(cfg.student, label_names)
        student_source = {"source": cfg.student, "path": resolved.path, "kind": resolved.kind}
        layers = None
    elif cfg.init_method == "student_config":
        torch.manual_seed(cfg.train.seed)
        student = fresh_student(teacher, cfg.student_config)
        layers = None
    else:
        layers = list(cfg.layers) if cfg.layers is not None else every_other_layer(teacher_layers)
        student = copy_layers_student(teacher, layers)
    student.config.id2label = dict(enumerate(label_names))
    student.config.label2id = {n: i for i, n in enumerate(label_names)}
    if student.config.num_labels != len(label_names):
        raise ModelError(f"the student has {student.config.num_labels} labels but the teacher has {len(label_names)}")
    s_layers = _num_layers(student.config)
    map_hidden, map_attention = cfg.hidden_weight > 0, cfg.attention_weight > 0
    same_tok = student_tok is teacher_tok or same_tokenizer(student_tok, teacher_tok)
    if not same_tok and (map_hidden or map_attention):
        raise ModelError(
            f"the student's tokenizer ({cfg.student}) differs from the teacher's; hidden-state and attention "
            "losses compare token by token and need the same tokenizer: drop --hidden-weight/--attention-weight "
            "(logit distillation works across tokenizers) or pick a student with the teacher's vocabulary"
        )
    layer_map: list[int] = []
    if map_hidden or map_attention:
        layer_map = list(cfg.layer_map) if cfg.layer_map is not None else uniform_layer_map(s_layers, teacher_layers)
        if len(layer_map) != s_layers:
            raise ConfigError(
                f"layer_map has {len(layer_map)} entries but the student has {s_layers} layers; "
                "give one teacher layer per student layer"
            )
        bad = [i for i in layer_map if i >= teacher_layers]
        if bad:
            raise ConfigError(
                f"layer_map {','.join(map(str, bad))} out of range: the teacher has {teacher_layers} layers "
                f"(0..{teacher_layers - 1})"
            )
    extra = torch.nn.ModuleDict()
    if map_hidden and student.config.hidden_size != teacher.config.hidden_size:
        # TinyBERT's learned W_h, one per mapped layer; trained with the student, then dropped
        extra["hidden_proj"] = torch.nn.ModuleList(
            torch.nn.Linear(student.config.hidden_size, teacher.config.hidden_size) for _ in layer_map
        )
    t_load = time.perf_counter()

    # ---------------------------------------------------------------- teacher outputs (cached)
    L = cfg.train.max_length
    train_split = ds.splits["train"]
    unlabeled: list[str] = []
    if cfg.unlabeled:
        unlabeled = read_unlabeled(cfg.unlabeled, ds, data_cfg)
        if cfg.max_unlabeled and cfg.max_unlabeled < len(unlabeled):
            unlabeled = [
                unlabeled[i]
                for i in sorted(random.Random(data_cfg.split_seed).sample(range(len(unlabeled)), cfg.max_unlabeled))
            ]
        if train_split.pairs:
            raise DataError("--unlabeled supports single-text tasks only; this data has a text pair column")
    cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
    from accelerate import PartialState

    device = _device(cfg.train.device)
    state = PartialState(cpu=device.type == "cpu")  # the same choice the engine's Accelerator makes
    if device.type == "cuda" and cfg.train.device == "auto":
        device = state.device  # this process's GPU under accelerate launch / torchrun
    teacher_sha = teacher_weights_sha(teacher_dir)
    slot = {"teacher": str(teacher_dir.resolve()), "data": data_cfg.to_dict()}
    common = {
        "max_length": L,
        "cache_dir": cache_dir,
        "teacher_sha": teacher_sha,
        "batch_size": cfg.train.eval_batch_size,
        "device": device,
        "log": log,
    }
    with state.main_process_first():  # one process computes the cache, the others read it
        t_cache = time.perf_counter()
        texts = train_split.texts + unlabeled
        pairs = train_split.pairs
        what = {
            "hidden_layers": layer_map if map_hidden else [],
            "attention_layers": layer_map if map_attention else [],
        }
        t_train_out = teacher_outputs(
            teacher, teacher_tok, train_split.texts, pairs, slot={**slot, "role": "train"}, **what, **common
        )
        cache_files = [t_train_out.path]
        if unlabeled:  # a cache of its own, so runs with and without it share the training-set cache
            t_unl_out = teacher_outputs(
                teacher,
                teacher_tok,
                unlabeled,
                None,
                slot={**slot, "role": "unlabeled", "source": cfg.unlabeled},
                **what,
                **common,
            )
            t_train_out = _concat(t_train_out, t_unl_out)
            cache_files.append(t_unl_out.path)
        eval_texts = ds.splits["validation"].texts + ds.splits["test"].texts
        eval_pairs = (ds.splits["validation"].pairs or []) + (ds.splits["test"].pairs or []) if pairs else None
        t_eval_out = teacher_outputs(
            teacher,
            teacher_tok,
            eval_texts,
            eval_pairs,
            hidden_layers=[],
            attention_layers=[],
            slot={**slot, "role": "eval"},
            **common,
        )
        cache_seconds = time.perf_counter() - t_cache
    teacher.to("cpu")

    n_lab = len(train_split)
    pseudo = t_train_out.logits[n_lab:].argmax(-1).tolist()  # the teacher labels the extra text
    labels = list(train_split.labels) + pseudo
    extras: dict[str, Any] = {"teacher_logits": list(t_train_out.logits)}
    if map_hidden:
        extras["teacher_hidden"] = t_train_out.hidden
    if map_attention:
        extras["idx"] = list(range(len(texts)))
    train_set = make_features(student_tok, texts, pairs, labels, L, extras=extras)
    sets = {
        name: make_features(student_tok, s.texts, s.pairs, s.labels, L)
        for name, s in ds.splits.items()
        if name != "train"
    }
    if unlabeled:
        counts = np.bincount(pseudo, minlength=len(label_names))
        log(
            f"unlabeled: {len(unlabeled)} texts labelled by the teacher ("
            + ", ".join(f"{n} {c}" for n, c in zip(label_names, counts.tolist()))
            + ")"
        )
    log(
        f"student: {cfg.init_method}"
        + (f" {','.join(map(str, layers))}" if layers is not None else "")
        + f", {s_layers} layers, hidden {student.config.hidden_size}, {count_parameters(student):,} params; "
        f"T={cfg.temperature}, alpha={cfg.alpha}"
        + (f", hidden x{cfg.hidden_weight}" if map_hidden else "")
        + (f", attention x{cfg.attention_weight}" if map_attention else "")
        + (f", layer map {layer_map}" if layer_map else "")
    )

    # ---------------------------------------------------------------- train (the shared engine)
    run_fp = fingerprint(
        teacher_sha,
        data_cfg.to_dict(),
        ds.summary()["sizes"],
        len(unlabeled),
        {k: v for k, v in cfg.to_dict().items() if k not in ("train", "output", "cache_dir", "data")},
        student_source,
    )
    result = train(
        TrainModule(student, make_loss(cfg, map_hidden, map_attention, t_train_out.attentions), extra),
        train_set,
        sets["validation"],
        cfg.train,
        workdir=work,
        pad_id=student_tok.pad_token_id or 0,
        num_labels=len(label_names),
        resume=resume,
        quiet=quiet,
        run_fingerprint=run_fp,
        log=log,
    )
    t_train = time.perf_counter()
    if not state.is_main_process:
        state.wait_for_everyone()
        return StageResult(out, written=False)

    # ---------------------------------------------------------------- evaluate side by side, write
    student_metrics = evaluate_splits(student, sets, cfg.train, student_tok.pad_token_id or 0, len(label_names))
    n_val = len(ds.splits["validation"])
    teacher_metrics = {}
    for name, logit_rows in (("validation", t_eval_out.logits[:n_val]), ("test", t_eval_out.logits[n_val:])):
        teacher_metrics[name] = classification_metrics(logit_rows, ds.splits[name].labels, len(label_names))
    from mobilebert_kit.batching import Collator, predict

    s_test = predict(
        student,
        sets["test"],
        Collator(student_tok.pad_token_id or 0, L, True),
        cfg.train.eval_batch_size,
        next(student.parameters()).device,
    )
    agreement = (
        float((s_test.argmax(-1) == t_eval_out.logits[n_val:].argmax(-1)).mean()) if len(s_test) else float("nan")
    )
    t_params, s_params = count_parameters(teacher), count_parameters(student)
    t_size = sum(f.stat().st_size for f in teacher_dir.glob("*.safetensors")) or sum(
        f.stat().st_size for f in teacher_dir.glob("*.bin")
    )
    metrics = {
        **student_metrics,  # top-level validation/test: the student's (what later stages read)
        "teacher": {
            **teacher_metrics,
            "parameters": t_params,
            "layers": teacher_layers,
            "hidden_size": teacher.config.hidden_size,
            "size_bytes": t_size,
        },
        "student": {
            **student_metrics,
            "parameters": s_params,
            "layers": s_layers,
            "hidden_size": student.config.hidden_size,
        },
        "retention": {
            k: _ratio(student_metrics["test"][k], teacher_metrics["test"][k]) for k in ("accuracy", "macro_f1")
        },
        "test_agreement_with_teacher": agreement,
        "compression": {"parameters": _ratio(t_params, s_params)},
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "history": result.history,
        "train_examples_per_second": result.examples_per_second,
        "train_seconds": result.train_seconds,
        "steps": result.steps,
        "parameters": s_params,
        "train_examples": len(train_set),
        "labeled_examples": n_lab,
        "unlabeled_examples": len(unlabeled),
        "teacher_cache": {
            "train": t_train_out.status,
            "eval": t_eval_out.status,
            "seconds": cache_seconds,
            "train_seconds": t_train_out.seconds,
            "eval_seconds": t_eval_out.seconds,
            "files": [*cache_files, t_eval_out.path],
        },
        # end to end: the teacher pass over the training text + training, per training example seen (the
        # teacher's pass over validation/test only serves the side-by-side report, as any evaluation would)
        "end_to_end_examples_per_second": (len(train_set) * len(result.history))
        / max(t_train_out.seconds + result.train_seconds, 1e-9),
        "precision": result.precision,
        "device": result.device,
        "world_size": result.world_size,
        "batch_size": result.batch_size,
        "grad_accum": result.grad_accum,
        "notes": result.notes,
    }
    log("teacher test: accuracy {accuracy:.4f}, macro-F1 {macro_f1:.4f}".format(**teacher_metrics["test"]))
    log(
        "student test: accuracy {accuracy:.4f}, macro-F1 {macro_f1:.4f}".format(**student_metrics["test"])
        + f" ({metrics['retention']['accuracy']:.1%} of the teacher's accuracy, {agreement:.1%} agreement)"
    )
    with artifacts.staged_output(out, overwrite=overwrite) as tmp:
        student.save_pretrained(tmp, safe_serialization=True)
        student_tok.save_pretrained(tmp)
        artifacts.write_labels(tmp, label_names)
        metrics["student"]["size_bytes"] = sum(f.stat().st_size for f in tmp.glob("*.safetensors"))
        metrics["compression"]["size"] = _ratio(t_size, metrics["student"]["size_bytes"])
        artifacts.write_json(tmp / artifacts.METRICS, metrics)
        timings = {
            "load_seconds": t_load - t0,
            "teacher_cache_seconds": cache_seconds,
            "train_seconds": t_train - t_load - cache_seconds,
            "total_seconds": time.perf_counter() - t0,
        }
        inputs = {
            "model": artifacts.input_record(teacher_dir),
            "student_init": {
                "method": cfg.init_method,
                **({"layers": layers} if layers is not None else {}),
                **(student_source or {}),
            },
            "data": {
                "source": ds.source,
                **data_hash(data_cfg),
                **({"unlabeled": cfg.unlabeled, "unlabeled_count": len(unlabeled)} if unlabeled else {}),
            },
        }
        headline = {
            "test_accuracy": student_metrics["test"]["accuracy"],
            "test_macro_f1": student_metrics["test"]["macro_f1"],
            "teacher_test_accuracy": teacher_metrics["test"]["accuracy"],
            "teacher_test_macro_f1": teacher_metrics["test"]["macro_f1"],
            "accuracy_retention": metrics["retention"]["accuracy"],
            "train_examples_per_second": result.examples_per_second,
            "parameters": s_params,
        }
        config = cfg.to_dict()
        config["data"] = data_cfg.to_dict()
        artifacts.write_manifest(
            tmp,
            stage="distill",
            config=config,
            inputs=inputs,
            metrics=headline,
            timings=timings,
            extra={
                "data": data_cfg.to_dict(),
                "max_length": L,
                "teacher": str(teacher_dir),
                "dataset": ds.summary(),
                "layer_map": layer_map or None,
                "resumed_from": result.resumed_from,
            },
        )
    shutil.rmtree(work, ignore_errors=True)
    state.wait_for_everyone()
    return StageResult(out, metrics, [_summary_line(out, metrics)])


def _summary_line(out: Path, m: dict) -> str:
    return (
        f"student written to {out}: test accuracy {m['student']['test']['accuracy']:.4f} "
        f"(teacher {m['teacher']['test']['accuracy']:.4f}, {m['retention']['accuracy']:.1%}), "
        f"macro-F1 {m['student']['test']['macro_f1']:.4f}, {m['student']['parameters']:,} params "
        f"({m['compression']['parameters']:.1f}x fewer), {m['train_examples_per_second']:.1f} train ex/s"
    )


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b else float("nan")


def _device(requested: str):
    import torch

    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        from mobilebert_kit.errors import TrainingError

        raise TrainingError(f"device '{requested}' requested but no CUDA GPU is visible; use --device cpu (or auto)")
    return torch.device("cuda" if requested == "auto" else requested)
