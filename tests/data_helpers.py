"""Helpers for the nnexp.data tests: tiny fake IDX datasets, a loopback HTTP
server, and small Kaggle-style CSVs."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np

from nnexp.data import sources
from nnexp.data.idx import idx_bytes

FILENAMES = {
    "train-images": "train-images-idx3-ubyte",
    "train-labels": "train-labels-idx1-ubyte",
    "test-images": "t10k-images-idx3-ubyte",
    "test-labels": "t10k-labels-idx1-ubyte",
}


def numbered_images(n: int, offset: int = 0) -> np.ndarray:
    """uint8 (n, 28, 28) images whose first two pixels encode their index + offset,
    so a test can tell which original image ended up in which split."""
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    ids = np.arange(offset, offset + n)
    images[:, 0, 0] = ids % 256
    images[:, 0, 1] = ids // 256
    images[:, 14, 14] = 255  # some ink, so the max pixel is 1.0 after scaling
    return images


def image_ids(x: np.ndarray) -> np.ndarray:
    """Inverse of numbered_images for float (N, 1, 28, 28) arrays scaled to [0, 1]."""
    pixels = np.rint(x[:, 0, 0, :2] * 255).astype(np.int64)
    return pixels[:, 0] + 256 * pixels[:, 1]


def fake_idx_files(n_train: int = 40, n_test: int = 12, seed: int = 0) -> dict[str, bytes]:
    """Raw IDX bytes of a tiny MNIST-shaped dataset, keyed by canonical file name."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images": numbered_images(n_train),
        "train-labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test-images": numbered_images(n_test, offset=10_000),
        "test-labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    return {FILENAMES[k]: idx_bytes(a) for k, a in arrays.items()}


def pin_fake_digests(monkeypatch, name: str, files: dict[str, bytes]) -> None:
    """Make ``name`` expect exactly ``files`` (raw bytes by file name), with no default mirrors."""
    specs = tuple(
        sources.FileSpec(key, fname, hashlib.sha256(files[fname]).hexdigest(), len(files[fname]))
        for key, fname in FILENAMES.items()
    )
    monkeypatch.setitem(sources.SPECS, name, sources.DatasetSpec(name, specs, mirrors=()))


def write_files(folder: Path, files: dict[str, bytes], *, gz: bool = False, dotted: bool = False) -> Path:
    """Write ``files`` into ``folder`` (optionally gzipped / with ``.idx`` dotted names)."""
    folder.mkdir(parents=True, exist_ok=True)
    for fname, data in files.items():
        if dotted:
            fname = fname.replace("-idx", ".idx")
        if gz:
            fname, data = fname + ".gz", gzip.compress(data, mtime=0)
        (folder / fname).write_bytes(data)
    return folder


@contextlib.contextmanager
def serve(files: dict[str, bytes]):
    """Serve ``files`` (URL path without the leading slash -> bytes) on 127.0.0.1.

    Yields ``(base_url, requests)`` where ``requests`` lists the paths asked for.
    """
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            requests.append(self.path)
            body = files.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # keep test output quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def gz_files(files: dict[str, bytes]) -> dict[str, bytes]:
    """``{name: raw}`` -> ``{name.gz: gzip(raw)}``, as a mirror serves them (level 1:
    quick for the real MNIST files, and no test depends on the level)."""
    return {f"{k}.gz": gzip.compress(v, compresslevel=1, mtime=0) for k, v in files.items()}


def kaggle_frame_text(n: int, seed: int = 0, *, label: bool = True) -> tuple[str, np.ndarray, np.ndarray]:
    """CSV text in Kaggle digit-recognizer format, plus its images (n, 28, 28) and labels (n,)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.int64)
    labels = rng.integers(0, 10, n, dtype=np.int64)
    header = (["label"] if label else []) + [f"pixel{i}" for i in range(784)]
    rows = [",".join(header)]
    for img, lab in zip(images, labels):
        cells = ([str(lab)] if label else []) + [str(v) for v in img.ravel()]
        rows.append(",".join(cells))
    return "\n".join(rows) + "\n", images, labels
