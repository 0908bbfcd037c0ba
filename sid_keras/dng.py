"""Minimal DNG writers (tifffile) that rawpy / LibRaw read back exactly.

- :func:`write_cfa_dng`: a CFA mosaic, for test fixtures and :mod:`sid_keras.synthetic`'s
  SID-layout datasets: mosaic, CFA pattern, black and white levels, colour matrix, as-shot white
  balance, exposure time and ISO are DNG tags, so synthetic files read like camera files.
- :func:`write_linear_dng`: an enhanced result (`sid-keras enhance --format dng`), demosaiced
  linear camera RGB (LinearRaw) with the source's colour matrix, white balance and orientation,
  so raw developers (darktable, RawTherapee, Lightroom, LibRaw) develop it like a clean long
  exposure.
"""

from __future__ import annotations

import os
from fractions import Fraction
from typing import Sequence

import numpy as np

from sid_keras.io import atomic_path
from sid_keras.render import UINT16_SCALE

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

TAG_ORIENTATION = 274

PHOTOMETRIC_CFA = 32803
PHOTOMETRIC_LINEAR_RAW = 34892
# LibRaw's flip code -> TIFF/DNG Orientation (1 normal, 3 180°, 6 90° CW, 8 90° CCW).
FLIP_TO_TIFF_ORIENTATION = {0: 1, 3: 3, 5: 8, 6: 6}
LINEAR_DNG_WHITE = UINT16_SCALE
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


def _identity_tags(make: str, model: str) -> list[tuple]:
    """The tags every DNG we write starts with: who made it, and the DNG version."""
    return [
        (TAG_MAKE, ASCII, 0, make, True),
        (TAG_MODEL, ASCII, 0, model, True),
        (TAG_UNIQUE_CAMERA_MODEL, ASCII, 0, f"{make} {model}", True),
        (TAG_DNG_VERSION, BYTE, 4, (1, 4, 0, 0), True),
        (TAG_DNG_BACKWARD_VERSION, BYTE, 4, (1, 1, 0, 0), True),
    ]


def write_cfa_dng(
    path: str | os.PathLike,
    mosaic: np.ndarray,
    cfa_pattern: np.ndarray,
    *,
    black_level: float | Sequence[float] = 0,
    white_level: int = UINT16_SCALE,
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
        color_matrix: 3x3 XYZ(D65) -> camera matrix (DNG ColorMatrix1); None writes a file
            without one (LibRaw then shows camera RGB as it is).
        as_shot_neutral: camera-space RGB of a neutral grey (reciprocal of the WB multipliers).
    """
    import tifffile

    mosaic = np.ascontiguousarray(mosaic, dtype=np.uint16)
    pattern = np.asarray(cfa_pattern, np.uint8).copy()
    pattern[pattern == 3] = 1
    blacks = np.atleast_1d(np.asarray(black_level, np.float64))
    tags = [
        *_identity_tags(make, model),
        (TAG_CFA_REPEAT_PATTERN_DIM, SHORT, 2, pattern.shape, True),
        (TAG_CFA_PATTERN, BYTE, pattern.size, tuple(pattern.ravel().tolist()), True),
        (TAG_CFA_PLANE_COLOR, BYTE, 3, (0, 1, 2), True),
        (TAG_CFA_LAYOUT, SHORT, 1, 1, True),
        (TAG_WHITE_LEVEL, LONG, 1, int(white_level), True),
        (TAG_AS_SHOT_NEUTRAL, RATIONAL, 3, _rationals(as_shot_neutral), True),
    ]
    if color_matrix is not None:
        matrix = np.asarray(color_matrix, np.float64).ravel()
        tags += [(TAG_COLOR_MATRIX_1, SRATIONAL, 9, _rationals(matrix), True),
                 (TAG_CALIBRATION_ILLUMINANT_1, SHORT, 1, ILLUMINANT_D65, True)]
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


def xyz_to_camera(camera_to_srgb: np.ndarray) -> np.ndarray:
    """The DNG ColorMatrix (XYZ D65 -> camera) that makes LibRaw compute ``camera_to_srgb``.

    LibRaw inverts ``ColorMatrix @ sRGB_to_XYZ`` after normalising its rows to 1; this undoes it.
    """
    from sid_keras.render import SRGB_TO_XYZ

    camera_from_srgb = np.linalg.inv(np.asarray(camera_to_srgb, np.float64)[:3, :3])
    return camera_from_srgb @ np.linalg.inv(SRGB_TO_XYZ)


def linear_dng_pixels(camera_rgb: np.ndarray, white_balance: Sequence[float]) -> np.ndarray:
    """White-balanced linear camera RGB in [0, 1] -> the uint16 values a LinearRaw DNG stores:
    before white balance (divided by the gains, which are >= 1, so nothing clips)."""
    gains = np.asarray(white_balance, np.float32)[:3]
    stored = np.clip(np.asarray(camera_rgb, np.float32) / gains, 0.0, 1.0) * np.float32(LINEAR_DNG_WHITE)
    return np.rint(stored, out=stored).astype(np.uint16)


def write_linear_dng(
    path: str | os.PathLike,
    pixels: np.ndarray,
    *,
    white_balance: Sequence[float],
    color_matrix: np.ndarray | None,
    orientation: int = 0,
    overwrite: bool = True,
    make: str = "sid_keras",
    model: str = "enhanced",
) -> None:
    """Write linear camera RGB as a LinearRaw DNG (``pixels``: :func:`linear_dng_pixels`, uint16).

    AsShotNeutral = 1 / gains: a developer applying the as-shot white balance gets the model's
    output back, then applies the colour matrix (rawpy's ``color_matrix`` of the source, camera
    -> sRGB; none if the source had none) and its curve. ``orientation`` is LibRaw's flip code
    of the source; the pixels are in sensor orientation.
    """
    import tifffile

    from sid_keras.render import has_color_matrix

    gains = np.asarray(white_balance, np.float64)[:3]
    pixels = np.ascontiguousarray(pixels, np.uint16)
    tags = [
        *_identity_tags(make, model),
        (TAG_ORIENTATION, SHORT, 1, FLIP_TO_TIFF_ORIENTATION.get(int(orientation), 1), True),
        (TAG_BLACK_LEVEL, LONG, 1, 0, True),
        (TAG_WHITE_LEVEL, LONG, 1, LINEAR_DNG_WHITE, True),
        (TAG_AS_SHOT_NEUTRAL, RATIONAL, 3, _rationals(1.0 / gains), True),
    ]
    if has_color_matrix(color_matrix):
        tags += [(TAG_COLOR_MATRIX_1, SRATIONAL, 9, _rationals(xyz_to_camera(color_matrix).ravel()), True),
                 (TAG_CALIBRATION_ILLUMINANT_1, SHORT, 1, ILLUMINANT_D65, True)]
    with atomic_path(path, overwrite=overwrite) as tmp:
        tifffile.imwrite(tmp, pixels, photometric=PHOTOMETRIC_LINEAR_RAW, planarconfig="contig",
                         subfiletype=0, extratags=tags, metadata=None)
