"""Colour filter arrays: the Bayer and X-Trans layouts, their canonical phase and packing.

A mosaic is brought to the reference phase (RGGB; SID's X-Trans phase) by cropping, then packed
into the channels the network sees, in SID's order. Numpy only.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from sid_keras.errors import SidError

# Smallest frame worth enhancing: a few CFA periods so every model can pad and pool.
MIN_FRAME_SIDE = 16

# Colour indices used by rawpy's raw_pattern / raw_colors: 0 = R, 1 = G, 2 = B, 3 = second G.
RED, GREEN, BLUE, GREEN2 = 0, 1, 2, 3

BAYER_PERIOD = 2
XTRANS_PERIOD = 6
# Output pixels per packed pixel along each axis (the model's depth_to_space block size).
BAYER_SCALE = 2
XTRANS_SCALE = 3

# The reference Bayer phase is RGGB, the layout SID's Sony code assumes.
REFERENCE_BAYER = np.array([[RED, GREEN], [GREEN, BLUE]])
# The reference X-Trans phase: the one SID's Fuji packing (train_Fuji.py) was written for.
REFERENCE_XTRANS = np.array(
    [
        [RED, BLUE, GREEN, BLUE, RED, GREEN],
        [GREEN, GREEN, RED, GREEN, GREEN, BLUE],
        [GREEN, GREEN, BLUE, GREEN, GREEN, RED],
        [BLUE, RED, GREEN, RED, BLUE, GREEN],
        [GREEN, GREEN, BLUE, GREEN, GREEN, RED],
        [GREEN, GREEN, RED, GREEN, GREEN, BLUE],
    ]
)


# Packing layouts: for each output channel, the (row, col) of its mosaic pixel inside one CFA
# period, for each of the packed cells that period yields (1x1 for Bayer, 2x2 for X-Trans).
# Bayer: SID's [R, G(red row), B, G(blue row)].
BAYER_LAYOUT = np.array([[[(0, 0)]], [[(0, 1)]], [[(1, 1)]], [[(1, 0)]]])
# X-Trans: SID's nine channels for the Fuji model (R, G, B, R, B, then four G planes).
XTRANS_LAYOUT = np.array(
    [
        [[(0, 0), (0, 4)], [(3, 1), (3, 3)]],
        [[(0, 2), (0, 5)], [(3, 2), (3, 5)]],
        [[(0, 1), (0, 3)], [(3, 0), (3, 4)]],
        [[(1, 2), (2, 5)], [(5, 2), (4, 5)]],
        [[(2, 2), (1, 5)], [(4, 2), (5, 5)]],
        [[(1, 0), (1, 3)], [(4, 0), (4, 3)]],
        [[(1, 1), (1, 4)], [(4, 1), (4, 4)]],
        [[(2, 0), (2, 3)], [(5, 0), (5, 3)]],
        [[(2, 1), (2, 4)], [(5, 1), (5, 4)]],
    ]
)


@dataclasses.dataclass(frozen=True)
class CfaLayout:
    """How a colour filter array is canonicalised and packed.

    Attributes:
        kind: ``"bayer"`` or ``"xtrans"``.
        period: side of the repeating CFA tile (2 or 6).
        scale: output pixels per packed pixel along each axis (2 or 3).
        reference: the canonical pattern (colour index per tile position).
        layout: per channel, the tile positions that feed each packed cell.
    """

    kind: str
    period: int
    scale: int
    reference: np.ndarray
    layout: np.ndarray

    @property
    def channels(self) -> int:
        return self.layout.shape[0]

    @property
    def channel_colours(self) -> np.ndarray:
        """Per packed channel its colour, 0 R, 1 G, 2 B (Bayer: R, G, B, G)."""
        first = self.layout[:, 0, 0]
        return _as_rgbg(self.reference)[first[:, 0], first[:, 1]]

    def colour_channels(self) -> list[list[int]]:
        """Per colour (R, G, B), the packed channels that hold it."""
        return [[int(c) for c in np.flatnonzero(self.channel_colours == colour)] for colour in range(3)]

    def mosaic_of(self, rgb: np.ndarray) -> np.ndarray:
        """The mosaic a sensor with this CFA records of an RGB image (whole tiles, h, w, 3)."""
        which = tile_colours(_as_rgbg(self.reference), rgb.shape[:2])
        return np.take_along_axis(rgb, which[..., None], axis=-1)[..., 0]

    def pack_rgb(self, rgb: np.ndarray) -> np.ndarray:
        """An RGB image's mosaic, packed: what the network is given of a scene."""
        return pack_mosaic(self.mosaic_of(rgb), self)

    def rgb_block_indices(self) -> list[int]:
        """For Bayer, the channels of ``space_to_depth(2)`` of an RGB image (each 2x2 block as
        (row, col, colour)) that the packed channels are, in order: packing in TensorFlow."""
        if self.period != 2:
            raise ValueError("rgb_block_indices is defined for 2x2 Bayer packing")
        return [int((r * 2 + c) * 3 + colour) for (r, c), colour in zip(self.layout[:, 0, 0], self.channel_colours)]

BAYER = CfaLayout("bayer", BAYER_PERIOD, BAYER_SCALE, REFERENCE_BAYER, BAYER_LAYOUT)

XTRANS = CfaLayout("xtrans", XTRANS_PERIOD, XTRANS_SCALE, REFERENCE_XTRANS, XTRANS_LAYOUT)


def tile_colours(pattern: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Colour index of every pixel of a mosaic of ``shape`` tiled with ``pattern``."""
    p = pattern.shape[0]
    reps = (-(-shape[0] // p), -(-shape[1] // p))
    return np.tile(pattern, reps)[: shape[0], : shape[1]]


def cfa_layout(pattern: np.ndarray | None, path: str = "<array>") -> CfaLayout:
    """The Bayer or X-Trans layout matching a raw_pattern; a clear error for anything else."""
    if pattern is None:
        raise SidError(
            f"{path}: has no colour filter array (a linear DNG, scanner or already-demosaiced "
            "file); sid-keras needs a Bayer or X-Trans camera raw"
        )
    side = np.asarray(pattern).shape
    if side == (BAYER_PERIOD, BAYER_PERIOD):
        return BAYER
    if side == (XTRANS_PERIOD, XTRANS_PERIOD):
        return XTRANS
    raise SidError(f"{path}: unsupported CFA pattern of size {side}; only Bayer 2x2 and X-Trans 6x6")


def _as_rgbg(pattern: np.ndarray) -> np.ndarray:
    """Pattern with both greens as GREEN, for comparing phases."""
    out = np.asarray(pattern).copy()
    out[out == GREEN2] = GREEN
    return out


def canonical_offset(pattern: np.ndarray, path: str = "<array>") -> tuple[int, int]:
    """(rows, cols) to crop from the top-left so the mosaic starts at the reference phase."""
    layout = cfa_layout(pattern, path)
    rgbg = _as_rgbg(pattern)
    for dy in range(layout.period):
        for dx in range(layout.period):
            if np.array_equal(np.roll(rgbg, (-dy, -dx), axis=(0, 1)), layout.reference):
                return dy, dx
    raise SidError(f"{path}: CFA pattern {rgbg.tolist()} is no phase of the {layout.kind} layout")


def canonical_window(shape: Sequence[int], pattern: np.ndarray, path: str = "<array>"):
    """The (top, left, height, width) window of a mosaic that packs: reference phase, whole tiles."""
    layout = cfa_layout(pattern, path)
    dy, dx = canonical_offset(pattern, path)
    p = layout.period
    h = (shape[0] - dy) // p * p
    w = (shape[1] - dx) // p * p
    if min(h, w) < max(MIN_FRAME_SIDE, p):
        raise SidError(
            f"{path}: frame of {shape[0]}x{shape[1]} pixels is too small to enhance "
            f"(need at least {MIN_FRAME_SIDE} pixels a side)"
        )
    return dy, dx, h, w


def pack_mosaic(mosaic: np.ndarray, layout: CfaLayout) -> np.ndarray:
    """Rearrange a canonical mosaic (reference phase, whole tiles) into packed channels.

    A pure rearrangement: values and dtype are kept, so :func:`unpack_mosaic` inverts it exactly.
    """
    p, cells = layout.period, layout.layout.shape[1]
    h, w = mosaic.shape[:2]
    if h % p or w % p:
        raise SidError(f"mosaic of {h}x{w} is not a whole number of {p}x{p} CFA tiles")
    out = np.empty((h // p * cells, w // p * cells, layout.channels), mosaic.dtype)
    for ch, grid in enumerate(layout.layout):
        for cy in range(cells):
            for cx in range(cells):
                r, c = grid[cy][cx]
                out[cy::cells, cx::cells, ch] = mosaic[r::p, c::p]
    return out


def unpack_mosaic(packed: np.ndarray, layout: CfaLayout) -> np.ndarray:
    """Inverse of :func:`pack_mosaic`: packed channels back to the canonical mosaic."""
    p, cells = layout.period, layout.layout.shape[1]
    ph, pw = packed.shape[:2]
    out = np.empty((ph // cells * p, pw // cells * p), packed.dtype)
    for ch, grid in enumerate(layout.layout):
        for cy in range(cells):
            for cx in range(cells):
                r, c = grid[cy][cx]
                out[r::p, c::p] = packed[cy::cells, cx::cells, ch]
    return out
