"""atomic_write: the file appears whole or not at all, and reaches the disk before the rename."""

from __future__ import annotations

import os
import stat

import pytest

from synthrank.utils import atomic_write


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_writes_text_and_bytes_with_the_usual_mode(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_write(target) as handle:
        handle.write("héllo\n")
    assert target.read_text(encoding="utf-8") == "héllo\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    with atomic_write(tmp_path / "out.bin", "wb") as handle:
        handle.write(b"\x00\x01")
    assert (tmp_path / "out.bin").read_bytes() == b"\x00\x01"
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "sub") == []


def test_a_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as handle:
            handle.write("half of the new")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_the_data_is_fsynced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    """Without the first fsync a power loss can keep the rename but not the data (an empty file
    in place of the old one); without the second the rename itself may be lost."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(source, target):
        events.append("rename")
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    with atomic_write(tmp_path / "out.txt") as handle:
        handle.write("data")
    assert events == ["fsync file", "rename", "fsync folder"]
