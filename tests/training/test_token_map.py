"""Token-level distillation from an MPNet-style teacher (BERT dictionary, other ids and specials)
into a BERT-vocabulary student: the id/special map, the per-text alignment check, and distill using it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_tiny_classifier, minilm_path

from mobilebert_kit.training import token_map


def mpnet_tokenizer(folder: Path):
    """MPNet's tokenizer laid out as all-mpnet-base-v2's: ``<s> <pad> </s> <unk>``, then BERT's uncased
    dictionary (every piece's id shifted by 4), then ``<mask>``: 30,527 entries."""
    from transformers import MPNetTokenizerFast

    bert = Path(minilm_path(), "vocab.txt").read_text(encoding="utf-8").splitlines()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(["<s>", "<pad>", "</s>", "<unk>", *bert, "<mask>"]) + "\n")
    return MPNetTokenizerFast(vocab_file=str(folder / "vocab.txt"))


@pytest.fixture(scope="module")
def toks(tmp_path_factory):
    from transformers import AutoTokenizer

    return mpnet_tokenizer(tmp_path_factory.mktemp("mpnet-vocab")), AutoTokenizer.from_pretrained(minilm_path())


def test_specials_and_pieces_map_onto_the_student_ids(toks):
    teacher, student = toks
    assert token_map.compatible(teacher, student)
    specials = token_map.special_map(teacher, student)
    assert (
        specials[teacher.cls_token_id] == student.cls_token_id
        and specials[teacher.sep_token_id] == student.sep_token_id
    )
    assert specials[teacher.pad_token_id] == student.pad_token_id and teacher.cls_token_id != student.cls_token_id
    assert len(teacher) == 30527 and teacher.convert_tokens_to_ids("film") == student.convert_tokens_to_ids("film") + 4
    mapping = token_map.id_map(teacher, student)
    t = teacher("A quietly devastating film.")["input_ids"]
    assert mapping[t].tolist() == student("A quietly devastating film.")["input_ids"]
    assert t != student("A quietly devastating film.")["input_ids"]  # the raw ids do differ


def test_misaligned_texts_are_found(toks):
    teacher, student = toks
    texts = ["fine", "an overlong <s> mess", "Cafés and naïve plots", "x " * 100]
    # "<s>" is one special token to MPNet and three pieces to BERT: positions shift after it
    assert token_map.misaligned(teacher, student, texts, max_length=32) == [1]


def test_a_cased_student_is_not_compatible(toks):
    from transformers import AutoTokenizer

    teacher, _ = toks
    cased = AutoTokenizer.from_pretrained(minilm_path(), do_lower_case=False)
    assert not token_map.compatible(teacher, cased)


def toks_of(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def _mpnet_teacher(folder: Path, data: Path) -> Path:
    import torch
    from transformers import MPNetConfig, MPNetForSequenceClassification

    from mobilebert_kit.artifacts import write_labels

    torch.manual_seed(0)
    tok = mpnet_tokenizer(folder.parent / "mpnet-vocab")
    config = MPNetConfig(
        vocab_size=len(tok),
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=130,
        num_labels=2,
        id2label={0: "neg", 1: "pos"},
        label2id={"neg": 0, "pos": 1},
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id,
    )
    model = MPNetForSequenceClassification(config)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    write_labels(folder, ["neg", "pos"])
    (folder / "manifest.json").write_text(
        json.dumps({"stage": "finetune", "data": {"data": str(data)}, "max_length": 32})
    )
    return folder


def test_distill_mpnet_teacher_to_bert_student_with_attention_and_hidden_losses(cli, tmp_path, sentiment_csv):
    """Before the map, distill refused a teacher with another tokenizer for these losses; now it trains
    (attention maps head-averaged: 4 teacher heads, 2 student heads; hidden states projected 32 -> 48),
    and refuses with one Error line when a text of the run does not line up."""
    teacher = _mpnet_teacher(tmp_path / "teacher", sentiment_csv)
    student = make_tiny_classifier(tmp_path / "student", layers=2, hidden=32, heads=2)
    common = ["-t", teacher, "--student", student, "--attention-weight", "1", "--hidden-weight", "1"]
    fast = ["--max-steps", "2", "--batch-size", "16", "--checkpoint-every", "0", "--cache-dir", tmp_path / "c"]
    r = cli("distill", *common, *fast, "-o", tmp_path / "s")
    assert r.exit_code == 0, r.output
    assert "token map: teacher and student tokens line up on all" in r.output
    from mobilebert_kit.training.students import same_tokenizer

    assert not same_tokenizer(toks_of(teacher), toks_of(student))  # the path that used to refuse
    bad = tmp_path / "raw.txt"
    bad.write_text("a film with a <s> in its title\nanother quiet film about the sea\n")
    r = cli("distill", *common, *fast, "--unlabeled", bad, "-o", tmp_path / "s2", "-q")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert (
        "splits 1 of" in r.output
        and "differently from the teacher's (first: 'a film with a <s> in its title')" in r.output
    )
    assert not (tmp_path / "s2").exists()
