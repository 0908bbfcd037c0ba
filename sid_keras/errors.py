"""The one exception type for mistakes a user can make (bad file, bad ratio, missing pair)."""


class SidError(Exception):
    """A user-facing error: the message names the file or value and says what to do.

    The CLI prints it on one line and exits non-zero; anything else is a bug and keeps
    its traceback.
    """
