"""What is at an input path: a regular file to read, or, in a few words, why not."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def file_problem(path: Path, expected: str) -> str | None:
    """Why ``path`` cannot be read as ``expected`` ("an image file"), or None for a regular file.

    Devices, pipes and sockets are refused by name: reading a pipe would wait for a writer, and
    /dev/zero never ends."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if os.path.islink(path) else "no such file"
    except OSError as exc:  # a loop of links, a path through a file, a folder we may not enter
        return (exc.strerror or type(exc).__name__).lower()
    if stat.S_ISDIR(mode):
        return f"is a directory, expected {expected}"
    if not stat.S_ISREG(mode):
        return f"not a regular file (a device, pipe or socket), expected {expected}"
    return None

