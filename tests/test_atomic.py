"""``ash_core.bundle.atomic``: whole files or none, and a killed writer's temporaries go."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

import ash_core.bundle.atomic as atomic
from ash_core.bundle.atomic import atomic_write, clean_stale_temps


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_dead_writers_temporaries_are_removed(tmp_path):
    dead, alive = _dead_pid(), os.getpid()
    names = {
        f".a.bin.{dead}-x1y2.tmp": False,     # a killed writer's: removed
        f".a.bin.{alive}-x1y2.tmp": True,     # a live writer's (ours): kept
        f"a.bin.{dead}-x1y2.tmp": True,       # not a hidden temporary: not ours
        f".a.bin.{dead}.tmp": True,           # no random part: not ours
        "a.bin": True,
    }
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    (tmp_path / f".d.{dead}-x1y2.tmp").mkdir()  # a directory is never removed
    os.symlink(tmp_path / "a.bin", tmp_path / f".l.{dead}-x1y2.tmp")  # nor a link
    removed = clean_stale_temps(tmp_path)
    assert [p.name for p in removed] == [f".a.bin.{dead}-x1y2.tmp"]
    assert {n for n, keep in names.items() if keep} | {f".d.{dead}-x1y2.tmp",
                                                       f".l.{dead}-x1y2.tmp"} == \
        {p.name for p in tmp_path.iterdir()}


def test_a_name_limits_the_cleaning_to_that_files_temporaries(tmp_path):
    dead = _dead_pid()
    for n in (f".manifest.json.{dead}-ab.tmp", f".notes.txt.{dead}-ab.tmp"):
        (tmp_path / n).write_bytes(b"x")
    assert [p.name for p in clean_stale_temps(tmp_path, "manifest.json")] == \
        [f".manifest.json.{dead}-ab.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == [f".notes.txt.{dead}-ab.tmp"]


def test_a_write_cleans_its_directory_and_a_failed_one_leaves_the_old_file(tmp_path,
                                                                          monkeypatch):
    stale = tmp_path / f".other.{_dead_pid()}-zz.tmp"
    stale.write_bytes(b"half")
    atomic_write(tmp_path / "f", [b"old"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]

    def full(fh, data):
        fh.write(bytes(data)[:1])
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(atomic, "_write_bytes", full)
    with pytest.raises(OSError, match="No space"):
        atomic_write(tmp_path / "f", [b"new!"])
    assert (tmp_path / "f").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
