"""Tests for nnexp.data.idx: IDX parsing must give an array or a DataError, nothing else."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnexp.data.idx import IMAGES_MAGIC, LABELS_MAGIC, idx_bytes, parse_idx, read_idx, write_idx
from nnexp.errors import DataError


@pytest.mark.parametrize("shape", [(7,), (3, 28, 28), (2, 3, 4, 5), (0, 28, 28)])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip(tmp_path, shape, suffix):
    array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    path = write_idx(tmp_path / f"a-idx{suffix}", array)
    back = read_idx(path)
    assert back.dtype == np.uint8 and back.shape == shape
    np.testing.assert_array_equal(back, array)
    back[...] = 0  # the result is writable


def test_gzip_detected_by_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    gz_named_raw = tmp_path / "raw.gz"
    gz_named_raw.write_bytes(idx_bytes(array))
    plain_named_gz = tmp_path / "compressed-idx1-ubyte"
    plain_named_gz.write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(gz_named_raw), array)
    np.testing.assert_array_equal(read_idx(plain_named_gz), array)


def test_mnist_magic_numbers(tmp_path):
    images = write_idx(tmp_path / "images", np.zeros((2, 28, 28), np.uint8))
    labels = write_idx(tmp_path / "labels", np.zeros(2, np.uint8))
    assert read_idx(images, expect_magic=IMAGES_MAGIC).shape == (2, 28, 28)
    assert read_idx(labels, expect_magic=LABELS_MAGIC).shape == (2,)
    # A labels file where images are expected: wrong ndim in the magic number.
    with pytest.raises(DataError, match=r"labels: bad IDX magic number 0x00000801 \(expected 0x00000803\)"):
        read_idx(labels, expect_magic=IMAGES_MAGIC)


def test_other_idx_types_are_big_endian():
    header = bytes([0, 0, 0x0C, 1]) + (3).to_bytes(4, "big")  # int32, 1-D, 3 items
    payload = np.array([1, -2, 70000], dtype=">i4").tobytes()
    out = parse_idx(header + payload)
    assert out.dtype == np.int32 and out.dtype.isnative
    assert out.tolist() == [1, -2, 70000]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x00\x00\x08", "too short"),
        (b"\x12\x34\x08\x01" + b"\x00" * 8, "not an IDX file"),
        (b"\x00\x00\x07\x01" + b"\x00" * 8, "not an IDX file"),  # unknown type code
        (b"\x00\x00\x08\x00", "unsupported number of IDX dimensions"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x01", "truncated IDX header"),
    ],
)
def test_malformed_headers(data, message):
    with pytest.raises(DataError, match=message):
        parse_idx(data)


def test_wrong_magic_in_file_names_the_file(tmp_path):
    path = tmp_path / "bad-magic"
    path.write_bytes(b"\x00\x01\x08\x01" + (1).to_bytes(4, "big") + b"\x05")
    with pytest.raises(DataError, match="bad-magic: not an IDX file"):
        read_idx(path)


def test_truncated_payload_names_file_and_sizes(tmp_path):
    path = tmp_path / "short-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((2, 28, 28), np.uint8))[:-10])
    with pytest.raises(DataError) as info:
        read_idx(path)
    msg = str(info.value)
    assert str(path) in msg and "truncated" in msg and "1568" in msg and "1558" in msg


def test_extra_bytes_rejected(tmp_path):
    path = tmp_path / "long-idx1-ubyte"
    path.write_bytes(idx_bytes(np.zeros(5, np.uint8)) + b"\x00\x00")
    with pytest.raises(DataError, match=r"extra bytes.*needs 5 bytes, file has 7"):
        read_idx(path)


def test_corrupt_gzip(tmp_path):
    good = gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8)))
    for name, data in [("cut.gz", good[:-12]), ("garbage.gz", b"\x1f\x8b" + b"\xff" * 40)]:
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(DataError, match=f"{name}: corrupt gzip"):
            read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read IDX file"):
        read_idx(tmp_path / "nope")


def test_write_idx_rejects_non_uint8(tmp_path):
    with pytest.raises(ValueError):
        write_idx(tmp_path / "x", np.zeros(3, np.float32))


def _parse_or_data_error(data: bytes) -> None:
    try:
        out = parse_idx(data)
    except DataError:
        return
    assert isinstance(out, np.ndarray)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_give_array_or_data_error(data):
    _parse_or_data_error(data)


@settings(max_examples=300, deadline=None)
@given(
    type_code=st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x0A, 0xFF]),
    ndim=st.integers(0, 70),
    rest=st.binary(max_size=300),
)
def test_plausible_headers_give_array_or_data_error(type_code, ndim, rest):
    # Reach the deeper checks: a valid-looking magic number, then random dims/payload.
    _parse_or_data_error(bytes([0, 0, type_code, ndim]) + rest)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64), st.booleans())
def test_random_files_raw_or_gz_give_array_or_data_error(tmp_path_factory, data, compress):
    path = tmp_path_factory.mktemp("idx") / "f"
    path.write_bytes(gzip.compress(data) if compress else b"\x1f\x8b" + data)
    try:
        assert isinstance(read_idx(path), np.ndarray)
    except DataError:
        pass
