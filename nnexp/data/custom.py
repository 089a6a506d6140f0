"""The user's own data: an .npz file of arrays, or a folder of images.

``npz``: a NumPy archive holding ``x_train`` and ``y_train`` and optionally
``x_test`` and ``y_test`` (together) and ``classes`` (their names).  Images are
(N, H, W) or (N, C, H, W); uint8 pixels are scaled to [0, 1], floats are
taken as they are.  Labels are whole numbers 0..classes-1.

``image-folder``: DIR holds one sub-folder per class (``DIR/cat/*.png``), or
``train/`` and ``test/`` folders that each do.  PNG or JPEG, grayscale or
colour, all of one size: the input shape is (1, H, W), or (3, H, W) when any
image has colour.  The decoded pixels are cached under the cache folder,
keyed by the sha256 of the folder's files, so a second run reads one array.

Without a test set (no x_test, no test/ folder), ``test_size`` rows are split
off as the Kaggle CSV's are; the validation split follows as for every set.
Every mistake is one DataError naming the file.
"""

from __future__ import annotations

import hashlib
import json
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from nnexp.atomic import atomic_writer
from nnexp.errors import DataError

CUSTOM = ("npz", "image-folder")
EXTENSIONS = (".png", ".jpg", ".jpeg")
MAX_PIXELS = 4096 * 4096


@dataclass
class Arrays:
    """A custom set before splitting: uint8 or float images (N, C, H, W), int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    classes: list[str]
    digest: str   # sha256 of the file (npz) or of the folder's files, names included
    size_bytes: int


# ---------------------------------------------------------------------- npz --


def read_npz(path) -> Arrays:
    """The arrays of an .npz set, checked (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (data.path of an npz dataset)")
    data = path.read_bytes()
    if not data.startswith(b"PK"):
        raise DataError(f"{path}: not a readable .npz file (an .npz is a zip archive of .npy arrays)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except ValueError:   # an object array: allow_pickle=False refuses to unpickle it
        raise DataError(f"{path}: not an .npz of plain arrays (it holds pickled objects, "
                        "which nnexp never loads)") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    if not isinstance(arrays, dict):
        raise DataError(f"{path}: expected an .npz archive of named arrays")
    missing = [k for k in ("x_train", "y_train") if k not in arrays]
    if missing:
        raise DataError(f"{path}: no {' or '.join(missing)} array (it holds {', '.join(sorted(arrays)) or 'nothing'})")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path}: holds {'x_test' if 'x_test' in arrays else 'y_test'} without "
                        f"{'y_test' if 'x_test' in arrays else 'x_test'}; give both or neither")
    unknown = sorted(set(arrays) - {"x_train", "y_train", "x_test", "y_test", "classes"})
    if unknown:
        raise DataError(f"{path}: unknown arrays {unknown} (allowed: x_train, y_train, x_test, y_test, classes)")
    classes = None
    if "classes" in arrays:
        names = arrays["classes"]
        if names.ndim != 1 or names.dtype.kind not in "US" or not len(names):
            raise DataError(f"{path}: 'classes' must be a 1-D array of names, got {names.dtype} {names.shape}")
        classes = [str(c) for c in names]
    x_train, y_train = _images(arrays["x_train"], path, "x_train"), _labels(arrays["y_train"], path, "y_train")
    _same_length(x_train, y_train, path, "x_train", "y_train")
    x_test = y_test = None
    if "x_test" in arrays:
        x_test, y_test = _images(arrays["x_test"], path, "x_test"), _labels(arrays["y_test"], path, "y_test")
        _same_length(x_test, y_test, path, "x_test", "y_test")
        if x_test.shape[1:] != x_train.shape[1:]:
            raise DataError(f"{path}: x_test images are {x_test.shape[1:]}, x_train's {x_train.shape[1:]}")
    n_classes = len(classes) if classes else 1 + max(int(y.max()) for y in (y_train, y_test) if y is not None and len(y))
    for name, y in (("y_train", y_train), ("y_test", y_test)):
        if y is not None and len(y) and (y.min() < 0 or y.max() >= n_classes):
            bad = int(y.min()) if y.min() < 0 else int(y.max())
            raise DataError(f"{path}: {name} holds label {bad}, outside 0..{n_classes - 1}"
                            + (f" (the {n_classes} names of 'classes')" if classes else ""))
    if n_classes < 2:
        raise DataError(f"{path}: the labels name one class only; a classifier needs two or more")
    return Arrays(x_train, y_train, x_test, y_test, classes or [str(i) for i in range(n_classes)],
                  hashlib.sha256(data).hexdigest(), len(data))


def _images(x: np.ndarray, path: Path, name: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or not len(x) or min(x.shape) < 1:
        raise DataError(f"{path}: {name} must be images (N, H, W) or (N, C, H, W), got shape {x.shape}")
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind not in "fiu" or x.dtype == np.bool_:
        raise DataError(f"{path}: {name} must hold numbers, got {x.dtype}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{path}: {name} holds NaN or infinite values")
    return x


def _labels(y: np.ndarray, path: Path, name: str) -> np.ndarray:
    if y.ndim != 1:
        raise DataError(f"{path}: {name} must be one label per image (N,), got shape {y.shape}")
    if y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all():
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise DataError(f"{path}: {name} must hold whole numbers (class indices), got {y.dtype}")
    return y.astype(np.int64)


def _same_length(x, y, path: Path, xn: str, yn: str) -> None:
    if len(x) != len(y):
        raise DataError(f"{path}: {xn} has {len(x)} images but {yn} has {len(y)} labels")


# ------------------------------------------------------------- image folder --


def image_files(folder: Path) -> dict[str, list[Path]]:
    """{class name: its files, sorted} of a folder with one sub-folder per class."""
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{folder}: no class folders (expected one sub-folder of images per class)")
    out = {}
    for c in classes:
        files = sorted(p for p in c.iterdir() if not p.name.startswith("."))
        if not files:
            raise DataError(f"{c}: empty class folder (every class needs at least one image)")
        for p in files:
            if p.is_dir():
                raise DataError(f"{p}: a folder inside the class folder {c.name}; images only, one level deep")
            if p.suffix.lower() not in EXTENSIONS:
                raise DataError(f"{p}: not a PNG or JPEG image (its class folder must hold images only)")
        out[c.name] = files
    return out


def layout(root: Path) -> tuple[dict[str, list[Path]], dict[str, list[Path]] | None]:
    """(train class files, test class files or None) of an image folder."""
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (data.path of an image-folder dataset)")
    if (root / "train").is_dir():
        train = image_files(root / "train")
        test = image_files(root / "test") if (root / "test").is_dir() else None
        if test is not None:
            unknown = sorted(set(test) - set(train))
            if unknown:
                raise DataError(f"{root / 'test'}: class folder(s) {unknown} are not in {root / 'train'}")
        return train, test
    return image_files(root), None


def folder_digest(train: dict, test: dict | None, root: Path) -> tuple[str, int]:
    """(sha256 over every file's path relative to ``root`` and bytes, total bytes)."""
    h, total = hashlib.sha256(), 0
    for part in (train, test or {}):
        for files in part.values():
            for p in files:
                data = p.read_bytes()
                h.update(str(p.relative_to(root)).encode() + b"\0" + len(data).to_bytes(8, "little") + data)
                total += len(data)
    return h.hexdigest(), total


def read_image(path: Path) -> np.ndarray:
    """uint8 (H, W) for a grayscale image, (H, W, 3) for a colour one; DataError naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise DataError(f"{path}: image is too large ({img.width}x{img.height})")
                gray = img.mode in ("1", "L", "LA", "I", "I;16", "F") or (
                    img.mode == "P" and _palette_is_gray(img))
                img = img.convert("L" if gray else "RGB")
                return np.asarray(img, dtype=np.uint8)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 -- Pillow's decoders fail in many types; the file is at fault
        raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None


def as_input(path, shape: tuple) -> np.ndarray:
    """One image as a network trained on an image folder takes it: float32 (C, H, W) in [0, 1];
    DataError naming the file when its size differs from ``shape``'s."""
    a = read_image(Path(path))
    channels, h, w = shape
    if a.shape[:2] != (h, w):
        raise DataError(f"{path}: the image is {a.shape[1]}x{a.shape[0]}, but the run was trained on {w}x{h} images")
    if a.ndim == 2:
        a = a[..., None].repeat(channels, axis=2)
    elif channels == 1:
        raise DataError(f"{path}: a colour image, but the run was trained on grayscale ones")
    return a.transpose(2, 0, 1).astype(np.float32) / 255.0


def _palette_is_gray(img) -> bool:
    rgb = np.asarray(img.convert("RGB"))
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def decode_folder(train: dict, test: dict | None, classes: list[str]):
    """(x_train, y_train, x_test, y_test) uint8 (N, C, H, W) / int64; every image of one size."""
    first: tuple[Path, tuple] | None = None
    pictures, labels = {"train": [], "test": []}, {"train": [], "test": []}
    for part, files_by_class in (("train", train), ("test", test or {})):
        for c, files in files_by_class.items():
            for p in files:
                a = read_image(p)
                if first is None:
                    first = (p, a.shape[:2])
                elif a.shape[:2] != first[1]:
                    (h, w), (h0, w0) = a.shape[:2], first[1]
                    raise DataError(f"{p}: the image is {w}x{h}, but {first[0]} is {w0}x{h0}; "
                                    "every image of a folder set must have one size")
                pictures[part].append(a)
                labels[part].append(classes.index(c))
    colour = any(a.ndim == 3 for part in pictures.values() for a in part)

    def stack(images):
        if not images:
            return None
        if colour:
            images = [np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a for a in images]
            return np.stack(images).transpose(0, 3, 1, 2).copy()
        return np.stack(images)[:, None]

    y = {k: np.array(v, dtype=np.int64) for k, v in labels.items()}
    return stack(pictures["train"]), y["train"], stack(pictures["test"]), (y["test"] if test else None)


def read_folder(root, cache_dir=None, log=print) -> Arrays:
    """The images of an image folder, decoded once and then read from the cache."""
    root = Path(root)
    train, test = layout(root)
    classes = sorted(train)
    if len(classes) < 2:
        raise DataError(f"{root}: one class folder only ({classes[0]}); a classifier needs two or more")
    digest, size = folder_digest(train, test, root)
    cache = Path(cache_dir) / "image-folder" / f"{digest}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            meta = json.loads(str(arrays.pop("meta")))
            log(f"image-folder: {root} from the cache ({cache.name[:12]}...)")
            return Arrays(arrays["x_train"], arrays["y_train"], arrays.get("x_test"), arrays.get("y_test"),
                          meta["classes"], digest, size)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            log(f"image-folder: the cached {cache} is damaged; decoding the images again")
    x_train, y_train, x_test, y_test = decode_folder(train, test, classes)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"x_train": x_train, "y_train": y_train, "meta": np.array(json.dumps({"classes": classes}))}
        if x_test is not None:
            arrays |= {"x_test": x_test, "y_test": y_test}
        with atomic_writer(cache, binary=True) as f:
            np.savez(f, **arrays)
    return Arrays(x_train, y_train, x_test, y_test, classes, digest, size)


# ------------------------------------------------------------------ peeking --


def peek(dataset: str, path) -> tuple[tuple, int]:
    """(per-sample input shape, number of classes) of a custom set, read cheaply
    (an npz's arrays; a folder's names and its first image): what the config
    check builds the model with."""
    path = Path(path)
    if dataset == "npz":
        a = read_npz(path)
        return tuple(int(d) for d in a.x_train.shape[1:]), len(a.classes)
    train, test = layout(path)
    first = read_image(next(iter(train.values()))[0])
    channels = 3 if any(_is_colour(p) for files in (*train.values(), *(test or {}).values()) for p in files) else 1
    return (channels, *first.shape[:2]), len(train)


def _is_colour(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            if img.mode == "P":
                return not _palette_is_gray(img)
            return img.mode not in ("1", "L", "LA", "I", "I;16", "F")
    except Exception:  # noqa: BLE001 -- reported by name when the images are decoded
        return False
