"""Reading and writing IDX files, the binary format MNIST is distributed in.

An IDX file is a 4-byte magic number ``00 00 <type> <ndim>``, then ``ndim``
big-endian uint32 dimension sizes, then the payload in C order.  The files are
often gzip-compressed; :func:`read_idx` detects that from the content (the gzip
magic bytes ``1f 8b``), not from the file name.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from nnexp.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"

# IDX type code -> big-endian dtype of the payload.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# The two magic numbers MNIST-style data sets use.
LABELS_MAGIC = 0x00000801  # uint8, 1-D: (N,)
IMAGES_MAGIC = 0x00000803  # uint8, 3-D: (N, rows, cols)

# NumPy arrays have at most 32 dims on older versions; real IDX files use 1-4.
MAX_NDIM = 32


def read_idx(path: str | os.PathLike, *, expect_magic: int | None = None) -> np.ndarray:
    """Read a raw or gzip-compressed IDX file.

    Args:
        path: the file.
        expect_magic: if given (e.g. ``IMAGES_MAGIC``), the file's magic number
            must equal it.

    Returns:
        A writable, native-endian array with the file's shape and dtype
        (uint8 ``(N, 28, 28)`` for MNIST images, uint8 ``(N,)`` for labels).

    Raises:
        DataError: unreadable file, corrupt gzip, or any malformed content.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read IDX file {path}: {exc.strerror or exc}") from None
    if data[:2] == GZIP_MAGIC:
        data = gunzip(data, source=str(path))
    return parse_idx(data, source=str(path), expect_magic=expect_magic)


def gunzip(data: bytes, *, source: str = "<bytes>") -> bytes:
    """Decompress gzip bytes, turning every decoder failure into DataError."""
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise DataError(f"{source}: corrupt gzip data ({exc})") from None


def parse_idx(data: bytes, *, source: str = "<bytes>", expect_magic: int | None = None) -> np.ndarray:
    """Parse uncompressed IDX bytes into an array (see :func:`read_idx`).

    ``source`` names the file in error messages.
    """
    if len(data) < 4:
        raise DataError(f"{source}: too short for an IDX file ({len(data)} bytes, need at least 4)")
    magic = int.from_bytes(data[:4], "big")
    if expect_magic is not None and magic != expect_magic:
        raise DataError(
            f"{source}: bad IDX magic number 0x{magic:08x} (expected 0x{expect_magic:08x})"
        )
    zero, type_code, ndim = magic >> 16, data[2], data[3]
    if zero != 0 or type_code not in IDX_DTYPES:
        raise DataError(f"{source}: not an IDX file (magic number 0x{magic:08x})")
    if not 1 <= ndim <= MAX_NDIM:
        raise DataError(f"{source}: unsupported number of IDX dimensions ({ndim})")

    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{source}: truncated IDX header (expected {header} bytes, got {len(data)})"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))

    dtype = IDX_DTYPES[type_code]
    expected = math.prod(dims) * dtype.itemsize  # Python ints: no overflow on huge dims
    actual = len(data) - header
    if actual != expected:
        kind = "truncated" if actual < expected else "has extra bytes"
        raise DataError(
            f"{source}: IDX payload {kind}: shape {dims} needs {expected} bytes, "
            f"file has {actual}"
        )
    array = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    # astype copies: the result is writable and native-endian.
    return array.reshape(dims).astype(dtype.newbyteorder("="))


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array (any number of dims >= 1) as uncompressed IDX bytes."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"idx_bytes writes uint8 arrays only, got {array.dtype}")
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"cannot write a {array.ndim}-D array as IDX")
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write a uint8 array as an IDX file; gzip it when ``path`` ends in ``.gz``.

    Meant for tests and fixtures.  Returns the path.
    """
    path = Path(path)
    data = idx_bytes(array)
    if path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)  # mtime=0: same array -> same bytes
    path.write_bytes(data)
    return path
