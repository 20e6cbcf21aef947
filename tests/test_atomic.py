"""Atomic writing: a temporary file beside the output, renamed into place, never left behind."""

from __future__ import annotations

import os
import stat

import pytest

from stylize.atomic import atomic_write, check_folder
from stylize.errors import OutputError


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
