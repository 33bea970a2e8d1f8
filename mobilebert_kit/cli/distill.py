from __future__ import annotations

import click

from mobilebert_kit.cli.common import (
    DATA_OPTIONS,
    TRAIN_OPTIONS,
    data_options,
    default_of,
    emit_result,
    output_options,
    pick,
    save_recipe_option,
    train_options,
    write_stage_recipe,
)
from mobilebert_kit.stages.distill import DistillConfig

ARCH_KEYS = ("hidden_size", "num_layers", "num_heads", "intermediate_size")
DISTILL_OPTIONS = (  # DistillConfig fields set by this command's own options, in recipe order
    "teacher",
    "layers",
    "student",
    "student_config",
    "temperature",
    "alpha",
    "hidden_weight",
    "attention_weight",
    "layer_map",
    "unlabeled",
    "max_unlabeled",
    "unlabeled_window",
    "window_sentences",
    "overlap_ngram",
    "cache_dir",
    "teacher_precision",
)


def _d(name: str) -> str:
    return default_of(DistillConfig, name)


def _int_list(ctx, param, value):
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers like 0,2,4; got {value!r}") from None


def _arch(ctx, param, value):
    if value is None:
        return None
    out = {}
    for part in value.split(","):
        if "=" not in part:
            raise click.BadParameter(f"expected KEY=VALUE pairs ({', '.join(ARCH_KEYS)}); got {part!r}")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


@click.command("distill")
@click.option("--teacher", "-t", help=f"Fine-tuned teacher folder. {_d('teacher')}")
@click.option(
    "--layers",
    callback=_int_list,
    help="Copy these teacher layers (0-based), embeddings and head into the "
    "student (with --student: keep these layers of it). [default: every other layer, e.g. 0,2,4 of 6]",
)
@click.option(
    "--student",
    help="Start from this HF model/folder or built-in (paraphrase-minilm-l3: a 3-layer BERT trained at that "
    "depth; same tokenizer as the teacher for hidden/attention losses).",
)
@click.option(
    "--student-config",
    callback=_arch,
    help="Fresh random-init student: hidden_size=N,num_layers=N,num_heads=N,intermediate_size=N (omitted = teacher's).",
)
@click.option("--temperature", "-T", type=float, help=f"Softmax temperature of the soft loss. {_d('temperature')}")
@click.option(
    "--alpha", type=float, help=f"Weight of the soft loss (KL*T^2); 1-alpha weighs hard-label CE. {_d('alpha')}"
)
@click.option(
    "--hidden-weight", type=float, help=f"Weight of the hidden-state MSE loss (0 = off). {_d('hidden_weight')}"
)
@click.option(
    "--attention-weight", type=float, help=f"Weight of the attention-map MSE loss (0 = off). {_d('attention_weight')}"
)
@click.option(
    "--layer-map",
    callback=_int_list,
    help="Teacher layer (0-based) each student layer mimics in the "
    "hidden/attention losses. [default: uniform, last to last]",
)
@click.option(
    "--unlabeled",
    help="Extra raw text the teacher labels for the student: 'builtin' (the dataset's own, "
    "e.g. Rotten Tomatoes plot summaries), 'imdb' (25k IMDB reviews cut into sentence windows) or a "
    ".txt/.csv/.tsv/.jsonl file. Texts overlapping validation/test are dropped and counted.",
)
@click.option("--max-unlabeled", type=int, help="Use a seeded subset of the unlabeled text (this many windows).")
@click.option(
    "--unlabeled-window",
    type=click.Choice(["auto", "sentences", "none"]),
    help="Cut unlabeled documents into windows of whole sentences up to the max length: auto = only texts "
    f"longer than that ('imdb': every review), sentences = every text, none = as given. {_d('unlabeled_window')}",
)
@click.option("--window-sentences", type=int, help=f"At most this many sentences per window. {_d('window_sentences')}")
@click.option(
    "--overlap-ngram",
    type=int,
    help=f"Drop unlabeled text sharing this many words in a row with a validation/test text. {_d('overlap_ngram')}",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    help="Teacher-output cache. [default: $MBK_CACHE/teacher_cache or ~/.cache/mobilebert_kit/teacher_cache]",
)
@click.option(
    "--teacher-precision",
    type=click.Choice(["fp32", "int8", "bf16", "auto"]),
    help="The teacher pass over the training text: int8 runs it with dynamic INT8 Linear layers on CPU, "
    "checked against fp32 on a sample first (2.1-2.2x faster on the MiniLM teacher); bf16 runs it in bf16 "
    "autocast, checked the same way (CPUs with native bf16); auto checks both there, times them on the sample "
    "and keeps the faster (int8 elsewhere). "
    f"{_d('teacher_precision')}",
)
@data_options
@train_options
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in <output>.ckpt/.")
@save_recipe_option
@output_options("artifacts/student")
def command(resume, save_recipe, output, overwrite, quiet, as_json, **kwargs):
    """Distill the fine-tuned teacher into a small student.

    Teacher outputs are computed once and cached (keyed by teacher weights, texts and max
    length), then the student trains on the shared engine. Data and max length default to
    what the teacher was trained with.

    \b
    Examples:
      mbk distill                                        # layers 0,2,4 of artifacts/teacher, T=3, alpha=0.5
      mbk distill --layers 0,2,4 --temperature 3 --alpha 0.5 --epochs 3   # the seed-004 recipe
      mbk distill --unlabeled builtin --hidden-weight 1 # + teacher-labelled plot summaries, hidden MSE
      mbk distill --student-config hidden_size=256,num_layers=4,num_heads=4 --lr 1e-4
      mbk distill --student path/to/small-bert --alpha 1
      mbk distill --student paraphrase-minilm-l3 --unlabeled imdb --max-unlabeled 25000
    """
    from mobilebert_kit.stages.base import RunContext
    from mobilebert_kit.stages.distill import inherit_from_teacher, run

    section: dict = {"output": output, "train": pick(kwargs, TRAIN_OPTIONS), **pick(kwargs, DISTILL_OPTIONS)}
    inherit_from_teacher(section, section.get("teacher", DistillConfig.teacher), pick(kwargs, DATA_OPTIONS))
    cfg = DistillConfig.from_dict(section)
    write_stage_recipe(save_recipe, "distill", section)
    ctx = RunContext(overwrite=overwrite, resume=resume, quiet=quiet or as_json)
    emit_result(run(cfg, ctx), as_json, quiet)
