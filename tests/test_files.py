"""Atomic file replacement, file locks and timestamps: one implementation each."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time

import pytest

from nnexp.atomic import atomic_write_bytes, atomic_write_text, atomic_writer
from nnexp.filelock import LockHeld, exclusive, is_locked
from nnexp.timestamps import run_id_stamp, timestamp


def test_atomic_writes_replace_the_whole_file(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new", durable=False)
    assert path.read_text() == "new"
    atomic_write_bytes(path, b"\x00\x01", mode=0o640)
    assert path.read_bytes() == b"\x00\x01" and stat.S_IMODE(path.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["f.txt"]


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path, failure):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")
    with pytest.raises(type(failure)):
        with atomic_writer(path, binary=True) as f:
            f.write(b"half")
            raise failure
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]


def test_a_lock_is_held_by_one_process_and_names_its_holder(tmp_path):
    path = tmp_path / "lock"
    assert not is_locked(path)
    holder = ("import sys, time; from nnexp.filelock import exclusive\n"
              f"with exclusive({str(path)!r}, note='pid 1 on h'):\n"
              "    print('held', flush=True); sys.stdin.readline()\n")
    child = subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        assert is_locked(path)
        with pytest.raises(LockHeld) as exc:
            with exclusive(path):
                pass
        assert exc.value.holder == "pid 1 on h"
    finally:
        child.communicate("\n", timeout=30)
    assert not is_locked(path)  # released when its holder ends
    with exclusive(path, note="me"):
        assert path.read_text() == "me"


def test_one_timestamp_format():
    t = time.mktime((2026, 11, 25, 4, 48, 4, 0, 0, -1))
    assert re.fullmatch(r"2026-11-25T04:48:04[+-]\d{4}", timestamp(t))
    assert run_id_stamp(t) == "20261125-044804"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}", timestamp())
