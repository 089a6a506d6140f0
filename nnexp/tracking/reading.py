"""Reading the files of a store, which anyone may have put there: safely, with limits.

A store can come from elsewhere (a colleague's tarball, a shared disk), so
every reader of its run and sweep folders (records, the index, ``nnexp
show``, the dashboard) goes through :func:`read_bytes`, which:

- opens only regular files: a named pipe, a device, a socket or a folder
  under a file's name is refused (:class:`NotRegularFile`), after an
  ``lstat`` that never opens it and an ``fstat`` of what was opened (without
  blocking, ``O_NONBLOCK``), so a pipe swapped in between cannot hang the
  reader either;
- never follows a symbolic link (``O_NOFOLLOW``): a run's files are its own,
  so a ``config.yaml`` linked to a file elsewhere on the machine is not shown;
- reads at most ``limit`` bytes: a larger file (a sparse 40 GB file) is
  refused as too large (:class:`FileTooLarge`) without reading it.

Both refusals are OSErrors with a ``strerror`` that says why, so a caller's
``except OSError`` turns them into its usual "cannot read ..." message.
:func:`parse_json` and :func:`parse_yaml` parse what was read with limits
on nesting and, for YAML, on the size of the document once its aliases are
expanded (a "billion laughs" file of a few hundred bytes), raising
ValueError; readers turn that into a damaged run.
"""

from __future__ import annotations

import errno
import json
import os
import stat

import yaml

MIB = 1 << 20
MAX_SMALL_FILE = 1 * MIB  # summary.json, annotations.json, config.yaml: a few KB when nnexp writes them
MAX_TABLE_FILE = 32 * MIB  # metrics.csv, diagnostics.csv: hundreds of thousands of rows
MAX_SWEEP_FILE = 16 * MIB  # sweep.json, plan.json: a plan of 10,000 trials is about 2 MB
MAX_DEPTH = 64  # nesting of JSON and YAML values: nnexp writes 5 levels at most
MAX_YAML_NODES = 100_000  # values in a YAML document, aliases expanded: a config has a few hundred

# The C parser is much faster than the pure-Python one; PyYAML ships without it on some platforms.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NOCTTY", 0) \
    | getattr(os, "O_CLOEXEC", 0)
_KINDS = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"))


class RefusedFile(OSError):
    """A file a reader will not read; ``strerror`` says why."""

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


class NotRegularFile(RefusedFile):
    """A path that is not a regular file (a pipe, a device, a link, ...): never read."""


class FileTooLarge(RefusedFile):
    """A regular file larger than the reader's limit: never read."""


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "something else"


def _refuse_irregular(path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise NotRegularFile(0, f"not a regular file but {_kind(mode)}", os.fspath(path))


def refuse_large(path, size: int, limit: int) -> None:
    if size > limit:
        raise FileTooLarge(0, f"too large: {size:,} bytes, more than the {human_size(limit)} read at most",
                           os.fspath(path))


def human_size(size: int) -> str:
    return f"{size / MIB:g} MiB" if size >= MIB else f"{size:,} bytes"


def open_regular(path) -> int:
    """A read-only descriptor of the regular file ``path`` (the caller closes it).

    FileNotFoundError if it is missing; NotRegularFile for anything else than
    a regular file, a symbolic link included; other OSErrors as ``open``.
    """
    _refuse_irregular(path, os.lstat(path).st_mode)  # a device or a pipe is never even opened
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # replaced by a link since the lstat (O_NOFOLLOW)
            raise NotRegularFile(0, "not a regular file but a symbolic link", os.fspath(path)) from None
        raise
    try:
        _refuse_irregular(path, os.fstat(fd).st_mode)  # replaced since the lstat: opened without blocking
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes(path, limit: int = MAX_SMALL_FILE) -> bytes:
    """The whole content of the regular file ``path``, which must hold at most ``limit`` bytes.

    FileNotFoundError if it is missing, NotRegularFile if it is not a regular
    file, FileTooLarge if it holds more than ``limit`` bytes (checked before
    reading, and again while reading a file that grows); other OSErrors as ``open``.
    """
    fd = open_regular(path)
    try:
        refuse_large(path, os.fstat(fd).st_size, limit)
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(limit + 1 - total, 1 * MIB))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # it grew since the fstat
                refuse_large(path, max(total, os.fstat(fd).st_size), limit)
    finally:
        os.close(fd)


def read_tail(path, size: int) -> tuple[bytes, bool]:
    """The last ``size`` bytes of the regular file ``path`` (read_bytes' errors, never
    FileTooLarge), and whether the file holds more than that."""
    fd = open_regular(path)
    try:
        length = os.fstat(fd).st_size
        os.lseek(fd, max(0, length - size), os.SEEK_SET)
        chunks, total = [], 0
        while total < size:
            chunk = os.read(fd, size - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks), length > size
    finally:
        os.close(fd)


# ------------------------------------------------------------------ parsing --


def parse_json(data: bytes | str):
    """JSON text as Python values; ValueError if it is invalid or nested more than MAX_DEPTH deep."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep") from None
    brackets = data.count(b"[" if isinstance(data, bytes) else "[") + data.count(b"{" if isinstance(data, bytes)
                                                                                  else "{")
    if brackets > MAX_DEPTH and _depth(value) > MAX_DEPTH:  # fewer brackets than that cannot nest deeper
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
    return value


def _depth(value) -> int:
    """How deep lists and dicts nest in ``value``, counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            return depth
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_yaml(data: bytes | str):
    """A YAML document (the safe loader's types) as Python values; yaml.YAMLError if
    it does not parse, ValueError if it nests more than MAX_DEPTH deep, holds more
    than MAX_YAML_NODES values once its aliases are expanded, or refers to itself.

    The document is composed into nodes first, where an alias is one shared
    node, and measured before any value is built from it.
    """
    loader = _YAML_LOADER(data)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _measure(node, 1, {}, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _measure(node, depth: int, sizes: dict, open_nodes: set) -> tuple[int, int]:
    """(values, height) of a YAML node with its aliases expanded; ValueError beyond the limits.
    Recursion stops at MAX_DEPTH, and each shared node is measured once."""
    key = id(node)
    if key in sizes:
        count, height = sizes[key]
    else:
        if key in open_nodes:
            raise ValueError("an alias refers to a value that contains it")
        if depth > MAX_DEPTH:
            raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = ()
        open_nodes.add(key)
        count, height = 1, 1
        for child in children:
            child_count, child_height = _measure(child, depth + 1, sizes, open_nodes)
            count += child_count
            height = max(height, child_height + 1)
            if count > MAX_YAML_NODES:
                raise ValueError(f"more than {MAX_YAML_NODES:,} values once its aliases are expanded")
        open_nodes.discard(key)
        sizes[key] = (count, height)
    if depth - 1 + height > MAX_DEPTH:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
    return count, height
