"""Loading a dataset (built-in or the user's), the warnings about its splits, and the data an artifact
was trained on.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from mobilebert_kit.data.builtin import rotten_tomatoes
from mobilebert_kit.data.config import BUILTIN_DATASETS, DataConfig, TextDataset
from mobilebert_kit.data.label_hygiene import call_out_class_counts
from mobilebert_kit.data.readers import user_dataset
from mobilebert_kit.errors import DataError, warn


def load_dataset(cfg: DataConfig) -> TextDataset:
    """Load and split the data described by ``cfg``; raises DataError with a fix on bad input."""
    if cfg.data in BUILTIN_DATASETS:
        ds = rotten_tomatoes(cfg)
    else:
        ds = user_dataset(cfg)
    seed = cfg.split_seed
    ds.splits["train"] = ds.splits["train"].subset(cfg.max_train_examples, seed)
    for name in ("validation", "test"):
        ds.splits[name] = ds.splits[name].subset(cfg.max_eval_examples, seed + 1)
    if len(set(ds.splits["train"].labels)) < 2:
        raise DataError(
            f"the training split of {cfg.data} has a single class ({ds.label_names[ds.splits['train'].labels[0]]}); "
            "a classifier needs at least two labels"
        )
    return ds


def warn_about_splits(ds: TextDataset, cfg: DataConfig) -> None:
    """Leakage and tiny splits in a user's data: results a careful user would not trust.
    Called once, by the stage where the user chooses the data (finetune), not by every stage."""
    if cfg.data in BUILTIN_DATASETS:
        return
    splits = ds.splits
    same = [
        flag
        for flag, p in (("--validation-data", cfg.validation_data), ("--test-data", cfg.test_data))
        if p and Path(p).expanduser().resolve() == Path(cfg.data).expanduser().resolve()
    ]
    if same:
        warn(f"{' and '.join(same)} is the training file itself: evaluation on it says nothing about new text")
    train = set(splits["train"].texts)
    for name in ("validation", "test"):
        texts = splits[name].texts
        overlap = sum(t in train for t in texts)
        if overlap and not same:
            warn(f"{overlap} of {len(texts)} {name} texts also appear in the training data; its accuracy is optimistic")
    _warn_absent_classes(ds)
    call_out_class_counts(Counter(ds.label_names[i] for i in splits["train"].labels), f"{cfg.data} (training split)")
    sizes = {name: len(s.texts) for name, s in splits.items()}
    if sizes["train"] < 100 or min(sizes["validation"], sizes["test"]) < 50:
        smallest = min(sizes["validation"], sizes["test"]) or 1
        warn(
            f"small splits after cleaning (train {sizes['train']}, validation {sizes['validation']}, "
            f"test {sizes['test']}): one example is {100 / smallest:.1f} pt of accuracy, so differences are mostly noise"
        )


def _warn_absent_classes(ds: TextDataset) -> None:
    """A class with no example in an evaluation split still counts in its macro-F1, as an F1 of 0 (metrics.py);
    rare classes (under ~6 rows) get none from the stratified split."""
    k = ds.num_labels
    for name, flag in (("validation", "--validation-data"), ("test", "--test-data")):
        present = set(ds.splits[name].labels)
        absent = [label for i, label in enumerate(ds.label_names) if i not in present]
        if absent:
            warn(
                f"the {name} split has no examples of {', '.join(absent)}; macro-F1 averages every class and counts "
                f"an absent one as 0, so {name} macro-F1 is at most {(k - len(absent)) / k:.2f}: "
                f"add rows of {'that class' if len(absent) == 1 else 'those classes'} or pass {flag} with some"
            )


def data_config_for(folder: str | Path, override: DataConfig | None = None) -> DataConfig:
    """The data an artifact was trained on (from its lineage), unless the user overrides it."""
    if override is not None:
        return override
    from mobilebert_kit.artifacts import lineage

    recorded = lineage(folder)["data"]
    if recorded is None:
        raise DataError(
            f"{folder} records no training data (no manifest.json with a 'data' entry); pass --data explicitly"
        )
    return DataConfig.from_dict(recorded)
