"""Exit codes (the README's exit-code table) and the one exception type the CLI turns into them.

Every user-facing failure is raised as :class:`TumsynError` with a one-line message that
names the file and the problem; the CLI prints ``tumsyn-bids: error: <message>`` and exits
with ``exit_code``. Tracebacks go to the log, never to the terminal.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """Documented process exit codes."""

    OK = 0
    PARTICIPANT_FAILED = 1  # some participant failed; the others finished
    BIDS_INVALID = 16  # the dataset failed BIDS validation
    USAGE = 64  # bad command line or option values
    DATA = 65  # input data unusable (corrupt image, bad sidecar, bad checkpoint)
    NO_INPUT = 66  # nothing to do: no usable source image for the selection
    SOFTWARE = 70  # internal error / unavailable device
    CANT_CREATE = 73  # cannot create output or work directory


class TumsynError(Exception):
    """A failure the user can act on: one line, and the exit code to use."""

    exit_code: ExitCode = ExitCode.SOFTWARE

    def __init__(self, message: str, *, path: str | Path | None = None, exit_code: ExitCode | None = None):
        if path is not None:
            message = f"{path}: {message}"
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(TumsynError):
    exit_code = ExitCode.USAGE


class DataError(TumsynError):
    exit_code = ExitCode.DATA


class NoInputError(TumsynError):
    exit_code = ExitCode.NO_INPUT


class OutputError(TumsynError):
    exit_code = ExitCode.CANT_CREATE


class DeviceError(TumsynError):
    exit_code = ExitCode.SOFTWARE
