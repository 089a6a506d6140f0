"""Datasets of the user's own: an .npz of arrays and a folder of images, trained end to
end, split and cached as the built-in sets are, and every bad input one message naming the file."""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nnexp.config import InvalidConfig, load_config
from nnexp.data import load_dataset
from nnexp.data.custom import read_folder, read_npz
from nnexp.errors import DataError
from nnexp.train import train

CLASSES = ("red", "green", "blue")


def make_folder(root: Path, colour: bool, per_class=(24, 6), size=(10, 14), split=True, seed=0) -> Path:
    """Images whose class is the strong channel (colour) or the bright third of the image (grayscale);
    train/ and test/ when ``split``, else one folder per class at the top."""
    rng = np.random.default_rng(seed)
    h, w = size
    for part, n in zip(("train", "test") if split else ("",), per_class):
        for k, name in enumerate(CLASSES):
            folder = root / part / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                if colour:
                    a = (rng.random((h, w, 3)) * 80).astype(np.uint8)
                    a[..., k] += 150
                else:
                    a = (rng.random((h, w)) * 80).astype(np.uint8)
                    a[:, k * w // 3:(k + 1) * w // 3] += 150
                Image.fromarray(a).save(folder / f"{i}.{'jpg' if i % 3 == 0 else 'png'}", quality=95)
    return root


def config(tmp_path: Path, data: str, layers: str = "[{type: dense, units: 16}, {type: relu}, "
                                                     "{type: dense, units: 3}]", epochs: int = 3) -> Path:
    path = tmp_path / "own.yaml"
    path.write_text(textwrap.dedent(f"""\
        data: {data}
        model: {{layers: {layers}}}
        optimizer: {{name: adam, lr: 0.01}}
        train: {{epochs: {epochs}, seed: 0}}
        tracking: {{store: {tmp_path / 'runs'}, plots: false}}
        """))
    return path


def quiet(*args, **kwargs):
    pass


# -------------------------------------------------------------------- npz --


def test_an_npz_set_without_a_test_set_is_split_as_the_csv_is_and_recorded(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.normal(0, 0.3, (300, 2, 5, 5)).astype(np.float32)
    x[np.arange(300), 0, y, 0] += 3.0   # float images: taken as they are, not divided by 255
    np.savez(tmp_path / "set.npz", x_train=x, y_train=y)
    path = config(tmp_path, "{dataset: npz, path: set.npz, val_size: 30, test_size: 60, batch_size: 20}")
    cfg = load_config(path)
    assert cfg["data"]["path"] == str(tmp_path / "set.npz")   # relative to the config file, made absolute
    run = train(cfg, log=quiet, progress=False)
    s = run.summary
    assert (s["train_size"], s["val_size"], s["test_size"]) == (210, 30, 60)
    assert s["classes"] == ["0", "1", "2"] and s["input_shape"] == [2, 5, 5]
    assert s["dataset_sha256"] == hashlib.sha256((tmp_path / "set.npz").read_bytes()).hexdigest()
    assert s["dataset_bytes"] == (tmp_path / "set.npz").stat().st_size
    assert s["test_accuracy"] > 0.9
    data = load_dataset("npz", path=str(tmp_path / "set.npz"), val_size=30, test_size=60, log=quiet)
    np.testing.assert_array_equal(data.x_test[:, 0, :, 0].argmax(1), data.y_test)   # the rows, unscaled
    assert data.x_test.dtype == np.float32


def test_a_model_that_does_not_fit_the_npz_classes_is_a_config_error(tmp_path):
    np.savez(tmp_path / "set.npz", x_train=np.zeros((20, 4, 4), np.uint8), y_train=np.arange(20) % 4)
    path = config(tmp_path, "{dataset: npz, path: set.npz, val_size: 2, test_size: 4}",
                  "[{type: conv2d, out_channels: 2, kernel_size: 5}, {type: dense, units: 3}]")
    with pytest.raises(InvalidConfig) as err:
        load_config(path)
    problems = "\n".join(err.value.problems)
    assert "the last dense layer must have 4 units (one per class), got 3" in problems
    assert "a 5x5 window does not fit the 4x4 input" in problems   # checked on the set's images, not 28x28


@pytest.mark.parametrize("arrays, message", [
    (dict(x_train=np.zeros((5, 4, 4)), y_train=np.zeros(4, int)), "x_train has 5 images but y_train has 4 labels"),
    (dict(x_train=np.zeros((4, 4, 4)), y_train=np.array([0, 1, 2, 3]), classes=np.array(["a", "b", "c"])),
     "y_train holds label 3, outside 0..2 (the 3 names of 'classes')"),
    (dict(x_train=np.zeros((4, 4, 4)), y_train=np.array([0, 1, -1, 1])), "y_train holds label -1, outside 0..1"),
    (dict(x_train=np.zeros((4, 4, 4))), "no y_train array (it holds x_train)"),
    (dict(x_train=np.zeros((4, 4, 4)), y_train=np.array([0, 1, 0, 1]), x_test=np.zeros((2, 4, 4))),
     "holds x_test without y_test"),
    (dict(x_train=np.zeros((4, 4, 4)), y_train=np.array([0, 1, 0, 1]), x_test=np.zeros((2, 4, 5)),
          y_test=np.array([0, 1])), "x_test images are (1, 4, 5), x_train's (1, 4, 4)"),
    (dict(x_train=np.zeros((4, 4, 4)), y_train=np.array([0.5, 1, 0, 1])), "must hold whole numbers"),
    (dict(x_train=np.zeros(4), y_train=np.array([0, 1, 0, 1])), "must be images (N, H, W) or (N, C, H, W)"),
    (dict(x_train=np.full((4, 4, 4), np.nan), y_train=np.array([0, 1, 0, 1])), "NaN or infinite"),
    (dict(x_train=np.zeros((4, 4, 4)), y_train=np.array([0, 1, 0, 1]), extra=np.zeros(2)), "unknown arrays ['extra']"),
])
def test_a_bad_npz_is_one_message_naming_the_file(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as err:
        read_npz(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)
    with pytest.raises(InvalidConfig) as err:   # and so a config naming it is refused before training
        load_config(config(tmp_path, "{dataset: npz, path: bad.npz}"))
    assert f"data.path: {path}: " in str(err.value)


def test_an_npz_with_pickled_objects_or_none_at_all_is_refused_by_name(tmp_path):
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, x_train=np.array([object()] * 2, dtype=object), y_train=np.array([0, 1]))
    text = tmp_path / "text.npz"
    text.write_text("x_train,y_train\n")
    for path in (pickled, text):
        with pytest.raises(DataError, match=f"^{path}: not a"):
            read_npz(path)
    with pytest.raises(DataError, match="no such file"):
        read_npz(tmp_path / "missing.npz")


# ----------------------------------------------------------- image folder --


@pytest.mark.parametrize("colour", [False, True], ids=["grayscale", "rgb"])
def test_an_image_folder_trains_end_to_end(tmp_path, colour):
    make_folder(tmp_path / "pictures", colour)
    layers = ("[{type: conv2d, out_channels: 4, padding: 1}, {type: relu}, {type: maxpool2d}, "
              "{type: dense, units: 3}]")
    path = config(tmp_path, "{dataset: image-folder, path: pictures, val_size: 9, batch_size: 16}", layers)
    run = train(load_config(path), log=quiet, progress=False)
    s = run.summary
    assert s["input_shape"] == [3 if colour else 1, 10, 14]
    assert s["classes"] == sorted(CLASSES)
    assert (s["train_size"], s["val_size"], s["test_size"]) == (63, 9, 18)   # test/ is the test set
    assert s["test_accuracy"] > 0.8


def test_an_image_folder_without_test_is_split_and_decoded_once(tmp_path):
    root = make_folder(tmp_path / "pictures", colour=True, per_class=(20,), split=False)
    cache, lines = tmp_path / "cache", []
    first = load_dataset("image-folder", path=str(root), val_size=6, test_size=12, cache_dir=str(cache),
                         log=lines.append)
    assert (len(first.x_train), len(first.x_val), len(first.x_test)) == (42, 6, 12)
    assert first.x_train.shape[1:] == (3, 10, 14) and 0 <= first.x_train.min() and first.x_train.max() <= 1
    assert len(list((cache / "image-folder").glob("*.npz"))) == 1
    again = load_dataset("image-folder", path=str(root), val_size=6, test_size=12, cache_dir=str(cache),
                         log=lines.append)
    assert any("from the cache" in line for line in lines)
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name))
    # another image: another digest, decoded afresh
    Image.fromarray(np.zeros((10, 14, 3), np.uint8)).save(root / "red" / "0.png")
    changed = read_folder(root, cache)
    assert changed.digest != first.facts["dataset_sha256"]
    assert len(list((cache / "image-folder").glob("*.npz"))) == 2


def test_grayscale_images_beside_colour_ones_become_colour(tmp_path):
    root = make_folder(tmp_path / "pictures", colour=False, per_class=(2,), split=False)
    rgb = np.zeros((10, 14, 3), np.uint8)
    rgb[..., 1] = 200
    Image.fromarray(rgb).save(root / "green" / "rgb.png")
    own = read_folder(root)
    assert own.x_train.shape == (7, 3, 10, 14)
    gray = own.x_train[0]
    assert np.array_equal(gray[0], gray[1]) and np.array_equal(gray[1], gray[2])


def bad_mixed_size(root):
    Image.fromarray(np.zeros((11, 14), np.uint8)).save(root / "blue" / "odd.png")
    return root / "blue" / "odd.png", "the image is 14x11, but"


def bad_empty_class(root):
    (root / "purple").mkdir()
    return root / "purple", "empty class folder"


def bad_not_an_image(root):
    (root / "red" / "notes.txt").write_text("taken on a sunny day")
    return root / "red" / "notes.txt", "not a PNG or JPEG image"


def bad_broken_png(root):
    (root / "green" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return root / "green" / "broken.png", "not a readable image"


def bad_one_class(root):
    for name in CLASSES[1:]:
        for p in (root / name).iterdir():
            p.unlink()
        (root / name).rmdir()
    return root, "one class folder only"


@pytest.mark.parametrize("spoil", [bad_mixed_size, bad_empty_class, bad_not_an_image, bad_broken_png, bad_one_class])
def test_a_bad_image_folder_is_one_message_naming_the_file(tmp_path, spoil):
    root = make_folder(tmp_path / "pictures", colour=False, per_class=(2,), split=False)
    where, message = spoil(root)
    with pytest.raises(DataError) as err:
        read_folder(root)
    assert str(err.value).startswith(f"{where}: ") and message in str(err.value)


def test_a_test_folder_with_an_unknown_class_is_refused(tmp_path):
    root = make_folder(tmp_path / "pictures", colour=False, per_class=(2, 1))
    (root / "test" / "red").rename(root / "test" / "rouge")
    with pytest.raises(DataError, match="class folder\\(s\\) \\['rouge'\\] are not in"):
        read_folder(root)


def test_data_inspect_shows_classes_counts_shape_and_a_grid(tmp_path, nnexp):
    root = make_folder(tmp_path / "pictures", colour=True)
    grid = tmp_path / "grid.png"
    code, out, _ = nnexp("data", "inspect", root, "--grid", grid, "--cache-dir", tmp_path / "cache")
    assert code == 0
    assert "image-folder, 3 classes, input 3x10x14 (uint8)" in out
    table = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()}
    assert table["red"] == ["24", "6"] and table["total"] == ["72", "18"]
    with Image.open(grid) as img:
        assert img.size[0] > 300 and img.size[1] > 200
    (tmp_path / "notes.txt").write_text("not data")
    code, _, err = nnexp("data", "inspect", tmp_path / "notes.txt")
    assert code == 1 and f"{tmp_path / 'notes.txt'}: not a readable .npz" in err


def test_predict_takes_images_like_the_runs_own(tmp_path, nnexp):
    make_folder(tmp_path / "pictures", colour=True)
    path = config(tmp_path, "{dataset: image-folder, path: pictures, val_size: 9}")
    run = train(load_config(path), log=quiet, progress=False)
    blue = tmp_path / "pictures" / "test" / "blue" / "1.png"
    code, out, err = nnexp("predict", run.id, blue, "--store", tmp_path / "runs", "--json")
    assert code == 0, err
    assert json.loads(out)[0]["prediction"] == "blue"
    wrong = tmp_path / "big.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(wrong)
    code, _, err = nnexp("predict", run.id, wrong, "--store", tmp_path / "runs")
    assert code == 1 and f"{wrong}: the image is 20x20, but the run was trained on 14x10 images" in err
