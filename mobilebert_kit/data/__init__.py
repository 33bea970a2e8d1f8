"""Data: dataset configs, built-in datasets that ship in packages, the users' file readers, unlabelled text."""

from mobilebert_kit.data.config import BUILTIN_DATASETS, SPLITS, DataConfig, Split, TextDataset
from mobilebert_kit.data.load import data_config_for, load_dataset, warn_about_splits
from mobilebert_kit.data.readers import read_rows
from mobilebert_kit.data.unlabeled import read_unlabeled

__all__ = [
    "BUILTIN_DATASETS",
    "DataConfig",
    "SPLITS",
    "Split",
    "TextDataset",
    "read_rows",
    "read_unlabeled",
    "data_config_for",
    "load_dataset",
    "log",
    "warn_about_splits",
]
