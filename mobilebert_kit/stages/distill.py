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

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mobilebert_kit.artifacts import not_a_folder
from mobilebert_kit.config import StageConfig, check_choice, check_range
from mobilebert_kit.data import DataConfig
from mobilebert_kit.data.transfer import WINDOW_MODES
from mobilebert_kit.devices import select_device
from mobilebert_kit.errors import ConfigError, DataError, ModelError
from mobilebert_kit.locking import holds_output
from mobilebert_kit.stages.base import RunContext, StageResult
from mobilebert_kit.training.common import (
    check_fits_model,
    data_hash,
    evaluate_splits,
    finish_checkpoints,
    may_replace,
    training_dirs,
    training_history,
    training_setup,
)
from mobilebert_kit.training.engine import TrainConfig
from mobilebert_kit.training.metrics_log import publish as publish_training_log
from mobilebert_kit.training.students import (
    copy_layers_student,
    every_other_layer,
    fresh_student,
    layer_count,
    pretrained_student,
    same_tokenizer,
    uniform_layer_map,
)
from mobilebert_kit.training.teacher_cache import (
    TeacherOutputs,
    default_cache_dir,
    teacher_outputs,
    teacher_weights_sha,
)
from mobilebert_kit.training.teacher_precision import TEACHER_PASS_PRECISIONS, teacher_pass_plan


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
    # or: any HF model/folder (another tokenizer is fine for logit distillation); with ``layers``, only
    # those layers of it are kept (e.g. MPNet teacher -> MiniLM-L6's layers 0, 2, 4)
    student: str | None = None
    student_config: StudentArch | None = None  # or: a fresh architecture, random init
    temperature: float = 3.0
    alpha: float = 0.5  # weight of the soft loss (KL * T^2); 1 - alpha weighs the hard-label CE
    hidden_weight: float = 0.0  # hidden-state MSE (0 = off)
    attention_weight: float = 0.0  # attention-map MSE (0 = off)
    layer_map: list[int] | None = None  # teacher layer (0-based) each student layer mimics; default uniform
    # 'builtin' (the dataset's own raw text), 'imdb' (25k IMDB reviews, transfer.py) or a .txt/.csv/.tsv/.jsonl file
    unlabeled: str | None = None
    max_unlabeled: int | None = None  # seeded subset of the unlabeled text (windows, after the overlap check)
    # how documents become training-length texts (transfer.WindowPolicy): auto = cut only the texts over
    # max_length ('imdb': every review), sentences = cut every text, none = as given
    unlabeled_window: str = "auto"
    window_sentences: int = 3  # at most this many consecutive sentences per window
    overlap_ngram: int = 8  # an unlabeled text sharing this many tokens in a row with a validation/test text is dropped
    cache_dir: str | None = None  # default $MBK_CACHE/teacher_cache (~/.cache/mobilebert_kit/teacher_cache)
    # The teacher pass over the training text: int8 (dynamic INT8 Linear layers, checked against fp32 on a
    # sample first, fp32 where the check fails; CPU only, a GPU pass stays in the teacher's own precision), or
    # fp32; bf16 (autocast, checked the same way, CPUs with native bf16); auto (on a CPU with native bf16: check
    # int8 and bf16, time both on the sample, keep the faster; int8 elsewhere). Validation/test teacher scores
    # always come from the fp32 teacher.
    teacher_precision: str = "int8"
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
        check_choice(p, "unlabeled_window", self.unlabeled_window, WINDOW_MODES)
        check_range(p, "window_sentences", self.window_sentences, 1)
        check_range(p, "overlap_ngram", self.overlap_ngram, 3)
        check_choice(p, "teacher_precision", self.teacher_precision, TEACHER_PASS_PRECISIONS)
        chosen = [  # layers + student is one choice: keep those layers of the pretrained student
            n
            for n, v in (
                ("layers", None if self.student else self.layers),
                ("student", self.student),
                ("student_config", self.student_config),
            )
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


def inherit_from_teacher(section: dict, teacher: str, data_given: dict) -> dict:
    """Fill a distill config section from the teacher's lineage: its data (with the user's data
    options laid over it) and its max_length, unless given. Returns the section."""
    from mobilebert_kit.artifacts import lineage

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


@dataclass
class _Teacher:
    folder: Path
    model: Any
    tokenizer: Any
    label_names: list[str]
    layers: int
    sha: str  # of its weights: keys the teacher cache and resume

    @property
    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.folder.glob("*.safetensors")) or sum(
            f.stat().st_size for f in self.folder.glob("*.bin")
        )


@dataclass
class _Student:
    model: Any
    tokenizer: Any
    source: dict | None  # the pretrained model it started from (init_method "student")
    layers: list[int] | None  # the teacher layers it copies (init_method "layers")
    layer_map: list[int]  # teacher layer each student layer mimics (intermediate losses only)
    map_hidden: bool
    map_attention: bool
    extra: Any  # trainable modules besides the model (hidden-state projections)

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id or 0


@dataclass
class _Job:
    """What one distillation run works from, once loaded."""

    cfg: DistillConfig
    teacher: _Teacher
    student: _Student
    ds: Any  # data.TextDataset
    data_cfg: DataConfig
    unlabeled: list[str]
    transfer: dict | None = None  # where the unlabeled text came from, windows cut and dropped (transfer.py)


@dataclass
class _Cached:
    train: TeacherOutputs  # the training text, then the unlabeled text
    eval: TeacherOutputs  # validation, then test
    files: list[str]
    seconds: float
    precision: str = "fp32"  # the training text's pass
    int8_check: dict | None = None


@holds_output
def run(cfg: DistillConfig, ctx: RunContext | None = None) -> StageResult:
    """Distill ``cfg.teacher`` into a student; the result carries the output folder and metrics."""
    ctx = ctx or RunContext()
    t0 = time.perf_counter()
    inputs = cfg.input_paths()
    out, work = training_dirs(cfg.output, ctx.overwrite, ctx.resume, inputs)
    teacher, data_cfg, ds = _load_teacher_and_data(cfg, ctx.log)
    student = _build_student(cfg, teacher, ctx.log)
    check_fits_model(student.model, cfg.train, "the student")
    t_load = time.perf_counter()
    job = _Job(cfg, teacher, student, ds, data_cfg, *_unlabeled_texts(cfg, ds, data_cfg, student.tokenizer, ctx.log))
    _check_token_level_losses(job, ctx.log)
    device, state = _compute_device(cfg.train.device)
    with state.main_process_first():  # one process computes the cache, the others read it
        cached = _teacher_outputs(job, device, ctx.log, progress=not ctx.quiet)
    teacher.model.to("cpu")
    train_set, sets = _student_features(job, cached.train, ctx.log)
    ctx.log(_student_line(cfg, student))
    result = _train_student(job, train_set, sets["validation"], cached.train.attentions, work, ctx)
    t_train = time.perf_counter()
    if not state.is_main_process:
        state.wait_for_everyone()
        return StageResult(out, written=False)
    preds: dict = {}
    metrics = _metrics(job, sets, cached, result, len(train_set), preds)
    _log_results(metrics, ctx.log)
    timings = {
        "load_seconds": t_load - t0,
        "teacher_cache_seconds": cached.seconds,
        "train_seconds": t_train - t_load - cached.seconds,
    }
    _write(out, job, metrics, result, timings, t0, may_replace(out, ctx.overwrite, ctx.resume), inputs, preds)
    finish_checkpoints(work, cfg.train.retain_checkpoints, ctx.log)
    state.wait_for_everyone()
    return StageResult(out, metrics, [_summary_line(out, metrics)])


def _load_teacher_and_data(cfg: DistillConfig, log):
    """The teacher folder's model, tokenizer and labels, and the data it was trained on (or ``cfg.data``)."""
    from mobilebert_kit.data import data_config_for, load_dataset
    from mobilebert_kit.label_map import align_labels
    from mobilebert_kit.models import load_classifier_folder

    folder = Path(cfg.teacher)
    if not folder.is_dir():
        raise ModelError(f"{not_a_folder(folder, 'teacher folder')}; run `mbk finetune` first or pass --teacher PATH")
    model, tokenizer, label_names = load_classifier_folder(folder)
    teacher = _Teacher(folder, model, tokenizer, label_names, layer_count(model.config), teacher_weights_sha(folder))
    data_cfg = data_config_for(folder, cfg.data)
    ds = load_dataset(data_cfg)
    aligned = align_labels(
        ds,
        label_names,
        f"the teacher {folder}",
        "distill on the teacher's data (omit --data) or fine-tune a teacher on this data first",
    )
    if aligned is not ds:
        log(f"data: {aligned.notes[-1]}")
    ds = aligned
    log(f"data: {ds.source}: " + ", ".join(f"{k} {len(v)}" for k, v in ds.splits.items()))
    return teacher, data_cfg, ds


def _build_student(cfg: DistillConfig, teacher: _Teacher, log=None) -> _Student:
    """The student (copied layers, a pretrained model or a fresh architecture) with the teacher's
    labels, its layer map and, when widths differ, TinyBERT's hidden-state projections."""
    import torch

    from mobilebert_kit.training import token_map

    model, tokenizer, source, layers = _init_student(cfg, teacher, log)
    names = teacher.label_names
    model.config.id2label = dict(enumerate(names))
    model.config.label2id = {n: i for i, n in enumerate(names)}
    if model.config.num_labels != len(names):
        raise ModelError(f"the student has {model.config.num_labels} labels but the teacher has {len(names)}")
    map_hidden, map_attention = cfg.hidden_weight > 0, cfg.attention_weight > 0
    if (map_hidden or map_attention) and not (
        tokenizer is teacher.tokenizer
        or same_tokenizer(tokenizer, teacher.tokenizer)
        or token_map.compatible(teacher.tokenizer, tokenizer)  # other ids/specials: checked per text later
    ):
        raise ModelError(
            f"the student's tokenizer ({cfg.student}) differs from the teacher's; hidden-state and attention "
            "losses compare token by token and need the same tokenizer: drop --hidden-weight/--attention-weight "
            "(logit distillation works across tokenizers) or pick a student with the teacher's vocabulary"
        )
    layer_map = _layer_map(cfg, layer_count(model.config), teacher.layers) if map_hidden or map_attention else []
    extra = torch.nn.ModuleDict()
    if map_hidden and model.config.hidden_size != teacher.model.config.hidden_size:
        # TinyBERT's learned W_h, one per mapped layer; trained with the student, then dropped
        extra["hidden_proj"] = torch.nn.ModuleList(
            torch.nn.Linear(model.config.hidden_size, teacher.model.config.hidden_size) for _ in layer_map
        )
    return _Student(model, tokenizer, source, layers, layer_map, map_hidden, map_attention, extra)


def _init_student(cfg: DistillConfig, teacher: _Teacher, log=None):
    """(model, tokenizer, pretrained source or None, copied teacher layers or None)."""
    import torch

    torch.manual_seed(cfg.train.seed)  # a new head / fresh student / projections: same seed, same model
    if cfg.init_method == "student":
        model, tokenizer, resolved = pretrained_student(cfg.student, teacher.label_names, log)
        source = {"source": cfg.student, "path": resolved.path, "kind": resolved.kind}
        if cfg.layers is not None:
            model = copy_layers_student(model, list(cfg.layers))
            source["layers"] = list(cfg.layers)
        return model, tokenizer, source, None
    if cfg.init_method == "student_config":
        return fresh_student(teacher.model, cfg.student_config), teacher.tokenizer, None, None
    layers = list(cfg.layers) if cfg.layers is not None else every_other_layer(teacher.layers)
    return copy_layers_student(teacher.model, layers), teacher.tokenizer, None, layers


def _check_token_level_losses(job: _Job, log) -> None:
    """Before the teacher pass: the hidden-state/attention losses need the tokens to line up when the
    tokenizers differ in ids and specials (token_map), and their cached teacher states to fit in memory."""
    from mobilebert_kit.data.transfer import check_cache_fits
    from mobilebert_kit.training.token_map import check_aligned

    student, teacher, train = job.student, job.teacher, job.ds.splits["train"]
    if not (student.map_hidden or student.map_attention):
        return
    texts, max_length = train.texts if train.pairs else train.texts + job.unlabeled, job.cfg.train.max_length
    if not (student.tokenizer is teacher.tokenizer or same_tokenizer(student.tokenizer, teacher.tokenizer)):
        log(check_aligned(teacher.tokenizer, student.tokenizer, texts, max_length, train.pairs, job.cfg.student))
    if job.unlabeled:
        n, config = len(student.layer_map), teacher.model.config
        hidden, attention = n * student.map_hidden, n * student.map_attention
        check_cache_fits(
            teacher.tokenizer, texts, max_length, hidden, config.hidden_size, attention, config.num_attention_heads
        )


def _layer_map(cfg: DistillConfig, student_layers: int, teacher_layers: int) -> list[int]:
    layer_map = list(cfg.layer_map) if cfg.layer_map is not None else uniform_layer_map(student_layers, teacher_layers)
    if len(layer_map) != student_layers:
        raise ConfigError(
            f"layer_map has {len(layer_map)} entries but the student has {student_layers} layers; "
            "give one teacher layer per student layer"
        )
    bad = [i for i in layer_map if i >= teacher_layers]
    if bad:
        raise ConfigError(
            f"layer_map {','.join(map(str, bad))} out of range: the teacher has {teacher_layers} layers "
            f"(0..{teacher_layers - 1})"
        )
    return layer_map


def _unlabeled_texts(cfg: DistillConfig, ds, data_cfg: DataConfig, tokenizer, log) -> tuple[list[str], dict | None]:
    """The extra text the teacher labels (``cfg.unlabeled``): cut into windows, without any text that
    overlaps validation/test, a seeded subset of it if asked (transfer.build_transfer); and its summary."""
    from mobilebert_kit.data import read_unlabeled
    from mobilebert_kit.data.transfer import BUILTIN_TRANSFER, WindowPolicy, build_transfer, imdb_documents

    if not cfg.unlabeled:
        return [], None
    if ds.splits["train"].pairs:
        raise DataError("--unlabeled supports single-text tasks only; this data has a text pair column")
    builtin = cfg.unlabeled in BUILTIN_TRANSFER
    documents = imdb_documents() if builtin else read_unlabeled(cfg.unlabeled, ds, data_cfg)
    mode = "sentences" if builtin and cfg.unlabeled_window == "auto" else cfg.unlabeled_window
    policy = WindowPolicy(cfg.train.max_length, cfg.window_sentences, mode)
    evaluation = ds.splits["validation"].texts + ds.splits["test"].texts
    transfer = build_transfer(
        documents,
        cfg.unlabeled,
        evaluation,
        tokenizer,
        policy,
        limit=cfg.max_unlabeled,
        seed=data_cfg.split_seed,
        ngram=cfg.overlap_ngram,
    )
    log(transfer.line())
    return transfer.texts, transfer.summary()


def _compute_device(requested: str):
    """(device for the teacher pass, accelerate's PartialState): the choice the engine makes."""
    from accelerate import PartialState

    device = select_device(requested)
    state = PartialState(cpu=device.type == "cpu")  # the same choice the engine's Accelerator makes
    if device.type == "cuda" and requested == "auto":
        device = state.device  # this process's GPU under accelerate launch / torchrun
    return device, state


def _teacher_outputs(job: _Job, device, log, progress: bool = False) -> _Cached:
    """The teacher's outputs on the training text (with what the intermediate losses need), the
    unlabeled text (a cache of its own, so runs with and without it share the training-set
    cache) and validation + test (logits only, for the side-by-side report)."""
    cfg, teacher, student, ds, unlabeled = job.cfg, job.teacher, job.student, job.ds, job.unlabeled
    t0 = time.perf_counter()
    slot = {"teacher": str(teacher.folder.resolve()), "data": job.data_cfg.to_dict()}
    common = {
        "max_length": cfg.train.max_length,
        "cache_dir": Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir(),
        "teacher_sha": teacher.sha,
        "batch_size": cfg.train.eval_batch_size,
        "device": device,
        "log": log,
        "progress": progress,
    }
    what = {
        "hidden_layers": student.layer_map if student.map_hidden else [],
        "attention_layers": student.layer_map if student.map_attention else [],
    }
    train_split, model, tok = ds.splits["train"], teacher.model, teacher.tokenizer
    precision = teacher_pass_plan(cfg.teacher_precision, device.type)
    if precision != cfg.teacher_precision and not (cfg.teacher_precision == "auto" and precision != "fp32"):
        why = f"{cfg.teacher_precision} needs a CPU (with native bf16 for bf16; torch.ao kernels for int8)"
        log(f"teacher pass: {why}; this {device.type} pass runs in {precision}")
    # the training text's pass; evaluation's stays fp32
    text = {**what, **common, "precision": precision, "temperature": cfg.temperature}
    train = teacher_outputs(model, tok, train_split.texts, train_split.pairs, slot={**slot, "role": "train"}, **text)
    files = [train.path]
    if unlabeled:
        # one file per source and size: the 25k and 100k transfer sets of an ablation are both kept, not rebuilt
        unl_slot = {**slot, "role": "unlabeled", "source": cfg.unlabeled, "texts": len(unlabeled)}
        # the training text's INT8 check decides this pass too (same teacher, same run): not checked twice
        extra = teacher_outputs(model, tok, unlabeled, None, slot=unl_slot, checked=train.int8_check, **text)
        train, files = train + extra, [*files, extra.path]
    val, test = ds.splits["validation"], ds.splits["test"]
    pairs = (val.pairs or []) + (test.pairs or []) if train_split.pairs else None
    no_layers = {"hidden_layers": [], "attention_layers": []}
    evals = teacher_outputs(
        model, tok, val.texts + test.texts, pairs, slot={**slot, "role": "eval"}, **no_layers, **common
    )
    check = train.int8_check
    if check:  # int8 was asked for and checked: the pass ran in what the check allowed
        precision = check["precision"]
    return _Cached(train, evals, files, time.perf_counter() - t0, precision, check)


def _student_features(job: _Job, teacher_train: TeacherOutputs, log):
    """The training set (labelled + teacher-labelled text, with the cached teacher outputs
    attached to each example) and the evaluation sets, in the student's tokenization."""
    from mobilebert_kit.batching import make_features

    student, ds, unlabeled = job.student, job.ds, job.unlabeled
    train_split, L = ds.splits["train"], job.cfg.train.max_length
    pseudo = teacher_train.logits[len(train_split) :].argmax(-1).tolist()  # the teacher labels the extra text
    extras: dict[str, Any] = {"teacher_logits": list(teacher_train.logits)}
    if student.map_hidden:
        extras["teacher_hidden"] = teacher_train.hidden
    texts = train_split.texts + unlabeled
    if student.map_attention:
        extras["idx"] = list(range(len(texts)))
    labels = list(train_split.labels) + pseudo
    train_set = make_features(student.tokenizer, texts, train_split.pairs, labels, L, extras=extras)
    sets = {
        name: make_features(student.tokenizer, s.texts, s.pairs, s.labels, L)
        for name, s in ds.splits.items()
        if name != "train"
    }
    if unlabeled:
        counts = np.bincount(pseudo, minlength=len(ds.label_names))
        log(
            f"unlabeled: {len(unlabeled)} texts labelled by the teacher ("
            + ", ".join(f"{n} {c}" for n, c in zip(ds.label_names, counts.tolist()))
            + ")"
        )
    return train_set, sets


def _student_line(cfg: DistillConfig, student: _Student) -> str:
    from mobilebert_kit.models import count_parameters

    config = student.model.config
    return (
        f"student: {cfg.init_method}"
        + (f" {','.join(map(str, student.layers))}" if student.layers is not None else "")
        + f", {layer_count(config)} layers, hidden {config.hidden_size}, {count_parameters(student.model):,} params; "
        f"T={cfg.temperature}, alpha={cfg.alpha}"
        + (f", hidden x{cfg.hidden_weight}" if student.map_hidden else "")
        + (f", attention x{cfg.attention_weight}" if student.map_attention else "")
        + (f", layer map {student.layer_map}" if student.layer_map else "")
    )


def _train_student(job: _Job, train_set, eval_set, attention_store, work: Path, ctx: RunContext):
    """The shared engine with the distillation loss; resume is keyed by teacher, data and options."""
    from mobilebert_kit.training.engine import TrainModule, fingerprint, train
    from mobilebert_kit.training.losses import distillation_loss

    cfg, student = job.cfg, job.student
    run_fp = fingerprint(
        job.teacher.sha,
        job.data_cfg.to_dict(),
        job.ds.summary()["sizes"],
        len(job.unlabeled),
        {k: v for k, v in cfg.to_dict().items() if k not in ("train", "output", "cache_dir", "data")},
        student.source,
    )
    loss = distillation_loss(
        cfg.temperature, cfg.alpha, cfg.hidden_weight, cfg.attention_weight, attention_store, with_terms=True
    )
    return train(
        TrainModule(student.model, loss, student.extra),
        train_set,
        eval_set,
        cfg.train,
        workdir=work,
        pad_id=student.pad_id,
        num_labels=len(job.teacher.label_names),
        resume=ctx.resume,
        quiet=ctx.quiet,
        run_fingerprint=run_fp,
        log=ctx.log,
        log_phase="transfer set" if job.unlabeled else None,  # the training text includes teacher-labelled extra text
    )


def _metrics(job: _Job, sets: dict, cached: _Cached, result, train_examples: int, preds: dict) -> dict:
    """Teacher and student side by side (top-level validation/test are the student's: what later
    stages read), then how training and the teacher cache went; the student's test predictions into ``preds``."""
    from mobilebert_kit.batching import Collator, predict
    from mobilebert_kit.metrics import classification_metrics
    from mobilebert_kit.models import count_parameters
    from mobilebert_kit.stages import predictions

    teacher, student, ds, n_labels = job.teacher, job.student, job.ds, len(job.teacher.label_names)
    student_metrics = evaluate_splits(student.model, sets, job.cfg.train, student.pad_id, n_labels)
    n_val = len(ds.splits["validation"])
    t_logits = {"validation": cached.eval.logits[:n_val], "test": cached.eval.logits[n_val:]}
    teacher_metrics = {
        name: classification_metrics(rows, ds.splits[name].labels, n_labels) for name, rows in t_logits.items()
    }
    collator = Collator(student.pad_id, job.cfg.train.max_length, True)
    device = next(student.model.parameters()).device
    s_test = predict(student.model, sets["test"], collator, job.cfg.train.eval_batch_size, device)
    agreement = float((s_test.argmax(-1) == t_logits["test"].argmax(-1)).mean()) if len(s_test) else float("nan")
    test = ds.splits["test"]
    preds.update(predictions.record(test.texts, test.pairs, test.labels, s_test))
    t_params, s_params = count_parameters(teacher.model), count_parameters(student.model)
    return {
        **student_metrics,
        "teacher": {
            **teacher_metrics,
            "parameters": t_params,
            "layers": teacher.layers,
            "hidden_size": teacher.model.config.hidden_size,
            "size_bytes": teacher.size_bytes,
        },
        "student": {
            **student_metrics,
            "parameters": s_params,
            "layers": layer_count(student.model.config),
            "hidden_size": student.model.config.hidden_size,
        },
        "retention": {
            k: _ratio(student_metrics["test"][k], teacher_metrics["test"][k]) for k in ("accuracy", "macro_f1")
        },
        "test_agreement_with_teacher": agreement,
        "compression": {"parameters": _ratio(t_params, s_params)},
        **training_history(result),
        "parameters": s_params,
        **_data_and_cache_numbers(job, cached, result, train_examples),
        **training_setup(result),
    }


def _data_and_cache_numbers(job: _Job, cached: _Cached, result, train_examples: int) -> dict:
    return {
        "train_examples": train_examples,
        "labeled_examples": len(job.ds.splits["train"]),
        "unlabeled_examples": len(job.unlabeled),
        **({"transfer": job.transfer} if job.transfer else {}),
        "teacher_cache": {
            "train": cached.train.status,
            "eval": cached.eval.status,
            "train_precision": cached.precision,
            "int8_check": cached.int8_check,
            "seconds": cached.seconds,
            "train_seconds": cached.train.seconds,
            "eval_seconds": cached.eval.seconds,
            "files": [*cached.files, cached.eval.path],
        },
        # end to end: the teacher pass over the training text + training, per training example seen (the
        # teacher's pass over validation/test only serves the side-by-side report, as any evaluation would)
        "end_to_end_examples_per_second": (train_examples * len(result.history))
        / max(cached.train.seconds + result.train_seconds, 1e-9),
    }


def _log_results(metrics: dict, log) -> None:
    log("teacher test: accuracy {accuracy:.4f}, macro-F1 {macro_f1:.4f}".format(**metrics["teacher"]["test"]))
    log(
        "student test: accuracy {accuracy:.4f}, macro-F1 {macro_f1:.4f}".format(**metrics["student"]["test"])
        + f" ({metrics['retention']['accuracy']:.1%} of the teacher's accuracy, "
        f"{metrics['test_agreement_with_teacher']:.1%} agreement)"
    )


def _write(
    out: Path, job: _Job, metrics: dict, result, timings: dict, t0: float, overwrite: bool, inputs: tuple, preds: dict
) -> None:
    """The student folder: model, tokenizer, labels, metrics.json (with sizes), test predictions, the training
    log and manifest.json."""
    from mobilebert_kit import artifacts
    from mobilebert_kit.stages import predictions

    cfg, student = job.cfg, job.student
    with artifacts.staged_output(out, overwrite=overwrite, inputs=inputs) as tmp:
        student.model.save_pretrained(tmp, safe_serialization=True)
        student.tokenizer.save_pretrained(tmp)
        artifacts.write_labels(tmp, job.teacher.label_names)
        metrics["student"]["size_bytes"] = sum(f.stat().st_size for f in tmp.glob("*.safetensors"))
        metrics["compression"]["size"] = _ratio(job.teacher.size_bytes, metrics["student"]["size_bytes"])
        artifacts.write_json(tmp / artifacts.METRICS, metrics)
        publish_training_log(result.log_dir, tmp)
        predictions.write(tmp, preds)
        config = cfg.to_dict()
        config["data"] = job.data_cfg.to_dict()
        artifacts.write_manifest(
            tmp,
            stage="distill",
            config=config,
            inputs=_manifest_inputs(job),
            metrics=_headline(metrics, result),
            timings={**timings, "total_seconds": time.perf_counter() - t0},
            extra={
                "data": job.data_cfg.to_dict(),
                "max_length": cfg.train.max_length,
                "teacher": str(job.teacher.folder),
                "dataset": job.ds.summary(),
                "layer_map": student.layer_map or None,
                "resumed_from": result.resumed_from,
            },
        )


def _manifest_inputs(job: _Job) -> dict:
    from mobilebert_kit import artifacts

    student = job.student
    return {
        "model": artifacts.input_record(job.teacher.folder),
        "student_init": {
            "method": job.cfg.init_method,
            **({"layers": student.layers} if student.layers is not None else {}),
            **(student.source or {}),
        },
        "data": {
            "source": job.ds.source,
            **data_hash(job.data_cfg),
            **({"unlabeled": job.cfg.unlabeled, "unlabeled_count": len(job.unlabeled)} if job.unlabeled else {}),
        },
    }


def _headline(metrics: dict, result) -> dict:
    return {
        "test_accuracy": metrics["student"]["test"]["accuracy"],
        "test_macro_f1": metrics["student"]["test"]["macro_f1"],
        "teacher_test_accuracy": metrics["teacher"]["test"]["accuracy"],
        "teacher_test_macro_f1": metrics["teacher"]["test"]["macro_f1"],
        "accuracy_retention": metrics["retention"]["accuracy"],
        "train_examples_per_second": result.examples_per_second,
        "parameters": metrics["parameters"],
        "precision": f"{result.precision} ({result.precision_reason})",
    }


def _summary_line(out: Path, m: dict) -> str:
    return (
        f"student written to {out}: test accuracy {m['student']['test']['accuracy']:.4f} "
        f"(teacher {m['teacher']['test']['accuracy']:.4f}, {m['retention']['accuracy']:.1%}), "
        f"macro-F1 {m['student']['test']['macro_f1']:.4f}, {m['student']['parameters']:,} params "
        f"({m['compression']['parameters']:.1f}x fewer), {m['train_examples_per_second']:.1f} train ex/s"
    )


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b else float("nan")
