"""Linear camera RGB -> the sRGB image a user sees, exactly as LibRaw develops a raw by default.

Colour is the file's business, not the network's: a ``linear`` model predicts
white-balanced camera RGB, and this module turns it into sRGB with the file's own colour matrix
and LibRaw's default output curve, the development SID's ground truth is made with
(``use_camera_wb=True, no_auto_bright=True``). LibRaw's sRGB output equals its linear camera-space
output times ``color_matrix[:, :3]``, clipped to [0, 1], through the curve below: 88.7 dB PSNR on
the real Blackmagic DNG (``tests/test_colour.py`` holds it above 40 dB).

Only numpy is imported, so :mod:`sid_keras.runtime.lite` renders without TensorFlow.
"""

from __future__ import annotations

import numpy as np

# What a model predicts: ``linear`` = white-balanced linear camera RGB (rendered here with the
# file's matrix); ``srgb`` = SID's original end-to-end sRGB (colour learned from one camera).
LINEAR, SRGB = "linear", "srgb"
OUTPUT_KINDS = (LINEAR, SRGB)

# LibRaw's default ``gamma=(2.222, 4.5)``: the BT.709 form, power 1/2.222 with a linear toe of
# slope 4.5 (dcraw's ``gamm[0] = 0.45, gamm[1] = 4.5``).
LIBRAW_POWER = 0.45
LIBRAW_TOE_SLOPE = 4.5
_BISECTION_STEPS = 48  # as dcraw's gamma_curve(); converges to double precision
# Linear sRGB -> XYZ (D65), IEC 61966-2-1: what LibRaw turns a camera's XYZ matrix into sRGB with.
SRGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
     [0.0193339, 0.1191920, 0.9503041]]
)


def _curve_constants(power: float = LIBRAW_POWER, toe_slope: float = LIBRAW_TOE_SLOPE):
    """(linear breakpoint, offset) that join the toe and the power segment smoothly (dcraw)."""
    low, high = 0.0, 1.0
    knee = 0.0
    for _ in range(_BISECTION_STEPS):
        knee = (low + high) / 2
        if ((knee / toe_slope) ** -power - 1) / power - 1 / knee > -1:
            high = knee
        else:
            low = knee
    return knee / toe_slope, knee * (1 / power - 1)


CURVE_BREAK, CURVE_OFFSET = _curve_constants()


def tone_curve(linear: np.ndarray) -> np.ndarray:
    """LibRaw's default output curve on values in [0, 1] (clipped first)."""
    x = np.clip(np.asarray(linear, np.float32), 0.0, 1.0)
    curved = np.power(x, np.float32(LIBRAW_POWER)) * np.float32(1 + CURVE_OFFSET) - np.float32(CURVE_OFFSET)
    return np.where(x < CURVE_BREAK, x * np.float32(LIBRAW_TOE_SLOPE), curved)


# Full scale of the 16-bit images the package stores, renders and writes.
UINT16_SCALE = 65535
# The curve is applied through a 16-bit lookup, as LibRaw applies it (its curve[] table on 16-bit
# values): one gather per pixel instead of a power, and exactly LibRaw's quantisation.
LUT_SCALE = UINT16_SCALE


def _curve_lut(dtype) -> np.ndarray:
    top = np.iinfo(dtype).max
    values = tone_curve(np.arange(LUT_SCALE + 1, dtype=np.float64) / LUT_SCALE)
    return np.rint(np.asarray(values, np.float64) * top).astype(dtype)


_LUTS: dict = {}


def quantize(rgb: np.ndarray, dtype=np.uint8, *, curve: bool = False) -> np.ndarray:
    """Values in [0, 1] (clipped) to integers of ``dtype``; through LibRaw's curve with ``curve``."""
    dtype = np.dtype(dtype)
    if not curve:
        scaled = np.clip(rgb, 0.0, 1.0) * np.float32(np.iinfo(dtype).max)
        return np.rint(scaled, out=scaled).astype(dtype)
    if dtype not in _LUTS:
        _LUTS[dtype] = _curve_lut(dtype)
    index = np.clip(rgb, 0.0, 1.0) * np.float32(LUT_SCALE)
    return _LUTS[dtype][np.rint(index, out=index).astype(np.uint16)]


def render_quantized(linear_camera: np.ndarray, color_matrix: np.ndarray | None, dtype=np.uint8) -> np.ndarray:
    """:func:`render` straight to 8- or 16-bit integers (the fast path of `sid-keras enhance`)."""
    rgb = np.asarray(linear_camera, np.float32) @ camera_to_srgb(color_matrix).T
    return quantize(rgb, dtype, curve=True)


def camera_to_srgb(color_matrix: np.ndarray | None) -> np.ndarray:
    """The 3x3 camera-RGB -> linear sRGB matrix of a file (rawpy's ``color_matrix``, 3x4 or 3x3).

    A file without one (rawpy reports zeros) gets the identity: LibRaw then writes camera RGB
    as it is, and so does this module.
    """
    if color_matrix is None:
        return np.eye(3, dtype=np.float32)
    matrix = np.asarray(color_matrix, np.float32)[:3, :3]
    if not np.any(matrix) or not np.all(np.isfinite(matrix)):
        return np.eye(3, dtype=np.float32)
    return matrix


def has_color_matrix(color_matrix: np.ndarray | None) -> bool:
    return color_matrix is not None and bool(np.any(np.asarray(color_matrix)[:3, :3]))


def render(linear_camera: np.ndarray, color_matrix: np.ndarray | None) -> np.ndarray:
    """White-balanced linear camera RGB (..., 3) -> sRGB in [0, 1], as LibRaw develops it."""
    matrix = camera_to_srgb(color_matrix)
    rgb = np.asarray(linear_camera, np.float32) @ matrix.T
    return tone_curve(rgb)


def packed_preview(packed: np.ndarray, layout) -> np.ndarray:
    """(h, w, 4|9) packed in [0, 1] -> (h*scale, w*scale, 3) grey-world balanced preview, for the
    packing ``layout`` (a :class:`sid_keras.runtime.cfa.CfaLayout`).

    For looking at a network's input (figures, TensorBoard), not for quality; a noise-aware
    model's noise channels (after the packed ones) are left out.
    """
    groups, scale = layout.colour_channels(), layout.scale
    rgb = np.stack([packed[..., g].mean(axis=-1) for g in groups], axis=-1)
    means = rgb.reshape(-1, 3).mean(axis=0) + 1e-6
    rgb = rgb * (means[1] / means)
    rgb = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
    return tone_curve(rgb)
