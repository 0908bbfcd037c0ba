"""A minimal CFA DNG writer (tifffile) that rawpy / LibRaw reads back exactly.

Used for test fixtures and by :mod:`sid_keras.synthetic` to write SID-layout datasets: the mosaic,
CFA pattern, black and white levels, colour matrix, as-shot white balance, exposure time and ISO
are all stored as DNG tags, so the rest of the package reads synthetic files like camera files.
"""

from __future__ import annotations

import os
from fractions import Fraction
from typing import Sequence

import numpy as np

from sid_keras.io import atomic_path

# TIFF / DNG tag codes (TIFF 6.0, TIFF/EP and DNG 1.4 specifications).
TAG_MAKE = 271
TAG_MODEL = 272
TAG_CFA_REPEAT_PATTERN_DIM = 33421
TAG_CFA_PATTERN = 33422
TAG_EXPOSURE_TIME = 33434
TAG_ISO = 34855
TAG_DNG_VERSION = 50706
TAG_DNG_BACKWARD_VERSION = 50707
TAG_UNIQUE_CAMERA_MODEL = 50708
TAG_CFA_PLANE_COLOR = 50710
TAG_CFA_LAYOUT = 50711
TAG_BLACK_LEVEL_REPEAT_DIM = 50713
TAG_BLACK_LEVEL = 50714
TAG_WHITE_LEVEL = 50717
TAG_COLOR_MATRIX_1 = 50721
TAG_AS_SHOT_NEUTRAL = 50728
TAG_CALIBRATION_ILLUMINANT_1 = 50778

PHOTOMETRIC_CFA = 32803
ILLUMINANT_D65 = 21
# TIFF field types.
BYTE, ASCII, SHORT, LONG, RATIONAL, SRATIONAL = 1, 2, 3, 4, 5, 10
_RATIONAL_DENOMINATOR_LIMIT = 1_000_000


def _rationals(values: Sequence[float]) -> tuple[int, ...]:
    out: list[int] = []
    for v in values:
        f = Fraction(float(v)).limit_denominator(_RATIONAL_DENOMINATOR_LIMIT)
        out += [f.numerator, f.denominator]
    return tuple(out)


def write_cfa_dng(
    path: str | os.PathLike,
    mosaic: np.ndarray,
    cfa_pattern: np.ndarray,
    *,
    black_level: float | Sequence[float] = 0,
    white_level: int = 65535,
    color_matrix: np.ndarray | None = None,
    as_shot_neutral: Sequence[float] = (1.0, 1.0, 1.0),
    exposure_time: float | None = None,
    iso: float | None = None,
    make: str = "sid_keras",
    model: str = "synthetic",
) -> None:
    """Write a uint16 CFA mosaic as a DNG.

    Args:
        mosaic: (H, W) uint16 sensor values.
        cfa_pattern: 2x2 or 6x6 colour indices (0 R, 1 G, 2 B; 3 is written as G).
        black_level: one value, or four for a 2x2 Bayer tile in raster order.
        color_matrix: 3x3 XYZ(D65) -> camera matrix (DNG ColorMatrix1); identity if None.
        as_shot_neutral: camera-space RGB of a neutral grey (reciprocal of the WB multipliers).
    """
    import tifffile

    mosaic = np.ascontiguousarray(mosaic, dtype=np.uint16)
    pattern = np.asarray(cfa_pattern, np.uint8).copy()
    pattern[pattern == 3] = 1
    blacks = np.atleast_1d(np.asarray(black_level, np.float64))
    matrix = np.eye(3) if color_matrix is None else np.asarray(color_matrix, np.float64)
    tags = [
        (TAG_MAKE, ASCII, 0, make, True),
        (TAG_MODEL, ASCII, 0, model, True),
        (TAG_UNIQUE_CAMERA_MODEL, ASCII, 0, f"{make} {model}", True),
        (TAG_DNG_VERSION, BYTE, 4, (1, 4, 0, 0), True),
        (TAG_DNG_BACKWARD_VERSION, BYTE, 4, (1, 1, 0, 0), True),
        (TAG_CFA_REPEAT_PATTERN_DIM, SHORT, 2, pattern.shape, True),
        (TAG_CFA_PATTERN, BYTE, pattern.size, tuple(pattern.ravel().tolist()), True),
        (TAG_CFA_PLANE_COLOR, BYTE, 3, (0, 1, 2), True),
        (TAG_CFA_LAYOUT, SHORT, 1, 1, True),
        (TAG_WHITE_LEVEL, LONG, 1, int(white_level), True),
        (TAG_COLOR_MATRIX_1, SRATIONAL, 9, _rationals(matrix.ravel()), True),
        (TAG_CALIBRATION_ILLUMINANT_1, SHORT, 1, ILLUMINANT_D65, True),
        (TAG_AS_SHOT_NEUTRAL, RATIONAL, 3, _rationals(as_shot_neutral), True),
    ]
    if blacks.size == 4:
        tags.append((TAG_BLACK_LEVEL_REPEAT_DIM, SHORT, 2, (2, 2), True))
    tags.append((TAG_BLACK_LEVEL, RATIONAL, blacks.size, _rationals(blacks), True))
    if exposure_time:
        tags.append((TAG_EXPOSURE_TIME, RATIONAL, 1, _rationals([exposure_time]), True))
    if iso:
        tags.append((TAG_ISO, SHORT, 1, int(round(iso)), True))
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            mosaic,
            photometric=PHOTOMETRIC_CFA,
            subfiletype=0,
            extratags=tags,
            metadata=None,
        )
