"""SID list files: ``./Sony/short/00001_00_0.04s.ARW ./Sony/long/00001_00_10s.ARW ISO200 F8``.

The official lists (``Sony_train_list.txt``, ``Fuji_test_list.txt``, ...) sit in the dataset
root; `sid-keras synth` writes the same format, so one reader serves both.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from typing import Iterable

from sid_keras.errors import SidError
from sid_keras.runtime import raw

# Scenes whose short and long exposures are misaligned in the SID Sony test set; the usual
# protocol drops them from evaluation.
MISALIGNED_SCENES = (10034, 10045, 10172)
_SCENE_RE = re.compile(r"^(\d+)_(\d+)_")
_ISO_RE = re.compile(r"^ISO(\d+)$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class SidPair:
    """One short/long exposure pair from a list file."""

    short: pathlib.Path
    long: pathlib.Path
    iso: int | None = None
    aperture: str | None = None
    scene: int | None = None
    burst: int | None = None

    def read(self, ratio_cap: float | None = raw.DEFAULT_RATIO_CAP):
        """(short frame, long frame, exposure ratio): the one way a pair is read for use.

        The ratio is SID's ``min(long / short, cap)`` from the files' exposure times, else from
        SID-style names.
        """
        short, long = raw.read_raw(self.short), raw.read_raw(self.long)
        ratio = raw.exposure_ratio(str(self.short), str(self.long), short_exposure=short.exposure_time,
                                   long_exposure=long.exposure_time, cap=ratio_cap)
        return short, long, ratio


def _scene_and_burst(path: pathlib.Path) -> tuple[int | None, int | None]:
    match = _SCENE_RE.match(path.name)
    return (int(match.group(1)), int(match.group(2))) if match else (None, None)


def read_sid_list(
    list_file: str | pathlib.Path,
    root: str | pathlib.Path | None = None,
    *,
    first_burst_only: bool = False,
    exclude_scenes: Iterable[int] = (),
    check_files: bool = True,
) -> list[SidPair]:
    """Parse a SID list file into pairs with paths under ``root``.

    Args:
        list_file: the list; a bare name is looked up in ``root``.
        root: dataset root the ``./Sony/...`` paths are relative to (default: the list's folder).
        first_burst_only: keep only ``_00`` shorts (SID's training rule).
        exclude_scenes: scene ids to drop, e.g. :data:`MISALIGNED_SCENES` for evaluation.
        check_files: raise one error listing every missing file.
    """
    list_path = pathlib.Path(list_file)
    if root is not None and not list_path.is_absolute() and not list_path.exists():
        list_path = pathlib.Path(root) / list_path
    if not list_path.is_file():
        raise SidError(f"{list_path}: no such list file (SID lists are e.g. Sony_train_list.txt "
                       "in the dataset root; `sid-keras synth` writes one)")
    root = pathlib.Path(root) if root is not None else list_path.parent
    excluded = set(exclude_scenes)
    pairs = []
    try:  # names that are not UTF-8 keep their bytes, as a file name on Linux does
        text = list_path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as err:
        raise SidError(f"{list_path}: cannot read the list file ({err.strerror})") from None
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) < 2:
            raise SidError(f"{list_path}:{number}: expected 'SHORT LONG [ISO] [F]', got {line!r}")
        short, long = root / fields[0], root / fields[1]
        iso = next((int(m.group(1)) for f in fields[2:] if (m := _ISO_RE.match(f))), None)
        aperture = next((f for f in fields[2:] if f.upper().startswith("F")), None)
        scene, burst = _scene_and_burst(short)
        if first_burst_only and burst not in (None, 0):
            continue
        if scene is not None and scene in excluded:
            continue
        pairs.append(SidPair(short, long, iso, aperture, scene, burst))
    if not pairs:
        raise SidError(f"{list_path}: lists no pairs (after the filters asked for)")
    if check_files:
        missing = sorted({os.path.relpath(p, root) for pair in pairs for p in (pair.short, pair.long)
                          if not p.is_file()})
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise SidError(f"{list_path}: {len(missing)} listed files are missing under {root}: {shown}")
    return pairs
