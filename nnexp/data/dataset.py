"""The :class:`Dataset` container, train/validation splitting and :func:`load_dataset`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnexp.data.custom import CUSTOM, read_folder, read_npz
from nnexp.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from nnexp.data.kaggle import has_label_column, read_kaggle_csv
from nnexp.data.sources import Log, default_cache_dir, fetch, pinned_digest, sha256_file
from nnexp.errors import DataError

DATASETS = ("mnist", "fashion-mnist", "kaggle-csv", *CUSTOM)

DIGIT_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
CLASSES = {"mnist": DIGIT_CLASSES, "fashion-mnist": FASHION_CLASSES, "kaggle-csv": DIGIT_CLASSES}


@dataclass
class Dataset:
    """Images as float32 ``(N, C, H, W)`` (``(N, 1, 28, 28)`` for the digit sets) with
    values pixel/255 in [0, 1]; labels as int64 ``(N,)``.  The validation split is
    carved from the training set.  ``facts``: what the summary records of the
    data read: its sha256 (``dataset_sha256``), and of a user's own set also its path and size in bytes."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    facts: dict = field(default_factory=dict)


def split_indices(n: int, held_out: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` into (kept, held-out) index arrays by a seeded permutation.

    The held-out part is the first ``held_out`` entries of
    ``np.random.default_rng(seed).permutation(n)``.  Both parts are sorted so the
    subsets keep the original order; they are disjoint and cover ``range(n)``.
    """
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[held_out:]), np.sort(perm[:held_out])


def split_train_val(x: np.ndarray, y: np.ndarray, val_size: int, seed: int):
    """Carve ``val_size`` random rows off ``(x, y)``.

    Returns ``(x_train, y_train, x_val, y_val)``; with ``val_size == 0`` the
    validation arrays are empty with the same trailing shape as ``x``.

    Raises:
        DataError: ``val_size`` is not an integer in ``0 .. len(x) - 1``.
    """
    _check_split_size("val_size", val_size, len(x), minimum=0)
    keep, held = split_indices(len(x), val_size, seed)
    return x[keep], y[keep], x[held], y[held]


def load_dataset(
    name: str,
    *,
    val_size: int = 5000,
    split_seed: int = 0,
    cache_dir: str | None = None,
    local_dir: str | None = None,
    mirrors: list[str] | None = None,
    csv_path: str | None = None,
    test_csv_path: str | None = None,
    test_size: int = 10000,
    path: str | None = None,
    log: Log = print,
) -> Dataset:
    """Load a dataset by name, fetching it into the cache if needed.

    Args:
        name: one of :data:`DATASETS`.
        val_size: rows carved from the training set for validation (may be 0).
        split_seed: seed of the validation split (and of Kaggle's test split).
        cache_dir, local_dir, mirrors: see :func:`nnexp.data.fetch` (IDX datasets).
        csv_path: the labelled Kaggle train.csv (``kaggle-csv`` only).
        test_csv_path: an optional labelled test CSV; when absent or unlabelled,
            ``test_size`` rows of ``csv_path`` become the test set instead.
        path: the .npz file (``npz``) or the folder (``image-folder``) of a
            user's own set (nnexp/data/custom.py); without a test set of its
            own, ``test_size`` rows become one, as for the CSV.
        log: receives progress lines.

    Raises:
        DataError: unknown name, data that cannot be fetched or parsed, bad sizes.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}: choose from {', '.join(DATASETS)}")
    _check_split_size("val_size", val_size, None, minimum=0)  # type check before slow loading
    facts, classes = {}, CLASSES.get(name)
    if name == "kaggle-csv":
        x_train, y_train, x_test, y_test = _load_kaggle(csv_path, test_csv_path, test_size, split_seed, log)
        files = [csv_path] + ([test_csv_path] if test_csv_path is not None else [])
        facts = {"dataset_sha256": hashlib.sha256(" ".join(sha256_file(Path(f)) for f in files).encode()).hexdigest()}
    elif name in CUSTOM:
        if path is None:
            raise DataError(f"dataset {name!r} needs data.path (the {'.npz file' if name == 'npz' else 'folder'})")
        own = read_npz(path) if name == "npz" else read_folder(path, cache_dir or default_cache_dir(), log)
        x_train, y_train, x_test, y_test, classes = own.x_train, own.y_train, own.x_test, own.y_test, own.classes
        if x_test is None:   # split off as the CSV's test rows are, before the validation split
            _check_split_size("test_size", test_size, len(x_train), minimum=1)
            keep, held = split_indices(len(x_train), test_size, split_seed)
            x_train, y_train, x_test, y_test = x_train[keep], y_train[keep], x_train[held], y_train[held]
        facts = {"dataset_path": str(path), "dataset_sha256": own.digest, "dataset_bytes": own.size_bytes}
    else:
        paths = fetch(name, cache_dir=cache_dir, local_dir=local_dir, mirrors=mirrors, log=log)
        x_train, y_train = _read_pair(paths["train-images"], paths["train-labels"])
        x_test, y_test = _read_pair(paths["test-images"], paths["test-labels"])
        facts = {"dataset_sha256": pinned_digest(name)}

    x_train, y_train, x_val, y_val = split_train_val(x_train, y_train, val_size, split_seed)
    log(f"{name}: {len(x_train)} train / {len(x_val)} val / {len(x_test)} test images")
    return Dataset(
        name=name,
        x_train=_to_float(x_train), y_train=y_train,
        x_val=_to_float(x_val), y_val=y_val,
        x_test=_to_float(x_test), y_test=y_test,
        classes=list(classes), facts=facts,
    )


def _read_pair(images_path, labels_path) -> tuple[np.ndarray, np.ndarray]:
    """Read and cross-check an images/labels IDX pair -> uint8 (N, 28, 28), int64 (N,)."""
    images = read_idx(images_path, expect_magic=IMAGES_MAGIC)
    labels = read_idx(labels_path, expect_magic=LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: images are {images.shape[1:]}, expected 28x28")
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    if len(labels) and labels.max() >= 10:
        raise DataError(f"{labels_path}: label {int(labels.max())} is outside 0..9")
    return images, labels.astype(np.int64)


def _load_kaggle(csv_path, test_csv_path, test_size, seed, log: Log):
    """Kaggle CSV -> (x_train, y_train, x_test, y_test) as uint8 images / int64 labels."""
    if csv_path is None:
        raise DataError("dataset 'kaggle-csv' needs csv_path (the Kaggle train.csv; set data.csv_path)")
    x, y = read_kaggle_csv(csv_path)
    if test_csv_path is not None and has_label_column(test_csv_path):
        x_test, y_test = read_kaggle_csv(test_csv_path)
        log(f"kaggle-csv: test set from {test_csv_path} ({len(x_test)} rows)")
        return x, y, x_test, y_test
    if test_csv_path is not None:
        log(f"kaggle-csv: {test_csv_path} has no 'label' column, so it cannot be scored; "
            f"using {test_size} rows of {csv_path} as the test set instead")
    _check_split_size("test_size", test_size, len(x), minimum=1)
    # Carve the test rows before the validation split, so val never sees them.
    keep, held = split_indices(len(x), test_size, seed)
    return x[keep], y[keep], x[held], y[held]


def _check_split_size(what: str, size, n: int | None, *, minimum: int) -> None:
    """Require ``minimum <= size < n`` (just the type and minimum when n is None)."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise DataError(f"{what} must be an integer, got {size!r}")
    if size < minimum or (n is not None and size >= n):
        limit = f" and below the {n} available rows" if n is not None else ""
        raise DataError(f"{what}={size} is invalid: it must be at least {minimum}{limit}")


def _to_float(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) scaled to [0, 1]; uint8 (N, C, H, W)
    scaled the same way; float images (a user's npz) as float32, unscaled."""
    if images.dtype != np.uint8:
        return images.astype(np.float32, copy=False)
    out = images.astype(np.float32)
    out /= 255.0  # in place: no second float copy of the 188 MB training set
    return out.reshape(len(images), 1, 28, 28) if images.ndim == 3 else out
