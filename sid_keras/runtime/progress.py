"""Progress of long work: a bar with rate and ETA on a terminal, nothing when the output goes to
a file or a pipe (a log stays clean). Lines printed while a bar runs go above it."""

from __future__ import annotations

import sys
from typing import Callable, Iterable, Iterator


def on_terminal() -> bool:
    """Whether a bar would be seen: stderr (where bars go) is a terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """A bar over ``total`` items of ``unit`` (``enabled``: default :func:`on_terminal`); a no-op
    when disabled, so callers need no second code path."""

    def __init__(self, total: int, desc: str, unit: str, enabled: bool | None = None):
        self.bar = None
        if (on_terminal() if enabled is None else enabled) and total > 1:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False, file=sys.stderr)

    def update(self, count: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def above(self, log: Callable[[str], None]) -> Callable[[str], None]:
        """``log`` writing above the bar (clears it, prints, draws it again)."""
        if self.bar is None:
            return log

        def write(line: str) -> None:
            with self.bar.external_write_mode():
                log(line)

        return write

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def tracked(items: Iterable, total: int, desc: str, unit: str, enabled: bool | None = None) -> Iterator:
    """``items`` one by one, counted on a :class:`Progress` bar."""
    with Progress(total, desc, unit, enabled) as progress:
        for item in items:
            yield item
            progress.update()
