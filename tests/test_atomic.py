"""Atomic writing: a temporary file beside the output, renamed into place, never left behind."""

from __future__ import annotations

import errno
import os
import shutil
import stat

import pytest

from stylize.atomic import atomic_write, check_folder, check_space
from stylize.errors import DiskFullError, OutputError


def test_the_file_appears_whole_with_the_usual_permissions(tmp_path):
    path = tmp_path / "out.bin"
    atomic_write(path, lambda handle: handle.write(b"data"))
    assert path.read_bytes() == b"data" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    with pytest.raises(OutputError, match="exists already"):
        atomic_write(path, lambda handle: handle.write(b"other"))
    assert path.read_bytes() == b"data" and len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize("where", ["as the file is created", "while writing", "as the folder is checked"])
def test_ctrl_c_leaves_no_temporary_file(tmp_path, monkeypatch, where):
    """Ctrl-C (KeyboardInterrupt) at any point of a write, even the instant the temporary file
    has been created, leaves neither the output nor the temporary file; nor does the output
    folder's check leave its probe file."""
    real_open = os.open

    def open_then_interrupted(*args, **kwargs):
        real_open(*args, **kwargs)
        raise KeyboardInterrupt

    def write(handle) -> None:
        handle.write(b"half")
        raise KeyboardInterrupt

    if where != "while writing":
        monkeypatch.setattr(os, "open", open_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        if where == "as the folder is checked":  # check_folder's probe file, before any work
            check_folder(tmp_path)
        else:
            atomic_write(tmp_path / "out.bin", write)
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_folder_is_one_clear_error(tmp_path):
    with pytest.raises(OutputError, match="cannot write it there"):
        atomic_write(tmp_path / "missing" / "out.bin", lambda handle: handle.write(b"x"))


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EIO])
def test_a_full_disk_is_told_apart_and_leaves_nothing(tmp_path, code):
    """A write that runs out of room (disk full or quota spent) raises DiskFullError, which stops a
    batch; another failure is a plain OutputError. Neither leaves a file behind."""
    def write(handle) -> None:
        handle.write(b"part")
        raise OSError(code, os.strerror(code))

    with pytest.raises(OutputError, match="could not be written") as caught:
        atomic_write(tmp_path / "out.png", write)
    assert isinstance(caught.value, DiskFullError) == (code != errno.EIO)
    assert ("free some space" in str(caught.value)) == (code != errno.EIO)
    assert list(tmp_path.iterdir()) == []


def test_the_space_check_compares_what_the_disk_has_free(tmp_path, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    check_space(tmp_path, 1000)  # this disk has room for a kilobyte
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=250_000))
    check_space(tmp_path, 250_000)
    with pytest.raises(DiskFullError, match="250 kB free on its disk, and the output needs up to 251 kB"):
        check_space(tmp_path, 250_600)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=2_460_000_000))
    with pytest.raises(DiskFullError, match=r"2\.5 GB free on its disk, and the output needs up to 3\.0 GB"):
        check_space(tmp_path, 3 * 10**9)

    def unknown(path):
        raise OSError(errno.ENOSYS, "not supported")

    monkeypatch.setattr(shutil, "disk_usage", unknown)
    check_space(tmp_path, 10**15)  # cannot tell: the write will say
