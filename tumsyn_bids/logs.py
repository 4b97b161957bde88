"""Where log records go: nipype's chatter and tracebacks into the run's log file, not the console.

nipype attaches a ``StreamHandler(sys.stdout)`` to its ``nipype`` logger when it is imported, in
this process and again in every MultiProc worker, so each node's INFO lines and each crash's
traceback would fill the terminal. :func:`route_to_file` moves the ``nipype``, ``tumsyn`` and
``py.warnings`` loggers to the log file (console only from ``-vvv``: ``console_level``).
The runner sets :data:`ENV_LOG_FILE` (and :data:`ENV_CONSOLE_LEVEL`) before the workflow starts;
worker processes inherit the environment and call :func:`route_from_environment` when they import
:mod:`tumsyn_bids.interfaces` (before a node runs). Plain ``logging``: no nipype import here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

ENV_LOG_FILE = "TUMSYN_LOG_FILE"
ENV_CONSOLE_LEVEL = "TUMSYN_CONSOLE_LOG_LEVEL"
ROUTED_LOGGERS = ("nipype", "tumsyn", "py.warnings")
_FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s: %(message)s"


def _is_console(handler: logging.Handler) -> bool:
    """A stream handler that is not a file: nipype's stdout handler, even one bound to a stream that
    has since been replaced (pytest's capture, an embedding application's redirect)."""
    return isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)


def route_to_file(log_file: str | Path, console_level: int | None = None) -> None:
    """Send the routed loggers to ``log_file`` (appended) and, if ``console_level``, to stderr too."""
    path = os.path.abspath(str(log_file))
    logging.captureWarnings(True)  # torch/nibabel warnings of nodes: log file, not console
    for name in ROUTED_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if _is_console(handler) or getattr(handler, "_tumsyn_console", False):
                logger.removeHandler(handler)
        if not any(getattr(h, "baseFilename", None) == path for h in logger.handlers):
            handler = logging.FileHandler(path, encoding="utf-8", delay=True)
            handler.setFormatter(logging.Formatter(_FORMAT))
            logger.addHandler(handler)
        if console_level is not None:
            console = logging.StreamHandler(sys.stderr)
            console.setLevel(console_level)
            console.setFormatter(logging.Formatter("%(name)s %(levelname)s: %(message)s"))
            console._tumsyn_console = True  # type: ignore[attr-defined]
            logger.addHandler(console)
        logger.propagate = False
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)


def export_to_workers(log_file: str | Path, console_level: int | None = None) -> None:
    """Tell worker processes (which inherit the environment) where to log."""
    os.environ[ENV_LOG_FILE] = os.path.abspath(str(log_file))
    if console_level is None:
        os.environ.pop(ENV_CONSOLE_LEVEL, None)
    else:
        os.environ[ENV_CONSOLE_LEVEL] = str(int(console_level))


def route_from_environment() -> bool:
    """In a worker: apply the routing the runner exported; False when there is none."""
    path = os.environ.get(ENV_LOG_FILE)
    if not path:
        return False
    level = os.environ.get(ENV_CONSOLE_LEVEL)
    try:
        import nipype  # noqa: F401  (its import adds the stdout handler that is removed here)
    except ImportError:  # pragma: no cover
        pass
    route_to_file(path, int(level) if level else None)
    return True


@contextlib.contextmanager
def routed(log_file: str | Path, console_level: int | None = None) -> Iterator[None]:
    """Route logging (here and in workers) for the duration of a run, then restore it."""
    saved = {name: (list(logging.getLogger(name).handlers), logging.getLogger(name).propagate,
                    logging.getLogger(name).level) for name in ROUTED_LOGGERS}
    saved_env = {key: os.environ.get(key) for key in (ENV_LOG_FILE, ENV_CONSOLE_LEVEL)}
    try:
        import nipype  # noqa: F401  (import first, so its stdout handler exists and is removed)
    except ImportError:  # pragma: no cover
        pass
    route_to_file(log_file, console_level)
    export_to_workers(log_file, console_level)
    try:
        yield
    finally:
        for name, (handlers, propagate, level) in saved.items():
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                if handler not in handlers:
                    logger.removeHandler(handler)
                    handler.close()
            for handler in handlers:
                if handler not in logger.handlers:
                    logger.addHandler(handler)
            logger.propagate, logger.level = propagate, level
        logging.captureWarnings(False)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
