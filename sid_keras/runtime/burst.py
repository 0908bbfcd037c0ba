"""Bursts: several raw frames of one dark scene, aligned and merged before the network.

Averaging N frames divides the noise variance by N, which at x300 is worth more than network
capacity. A hand-held burst moves, and things in it move, so the merge is HDR+'s (Hasinoff et
al., SIGGRAPH Asia 2016) in the raw domain, on the CPU:

- **Align** each frame to the reference (the first) on a grey image of its packed CFA planes
  (Bayer: half resolution, so every shift keeps the colour filter's phase), coarse to fine over a
  pyramid of 2x box downsamplings: at each level every 16x16 tile searches the integer shifts
  around its coarser level's guess for the least squared difference, and at full resolution the
  three costs on each axis around the best shift give its sub-pixel part (a parabola's minimum).
  One rigid motion per frame (translation and a little rotation: a hand's shake) is fitted to
  the tile shifts, robustly and weighted by how sharply each tile fixes its shift
  (:func:`fit_motion`: in a dark frame a tile alone is mostly noise, thousands agree); it, the
  whole frame's shift by cross-correlation (:func:`global_translation`) or no motion, whichever
  lays the frame on the reference best (:func:`estimate_motion`), resamples each packed plane
  (bilinear).
- **Merge** robustly: at each packed pixel a frame's weight falls from 1 to 0 as the 5x5 or 15x15
  mean of its difference from the reference (less each row's median: row noise is not motion), in
  the channel and at the scale where it is largest, grows from 3 to 5 standard deviations of that
  mean's noise (the noise law of the reference at that level; the wide mean sees a faint large
  object through x300 noise, at the price of a margin of a few pixels around it): a moving object
  or a tile that did not match keeps the reference's content, so nothing ghosts; a pixel sampled
  outside the frame weighs 0.
- **Noise left**: the merged value is ``(ref + sum w_i x_i) / (1 + sum w_i)``; its noise variance
  is the single frame's times ``(1 + sum w_i^2) / (1 + sum w_i)^2`` (1/N where all N frames
  counted). Resampling lowers a frame's per-pixel variance further (to 0.25 half way between
  pixels) but not its low-frequency noise, which is what a network told too little leaves as
  blotches, so that is not counted. The factor per pixel is
  :attr:`~sid_keras.runtime.raw.RawFrame.noise_variance_scale`: a noise-aware network is told how
  much noise is left where, the single-frame law (taken from the reference, never from the
  merge) times it.

Frames are aligned two at a time (numpy and scipy let go of the GIL) and merged in order into
running sums, each let go once merged (the caller reads them all first, to refuse a burst that
is not one before any work). TensorFlow-free.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from typing import Sequence

import numpy as np

from sid_keras.errors import SidError
from sid_keras.runtime import cfa, noise_law, raw, tags

TILE = 16  # packed pixels of an alignment tile (HDR+: 16 at the finest level)
COARSEST_SIDE = 32  # the pyramid stops before a level's smaller side falls under this
SEARCH_RADIUS = 4  # integer shifts searched at the coarsest level; 1 at the finer ones
BAND = (0.01, 0.2)  # the cross-correlation's band (cycles a pixel): lighting below, the finest noise above
MOTION_SCALE = 0.5  # packed pixels: tiles this far from a frame's fitted motion count half
# Frames whose packed side is at least this (a 2-megapixel sensor's) are searched tile by tile at
# half their resolution: a quarter of the work, still thousands of tiles for one motion.
FULL_RESOLUTION_TILES_UP_TO = 768
# Robust merge: a frame counts fully below LOW standard deviations of the local mean difference
# (the largest of the packed channels': for four channels of pure noise, 1% of pixels exceed 3;
# a noise law estimated from a dark frame can be 10-30% low, which moves that to 2.3-2.7), not
# at all above HIGH (HDR+'s Wiener shrinkage plays the same role).
DIFFERENCE_BOX = 5
DIFFERENCE_LOW, DIFFERENCE_HIGH = 3.0, 5.0
# ... and of the 15x15 mean: at x300 a large moving object can differ from what it covers by less
# than the 5x5 mean's noise, never by less than the 15x15 mean's (a third of it)
COARSE_DIFFERENCE_BOX = 15
MERGE_THREADS = 2  # frames aligned side by side (each holds a few full-size planes)
SAME_EXPOSURE = 0.02  # relative difference of exposure time or ISO still taken as one setting


@dataclasses.dataclass(frozen=True)
class BurstReport:
    """What the merge did: each other frame's shift at the centre (packed pixels, y and x: where
    the reference's content lies in it) and the share of the reference it contributed to (mean
    weight), and the frames merged at each pixel on
    average (``1 / mean noise variance scale``: N where every frame counted fully)."""

    shifts: tuple[tuple[float, float], ...]
    weights: tuple[float, ...]
    effective_frames: float

    def describe(self) -> str:
        if not self.weights:
            return "1 frame: nothing to merge"
        used = ", ".join(f"{w:.0%}" for w in self.weights)
        return f"{len(self.weights) + 1} frames, {self.effective_frames:.1f} effective (others used {used})"


def signature(frame: raw.RawFrame) -> dict:
    """What frames of one burst share: size, CFA pattern, levels, exposure and camera."""
    return {
        "size": "x".join(map(str, frame.mosaic.shape)),
        "CFA pattern": np.asarray(frame.cfa_pattern).tolist(),
        "black level": np.asarray(frame.black_level).round(1).tolist(),
        "white level": round(float(frame.white_level), 1),
        "camera": tags.camera_name(frame.path) if os.path.isfile(frame.path) else None,
    }


def check_burst(frames: Sequence[raw.RawFrame]) -> None:
    """Refuse, in one line naming the file, a frame that cannot belong to the first's burst."""
    first = frames[0]
    reference = signature(first)
    for frame in frames[1:]:
        found = signature(frame)
        for key, value in reference.items():
            if found[key] != value:
                raise SidError(f"{frame.path}: {key} {found[key]} differs from the reference {first.path}'s "
                               f"({value}): a burst is frames of one camera in one setting")
        for name in ("exposure_time", "iso"):
            a, b = getattr(first, name), getattr(frame, name)
            if (a is None) != (b is None) or (a and abs(b / a - 1) > SAME_EXPOSURE):
                raise SidError(f"{frame.path}: {name.replace('_', ' ')} {b} differs from the reference "
                               f"{first.path}'s ({a}): a burst is frames of one exposure; enhance them apart")


def _grey(packed: np.ndarray) -> np.ndarray:
    return packed.mean(axis=-1, dtype=np.float32)


def _half(image: np.ndarray) -> np.ndarray:
    """2x2 box downsampling (an odd last row or column dropped)."""
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    return image[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3), dtype=np.float32)


def _search(reference: np.ndarray, other: np.ndarray, guess: np.ndarray, radius: int, tile: int):
    """Each tile's integer shift within ``radius`` of its ``guess`` (nty, ntx, 2) with the least
    sum of squared differences (``other`` sampled at the tile's position plus the shift, edges
    repeated); with the costs of its 3x3 neighbourhood (for the sub-pixel fit).

    Each tile's neighbourhood in ``other`` is gathered once around its own guess (tiles of a
    burst need not agree: something moves, a flat dark area gives no answer), and every shift's
    cost is then a slice of it."""
    nty, ntx = guess.shape[:2]
    margin = radius + 1
    side = tile + 2 * margin
    pad = int(np.abs(guess).max()) + margin
    padded = np.pad(other, pad, mode="edge")
    ys = (np.arange(nty) * tile)[:, None, None, None] + guess[:, :, 0, None, None] - margin + pad
    xs = (np.arange(ntx) * tile)[None, :, None, None] + guess[:, :, 1, None, None] - margin + pad
    ys = np.clip(ys + np.arange(side)[None, None, :, None], 0, padded.shape[0] - 1)
    xs = np.clip(xs + np.arange(side)[None, None, None, :], 0, padded.shape[1] - 1)
    patches = padded[ys, xs]  # (nty, ntx, side, side)
    tiles = reference[: nty * tile, : ntx * tile].reshape(nty, tile, ntx, tile).transpose(0, 2, 1, 3)
    steps = range(-margin, margin + 1)
    costs = np.empty((nty, ntx, len(steps), len(steps)), np.float64)
    for i, dy in enumerate(steps):
        for j, dx in enumerate(steps):
            diff = tiles - patches[:, :, margin + dy : margin + dy + tile, margin + dx : margin + dx + tile]
            costs[:, :, i, j] = np.einsum("abij,abij->ab", diff, diff)
    inner = costs[:, :, 1:-1, 1:-1].reshape(nty, ntx, -1)  # the shifts within radius
    k = np.argmin(inner, axis=-1)
    by, bx = k // (2 * radius + 1), k % (2 * radius + 1)  # index in the inner window; +1 in costs
    rows, cols = np.meshgrid(np.arange(nty), np.arange(ntx), indexing="ij")
    around = np.stack([np.stack([costs[rows, cols, by + 1 + dy, bx + 1 + dx] for dx in (-1, 0, 1)], axis=-1)
                       for dy in (-1, 0, 1)], axis=-2)
    best = guess + np.stack([by - radius, bx - radius], axis=-1)
    return best, around


def _subpixel(around: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sub-pixel part of each tile's shift: per axis, the minimum of the parabola through the
    three costs around the best integer shift, within half a pixel; and the parabolas' curvature
    (the smaller of the two axes: how sharply the tile's content fixes its shift)."""
    parts, sharpness = [], []
    for costs in (around[..., :, 1], around[..., 1, :]):  # along y (middle column), along x (middle row)
        curvature = costs[..., 0] - 2 * costs[..., 1] + costs[..., 2]
        step = np.where(curvature > 0, (costs[..., 0] - costs[..., 2]) / (2 * np.maximum(curvature, 1e-12)), 0.0)
        parts.append(np.clip(step, -0.5, 0.5))
        sharpness.append(np.maximum(curvature, 0))
    return np.stack(parts, axis=-1), np.minimum(*sharpness)


def global_translation(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """The one shift (dy, dx) that best lays ``reference`` on ``other``, from every pixel at once:
    the peak of their cross-correlation (FFT, edges tapered, band-passed so neither the lighting,
    the finest noise nor a frame's row and column stripes decide), refined to sub-pixel by a
    parabola through its neighbours.
    A tile of a dark frame is mostly noise; a whole frame is not."""
    h, w = reference.shape
    taper = np.hanning(h)[:, None] * np.hanning(w)[None, :]
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    radius2 = fy**2 + fx**2
    band = (1 - np.exp(-radius2 / (2 * BAND[0]**2))) * np.exp(-radius2 / (2 * BAND[1]**2))
    band[:, :3] = 0  # row noise (a frame's own horizontal stripes) lives at no horizontal frequency
    band[:3], band[-2:] = 0, 0  # column noise at no vertical one

    def spectrum(image):
        return np.fft.rfft2((image - image.mean()) * taper)

    correlation = np.fft.irfft2(np.conj(spectrum(reference)) * spectrum(other) * band, s=(h, w))
    peak = np.array(np.unravel_index(np.argmax(correlation), correlation.shape))
    shift = np.where(peak > np.array([h, w]) // 2, peak - [h, w], peak).astype(np.float64)
    for axis, size in enumerate((h, w)):
        step = np.zeros(2, np.int64)
        step[axis] = 1
        before, at, after = (correlation[tuple((peak + k * step) % [h, w])] for k in (-1, 0, 1))
        curvature = before - 2 * at + after
        if curvature < 0:
            shift[axis] += np.clip((before - after) / (2 * curvature), -0.5, 0.5)
    return shift


def align(reference: np.ndarray, other: np.ndarray, tile: int = TILE,
          start: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Shift (dy, dx) of each ``tile``-sized tile of grey image ``reference`` to where it lies in
    ``other`` (packed pixels, sub-pixel), coarse to fine (module doc), shape (nty, ntx, 2); and
    how sharply each tile's content fixes it (:func:`_subpixel`), for :func:`fit_motion`. An
    image smaller than a tile is one tile of its size. ``start``: the frame's shift as a whole
    (:func:`global_translation`, found at the coarsest level if not given), where the coarsest
    level's tiles start looking."""
    tile = min(tile, *reference.shape)
    pyramid = [(reference, other)]
    while min(pyramid[-1][0].shape) // 2 >= max(COARSEST_SIDE, tile):
        pyramid.append((_half(pyramid[-1][0]), _half(pyramid[-1][1])))
    start = global_translation(*pyramid[-1]) if start is None else np.asarray(start) / 2 ** (len(pyramid) - 1)
    guess = None
    for ref, oth in reversed(pyramid):
        nty, ntx = ref.shape[0] // tile, ref.shape[1] // tile
        if guess is None:
            guess = np.broadcast_to(np.rint(start).astype(np.int64), (nty, ntx, 2)).copy()
            radius = SEARCH_RADIUS
        else:  # the coarser level's shift of the tile that covers this one's centre, doubled
            rows = np.minimum((np.arange(nty) * tile + tile // 2) // 2 // tile, guess.shape[0] - 1)
            cols = np.minimum((np.arange(ntx) * tile + tile // 2) // 2 // tile, guess.shape[1] - 1)
            guess = 2 * guess[rows][:, cols]
            radius = 1
        guess, around = _search(ref, oth, guess, radius, tile)
    fraction, sharpness = _subpixel(around)
    return guess + fraction, sharpness


def fit_motion(shifts: np.ndarray, sharpness: np.ndarray, tile: int = TILE) -> np.ndarray:
    """The frame's motion as one rigid map of the reference's packed coordinates (a translation
    and a small turn, as a 2 x 3 affine: shift ``(dy, dx) = A @ (y, x, 1)``), fitted to the tile shifts.

    Why one map: a hand-held burst moves each frame rigidly (a translation, a little rotation),
    and in a dark frame a tile's own shift is noisy (a 16x16 tile at x300 is mostly noise) while
    thousands of tiles agree on one map to a fraction of a pixel. Why rigid: the three parameters
    of a hand's motion, where a full affine map's six let x300 noise fit a scaling and shear that
    moved a static frame's edges by pixels. Tiles weigh by how sharply their content fixes their
    shift (flat, featureless tiles hardly count, the sharpest no more than twice the median) and,
    refitted a few times from the median tile's shift, less the further they fall from the map (a
    Cauchy loss of scale half a pixel), so a moving object does not pull it; where content moves
    on its own, the robust merge rejects it.
    """
    nty, ntx = shifts.shape[:2]
    y, x = np.meshgrid((np.arange(nty) + 0.5) * tile, (np.arange(ntx) + 0.5) * tile, indexing="ij")
    y, x = y.ravel(), x.ravel()
    ones, zeros = np.ones(y.size), np.zeros(y.size)
    # unknowns (ty, tx, turn): dy = ty - turn * x, dx = tx + turn * y
    design = np.concatenate([np.stack([ones, zeros, -x], axis=1), np.stack([zeros, ones, y], axis=1)])
    targets = shifts.reshape(-1, 2)
    # a tile's say grows with its sharpness up to twice the median's: a few strong edges (a
    # bright moving object) must not outvote the scene
    confidence = np.clip(sharpness.ravel() / max(float(np.median(sharpness)), 1e-20), 0, 2)
    textured = confidence >= 0.5
    ty, tx = np.median(targets[textured] if textured.any() else targets, axis=0)  # most tiles' shift
    params = np.array([ty, tx, 0.0])
    for _ in range(6):
        predicted = (design @ params).reshape(2, -1).T
        residual = np.hypot(*(targets - predicted).T)
        weight = confidence / (1 + (residual / MOTION_SCALE) ** 2)
        if weight.sum() <= 0 or y.size < 2:
            break
        root = np.sqrt(np.concatenate([weight, weight]))[:, None]
        params = np.linalg.lstsq(design * root, targets.T.ravel() * root[:, 0], rcond=None)[0]
    ty, tx, turn = params
    return np.array([[0.0, -turn, ty], [turn, 0.0, tx]])


def estimate_motion(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """A frame's motion (a 2 x 3 affine map) against the reference (grey images): the tiles' fitted motion
    (:func:`align`, :func:`fit_motion`: a turn as well as a shift), the whole frame's one shift
    (:func:`global_translation`: in the darkest frames tiles mislead) or none, whichever lays the frame
    on the reference with the smaller squared difference over the three quarters of the pixels
    that match best (a large moving object can pull the whole frame's correlation its way)."""
    # found and compared at half resolution: a quarter of the work, the same verdict
    small_reference, small_other = _half(reference), _half(other)
    translation = 2 * global_translation(small_reference, small_other)
    half = np.array([[1, 1, 0.5], [1, 1, 0.5]])  # a motion at half resolution: the same turn, half the shift
    if min(reference.shape) >= FULL_RESOLUTION_TILES_UP_TO:  # tiles enough at half resolution too
        tiled = fit_motion(*align(small_reference, small_other)) / half
    else:
        tiled = fit_motion(*align(reference, other))
    candidates = [tiled, np.hstack([np.zeros((2, 2)), translation[:, None]]),
                  np.zeros((2, 3))]  # and no motion at all: a tripod's burst
    margin = TILE // 2 if min(small_reference.shape) > 2 * TILE else 0
    border = np.s_[margin : small_reference.shape[0] - margin, margin : small_reference.shape[1] - margin]

    def cost(motion):  # the mean squared difference of the best 3/4 of the pixels: what moves apart is not asked
        warped, inside, _ = warp(small_other[..., None], motion * half)
        squares = ((small_reference - warped[..., 0])[border][inside[border]]) ** 2
        if squares.size == 0:
            return np.inf
        return float(np.mean(np.partition(squares, squares.size * 3 // 4)[: squares.size * 3 // 4 + 1]))

    return min(candidates, key=cost)


def motion_field(motion: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The shift (dy, dx) at every pixel of an image of ``shape`` under an affine ``motion``."""
    y = np.arange(shape[0], dtype=np.float32)[:, None]
    x = np.arange(shape[1], dtype=np.float32)[None, :]
    return tuple((motion[k, 0] * y + motion[k, 1] * x + motion[k, 2]).astype(np.float32) for k in range(2))


WARP_BLOCK = 128  # packed pixels: within a block an affine shift's integer part takes few values


def warp(packed: np.ndarray, motion: np.ndarray):
    """``packed`` (h, w, channels) sampled at each pixel's position plus its shift under the affine
    ``motion`` (:func:`motion_field`), bilinearly, edges repeated; with where that fell inside the
    image, and the variance factor of the sampling (1 on the grid, 0.25 half way between pixels).

    Block by block: a hand's shake turns a frame by a fraction of a degree, so within 128x128
    pixels the shift's integer part takes one to four values, each a plain slice of the frame
    (a gather of every pixel's own neighbours took five times as long)."""
    h, w, channels = packed.shape
    if np.abs(motion[:, :2]).max() * max(h, w) < 1e-3:  # a shift alone: the whole frame is one block
        return _shifted(packed, float(motion[0, 2]), float(motion[1, 2]))
    dy, dx = motion_field(motion, (h, w))
    y = np.arange(h, dtype=np.float32)[:, None] + dy
    x = np.arange(w, dtype=np.float32)[None, :] + dx
    inside = (y >= 0) & (y <= h - 1) & (x >= 0) & (x <= w - 1)
    iy, ix = np.floor(dy).astype(np.int64), np.floor(dx).astype(np.int64)
    fy, fx = (dy - iy)[..., None], (dx - ix)[..., None]
    pad = int(max(np.abs(iy).max(), np.abs(ix).max())) + 2
    padded = np.pad(packed, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    out = np.empty_like(packed)
    for top in range(0, h, WARP_BLOCK):
        for left in range(0, w, WARP_BLOCK):
            block = np.s_[top : top + WARP_BLOCK, left : left + WARP_BLOCK]
            bh, bw = min(WARP_BLOCK, h - top), min(WARP_BLOCK, w - left)
            # an affine shift is extreme at a block's corners: one integer part there is one for all
            corners = np.array([[y, x, 1.0] for y in (top, top + bh - 1) for x in (left, left + bw - 1)]) @ motion.T
            low, high = np.floor(corners.min(axis=0)).astype(int), np.floor(corners.max(axis=0)).astype(int)
            if (low == high).all():
                combinations, rows, cols = [tuple(low)], None, None
            else:
                rows, cols = iy[block], ix[block]
                combinations = [(oy, ox) for oy in range(low[0] - 1, high[0] + 2)
                                for ox in range(low[1] - 1, high[1] + 2)]
            for oy, ox in combinations:
                if rows is not None:
                    where = (rows == oy) & (cols == ox)
                    if not where.any():
                        continue
                y0, x0 = pad + top + oy, pad + left + ox
                a = padded[y0 : y0 + bh, x0 : x0 + bw]
                b = padded[y0 : y0 + bh, x0 + 1 : x0 + 1 + bw]
                c = padded[y0 + 1 : y0 + 1 + bh, x0 : x0 + bw]
                d = padded[y0 + 1 : y0 + 1 + bh, x0 + 1 : x0 + 1 + bw]
                by, bx = dy[block][..., None] - oy, dx[block][..., None] - ox  # this offset's own fractions
                value = (a + (b - a) * bx) * (1 - by) + (c + (d - c) * bx) * by
                out[block] = value if rows is None else np.where(where[..., None], value, out[block])
    variance = ((1 - fy) ** 2 + fy**2) * ((1 - fx) ** 2 + fx**2)
    return out, inside, variance[..., 0].astype(np.float32)


def _shifted(packed: np.ndarray, dy: float, dx: float):
    """:func:`warp` by one shift: four slices of the frame, one fraction for all."""
    h, w, _ = packed.shape
    iy, ix = int(np.floor(dy)), int(np.floor(dx))
    fy, fx = np.float32(dy - iy), np.float32(dx - ix)
    pad = max(abs(iy), abs(ix)) + 2
    padded = np.pad(packed, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    y0, x0 = pad + iy, pad + ix
    a, b = padded[y0 : y0 + h, x0 : x0 + w], padded[y0 : y0 + h, x0 + 1 : x0 + 1 + w]
    c, d = padded[y0 + 1 : y0 + 1 + h, x0 : x0 + w], padded[y0 + 1 : y0 + 1 + h, x0 + 1 : x0 + 1 + w]
    out = (a + (b - a) * fx) * (1 - fy) + (c + (d - c) * fx) * fy
    y, x = np.arange(h)[:, None] + dy, np.arange(w)[None, :] + dx
    inside = (y >= 0) & (y <= h - 1) & (x >= 0) & (x <= w - 1)
    variance = np.full((h, w), ((1 - fy) ** 2 + fy**2) * ((1 - fx) ** 2 + fx**2), np.float32)
    return out.astype(np.float32), inside, variance


def noise_variance(reference: np.ndarray, law: noise_law.NoiseLaw) -> np.ndarray:
    """Each packed value's noise variance under ``law``, at its local (5x5) mean level: a noisy
    pixel's own value would put dark pixels below their noise. Once per burst."""
    from scipy.ndimage import uniform_filter

    level = np.maximum(uniform_filter(reference, (DIFFERENCE_BOX, DIFFERENCE_BOX, 1), mode="nearest"), 0)
    return np.asarray(law.s, np.float32) * level + np.asarray(law.o, np.float32)


def robust_weights(reference: np.ndarray, aligned: np.ndarray, variance: np.ndarray, inside: np.ndarray,
                   noise: np.ndarray) -> np.ndarray:
    """Each packed pixel's weight of an aligned frame (module doc): 1 where the 5x5 and 15x15 mean
    differences of every channel from the reference are within the noise, 0 where one is not (a
    moving object, a tile that did not match; per channel, so a colour that moves is seen even
    where its grey level equals the background's) or where it was sampled outside the frame.
    ``noise``: the reference's :func:`noise_variance`."""
    from scipy.ndimage import maximum_filter, uniform_filter

    worst = np.zeros(reference.shape[:2], np.float32)
    for c in range(reference.shape[-1]):
        difference = reference[..., c] - aligned[..., c]
        # less each row's median: row noise (a new offset for each row of each frame) is not motion
        step = max(1, difference.shape[1] // 512)  # 512 values of a row tell its offset
        difference -= np.median(difference[:, ::step], axis=1, keepdims=True)
        # the noise of the 5x5 mean of the difference of two values (the aligned one's lowered by
        # its resampling) and of the 15x15 mean (resampling smooths the noise, not its low frequencies)
        for box, spread in ((DIFFERENCE_BOX, np.sqrt(noise[..., c] * (1 + variance) / DIFFERENCE_BOX**2)),
                            (COARSE_DIFFERENCE_BOX, np.sqrt(noise[..., c] * 2 / COARSE_DIFFERENCE_BOX**2))):
            z = np.abs(uniform_filter(difference, box, mode="nearest")) / np.maximum(spread, 1e-12)
            np.maximum(worst, z, out=worst)
    weight = np.clip((DIFFERENCE_HIGH - worst) / (DIFFERENCE_HIGH - DIFFERENCE_LOW), 0.0, 1.0)
    # a 5x5 mean straddling a moving edge sees half its difference: a certain difference (beyond
    # HIGH, which noise alone reaches at about 2 pixels in a million) rejects its neighbourhood too
    certain = maximum_filter(worst > DIFFERENCE_HIGH, DIFFERENCE_BOX, mode="nearest")
    return np.where(inside & ~certain, weight, 0.0).astype(np.float32)


def merge(reference: raw.RawFrame, others, law: noise_law.NoiseLaw) -> tuple[raw.RawFrame, BurstReport]:
    """The reference frame with ``others`` (an iterable of frames, read one at a time) aligned and
    merged into it, and what the merge did. ``law``: the single-frame noise law of the reference.

    The result is a :class:`~sid_keras.runtime.raw.RawFrame` of the reference's geometry and
    metadata whose mosaic holds the merged values (float32, sensor units) and whose
    ``noise_variance_scale`` says how much of the single-frame noise variance is left where.
    """
    from concurrent.futures import ThreadPoolExecutor

    base = raw.raw_signal(reference)
    base_grey = _grey(base)
    noise = noise_variance(base, law)
    total = base.copy()
    weight_sum = np.ones(base.shape[:2], np.float32)
    square_sum = np.ones(base.shape[:2], np.float32)  # sum of w^2, the reference's 1 included
    centre = np.array([(base.shape[0] - 1) / 2, (base.shape[1] - 1) / 2, 1.0])
    shifts, weights = [], []

    def aligned(frame):  # numpy and scipy let go of the GIL: two frames at a time on two cores
        signal = raw.raw_signal(frame)
        motion = estimate_motion(base_grey, _grey(signal))
        warped, inside, variance = warp(signal, motion)
        return motion, warped, robust_weights(base, warped, variance, inside, noise)

    workers = max(1, min(MERGE_THREADS, os.cpu_count() or 1))
    frames, pending = iter(others), collections.deque()  # at most ``workers`` frames in flight
    with ThreadPoolExecutor(workers, "sid-merge") as pool:
        while True:
            while len(pending) < workers and (frame := next(frames, None)) is not None:
                pending.append(pool.submit(aligned, frame))
            frame = None  # let go: the task holds it until it is aligned
            if not pending:
                break
            motion, warped, weight = pending.popleft().result()  # merged in order
            total += weight[..., None] * warped
            weight_sum += weight
            square_sum += weight**2
            shifts.append(tuple(float(v) for v in motion @ centre))
            weights.append(float(weight.mean()))
            del warped, weight
    merged = total / weight_sum[..., None]
    scale = square_sum / weight_sum**2
    frame = _with_packed(reference, merged, scale)
    return frame, BurstReport(tuple(shifts), tuple(weights), float(1 / scale.mean()))


def _with_packed(reference: raw.RawFrame, signal: np.ndarray, scale: np.ndarray) -> raw.RawFrame:
    """The reference frame holding a merged packed signal (back in sensor units, float32) and its
    noise variance scale per mosaic pixel."""
    layout = reference.cfa
    top, left, h, w = cfa.canonical_window(reference.mosaic.shape, reference.cfa_pattern, reference.path)
    black, white = raw.channel_levels(reference)
    values = signal * (np.float32(white) - black) + black
    mosaic = reference.mosaic.astype(np.float32)
    mosaic[top : top + h, left : left + w] = cfa.unpack_mosaic(values.astype(np.float32), layout)
    variance = np.ones(mosaic.shape, np.float32)
    variance[top : top + h, left : left + w] = cfa.unpack_mosaic(
        np.repeat(scale[..., None], layout.channels, axis=-1), layout)
    return dataclasses.replace(reference, mosaic=mosaic, noise_variance_scale=variance)


def write_merged_dng(path, frame: raw.RawFrame, law: noise_law.NoiseLaw, *, overwrite: bool = False) -> None:
    """The merged mosaic as a raw DNG a developer opens (darktable, RawTherapee, LibRaw): the
    reference's CFA, levels, white balance, colour matrix, exposure and orientation, and a
    NoiseProfile of the noise left (the single-frame law times the mean variance scale).

    The merge has more precision than the sensor's steps: values are stored times the largest
    power of two that keeps the white level in 16 bits (4 for a 14-bit sensor), levels with them.
    Make is ``sid_keras`` and Model names the camera (as :func:`~sid_keras.runtime.dng.write_linear_dng`
    does): a developer's constants for the camera would not fit the scaled levels.
    """
    from sid_keras.runtime.dng import UINT16_SCALE, write_cfa_dng, xyz_to_camera
    from sid_keras.runtime.render import has_color_matrix

    factor = 2 ** int(np.floor(np.log2(UINT16_SCALE / float(frame.white_level))))
    pattern = np.asarray(frame.cfa_pattern)
    black = np.asarray(frame.black_level, np.float32)[cfa.tile_colours(pattern, frame.mosaic.shape)]
    values = (np.asarray(frame.mosaic, np.float32) - black) * factor + black * factor
    mosaic = np.clip(np.rint(values), 0, UINT16_SCALE).astype(np.uint16)
    blacks = np.asarray(frame.black_level, np.float64)
    tile_blacks = [blacks[pattern[r, c]] * factor for r in range(2) for c in range(2)] if pattern.shape == (2, 2) \
        else [float(blacks.mean()) * factor]
    left = float(frame.noise_variance_scale.mean()) if frame.noise_variance_scale is not None else 1.0
    colours = frame.cfa.channel_colours
    profile = [v for c in (cfa.RED, cfa.GREEN, cfa.BLUE)
               for v in (float(np.mean(law.s[colours == c])) * left, float(np.mean(law.o[colours == c])) * left)]
    camera = (tags.camera_name(frame.path) if os.path.isfile(frame.path) else None) or "camera"
    matrix = np.asarray(frame.color_matrix, np.float64)[:, :3]
    if os.path.exists(path) and not overwrite:
        raise SidError(f"{path}: already exists; pass --overwrite to replace it")
    write_cfa_dng(path, mosaic, pattern, black_level=tile_blacks, white_level=int(round(frame.white_level * factor)),
                  color_matrix=xyz_to_camera(matrix) if has_color_matrix(frame.color_matrix) else None,
                  as_shot_neutral=1.0 / np.asarray(frame.white_balance, np.float64)[:3],
                  exposure_time=frame.exposure_time, iso=frame.iso, make="sid_keras",
                  model=f"{camera} merged burst", noise_profile=profile, orientation=frame.orientation)
