import pytest

from mobilebert_kit.data import DataConfig
from mobilebert_kit.errors import ConfigError
from mobilebert_kit.stages.finetune import FinetuneConfig
from mobilebert_kit.training.engine import TrainConfig


def test_unknown_keys_reported_with_did_you_mean_and_all_at_once():
    with pytest.raises(ConfigError) as e:
        FinetuneConfig.from_dict({"modle": "x", "train": {"epochz": 2, "lr": -1}})
    msg = str(e.value)
    assert "unknown key 'modle' (did you mean 'model'?)" in msg
    assert "unknown key 'train.epochz' (did you mean 'train.epochs'?)" in msg
    assert len(e.value.problems) == 2  # unknown keys stop before range checks


def test_range_problems_collected():
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_dict({"lr": 0, "epochs": 0, "precision": "fp8", "grad_accum": 0})
    probs = e.value.problems
    assert any(p.startswith("lr must be in (0, inf)") for p in probs)
    assert any(p.startswith("epochs must be in [1, inf)") for p in probs)
    assert any("precision must be one of auto, fp32, bf16, fp16; got 'fp8'" in p for p in probs)
    assert any(p.startswith("grad_accum") for p in probs)


def test_types_are_coerced_or_rejected():
    cfg = TrainConfig.from_dict({"epochs": "2", "lr": "3e-5", "compile": "false"})
    assert cfg.epochs == 2 and cfg.lr == 3e-5 and cfg.compile is False
    with pytest.raises(ConfigError, match="expected an integer"):
        TrainConfig.from_dict({"epochs": "two"})


def test_nested_sections_validated():
    with pytest.raises(ConfigError, match="data: validation_fraction"):
        FinetuneConfig.from_dict({"data": {"validation_fraction": 1.5}})
    cfg = FinetuneConfig.from_dict({"data": {"data": "x.csv"}, "train": {"epochs": 1}})
    assert isinstance(cfg.data, DataConfig) and cfg.data.data == "x.csv" and cfg.train.epochs == 1
    assert FinetuneConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("key", ["lr", "weight_decay", "warmup_ratio", "max_grad_norm"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_are_refused(key, value):
    with pytest.raises(ConfigError, match=rf"^{key} must be a finite number, got {value.replace('+', '')}$"):
        TrainConfig.from_dict({key: value})


def test_tolerances_refuse_nan():
    from mobilebert_kit.phone.parity import Tolerance

    with pytest.raises(ConfigError, match="max_abs_diff must be a finite number, got nan"):
        Tolerance(max_abs_diff=float("nan"))
