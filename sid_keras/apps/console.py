"""What a user sees of a command, and how it ends: the package's own lines only (no library log
unless ``--verbose``), a line at a time until stdout's reader goes away, SIGTERM as Ctrl-C, file
names that are not UTF-8 printed as their bytes, and numpy's arrays on ordinary pages.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings

from sid_keras.errors import native_stderr_hidden, printable

# Python loggers of the libraries underneath (deprecation notices and the like).
_LIBRARY_LOGGERS = ("tensorflow", "absl", "keras", "keras_tuner", "h5py", "tifffile")


@contextlib.contextmanager
def only_our_lines(verbose: bool):
    """A user sees the package's own lines, not TensorFlow's.

    TensorFlow's C++ runtime logs to file descriptor 2 (some lines before its log level is even
    read), so unless ``verbose`` that descriptor points at /dev/null while a command runs, and
    Python's ``sys.stderr`` keeps writing to the terminal through a copy of it. Python warnings
    are silenced the same way. Under a harness that captures ``sys.stderr`` (pytest), only the
    descriptor is redirected.
    """
    if verbose:
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    loggers = {name: logging.getLogger(name) for name in _LIBRARY_LOGGERS}
    saved_levels = {name: logger.level for name, logger in loggers.items()}
    for logger in loggers.values():
        logger.setLevel(logging.ERROR)
        logger.addFilter(_errors_only)  # a library that resets its level on import stays quiet
    saved_stderr = sys.stderr
    try:
        real_stderr = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        real_stderr = False
    try:
        with native_stderr_hidden() as terminal, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if real_stderr:  # the package's own lines still reach the terminal
                sys.stderr = os.fdopen(os.dup(terminal), "w", buffering=1, errors="surrogateescape")
            try:
                yield
            finally:
                if real_stderr:
                    sys.stderr.close()
                    sys.stderr = saved_stderr
    finally:
        for name, logger in loggers.items():
            logger.setLevel(saved_levels[name])
            logger.removeFilter(_errors_only)


def print_while_read(line: str) -> None:
    """``print`` one line (its control characters escaped: :func:`printable`), until the reader
    of stdout goes away (``| head -1``): the work goes on quietly and its results still count."""
    if getattr(print_while_read, "closed", False):
        return
    try:
        print(printable(line), flush=True)
    except BrokenPipeError:
        print_while_read.closed = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not fail either
        os.close(devnull)


@contextlib.contextmanager
def terminate_as_interrupt():
    """SIGTERM ends a command as Ctrl-C does, so temporary files are removed on the way out
    (the default would end the process on the spot and leave them)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def names_print_as_bytes() -> None:
    """A file name that is not UTF-8 (ordinary on Linux) prints as the bytes it is, not a crash."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="surrogateescape")


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


def without_huge_pages() -> None:
    """Back numpy's arrays with ordinary pages, unless ``NUMPY_MADVISE_HUGEPAGE`` says otherwise.

    Why: numpy advises the kernel to back large arrays with transparent huge pages; where the
    kernel then compacts memory to find them (THP defrag ``madvise``, a common default), a fresh
    process's first touches of its frame-sized arrays stall. `sid-keras enhance` of the 9 MP
    Blackmagic DNG: 2.01 s (median of 16, 0.42 s of it in the kernel) with the advice, 1.81 s
    (0.25 s) without, faster in 13 of 16 alternated runs (MODEL_CARD.md, Speed).
    """
    setter = huge_page_advice_setter()
    if setter is not None and "NUMPY_MADVISE_HUGEPAGE" not in os.environ:
        setter(False)


def huge_page_advice_setter():
    """numpy's switch for its huge-page advice (private, in numpy 1.26 and 2 alike; it returns the
    previous setting), or None where a numpy lacks it."""
    try:
        from numpy._core.multiarray import _set_madvise_hugepage  # numpy 2
    except ImportError:
        try:
            from numpy.core.multiarray import _set_madvise_hugepage  # numpy 1.26
        except ImportError:
            return None
    return _set_madvise_hugepage
