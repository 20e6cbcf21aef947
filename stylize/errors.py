"""Exceptions raised by stylize's core; each message tells the user what to do.

The CLI maps every :class:`StylizeError` to a one-line message and exit code 2.
"""


class StylizeError(Exception):
    """Base class for errors caused by the user's input or environment."""


class InputError(StylizeError):
    """An input file or option value is unusable."""


class ImageError(InputError):
    """An image file is missing, unreadable, not an image, or too small."""


class OutputError(StylizeError):
    """The output cannot be written (exists already, folder not writable, ...)."""


class DiskFullError(OutputError):
    """The output's disk is full (or the user's quota spent): a batch stops, since every later
    output would fail the same way. ``advice`` says how to go on; a workflow that knows better
    (training: resume from the last checkpoint) replaces it with :meth:`advise`."""

    def __init__(self, problem: str, advice: str = "free some space, then run the same command again") -> None:
        super().__init__(f"{problem}; {advice}")
        self.problem = problem

    def advise(self, advice: str) -> "DiskFullError":
        return DiskFullError(self.problem, advice)


class WeightsError(StylizeError):
    """Backbone weights are missing, unreadable or of the wrong architecture."""


class DeviceError(StylizeError):
    """The requested device does not exist or is not available."""


class ResourceError(StylizeError):
    """The work would not fit in the device's memory."""
