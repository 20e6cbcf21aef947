"""What is at an input path: a regular file to read, or, in a few words, why not (and, for a
missing one, the close name that was probably meant)."""

from __future__ import annotations

import difflib
import itertools
import os
import stat
from pathlib import Path

# Names read from a folder for a "did you mean": enough for any photo folder, bounded for huge ones.
_MAX_NAMES = 10_000


def file_problem(path: Path, expected: str) -> str | None:
    """Why ``path`` cannot be read as ``expected`` ("an image file"), or None for a regular file.

    Devices, pipes and sockets are refused by name: reading a pipe would wait for a writer, and
    /dev/zero never ends."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if os.path.islink(path) else f"no such file{did_you_mean(path)}"
    except OSError as exc:  # a loop of links, a path through a file, a folder we may not enter
        return (exc.strerror or type(exc).__name__).lower()
    if stat.S_ISDIR(mode):
        return f"is a directory, expected {expected}"
    if not stat.S_ISREG(mode):
        return f"not a regular file (a device, pipe or socket), expected {expected}"
    return None


def did_you_mean(path: Path, also: list[str] | None = None) -> str:
    """``"; did you mean PATH?"`` naming the closest file or folder beside a missing ``path`` (a
    typo: swirl.jpg for swirls.jpg), or the closest of ``also`` (names such as bundled models');
    "" when nothing is close."""
    path = Path(path)
    names = list(also or [])
    try:
        with os.scandir(path.parent) as entries:
            names += [entry.name for entry in itertools.islice(entries, _MAX_NAMES)]
    except OSError:  # no such folder either, or one we may not read
        pass
    guess = difflib.get_close_matches(path.name, names, n=1, cutoff=0.7)
    if not guess:
        return ""
    shown = guess[0] if guess[0] in (also or []) else str(path.with_name(guess[0]))
    return f"; did you mean {shown}?"
