"""Tiled inference and the output's geometry.

The packed frame is cut into overlapping tiles; each tile runs through the network with
``overlap`` packed pixels of real context on every side, and the outputs are blended with linear
ramps across the overlaps, so memory depends on the tile size, not the frame size. The output is
padded back to the frame's full visible size and turned to its stored orientation.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from sid_keras.errors import SidError
from sid_keras.runtime import cfa, raw

# Defaults in packed pixels: 512 (1024 output pixels) tiles with 16 packed pixels of context.
DEFAULT_TILE = 512


# The smallest tile the command line takes: below it the network sees too little of the frame
# around each tile, and memory (the frame's own buffers by then) falls no further.
SMALLEST_TILE = 32


def default_overlap(tile: int) -> int:
    """The context a tile gets unless told: 1/32 of it, cheap and invisible from 256 up, but at
    least 8 packed pixels where the tile allows (a quarter of it at most). Why: a small tile's
    1/32 is next to nothing; the Blackmagic frame at --tile 32 came out 48.6 dB from the default
    tiling with 1 pixel of context (seams 66 levels deep), 54.7 with the 7 it gets now."""
    return max(tile // 32, min(8, (tile - 1) // 4))

DEFAULT_OVERLAP = default_overlap(DEFAULT_TILE)  # 16


def _ramp(length: int, overlap_before: int, overlap_after: int) -> np.ndarray:
    """1D blending weights: linear ramps over the overlaps, 1 in between (never exactly 0)."""
    w = np.ones(length, np.float32)
    if overlap_before:
        w[:overlap_before] = (np.arange(overlap_before, dtype=np.float32) + 1) / (overlap_before + 1)
    if overlap_after:
        w[length - overlap_after:] = np.minimum(
            w[length - overlap_after:], (np.arange(overlap_after, 0, -1, dtype=np.float32)) / (overlap_after + 1))
    return w


def _weigh(result: np.ndarray, weights: np.ndarray, axis: int) -> None:
    """``result *= weights`` along ``axis`` (0: rows, 1: columns), touching only the ramps at the
    ends: between them the weights are 1, and that is most of a tile."""
    ones = np.flatnonzero(weights == 1)  # one run, between the ramps
    parts = [slice(0, ones[0]), slice(ones[-1] + 1, None)] if ones.size else [slice(None)]
    shape = (-1, 1, 1) if axis == 0 else (1, -1, 1)
    for part in parts:
        result[(part,) if axis == 0 else (slice(None), part)] *= weights[part].reshape(shape)


def _starts(size: int, tile: int, step: int, align: int = 1) -> list[int]:
    """Tile starts at most ``step`` apart, as few as that allows, spread evenly over ``size`` (so
    every seam gets about the same overlap, usually more than the minimum); multiples of ``align``
    except the last, which ends at ``size``."""
    if size <= tile:
        return [0]
    count = -(-(size - tile) // step) + 1
    starts = [(i * (size - tile) // (count - 1)) // align * align for i in range(count - 1)]
    return sorted(set(starts)) + [size - tile]


def fitted_side(size: int, tile: int, overlap: int, multiple: int) -> int:
    """The shortest tile side, a multiple of ``multiple`` and at most ``tile``, that covers ``size``
    with as few tiles (overlapping by ``2 * overlap``) as ``tile`` needs.

    Why: a network's time follows the pixels it runs on, and ``tile``-sized tiles can run a third
    more than the frame has (the Blackmagic frame, 2048 x 1080 packed: 45 fixed 256 tiles are 2.95 M
    pixels for its 2.21 M; three rows of 512 would be 1536 rows for its 1080); fitted 512 / 16
    tiles (15 of 384 x 448) are 2.58 M.
    """
    if size <= tile:
        return size
    count = -(-(size - tile) // (tile - 2 * overlap)) + 1
    side = -(-(size + 2 * overlap * (count - 1)) // count)
    return min(tile, -(-side // multiple) * multiple)


# Finished rows are handed on in chunks of at most this many, so the float temporaries of
# normalising, rendering and quantising stay a few MB whatever the frame's width.
EMIT_ROWS = 64


def blend_tiles(predict: Callable[[np.ndarray], np.ndarray], read_rows: Callable[[int, int], np.ndarray],
                height: int, width: int, scale: int, emit: Callable[[int, np.ndarray], None], *,
                tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP, align: int = 1,
                multiple: int | None = None) -> None:
    """Run ``predict`` over overlapping tiles of a packed frame, strip by strip, and blend.

    ``read_rows(start, stop)`` gives packed rows (h, width, c) of the network's input; ``emit(y,
    rows)`` receives finished output rows (float32, ``scale`` times the packed size) in order.
    Tiles are ``tile`` packed pixels a side (a fixed-size model's; ``multiple``: a dynamic-size
    model's sides must be multiples of it, and tiles shrink to :func:`fitted_side`), overlap by
    ``2 * overlap`` and are blended with linear ramps. The ramps are separable (weight = row ramp
    x column ramp), so tiles accumulate into one strip-high buffer and each finished row is divided
    by its row weight times the column weights: one strip of floats exists at a time, whatever the
    frame's size. ``align``: strip starts are multiples of it (the packed rows of one CFA period).
    """
    if overlap < 0 or tile <= 2 * overlap:
        raise SidError(f"tile {tile} must be larger than twice the overlap {overlap} (and overlap >= 0)")
    tile_h, tile_w = min(max(tile // align, 1) * align, height), min(tile, width)
    step_h = step_w = tile - 2 * overlap
    if multiple:
        tile_h = fitted_side(height, tile_h, overlap, math.lcm(multiple, align))
        tile_w = fitted_side(width, tile_w, overlap, multiple)
        step_h, step_w = tile_h - 2 * overlap, tile_w - 2 * overlap
    row_starts = _starts(height, tile_h, max(step_h // align * align, align), align)
    col_starts = _starts(width, tile_w, step_w)
    col_weights = [_ramp(tile_w * scale, 2 * overlap * scale if left > 0 else 0,
                         2 * overlap * scale if left + tile_w < width else 0) for left in col_starts]
    col_total = np.zeros(width * scale, np.float32)
    for left, wx in zip(col_starts, col_weights):
        col_total[left * scale : (left + tile_w) * scale] += wx
    rows_per_strip = tile_h * scale
    acc = np.zeros((rows_per_strip, width * scale, 3), np.float32)  # weighted sums, rows from acc_top
    row_total = np.zeros(rows_per_strip, np.float32)
    acc_top = 0
    for i, top in enumerate(row_starts):
        offset = top * scale - acc_top
        wy = _ramp(rows_per_strip, 2 * overlap * scale if top > 0 else 0,
                   2 * overlap * scale if top + tile_h < height else 0)
        band = read_rows(top, top + tile_h)
        for left, wx in zip(col_starts, col_weights):
            result = checked_output(np.asarray(predict(band[None, :, left : left + tile_w]), np.float32)[0],
                                    (tile_h * scale, tile_w * scale, 3))
            _weigh(result, wy, 0)
            _weigh(result, wx, 1)
            acc[offset:, left * scale : (left + tile_w) * scale] += result[: rows_per_strip - offset]
        row_total[offset:] += wy[: rows_per_strip - offset]
        end = (top + tile_h) * scale
        finished = (row_starts[i + 1] * scale if i + 1 < len(row_starts) else end) - acc_top
        for y in range(0, finished, EMIT_ROWS):
            n = min(EMIT_ROWS, finished - y)
            weight = row_total[y : y + n, None, None] * col_total[None, :, None]
            emit(acc_top + y, acc[y : y + n] / weight)
        rest = rows_per_strip - finished  # rows the next strip overlaps: move them to the front
        acc[:rest] = acc[finished:].copy()
        acc[rest:] = 0
        row_total[:rest] = row_total[finished:].copy()
        row_total[rest:] = 0
        acc_top += finished


def checked_output(result: np.ndarray, shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """A network's output, checked: NaN or infinity (broken weights) would be written as a black
    or white image and scored as one, so it stops the frame instead; so does an output of another
    ``shape`` than an RGB image at the layout's scale (a model that is not a sid-keras network).
    Every runner's tiles (and the exporter's reference outputs) pass here."""
    if shape is not None and result.shape != shape:
        raise SidError(f"the model's output is {'x'.join(map(str, result.shape))} where this frame's tile needs "
                       f"{'x'.join(map(str, shape))} (RGB at full resolution): not a sid-keras model for this "
                       "sensor; use another model")
    if not np.isfinite(result).all():
        raise SidError("the model's output holds NaN or infinite values: its weights are broken "
                       "(a diverged training, a damaged file): use another model")
    return result


def run_tiled(predict: Callable[[np.ndarray], np.ndarray], packed: np.ndarray, scale: int, *,
              tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP, multiple: int | None = None) -> np.ndarray:
    """:func:`blend_tiles` over a packed array (h, w, c) in memory: the output (h*s, w*s, 3)."""
    h, w = packed.shape[:2]
    out = np.empty((h * scale, w * scale, 3), np.float32)

    def emit(y: int, rows: np.ndarray) -> None:
        out[y : y + len(rows)] = rows

    blend_tiles(predict, lambda a, b: packed[a:b], h, w, scale, emit, tile=tile, overlap=overlap, multiple=multiple)
    return out


def restore_frame_geometry(rgb: np.ndarray, frame: raw.RawFrame) -> np.ndarray:
    """Pad the output (of the packed window) back to the full visible size, in sensor orientation."""
    top, left, h, w = cfa.canonical_window(frame.mosaic.shape, frame.cfa_pattern, frame.path)
    full_h, full_w = frame.mosaic.shape
    return np.pad(rgb, ((top, full_h - top - h), (left, full_w - left - w), (0, 0)), mode="edge")


# LibRaw's flip code -> quarter turns of np.rot90 that show the image upright.
FLIP_TURNS = {3: 2, 5: 1, 6: -1}


def orient(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a sensor-oriented image upright by the file's orientation (LibRaw flip code)."""
    turns = FLIP_TURNS.get(orientation, 0)
    return np.rot90(rgb, turns) if turns else rgb
