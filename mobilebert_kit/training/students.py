"""Where a student starts: a copy of chosen teacher layers (weight for weight), a fresh model of a given
shape, or a pretrained folder / built-in name (e.g. ``paraphrase-minilm-l3``, trained at its own depth);
and the layer maps between student and teacher.
"""

from __future__ import annotations

import re

from mobilebert_kit.errors import ConfigError, ModelError

_LAYER_KEY = re.compile(r"(^|\.)layer\.(\d+)\.")


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

    n = layer_count(teacher.config)
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


def fresh_student(teacher, arch):
    """A freshly initialised student of ``arch``'s shape (distill's ``StudentArch``: layers, width, heads,
    FFN; each unset one taken from the teacher)."""
    import copy

    from transformers import AutoModelForSequenceClassification

    config = copy.deepcopy(teacher.config)
    hidden = arch.hidden_size or config.hidden_size
    heads = arch.num_heads or config.num_attention_heads
    if hidden % heads:
        raise ConfigError(f"student hidden_size ({hidden}) must be divisible by its number of heads ({heads})")
    config.hidden_size = hidden
    config.num_hidden_layers = arch.num_layers or layer_count(config)
    config.num_attention_heads = heads
    config.intermediate_size = arch.intermediate_size or 4 * hidden
    if hasattr(config, "embedding_size"):  # ALBERT-style factorised embeddings follow the width
        config.embedding_size = hidden
    return AutoModelForSequenceClassification.from_config(config)


def pretrained_student(source: str, label_names: list[str], log=None):
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
    return load_pretrained_for_classification(resolved, label_names, log=log), load_tokenizer(resolved.path), resolved


def same_tokenizer(a, b) -> bool:
    """Same vocabulary, normalizer and pre-tokenizer (token ids mean the same thing)."""

    from mobilebert_kit.models import tokenizer_spec

    def spec(t):
        d = tokenizer_spec(t)
        if d:
            return {k: d.get(k) for k in ("normalizer", "pre_tokenizer", "model")}
        return {"vocab": t.get_vocab(), "class": type(t).__name__}

    return spec(a) == spec(b)


def layer_count(config) -> int:
    n = getattr(config, "num_hidden_layers", None)
    if n is None:
        raise ModelError(f"the teacher config ({type(config).__name__}) has no num_hidden_layers; cannot pick layers")
    return int(n)
