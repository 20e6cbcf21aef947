"""Writing files so that nothing is lost: a temporary file in the same folder, then a rename."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from stylize.errors import DiskFullError, OutputError

# No room left: the disk is full, its inodes are spent, or the user's quota is.
_NO_SPACE = {errno.ENOSPC} | ({errno.EDQUOT} if hasattr(errno, "EDQUOT") else set())


def atomic_write(path: Path, write: Callable[[BinaryIO], None], overwrite: bool = False) -> None:
    """Call ``write`` on a temporary file beside ``path``, then move it into place.

    A reader never sees a half-written file. Without ``overwrite`` an existing file is never
    replaced, even one that appeared while we worked: the final step is a hard link, which
    fails if the name is taken.
    """
    path = Path(path)
    # The temporary name is chosen before the file exists, so the clean-up below removes it even
    # when Ctrl-C lands just as it is created (inside mkstemp, a file was left behind then).
    tmp: Path | None = path.parent / f".{path.name}.{secrets.token_hex(6)}.part"
    try:
        try:  # 0o666 less the umask, as for any new file
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except OSError as exc:
            if isinstance(exc, FileExistsError):
                tmp = None  # another writer's file (48 random bits alike): not ours to remove
            raise _write_error(path, exc, "cannot write it there") from None
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        _commit(tmp, path, overwrite)
    except OSError as exc:  # disk full, permissions changed while we worked, ...
        raise _write_error(path, exc, "could not be written") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _write_error(path: Path, exc: OSError, what: str, advice: str = "") -> OutputError:
    if exc.errno in _NO_SPACE:
        problem = f"{path}: {what}: no space left on its disk ({exc.strerror})"
        return DiskFullError(problem, advice) if advice else DiskFullError(problem)
    return OutputError(f"{path}: {what} ({exc.strerror or exc})" + (f"; {advice}" if advice else ""))


def check_space(folder: Path, need: int) -> None:
    """Raise DiskFullError, before any work, when ``folder``'s disk has less than ``need`` bytes
    free (a quota is not seen here: the write itself reports it)."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:  # cannot tell (the folder is checked elsewhere): the write will say
        return
    if free < need:
        raise DiskFullError(f"{folder}: {_amount(free)} free on its disk, and the output needs up to {_amount(need)}",
                            "free some space or choose another output folder")


def _amount(size: int) -> str:
    """Bytes as people read them: 950 kB, 2.4 MB, 12.0 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size / 1e3:.0f} kB"


def check_writable(path: Path, overwrite: bool) -> None:
    """Fail early, before any work, if ``path`` is a folder, exists (without ``overwrite``), or
    its folder cannot be created or written."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a directory; give a file name inside it")
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: exists already; pass --overwrite to replace it or choose another name")
    check_folder(path.parent)


def check_folder(folder: Path) -> None:
    """Create ``folder`` if needed and check that files can be written in it."""
    probe = Path(folder) / f".stylize-probe-{secrets.token_hex(6)}"  # named first, as in atomic_write
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:  # mkdir's: a file has the folder's name (the probe's name is random)
        raise OutputError(f"{folder}: is a file, not a folder; choose another output folder") from None
    except OSError as exc:
        raise _write_error(folder, exc, "cannot write the output there", "choose another output folder") from None
    finally:
        with contextlib.suppress(OSError):  # e.g. "folder" is a file: no probe was made
            probe.unlink()


def _commit(tmp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputError(f"{path}: exists already; pass --overwrite to replace it") from None
    except OSError:  # file systems without hard links: check, then rename
        if path.exists():
            raise OutputError(f"{path}: exists already; pass --overwrite to replace it") from None
        os.replace(tmp, path)
