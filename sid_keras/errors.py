"""The one exception type for mistakes a user can make, and the one-line form of the others.

A :class:`SidError` message names the file or value and says what to do. Failures of the world
around the package (a full disk, a missing permission, too little memory) are not bugs either:
:func:`describe` turns them into the same kind of line, so the CLI and batch loops report them
without a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys


@contextlib.contextmanager
def native_stderr_hidden():
    """Point file descriptor 2 at /dev/null while the block runs; yields a duplicate of the
    real descriptor. Native runtimes (TensorFlow's and LiteRT's C++) log there directly, past
    Python's ``sys.stderr``."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield saved
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


class SidError(Exception):
    """A user-facing error: the message names the file or value and says what to do.

    The CLI prints it on one line and exits non-zero.
    """


# Fixes to suggest for OS errors a user can do something about.
_OS_ADVICE = {
    errno.ENOSPC: "the disk is full: free space or write elsewhere",
    errno.EDQUOT: "the disk quota is used up: free space or write elsewhere",
    errno.EACCES: "permission denied: choose a folder you can write, or fix its permissions",
    errno.EPERM: "operation not permitted: choose a folder you can write",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.EISDIR: "is a folder, not a file: give a file name",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "already exists: choose another name or pass --overwrite",
    errno.ENAMETOOLONG: "the file name is too long",
}

# TensorFlow's out-of-memory error, recognised by name so this module never imports TensorFlow.
_OUT_OF_MEMORY_NAMES = ("ResourceExhaustedError",)


def describe(err: BaseException) -> str | None:
    """One line for an error a user can act on (:class:`SidError`, OS and memory errors), else None."""
    if isinstance(err, SidError):
        return str(err)
    if isinstance(err, MemoryError) or type(err).__name__ in _OUT_OF_MEMORY_NAMES:
        return ("not enough memory for this frame: use a smaller --tile (e.g. 256), close other "
                "programs, or enhance on a machine with more memory")
    if isinstance(err, OSError):
        where = err.filename or ""
        if err.filename2:
            where = f"{where} -> {err.filename2}"
        advice = _OS_ADVICE.get(err.errno, err.strerror or str(err))
        return f"{where}: {advice}" if where else advice
    return None


BUG_ADVICE = "(a bug: rerun with --verbose and report the traceback)"


def unexpected(err: BaseException) -> str:
    """The one line for an error nobody planned for: its type, its first line, and what to do."""
    first = str(err).splitlines()[0] if str(err) else ""
    return f"unexpected {type(err).__name__}: {first} {BUG_ADVICE}"


def printable(text: str) -> str:
    """``text`` with its control characters escaped (``\\n``, ``\\x1b``): a file name holding a
    newline or a terminal escape cannot print lines that pass for the tool's own. A name's
    undecodable bytes (surrogates) stay, to print as the bytes they are."""
    import unicodedata

    return "".join(repr(c)[1:-1] if unicodedata.category(c) == "Cc" else c for c in text)

