"""Reading the Kaggle "digit-recognizer" CSV files.

``train.csv`` has a header ``label,pixel0,...,pixel783`` and one 28x28 digit
per row; Kaggle's ``test.csv`` has the same pixel columns but no ``label``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nnexp.errors import DataError

N_PIXELS = 28 * 28
PIXEL_COLUMNS = [f"pixel{i}" for i in range(N_PIXELS)]


def has_label_column(path: str | os.PathLike) -> bool:
    """Whether the CSV's header has a ``label`` column (reads the header only)."""
    return "label" in _read(Path(path), nrows=0).columns


def read_kaggle_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Load a labelled Kaggle digit CSV.

    Returns:
        ``(images, labels)``: uint8 ``(N, 28, 28)`` and int64 ``(N,)``.

    Raises:
        DataError: missing file, no ``label`` column, not 784 pixel columns,
            non-numeric or missing values, pixels outside 0..255, labels
            outside 0..9, or no rows.
    """
    path = Path(path)
    df = _read(path)
    if "label" not in df.columns:
        raise DataError(f"{path}: no 'label' column (header starts {list(df.columns[:3])})")
    pixel_cols = [c for c in df.columns if c != "label"]
    if len(pixel_cols) != N_PIXELS:
        raise DataError(f"{path}: expected {N_PIXELS} pixel columns, found {len(pixel_cols)}")
    if set(pixel_cols) == set(PIXEL_COLUMNS):
        pixel_cols = PIXEL_COLUMNS  # honour the names if the columns were reordered
    if len(df) == 0:
        raise DataError(f"{path}: no data rows")

    labels = _integers(df[["label"]], path, "label", 0, 9)
    pixels = _integers(df[pixel_cols], path, "pixel", 0, 255)
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels.reshape(-1).astype(np.int64)


def _read(path: Path, nrows: int | None = None):
    """pd.read_csv with every failure turned into a one-line DataError."""
    import pandas as pd  # here, not at the top: importing pandas costs ~0.2 s for MNIST users
    if not path.is_file():
        raise DataError(f"Kaggle CSV not found: {path}")
    try:
        return pd.read_csv(path, nrows=nrows, low_memory=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: not a readable CSV ({first})") from None


def _integers(df, path: Path, what: str, low: int, high: int) -> np.ndarray:
    """Check that every cell of the DataFrame ``df`` is a whole number in [low, high].

    Returns an int64 array of shape ``(rows, columns)``.
    """
    import pandas as pd  # heavy: see _read
    for col in df.columns:
        if not pd.api.types.is_numeric_dtype(df[col]) or pd.api.types.is_bool_dtype(df[col]):
            bad = pd.to_numeric(df[col], errors="coerce").isna() & df[col].notna()
            row = int(np.argmax(bad.to_numpy())) if bad.any() else 0
            value = df[col].iloc[row]
            raise DataError(f"{path}: non-numeric value {value!r} in column {col!r} (data row {row + 1})")
    values = df.to_numpy()
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            row, col = np.argwhere(~np.isfinite(values))[0]
            raise DataError(f"{path}: missing value in column {df.columns[col]!r} (data row {row + 1})")
        if (values != np.round(values)).any():
            row, col = np.argwhere(values != np.round(values))[0]
            raise DataError(
                f"{path}: {what} value {values[row, col]} in column {df.columns[col]!r} "
                f"(data row {row + 1}) is not a whole number"
            )
    out_of_range = (values < low) | (values > high)
    if out_of_range.any():
        row, col = np.argwhere(out_of_range)[0]
        raise DataError(
            f"{path}: {what} value {values[row, col]} in column {df.columns[col]!r} "
            f"(data row {row + 1}) is outside {low}..{high}"
        )
    return values.astype(np.int64, copy=False)
