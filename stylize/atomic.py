"""Writing files so that nothing is lost: a temporary file in the same folder, then a rename."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from stylize.errors import OutputError


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
            raise OutputError(f"{path}: cannot write it there ({exc.strerror or exc})") from None
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        _commit(tmp, path, overwrite)
    except OSError as exc:  # disk full, permissions changed while we worked, ...
        raise OutputError(f"{path}: could not be written ({exc.strerror or exc})") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


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
        raise OutputError(f"{folder}: cannot write the output there ({exc.strerror or exc})") from None
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
