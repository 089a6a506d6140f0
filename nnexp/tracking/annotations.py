"""Tags and a note added to a run after the fact: the run folder's annotations.json.

    {"tags": ["baseline", "mlp"], "note": "lr too high; see run 0155", "updated": "2026-12-03T10:04:37+00:00"}

A file of its own, not fields of summary.json: a running trainer rewrites
summary.json every epoch from its own copy, which would drop a tag added by
another process meanwhile. ``tags``, once present, is the run's whole tag list
(the config's ``tracking.tags`` are where it starts from); ``note`` is free
text. Records (``records.py``) merge both into the run's summary, so listings,
``show``, ``compare`` and ``--where`` see them, and the index re-reads a run
when the file changes.

Every change is a read-modify-write under a lock on the run folder (``flock``
on the folder itself), the same lock ``nnexp rm`` holds while it moves a
folder away, and the file is replaced atomically: two taggers never lose each
other's tags, and a tag never lands in a folder being removed.
"""

from __future__ import annotations

import json
import os
import re

from ..atomic import atomic_write_text
from ..errors import ConfigError, NnexpError
from ..filelock import LockHeld, waiting
from ..timestamps import timestamp
from .reading import MAX_SMALL_FILE, parse_json, read_bytes
from .run import ANNOTATIONS, DamagedRun, read_summary

TAGS, NOTE, UPDATED = "tags", "note", "updated"
MAX_NOTE = 10_000  # characters
TAG_RE = re.compile(r"^\w[\w.:/=@+-]{0,63}$")
KEEP = object()  # annotate(note=KEEP): leave the note as it is


class RunGone(NnexpError):
    """The run folder was removed while waiting to annotate it."""


def check_tag(tag: str) -> str:
    """``tag`` if it is a valid tag (a letter, digit or '_', then up to 63 of those
    or . : / = @ + -), else ConfigError (exit 2) naming it."""
    if not isinstance(tag, str) or not TAG_RE.match(tag):
        raise ConfigError(f"invalid tag {tag!r}: a tag starts with a letter, digit or '_' and has up to 64 "
                          "letters, digits and . _ : / = @ + - (no spaces)")
    return tag


def check_note(note: str) -> str:
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise ConfigError(f"a note is text of at most {MAX_NOTE:,} characters")
    return note.strip()


def read_annotations(run_dir, run_id: str | None = None) -> dict:
    """The run's annotations.json ({} if it has none); DamagedRun if it is unreadable or not
    of the expected shape (tags a list of strings, note a string)."""
    run_dir = os.fspath(run_dir)
    run_id = run_id or os.path.basename(os.path.normpath(run_dir))
    try:
        data = parse_json(read_bytes(os.path.join(run_dir, ANNOTATIONS), MAX_SMALL_FILE))
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise DamagedRun(f"run {run_id}: cannot read {ANNOTATIONS} ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise DamagedRun(f"run {run_id}: invalid {ANNOTATIONS} ({exc})") from None
    if not isinstance(data, dict):
        raise DamagedRun(f"run {run_id}: {ANNOTATIONS} is a JSON {type(data).__name__}, not an object")
    tags = data.get(TAGS, [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise DamagedRun(f"run {run_id}: {ANNOTATIONS}: 'tags' must be a list of strings")
    if not isinstance(data.get(NOTE, ""), (str, type(None))):
        raise DamagedRun(f"run {run_id}: {ANNOTATIONS}: 'note' must be text")
    return data


def merge(summary: dict, annotations: dict) -> dict:
    """``summary`` with the annotations' tags (replacing the config's) and note."""
    if not annotations:
        return summary
    out = dict(summary)
    if TAGS in annotations:
        out[TAGS] = list(annotations[TAGS])
    if annotations.get(NOTE):
        out[NOTE] = annotations[NOTE]
    return out


def annotated_summary(run_dir, run_id: str | None = None) -> dict:
    """summary.json with the annotations merged in (DamagedRun if either is unreadable)."""
    return merge(read_summary(run_dir, run_id), read_annotations(run_dir, run_id))


def annotate(run_dir, add=(), remove=(), note=KEEP, timeout: float = 10.0) -> dict:
    """Add and remove tags and/or set the note (``""`` clears it) of the run
    folder ``run_dir``; returns the run's annotations as written.

    Tags already present are not added twice; removing an absent tag is no
    error. Raises RunGone if the folder is removed meanwhile, NnexpError if
    another process holds its lock longer than ``timeout`` seconds.
    """
    run_dir = os.fspath(run_dir)
    run_id = os.path.basename(os.path.normpath(run_dir))
    try:
        with waiting(run_dir, timeout) as fd:
            if os.fstat(fd).st_ino != os.stat(run_dir).st_ino:  # moved away (removed) while we waited
                raise FileNotFoundError(run_dir)
            current = read_annotations(run_dir, run_id)
            tags = list(current[TAGS]) if TAGS in current else list(read_summary(run_dir, run_id).get(TAGS) or [])
            new = dict(current)
            if add or remove:
                tags = [t for t in tags if t not in set(remove)]
                tags += [t for t in dict.fromkeys(add) if t not in tags]
                new[TAGS] = tags
            if note is not KEEP:
                if note:
                    new[NOTE] = note
                else:
                    new.pop(NOTE, None)
            new[UPDATED] = timestamp()
            atomic_write_text(os.path.join(run_dir, ANNOTATIONS), json.dumps(new, indent=2) + "\n")
            return new
    except FileNotFoundError:
        raise RunGone(f"run {run_id} was removed") from None
    except LockHeld:
        raise NnexpError(f"run {run_id} is locked by another process (being removed?); try again") from None
