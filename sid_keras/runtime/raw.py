"""Camera raw frames: reading, CFA canonicalisation, packing and the exposure ratio.

The data path starts here: a raw file becomes a :class:`RawFrame` (the mosaic and
the metadata needed to interpret it), the mosaic is brought to the reference CFA phase, packed into
channels the network sees (SID's order) and normalised by the file's own black and white levels.
Only numpy is imported at module level; rawpy is imported by :func:`read_raw`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import struct
from typing import Callable, Sequence

import numpy as np

from sid_keras.errors import SidError

# SID's exposure-ratio cap: its test set only has x100, x250 and x300 (Chen et al. 2018).
DEFAULT_RATIO_CAP = 300.0
# Amplifications outside these are typos, not exposures (a 14-bit sensor spans 2^14 = 16384).
RATIO_BOUNDS = (0.01, 10000.0)

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

# Grey-world gains beyond this are a colourful scene, not an illuminant: cap them.
GREY_WORLD_MAX_GAIN = 8.0

# Smallest frame worth enhancing: a few CFA periods so every model can pad and pool.
MIN_FRAME_SIDE = 16

_SID_EXPOSURE_RE = re.compile(r"_(\d+(?:\.\d+)?)s\.[A-Za-z0-9]+$")


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


@dataclasses.dataclass(frozen=True)
class RawFrame:
    """One raw frame and the metadata needed to interpret it.

    Attributes:
        mosaic: uint16 (H, W) visible sensor area, exactly as stored (not black-subtracted).
        cfa_pattern: colour index per position of the repeating CFA tile (2x2 or 6x6);
            0 = R, 1 = G, 2 = B, 3 = second G.
        black_level: per colour index (4 values), in sensor units.
        white_level: saturation value in sensor units.
        white_balance: as-shot multipliers per colour index, normalised as LibRaw does (the
            smallest of R, G, B is 1), so white-balanced values clip where LibRaw's do.
        color_matrix: 3x4 camera-RGB to sRGB matrix as rawpy reports it (zeros if unknown).
        exposure_time: seconds, or None when the file does not say.
        iso: ISO speed, or None when the file does not say.
        orientation: LibRaw's flip code (0 none, 3 180°, 5 90° CCW, 6 90° CW).
        crop: the file's default crop (top, left, height, width) in the mosaic, or None.
        noise_profile: the DNG NoiseProfile as ``(S, O)`` per colour R, G, B (variance
            ``S * x + O`` of a signal ``x`` in units of white minus black), or None.
        noise_variance_scale: the share of a single frame's noise variance each pixel still has
            (mosaic-shaped, float32; a merged burst's, :mod:`sid_keras.runtime.burst`), or None
            (all of it). Such a frame's mosaic holds float32 values, in sensor units too.
        lens_gain: the gain the file's lens-shading GainMaps applied to each pixel's signal
            (mosaic-shaped, float32), or None: the noise law describes the sensor's values before
            it, so a corner amplified x2.5 holds x2.5 the noise of its level.
        path: the file the frame came from, for messages.
        notices: one-line remarks for the user (a white balance or colour matrix that had to be
            replaced because the file lacks it).
    """

    mosaic: np.ndarray
    cfa_pattern: np.ndarray
    black_level: np.ndarray
    white_level: float
    white_balance: np.ndarray = dataclasses.field(default_factory=lambda: np.ones(4))
    color_matrix: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((3, 4)))
    exposure_time: float | None = None
    iso: float | None = None
    orientation: int = 0
    crop: tuple[int, int, int, int] | None = None
    noise_profile: tuple[tuple[float, float], ...] | None = None
    noise_variance_scale: np.ndarray | None = None
    lens_gain: np.ndarray | None = None
    path: str = "<array>"
    notices: tuple[str, ...] = ()

    @property
    def cfa(self) -> CfaLayout:
        return cfa_layout(self.cfa_pattern, self.path)

    @property
    def black_map(self) -> np.ndarray:
        """Black level of every mosaic position, from the per-colour levels and the CFA."""
        colours = tile_colours(self.cfa_pattern, self.mosaic.shape)
        return np.asarray(self.black_level, np.float32)[colours]


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


def channel_levels(frame: RawFrame) -> tuple[np.ndarray, float]:
    """Per packed channel black level (from the canonical tile) and the white level."""
    return _per_channel(frame, frame.black_level), float(frame.white_level)


def _per_channel(frame: RawFrame, per_colour: Sequence[float]) -> np.ndarray:
    """A per-colour-index quantity (4 values) mapped onto the packed channels."""
    dy, dx = canonical_offset(frame.cfa_pattern, frame.path)
    tile = np.roll(np.asarray(frame.cfa_pattern), (-dy, -dx), axis=(0, 1))
    values = np.asarray(per_colour, np.float32)
    return np.array([values[tile[tuple(g[0][0])]] for g in frame.cfa.layout], np.float32)


def channel_gains(frame: RawFrame) -> np.ndarray:
    """The file's white-balance gain of each packed channel."""
    return _per_channel(frame, frame.white_balance)


def pack(frame: RawFrame) -> np.ndarray:
    """Packed, black-subtracted float32 in [0, 1]: (H/2, W/2, 4) Bayer or (H/3, W/3, 9) X-Trans.

    Each channel is normalised by its own black level and the white level, as SID does with
    ``max(raw - black, 0) / (white - black)`` but with the file's levels instead of Sony's.
    """
    return network_input(frame, 1.0, white_balance=False)


def denormalize(packed: np.ndarray, black: np.ndarray, white: float) -> np.ndarray:
    """Inverse of :func:`pack`'s normalisation for values inside [black, white], back to uint16."""
    black = np.asarray(black, np.float32)
    values = np.asarray(packed, np.float32) * (np.float32(white) - black) + black
    return np.rint(values).astype(np.uint16)


def amplify(packed: np.ndarray, ratio: float = 1.0, gains: np.ndarray | None = None, *,
            black: np.ndarray | float = 0.0, white: float = 1.0) -> np.ndarray:
    """Black-subtract, normalise, multiply by the exposure ratio (and white-balance gains), clip.

    ``(packed - black) / (white - black) * ratio * gains``, clipped to 0 below and, above, to what
    a saturated pixel becomes (1 whenever ratio x gain >= 1). With the defaults it amplifies an
    already normalised input, as SID feeds its network (``min(packed * ratio, 1)``); with a
    file's levels and ratio 1 it is SID's ``max(raw - black, 0) / (white - black)``. A
    ``linear`` model's gains go in before the one clip, which equals LibRaw's clips (the
    sensor's, then one after white balance with gains >= 1), so its input saturates where the
    ground truth does.
    """
    black = np.asarray(black, np.float32)
    gain = np.float32(check_ratio(ratio)) * (np.float32(1) if gains is None else np.asarray(gains, np.float32))
    out = np.asarray(packed).astype(np.float32)
    out -= black
    out *= gain / (np.float32(white) - black)
    np.minimum(out, np.minimum(gain, np.float32(1)), out=out)
    return np.maximum(out, np.float32(0), out=out)


def packed_shape(frame: RawFrame) -> tuple[int, int]:
    """(height, width) of the frame's packed form."""
    _, _, h, w = canonical_window(frame.mosaic.shape, frame.cfa_pattern, frame.path)
    layout = frame.cfa
    cells = layout.layout.shape[1]
    return h // layout.period * cells, w // layout.period * cells


def _packed_rows(frame: RawFrame, rows: tuple[int, int] | None, mosaic: np.ndarray | None = None) -> np.ndarray:
    """The frame's packed raw values (uint16), all rows or packed ``rows = (start, stop)``; or
    those of another array of the mosaic's shape (``mosaic``)."""
    top, left, h, w = canonical_window(frame.mosaic.shape, frame.cfa_pattern, frame.path)
    layout = frame.cfa
    cells = layout.layout.shape[1]
    start, stop = rows if rows is not None else (0, h // layout.period * cells)
    if start % cells or stop % cells:
        raise ValueError(f"packed rows {start}:{stop} are not whole CFA periods of {cells} rows")
    mosaic_rows = slice(top + start // cells * layout.period, top + stop // cells * layout.period)
    return pack_mosaic((frame.mosaic if mosaic is None else mosaic)[mosaic_rows, left : left + w], layout)


def raw_signal(frame: RawFrame, rows: tuple[int, int] | None = None, packed: np.ndarray | None = None) -> np.ndarray:
    """The packed raw signal in units of white minus black (a noise law's units), not clipped:
    values below black stay negative, as the dark noise's negative half is, where the file keeps it.
    ``packed``: the frame's packed values when the caller has them."""
    black, white = channel_levels(frame)
    signal = (_packed_rows(frame, rows) if packed is None else packed).astype(np.float32)
    signal -= black
    signal /= np.float32(white) - black
    return signal


def network_input(frame: RawFrame, ratio: float, *, white_balance: bool,
                  rows: tuple[int, int] | None = None, noise: NoiseLaw | None = None) -> np.ndarray:
    """The packed, amplified (and, for ``linear`` models, white-balanced) input of a frame.

    ``rows = (start, stop)`` packs only those packed rows (multiples of the layout's cells per
    period: 1 for Bayer, 2 for X-Trans), so a large frame can be processed strip by strip.
    With ``noise`` (a model that takes its input's noise level) the packed channels are followed
    by as many channels of :func:`noise_sigma`.
    """
    black, white = channel_levels(frame)
    packed = _packed_rows(frame, rows)
    gains = channel_gains(frame) if white_balance else None
    amplified = amplify(packed, ratio, gains, black=black, white=white)
    if noise is None:
        return amplified
    channels = amplified.shape[-1]
    out = np.empty((*amplified.shape[:-1], 2 * channels), np.float32)
    out[..., :channels] = amplified
    signal = raw_signal(frame, packed=packed)
    scale = np.float32(ratio) * (np.float32(1) if gains is None else gains)
    if frame.lens_gain is not None:  # the sensor's noise, then amplified with the signal: g sqrt(s y/g + o)
        gain = _packed_rows(frame, rows, frame.lens_gain)
        signal /= gain
        scale = scale * gain
    if frame.noise_variance_scale is not None:  # a merged burst: less noise, pixel by pixel
        scale = scale * np.sqrt(_packed_rows(frame, rows, frame.noise_variance_scale))
    out[..., channels:] = noise_sigma(signal, scale, noise.s, noise.o, out=signal)
    return out


@dataclasses.dataclass(frozen=True)
class NoiseLaw:
    """Variance ``s * y + o`` of a raw signal ``y`` (units of white minus black), per packed
    channel, and where it came from (said with ``--verbose``)."""

    s: np.ndarray
    o: np.ndarray
    source: str


# The largest noise level a network is told: a standard deviation of its whole input range.
NOISE_SIGMA_CLIP = 1.0


def noise_sigma(signal, scale, s, o, xp=np, out=None):
    """The standard deviation of each amplified input value: ``scale * sqrt(s * y + o)`` with
    ``scale`` the exposure ratio times the white-balance gain and ``y`` the raw signal (its noisy
    value, clipped at 0: what an app has too). ``xp``: numpy or TensorFlow. ``out`` (numpy, float32,
    may be ``signal``): computed in place, without a frame-sized temporary per step."""
    if out is None:
        return xp.minimum(scale * xp.sqrt(s * xp.maximum(signal, 0.0) + o), NOISE_SIGMA_CLIP)
    np.maximum(signal, np.float32(0), out=out)
    out *= s
    out += o
    np.sqrt(out, out=out)
    out *= scale
    return np.minimum(out, np.float32(NOISE_SIGMA_CLIP), out=out)


# Below this signal-to-noise ratio at its median level (by the reference law) a frame is dark and
# noisy enough for its own noise to be measured better than a law at its ISO can say: its fine
# detail is small against its noise. Every stress-grid frame is below it (at most 17; there, told
# the estimate, the shipped model scores 24.92 dB against 24.80 told the reference law, and 24.90
# told each camera's true law); the clean frames of the fidelity set are far above (84 and more),
# where the estimate reads fine detail as noise and the law is kept.
NOISY_FRAME_SNR = 30.0


def noise_law(frame: RawFrame, profile=None) -> NoiseLaw:
    """The frame's noise, in this order: the DNG ``NoiseProfile`` tag; a calibrated ``profile``
    (:mod:`sid_keras.runtime.noise`, `sid-keras calibrate`) at the file's ISO; the package's reference
    law (the Sony A7S II calibration) at the ISO, except for a dark, noisy frame (below
    :data:`NOISY_FRAME_SNR`), whose own estimate is closer; else an estimate from the frame itself
    (:func:`estimate_noise_law`: on clean frames full of fine detail it reads detail as noise, up
    to 16x the noise of ISO 100, so it never replaces a law for a clean frame)."""
    from sid_keras.runtime import noise

    def one_law(law: tuple[float, float], source: str) -> NoiseLaw:  # the same (s, o) for every channel
        return NoiseLaw(*(np.full(frame.cfa.channels, v, np.float32) for v in law), source)

    if frame.noise_profile is not None:
        per_colour = np.array(frame.noise_profile + frame.noise_profile[1:2], np.float32)  # R, G, B, G2
        s, o = _per_channel(frame, per_colour[:, 0]), _per_channel(frame, per_colour[:, 1])
        return NoiseLaw(s, o, "the file's NoiseProfile")
    if frame.iso and profile:
        return one_law(noise.iso_variance(frame.iso, profile), f"{profile.name} noise law at ISO {frame.iso:g}")
    sample = _noise_sample(frame)
    if frame.iso:
        s, o = noise.iso_variance(frame.iso, noise.SONY_A7S2)
        level = max(float(np.median(np.concatenate([t.ravel() for t in sample]))), 0.0)
        snr = level / np.sqrt(s * level + o)
        if snr >= NOISY_FRAME_SNR:
            return one_law((s, o), f"the reference noise law at ISO {frame.iso:g}")
        s, o = estimate_noise_law(sample)
        return NoiseLaw(s, o, f"estimated from the frame (dark and noisy: signal-to-noise {snr:.0f} at its "
                              f"median level by the reference law at ISO {frame.iso:g})")
    s, o = estimate_noise_law(sample)
    return NoiseLaw(s, o, "estimated from the frame (no NoiseProfile, no ISO)")


def _noise_sample(frame: RawFrame, side: int = 64, grid: int = 6) -> list[np.ndarray]:
    """``grid`` x ``grid`` packed tiles of ``side`` pixels spread over the frame, of its raw signal
    (:func:`raw_signal`; the whole packed frame when it is small): plenty of pixels for a noise
    estimate, packed in a fraction of a large frame's time."""
    h, w = packed_shape(frame)
    if h <= side * grid and w <= side * grid:
        return [raw_signal(frame)]
    cells = frame.cfa.layout.shape[1]
    rows = (np.linspace(0, max(h - side, 0), grid) // cells * cells).astype(int)
    cols = np.linspace(0, max(w - side, 0), grid).astype(int)
    bands = [raw_signal(frame, rows=(r, min(r + side, h // cells * cells))) for r in rows]
    return [band[:, c:c + side] for band in bands for c in cols]


def second_difference(y: np.ndarray) -> np.ndarray:
    """Immerkaer's noise residual ("Fast Noise Variance Estimation", 1996) over axes 1 and 2 of
    ``y`` (tiles, h, w, channels), where it is defined (h - 2, w - 2): the kernel
    ``[[1, -2, 1], [-2, 4, -2], [1, -2, 1]] / 6``, a second difference across and down, zero on any
    plane (smooth shading is not taken for noise); on independent noise it has the noise's variance."""
    across = y[:, :, :-2] - 2 * y[:, :, 1:-1] + y[:, :, 2:]
    return (across[:, :-2] - 2 * across[:, 1:-1] + across[:, 2:]) / 6


def _box_mean(y: np.ndarray, size: int) -> np.ndarray:
    """The mean over ``size`` x ``size`` windows of axes 1 and 2, where they fit."""
    h, w = y.shape[1] - size + 1, y.shape[2] - size + 1
    rows = sum(y[:, i:i + h] for i in range(size))
    return sum(rows[:, :, j:j + w] for j in range(size)) / (size * size)


def estimate_noise_law(tiles, bins: int = 16, flattest: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """``(s, o)`` per channel of packed tiles of a raw signal (one array or a list), from the frame
    alone: at each pixel the :func:`second_difference` residual, the local level (5x5 mean) and the
    local activity (the gradient of the 3x3 mean); in bins of equal counts by level, the robust
    variance (median absolute deviation) of the ``flattest`` share of the bin's residuals, where
    texture leaks least, fitted by ``s * level + o`` (s, o >= 0; :func:`_noise_line`).

    The noise level it gives (``python benchmarks/noise_estimate.py``): within 5% of the truth for
    half the stress grid's frames, 3% for half of larger ones; fine detail of a clean frame reads
    as noise (1.8x for half, up to 16x the noise of ISO 100 on the fidelity set's photos).
    """
    tiles = [tiles] if isinstance(tiles, np.ndarray) else list(tiles)
    channels = tiles[0].shape[-1]
    stacks: dict[tuple, list] = {}  # tiles of one shape are filtered together
    for tile in tiles:
        if min(tile.shape[:2]) >= 8:
            stacks.setdefault(tile.shape, []).append(tile)
    fits = [[] for _ in range(channels)]  # (residual, level, activity) of each channel's pixels
    for stack in stacks.values():
        # At the pixels whose 5x5 neighbourhood is in the tile, (h - 4, w - 4):
        y = np.stack(stack).astype(np.float32)  # (tiles, h, w, channels)
        residual = second_difference(y)[:, 1:-1, 1:-1]
        level = _box_mean(y, 5)
        smooth = _box_mean(y, 3)  # centred on the pixels inside the outermost ring
        activity = (np.abs(smooth[:, 2:, 1:-1] - smooth[:, :-2, 1:-1])
                    + np.abs(smooth[:, 1:-1, 2:] - smooth[:, 1:-1, :-2]))
        for c, fit in enumerate(fits):
            fit.append((residual[..., c].ravel(), level[..., c].ravel(), activity[..., c].ravel()))
    laws = []
    for fit in fits:
        arrays = [np.concatenate(a) for a in zip(*fit)] if fit else [np.zeros(0, np.float32)] * 3
        laws.append(_noise_line(*_noise_points(*arrays, bins, flattest)))
    s, o = np.array(laws, np.float64).T
    return s.astype(np.float32), np.maximum(o, 1e-10).astype(np.float32)


def _noise_points(residual, level, activity, bins: int, flattest: float) -> tuple[np.ndarray, np.ndarray]:
    """(level, robust residual variance) of bins of equal counts by level, of the flattest pixels."""
    # Fewer bins for a small frame; a partition at the bins' edges is all they need, a third of a
    # full sort's time.
    bins = max(1, min(bins, level.size // 400))
    edges = [i * (level.size // bins) + min(i, level.size % bins) for i in range(1, bins)]
    order = np.argpartition(level, edges) if edges and level.size >= 50 * bins else np.argsort(level)
    points = []
    for chunk in np.split(order, edges):
        if chunk.size >= 50:
            share = max(flattest, min(1.0, 400 / chunk.size))  # at least 400 pixels a bin
            chunk = chunk[activity[chunk] <= np.quantile(activity[chunk], share)]
            r = residual[chunk]
            mad = np.median(np.abs(r - np.median(r)))
            points.append((level[chunk].mean(), (1.4826 * mad) ** 2))
    return np.array(points, np.float64).T if points else (np.zeros(1), np.zeros(1))


def _noise_line(level: np.ndarray, variance: np.ndarray, quantile: float = 0.35) -> tuple[float, float]:
    """``(s, o)`` >= 0 of the line ``s * level + o`` under most of the points: texture only ever
    adds variance, so a level whose pixels are all texture lies above the noise's line, and a
    least-squares fit would follow it. The line through two points (or one, with s or o zero)
    with the least quantile loss of the log ratio, refined by least squares (of relative errors)
    on the points within 50% of it."""
    variance = np.maximum(variance, 1e-20)
    if level.size < 2:
        return 0.0, float(variance.mean())
    candidates = [(0.0, v) for v in variance] + [(v / max(x, 1e-12), 0.0) for x, v in zip(level, variance)]
    for i in range(level.size):
        for j in range(i + 1, level.size):
            if level[j] != level[i]:
                s = (variance[j] - variance[i]) / (level[j] - level[i])
                candidates.append((s, variance[i] - s * level[i]))
    lines = np.array([c for c in candidates if c[0] >= 0 and c[1] >= 0])
    error = np.log(variance)[None, :] - np.log(np.maximum(lines[:, :1] * level[None, :] + lines[:, 1:], 1e-20))
    loss = np.maximum(quantile * error, (quantile - 1) * error).sum(1)
    s, o = lines[np.argmin(loss)]
    near = np.abs(np.log(variance / np.maximum(s * level + o, 1e-20))) < np.log(1.5)
    if near.sum() >= 2 and np.ptp(level[near]) > 0:
        fit_s, fit_o = np.polyfit(level[near], variance[near], 1, w=1 / variance[near])  # relative errors
        if fit_s >= 0 and fit_o >= 0:
            s, o = fit_s, fit_o
    return float(s), float(o)


def subtract_dark_shading(frame: RawFrame, maps: dict[float, np.ndarray]) -> RawFrame:
    """The frame less its camera's fixed dark pattern (the calibrated map of the nearest ISO):
    what PMN measured +0.76 dB on SID from. A frame of another size, or without an ISO when
    several ISOs were calibrated, is left as it is, with a notice."""
    if not maps:
        return frame
    usable = {iso: m for iso, m in maps.items() if m.shape == frame.mosaic.shape}
    if not usable or (frame.iso is None and len(usable) > 1):
        why = "its size differs from the calibration frames'" if not usable else "it names no ISO"
        return dataclasses.replace(frame, notices=(*frame.notices,
                                                   f"{frame.path}: dark shading not subtracted: {why}"))
    iso = min(usable, key=lambda i: abs(math.log(i / frame.iso)) if frame.iso else 0.0)
    mosaic = np.clip(np.rint(frame.mosaic.astype(np.float32) - usable[iso]), 0, frame.white_level)
    return dataclasses.replace(frame, mosaic=mosaic.astype(np.uint16))


def check_ratio(ratio: float, what: str = "exposure ratio") -> float:
    """A ratio within :data:`RATIO_BOUNDS`, or a SidError that says so."""
    try:
        value = float(ratio)
    except (TypeError, ValueError):
        raise SidError(f"{what} {ratio!r} is not a number; give a positive amplification") from None
    low, high = RATIO_BOUNDS
    if not math.isfinite(value) or not low <= value <= high:
        raise SidError(f"{what} {ratio!r} must be between {low:g} and {high:g} (SID uses 100, 250, 300)")
    return value


def exposure_from_sid_name(path: str) -> float | None:
    """Exposure seconds from a SID file name (``00001_00_0.04s.ARW`` -> 0.04), else None."""
    match = _SID_EXPOSURE_RE.search(os.path.basename(str(path)))
    return float(match.group(1)) if match else None


def exposure_ratio(
    short_path: str,
    long_path: str,
    *,
    short_exposure: float | None = None,
    long_exposure: float | None = None,
    cap: float | None = DEFAULT_RATIO_CAP,
) -> float:
    """SID's amplification ``min(long / short, cap)``.

    Exposure times come from the files' metadata when given (> 0), else from SID file names.
    ``cap=None`` disables the cap.
    """
    times = []
    for path, meta in ((short_path, short_exposure), (long_path, long_exposure)):
        value = meta if meta and meta > 0 else exposure_from_sid_name(path)
        if value is None or not value > 0:
            raise SidError(
                f"{path}: exposure time unknown (no metadata and no SID-style name like "
                "00001_00_0.04s.ARW); give the ratio explicitly"
            )
        times.append(float(value))
    # Metadata stores times as float32 (0.1 s reads 0.100000001): keep the ratio to 4 decimals.
    ratio = round(times[1] / times[0], 4)
    if cap is not None:
        ratio = min(ratio, check_ratio(cap, "ratio cap"))
    return check_ratio(ratio)


def _read_tiff(path: str, read: Callable):
    """``read(tifffile.TiffFile)`` for a TIFF-based raw (DNG, NEF, ARW, CR2...); None for other
    formats or a structure tifffile does not follow (LibRaw then decides alone)."""
    import logging

    with open(path, "rb") as f:
        if f.read(4) not in (b"II*\x00", b"MM\x00*"):
            return None
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # its complaints about odd tags are not the user's business
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return read(tif)
    except Exception:  # noqa: BLE001 - a structure tifffile cannot follow
        return None
    finally:
        logger.setLevel(level)


def _dng_ifds(tif):
    """Every IFD of a DNG, its SubIFDs included, breadth first; nothing for other formats (their
    makers' tags need not follow the TIFF rules the readers below rely on)."""
    if "DNGVersion" not in tif.pages[0].tags:
        return
    pages = list(tif.pages)
    while pages:
        page = pages.pop(0)
        yield page
        pages += list(getattr(page, "pages", None) or [])


def dng_data_end(path: str) -> int | None:
    """Where the image data of a DNG ends, from its IFDs and SubIFDs (None for other formats)."""
    def end_of(tif) -> int | None:
        ends = [o + c for page in _dng_ifds(tif) for o, c in zip(page.dataoffsets, page.databytecounts)]
        return max(ends, default=0) if "DNGVersion" in tif.pages[0].tags else None

    return _read_tiff(path, end_of)


def camera_name(path: str | os.PathLike) -> str | None:
    """The camera a TIFF-based raw names (Make and Model, or DNG's UniqueCameraModel); None if
    the file does not say."""
    names = camera_identity(path)
    return " ".join(names[key] for key in ("Make", "Model") if key in names) or names.get("UniqueCameraModel")


def dng_raw_tags(path: str | os.PathLike) -> dict:
    """What LibRaw leaves to the reader of a DNG: its raw image's (NewSubfileType 0: IFD0 or a
    SubIFD) ``NoiseProfile`` and ``OpcodeList2`` tags, and an ISO written in IFD0 (``"iso"``),
    those present; empty for other formats."""
    from sid_keras.runtime.dng import (
        PHOTOMETRIC_CFA,
        PHOTOMETRIC_LINEAR_RAW,
        TAG_NOISE_PROFILE,
        TAG_OPCODE_LIST_2,
    )

    def tags_of(tif) -> dict:
        found = {}
        for page in _dng_ifds(tif):
            tags = page.tags
            if not found:
                iso = tags.valueof("ISOSpeedRatings")  # in IFD0; LibRaw reads it from the EXIF IFD only
                found["iso"] = float(np.atleast_1d(iso)[0]) if iso else None
            raw_data = tags.valueof("PhotometricInterpretation") in (PHOTOMETRIC_CFA, PHOTOMETRIC_LINEAR_RAW)
            if raw_data and tags.valueof("NewSubfileType", 0) == 0:
                found.update({code: tags[code].value for code in (TAG_NOISE_PROFILE, TAG_OPCODE_LIST_2)
                              if code in tags})
                break
        return {key: value for key, value in found.items() if value is not None}

    return _read_tiff(os.fspath(path), tags_of) or {}


def _noise_profile(values, path: str, notices: list[str]) -> tuple[tuple[float, float], ...] | None:
    """A NoiseProfile tag as (S, O) for R, G, B; a malformed one is a notice and None."""
    values = np.atleast_1d(np.asarray(values, np.float64))
    pairs = values.reshape(-1, 2) if values.size in (2, 6) else None
    if pairs is None or not np.all(np.isfinite(pairs)) or np.any(pairs[:, 0] <= 0) or np.any(pairs[:, 1] < 0):
        notices.append(f"{path}: its NoiseProfile tag is malformed ({values.size} values: {values[:6].tolist()}); "
                       "ignoring it")
        return None
    pairs = np.repeat(pairs, 3 // len(pairs), axis=0)
    return tuple((float(s), float(o)) for s, o in pairs)


def _apply_gain_maps(mosaic: np.ndarray, black_map: np.ndarray, white: float, opcodes: bytes, path: str,
                     notices: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """The mosaic with OpcodeList2's GainMaps (a phone's lens shading) applied to the signal
    above black, as DNG readers do before developing (LibRaw leaves them out), and the gain each
    pixel got (None without maps)."""
    from sid_keras.runtime.dng import decode_gain_maps

    try:
        maps = decode_gain_maps(bytes(opcodes))
    except (ValueError, struct.error) as err:
        notices.append(f"{path}: its lens-shading GainMap is malformed ({err}); developing without it")
        return mosaic, None
    if not maps:
        return mosaic, None
    gain = np.ones(mosaic.shape, np.float32)
    for gain_map in maps:
        rows, cols, gains = gain_map.gains_at(mosaic.shape)
        gain[rows, cols] *= gains
    signal = (mosaic.astype(np.float32) - black_map) * gain
    return np.clip(np.rint(signal + black_map), 0, white).astype(np.uint16), gain


def camera_identity(path: str | os.PathLike) -> dict[str, str]:
    """The Make, Model and UniqueCameraModel a TIFF-based raw names (those it has; empty for
    other formats), for files written from it."""
    def names_of(tif) -> dict[str, str]:
        tags = tif.pages[0].tags
        names = {key: str(tags[key].value).strip("\x00 ") for key in ("Make", "Model", "UniqueCameraModel")
                 if key in tags}
        return {key: value for key, value in names.items() if value}

    return _read_tiff(os.fspath(path), names_of) or {}


def _default_crop(sizes) -> tuple[int, int, int, int] | None:
    """LibRaw's first inset crop (a DNG's DefaultCrop) within the visible area, or None when the
    file has none or it is the whole area."""
    top = int(sizes.crop_top_margin) - int(sizes.top_margin)
    left = int(sizes.crop_left_margin) - int(sizes.left_margin)
    height, width = int(sizes.crop_height), int(sizes.crop_width)
    inside = (height > 0 and width > 0 and top >= 0 and left >= 0
              and top + height <= sizes.height and left + width <= sizes.width)
    if not inside or (height, width) == (sizes.height, sizes.width):
        return None
    return top, left, height, width


def open_raw(path: str):
    """``rawpy.imread``, also for a file name that is not UTF-8 (an ordinary name on Linux, which
    LibRaw cannot be given): such a file is handed to LibRaw from memory."""
    import rawpy

    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        with open(path, "rb") as f:
            return rawpy.imread(f)
    return rawpy.imread(path)


def check_complete(path: str) -> None:
    """Refuse a DNG whose image data ends early (a copy cut short): LibRaw fills the missing
    tiles with black and reports nothing."""
    end, size = dng_data_end(path), os.path.getsize(path)
    if end is not None and end > size:
        raise SidError(f"{path}: truncated: its image data runs to byte {end:,} but the file has {size:,} bytes; "
                       "copy it again from the camera or card")


# LibRaw fills what it cannot decode (damaged data, a wrong compression tag) with 0 and says
# nothing. A sensor with a black level reads 0 only far below it: real frames have at most a few
# in ten thousand (0.05% in the Blackmagic DNG, a dark corner); damaged ones had 50-60%.
DAMAGED_ZERO_SHARE = 0.01
DAMAGED_MIN_BLACK = 16  # below this, noise reaches 0 in dark frames and zeros say nothing


def check_decoded(path: str, mosaic: np.ndarray, blacks: np.ndarray) -> None:
    """Refuse a frame whose image data LibRaw could not decode (module constants above)."""
    if blacks.min() < DAMAGED_MIN_BLACK or mosaic.size == 0:
        return
    share = np.count_nonzero(mosaic == 0) / mosaic.size
    if share > DAMAGED_ZERO_SHARE:
        raise SidError(f"{path}: {share:.0%} of its pixels decode as 0, far below the black level "
                       f"{blacks.min():g}: its image data is damaged (LibRaw fills what it cannot decode with "
                       "black); copy it again from the camera or card")


def check_unchanged(path: str, before: os.stat_result) -> None:
    """Refuse a file that changed while it was read (still being copied or written): its data may be
    cut anywhere, after the size check passed."""
    try:
        after = os.stat(path)
    except OSError:
        after = None
    if after is None or (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise SidError(f"{path}: changed while it was read (still being copied or written?); read it again "
                       "once it is complete")


def read_raw(
    path: str | os.PathLike,
    *,
    black_level: float | Sequence[float] | None = None,
    white_level: float | None = None,
) -> RawFrame:
    """Read a camera raw file with rawpy into a :class:`RawFrame`.

    Args:
        path: any file LibRaw opens (ARW, RAF, DNG, NEF, CR2, ...).
        black_level: explicit override (one value or one per colour index).
        white_level: explicit override.

    Raises:
        SidError: missing, unreadable, truncated or CFA-less files, with the file's name.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        if os.path.islink(path) and not os.path.exists(path):
            raise SidError(f"{path}: a symlink to nothing (broken, or a loop); skipped")
        if os.path.isdir(path):
            raise SidError(f"{path}: is a folder; give raw files (a folder's raw files are taken by `enhance`)")
        if os.path.exists(path):  # a FIFO would block the read, a device would never end
            raise SidError(f"{path}: not a regular file (a pipe, a device or a socket); give a raw file")
        raise SidError(f"{path}: no such file")
    try:
        import rawpy
    except ImportError as err:  # pragma: no cover - rawpy is a core dependency
        raise SidError("reading raw files needs rawpy: pip install rawpy") from err
    try:
        check_complete(path)  # opens the file first: LibRaw would call an unreadable file corrupt
        before = os.stat(path)
    except PermissionError:
        raise SidError(f"{path}: permission denied: this user cannot read it; fix its permissions") from None
    try:
        with open_raw(path) as raw:
            pattern = raw.raw_pattern
            cfa_layout(None if pattern is None else np.asarray(pattern), path)
            mosaic = np.array(raw.raw_image_visible, dtype=np.uint16, copy=True)
            blacks = np.array(raw.black_level_per_channel, np.float32)
            white = float(raw.white_level)
            wb = np.array(raw.camera_whitebalance, np.float32)
            color_matrix = np.array(raw.color_matrix, np.float32)
            other = raw.other
            flip = int(raw.sizes.flip)
            crop = _default_crop(raw.sizes)
            pattern = np.array(pattern)
    except rawpy.LibRawFileUnsupportedError:
        raise SidError(_unsupported_message(path)) from None
    except (rawpy.LibRawIOError, rawpy.LibRawDataError, rawpy.LibRawError) as err:
        raise SidError(f"{path}: truncated or corrupt raw file ({_libraw_text(err)})") from None
    check_unchanged(path, before)
    check_decoded(path, mosaic, blacks)
    if black_level is not None:
        blacks = np.broadcast_to(np.asarray(black_level, np.float32), (4,)).copy()
    if white_level is not None:
        white = float(white_level)
    if not white > blacks.max():
        raise SidError(f"{path}: white level {white} is not above the black level {blacks.max()}")
    canonical_window(mosaic.shape, pattern, path)
    notices: list[str] = []
    if wb[GREEN2] == 0:
        wb[GREEN2] = wb[GREEN]
    if not (np.all(np.isfinite(wb)) and np.all(wb > 0)):
        wb = grey_world_balance(mosaic, pattern, blacks)
        notices.append(f"{path}: the file has no as-shot white balance; using a grey-world estimate "
                       f"(R x{wb[RED] / wb[GREEN]:.2f}, B x{wb[BLUE] / wb[GREEN]:.2f})")
    from sid_keras.runtime.render import has_color_matrix

    if not has_color_matrix(color_matrix):
        notices.append(f"{path}: the file has no colour matrix; showing camera RGB as it is, as LibRaw does")
    from sid_keras.runtime.dng import TAG_NOISE_PROFILE, TAG_OPCODE_LIST_2

    extra = dng_raw_tags(path)
    noise_profile = (_noise_profile(extra[TAG_NOISE_PROFILE], path, notices) if TAG_NOISE_PROFILE in extra
                     else None)
    if TAG_OPCODE_LIST_2 in extra:
        black_map = np.asarray(blacks, np.float32)[tile_colours(pattern, mosaic.shape)]
        mosaic, lens_gain = _apply_gain_maps(mosaic, black_map, white, extra[TAG_OPCODE_LIST_2], path, notices)
    else:
        lens_gain = None
    frame = RawFrame(
        mosaic=mosaic,
        cfa_pattern=pattern,
        black_level=blacks,
        white_level=white,
        white_balance=libraw_normalised(wb),
        color_matrix=color_matrix,
        exposure_time=float(other.shutter_speed) or None,
        iso=float(other.iso_speed) or extra.get("iso"),
        orientation=flip,
        crop=crop,
        noise_profile=noise_profile,
        lens_gain=lens_gain,
        path=path,
        notices=tuple(notices),
    )
    return frame


# LibRaw refuses images with fewer pixels than this a side (its identify() sanity check).
LIBRAW_MIN_SIDE = 22


def _libraw_text(err: Exception) -> str:
    """LibRaw's message without Python's bytes repr (``b'Input/output error'``)."""
    text = err.args[0] if err.args else str(err)
    return text.decode(errors="replace") if isinstance(text, bytes) else str(text)


# DNG 1.7's JPEG XL compression (Apple ProRAW, newer phones): the LibRaw rawpy bundles cannot
# decode it (LibRaw needs to be built with a JPEG XL decoder, which no rawpy wheel is).
COMPRESSION_JPEG_XL = 52546


def _unsupported_message(path: str) -> str:
    """Why LibRaw refused a file: a compression it cannot decode, too small a TIFF/DNG, or not a
    camera raw format at all."""
    import rawpy

    def compressions(tif):
        return {page.tags.valueof("Compression") for page in [*_dng_ifds(tif)] or tif.pages[:1]}

    if COMPRESSION_JPEG_XL in (_read_tiff(path, compressions) or set()):
        return (f"{path}: a DNG 1.7 file compressed with JPEG XL (Apple ProRAW, newer phones), which LibRaw "
                f"{'.'.join(map(str, rawpy.libraw_version))} in rawpy cannot decode; convert it to an "
                "uncompressed or lossless-JPEG DNG (Adobe DNG Converter), or shoot plain RAW instead of ProRAW")
    shape = _read_tiff(path, lambda tif: tif.pages[0].shape[:2])  # None: not a TIFF it follows
    if shape is not None and min(shape) < LIBRAW_MIN_SIDE:
        return (f"{path}: a {shape[0]}x{shape[1]} pixel image is too small for LibRaw (it needs at least "
                f"{LIBRAW_MIN_SIDE} pixels a side)")
    return f"{path}: not a camera raw file rawpy can read (LibRaw does not support its format)"


def libraw_normalised(white_balance: Sequence[float]) -> np.ndarray:
    """White-balance multipliers scaled so the smallest of R, G, B is 1, as LibRaw scales them.

    With gains >= 1 every channel clips at the sensor's white level after balancing, which is
    how LibRaw's default development (highlight mode 0) turns blown highlights white.
    """
    wb = np.asarray(white_balance, np.float32).copy()
    return wb / wb[:3].min()


def tile_means(mosaic: np.ndarray, pattern: np.ndarray, black_level: Sequence[float]) -> np.ndarray:
    """Mean black-subtracted value (not clipped) at each position of the CFA tile.

    Strided views only, so no full-frame float copy; not clipping at black keeps read noise from
    biasing the means of dark frames upwards.
    """
    pattern = np.asarray(pattern)
    blacks = np.asarray(black_level, np.float64)
    p = pattern.shape[0]
    means = np.empty(pattern.shape, np.float64)
    for r in range(p):
        for c in range(p):
            means[r, c] = np.mean(mosaic[r::p, c::p], dtype=np.float64) - blacks[pattern[r, c]]
    return means


def grey_world_balance(mosaic: np.ndarray, pattern: np.ndarray, black_level: Sequence[float]) -> np.ndarray:
    """White-balance multipliers per colour index that make the frame's mean grey."""
    means = tile_means(mosaic, pattern, black_level)
    pattern = np.asarray(pattern)
    colour = np.array([means[np.isin(pattern, [c, GREEN2] if c == GREEN else [c])].mean()
                       for c in (RED, GREEN, BLUE)])
    if not np.all(colour > 0):  # a black frame carries no colour: leave it unbalanced
        return np.ones(4, np.float32)
    gains = np.clip(colour[GREEN] / colour, 1 / GREY_WORLD_MAX_GAIN, GREY_WORLD_MAX_GAIN)
    return np.array([gains[RED], gains[GREEN], gains[BLUE], gains[GREEN]], np.float32)


def render_reference(path: str | os.PathLike, *, linear: bool = False) -> np.ndarray:
    """The long exposure as ground truth: LibRaw's development, uint16 (H, W, 3).

    SID's settings (``use_camera_wb``, full size, no auto-brightening, 16 bit) in sensor
    orientation, so it stays aligned with the packed mosaic, and without LibRaw's maximum
    adjustment: by default LibRaw takes the brightest raw value as the white level whenever it
    is over 0.75 of the file's, which brightens a long exposure without clipped highlights by
    up to a third, by an amount no short exposure can tell (65% of the stress set's truths, 11%
    on average; the classical baselines, scaled to the truth's mean, never saw it).
    ``linear=True`` gives the same development in white-balanced linear camera RGB (no colour
    matrix, no curve): the target of ``linear`` models, which :func:`sid_keras.runtime.render.render`
    turns into the sRGB one.
    """
    import rawpy

    path = os.fspath(path)
    colour = dict(output_color=rawpy.ColorSpace.raw, gamma=(1, 1)) if linear else {}
    try:
        with open_raw(path) as raw:
            return raw.postprocess(use_camera_wb=True, half_size=False, no_auto_bright=True, output_bps=16,
                                   user_flip=0, adjust_maximum_thr=0.0, **colour)
    except rawpy.LibRawError as err:
        raise SidError(f"{path}: cannot render the reference image ({err})") from None


def crop_reference(reference: np.ndarray, frame: RawFrame) -> np.ndarray:
    """Crop a full-frame rendering to the window :func:`pack` used, so both stay aligned."""
    top, left, h, w = canonical_window(frame.mosaic.shape, frame.cfa_pattern, frame.path)
    return reference[top : top + h, left : left + w]
