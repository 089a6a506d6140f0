"""Datasets for nnexp: MNIST, Fashion-MNIST (IDX files, fetched into a verified
cache) and Kaggle's digit-recognizer CSV.

    from nnexp.data import load_dataset
    ds = load_dataset("mnist", val_size=5000)   # ds.x_train: float32 (55000, 1, 28, 28)
"""

from nnexp.data.dataset import DATASETS, Dataset, load_dataset
from nnexp.data.sources import default_cache_dir, fetch

__all__ = ["DATASETS", "Dataset", "default_cache_dir", "fetch", "load_dataset"]
