"""Bursts: several raw frames of one dark scene, aligned and merged before the network.

Averaging N frames divides the noise variance by N, which at x300 is worth more than network
capacity. A hand-held burst moves, and things in it move, so the merge is HDR+'s (Hasinoff et
al., SIGGRAPH Asia 2016) in the raw domain, on the CPU:

- **Align** each frame to the reference (the first) on a grey image of its packed CFA planes
  (Bayer: half resolution, so every shift keeps the colour filter's phase), coarse to fine over a
  pyramid of 2x box downsamplings: at each level every 16x16 tile searches the integer shifts
  around its coarser level's guess for the least squared difference, and at full resolution the
  three costs on each axis around the best shift give its sub-pixel part (a parabola's minimum).
  The tile shifts are interpolated into a smooth field (translation and a little rotation), by
  which each packed plane is resampled (bilinear).
- **Merge** robustly: at each packed pixel a frame's weight falls from 1 to 0 as the 5x5 mean of
  its difference from the reference, in the channel where it is largest, grows from 3 to 5
  standard deviations of that mean's noise (the noise law of the reference at that level): a
  moving object or a tile that did not match keeps the reference's content, so nothing ghosts; a
  pixel sampled outside the frame weighs 0.
- **Noise left**: the merged value is ``(ref + sum w_i x_i) / (1 + sum w_i)``; its noise variance
  is the single frame's times ``(1 + sum w_i^2) / (1 + sum w_i)^2`` (1/N where all N frames
  counted). Resampling lowers a frame's per-pixel variance further (to 0.25 half way between
  pixels) but not its low-frequency noise, which is what a network told too little leaves as
  blotches, so that is not counted. The factor per pixel is
  :attr:`~sid_keras.runtime.raw.RawFrame.noise_variance_scale`: a noise-aware network is told how
  much noise is left where, the single-frame law (taken from the reference, never from the
  merge) times it.

Frames are merged one at a time into running sums, so memory holds the reference, the sums and
one frame, whatever the burst's length. TensorFlow-free.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np

from sid_keras.errors import SidError
from sid_keras.runtime import raw

TILE = 16  # packed pixels of an alignment tile (HDR+: 16 at the finest level)
COARSEST_SIDE = 32  # the pyramid stops before a level's smaller side falls under this
SEARCH_RADIUS = 4  # integer shifts searched at the coarsest level; 1 at the finer ones
# Robust merge: a frame counts fully below LOW standard deviations of the local mean difference
# (the largest of the packed channels': for four channels of pure noise, 1% of pixels exceed 3;
# a noise law estimated from a dark frame can be 10-30% low, which moves that to 2.3-2.7), not
# at all above HIGH (HDR+'s Wiener shrinkage plays the same role).
DIFFERENCE_BOX = 5
DIFFERENCE_LOW, DIFFERENCE_HIGH = 3.0, 5.0
SAME_EXPOSURE = 0.02  # relative difference of exposure time or ISO still taken as one setting


@dataclasses.dataclass(frozen=True)
class BurstReport:
    """What the merge did: each other frame's median shift (packed pixels, y and x) and the share
    of the reference it contributed to (mean weight), and the frames merged at each pixel on
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
        "camera": raw.camera_name(frame.path) if os.path.isfile(frame.path) else None,
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


def _signal(frame: raw.RawFrame) -> np.ndarray:
    """Packed raw signal (units of white minus black), float32."""
    return raw.raw_signal(frame)


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


def _subpixel(around: np.ndarray) -> np.ndarray:
    """The sub-pixel part of each tile's shift: per axis, the minimum of the parabola through the
    three costs around the best integer shift, within half a pixel."""
    parts = []
    for costs in (around[..., :, 1], around[..., 1, :]):  # along y (middle column), along x (middle row)
        curvature = costs[..., 0] - 2 * costs[..., 1] + costs[..., 2]
        step = np.where(curvature > 0, (costs[..., 0] - costs[..., 2]) / (2 * np.maximum(curvature, 1e-12)), 0.0)
        parts.append(np.clip(step, -0.5, 0.5))
    return np.stack(parts, axis=-1)


def align(reference: np.ndarray, other: np.ndarray, tile: int = TILE) -> np.ndarray:
    """Shift (dy, dx) of each ``tile``-sized tile of grey image ``reference`` to where it lies in
    ``other`` (packed pixels, sub-pixel), coarse to fine (module doc). Shape (nty, ntx, 2); an
    image smaller than a tile is one tile of its size."""
    tile = min(tile, *reference.shape)
    pyramid = [(reference, other)]
    while min(pyramid[-1][0].shape) // 2 >= max(COARSEST_SIDE, tile):
        pyramid.append((_half(pyramid[-1][0]), _half(pyramid[-1][1])))
    guess = None
    for ref, oth in reversed(pyramid):
        nty, ntx = ref.shape[0] // tile, ref.shape[1] // tile
        if guess is None:
            guess = np.zeros((nty, ntx, 2), np.int64)
            radius = SEARCH_RADIUS
        else:  # the coarser level's shift of the tile that covers this one's centre, doubled
            rows = np.minimum((np.arange(nty) * tile + tile // 2) // 2 // tile, guess.shape[0] - 1)
            cols = np.minimum((np.arange(ntx) * tile + tile // 2) // 2 // tile, guess.shape[1] - 1)
            guess = 2 * guess[rows][:, cols]
            radius = 1
        guess, around = _search(ref, oth, guess, radius, tile)
    return guess + _subpixel(around)


def _interpolation(length: int, points: int, tile: int) -> np.ndarray:
    """(length, points) weights that interpolate values at tile centres linearly to every pixel
    (held beyond the first and last centre)."""
    position = np.clip((np.arange(length, dtype=np.float64) + 0.5) / tile - 0.5, 0, points - 1)
    low = np.minimum(np.floor(position).astype(np.int64), points - 1)
    high = np.minimum(low + 1, points - 1)
    weights = np.zeros((length, points), np.float32)
    np.add.at(weights, (np.arange(length), low), 1 - (position - low))
    np.add.at(weights, (np.arange(length), high), position - low)
    return weights


def shift_field(shifts: np.ndarray, shape: tuple[int, int], tile: int = TILE) -> tuple[np.ndarray, np.ndarray]:
    """The tile shifts, interpolated (bilinearly between tile centres, held beyond the outer
    ones) into a shift per pixel of an image of ``shape``: (dy, dx), float32."""
    rows = _interpolation(shape[0], shifts.shape[0], tile)
    cols = _interpolation(shape[1], shifts.shape[1], tile)
    return tuple(rows @ shifts[..., k].astype(np.float32) @ cols.T for k in range(2))


def warp(packed: np.ndarray, dy: np.ndarray, dx: np.ndarray):
    """``packed`` sampled at each pixel's position plus (dy, dx), bilinearly (edges repeated);
    with where that fell inside the image, and the variance factor of the sampling (1 on the
    grid, 0.25 half way between pixels: the interpolated noise's, per pixel)."""
    h, w, channels = packed.shape
    y = np.arange(h, dtype=np.float32)[:, None] + dy
    x = np.arange(w, dtype=np.float32)[None, :] + dx
    inside = (y >= 0) & (y <= h - 1) & (x >= 0) & (x <= w - 1)
    y, x = np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)
    y0, x0 = np.minimum(y.astype(np.int64), h - 2), np.minimum(x.astype(np.int64), w - 2)
    fy, fx = (y - y0)[..., None], (x - x0)[..., None]
    flat = packed.reshape(-1, channels)
    index = y0 * w + x0
    top = flat[index] * (1 - fx) + flat[index + 1] * fx
    bottom = flat[index + w] * (1 - fx) + flat[index + w + 1] * fx
    variance = ((1 - fy) ** 2 + fy**2) * ((1 - fx) ** 2 + fx**2)
    return (top * (1 - fy) + bottom * fy).astype(np.float32), inside, variance[..., 0].astype(np.float32)


def robust_weights(reference: np.ndarray, aligned: np.ndarray, variance: np.ndarray, inside: np.ndarray,
                   law: raw.NoiseLaw) -> np.ndarray:
    """Each packed pixel's weight of an aligned frame (module doc): 1 where the 5x5 mean difference
    of every channel from the reference is within the noise, 0 where one is not (a moving object,
    a tile that did not match; per channel, so a colour that moves is seen even where its grey
    level equals the background's) or where it was sampled outside the frame."""
    from scipy.ndimage import maximum_filter, uniform_filter

    worst = np.zeros(reference.shape[:2], np.float32)
    for c in range(reference.shape[-1]):
        difference = uniform_filter(reference[..., c] - aligned[..., c], DIFFERENCE_BOX, mode="nearest")
        # the noise of the difference of two values at this level (the local mean: a noisy pixel's
        # own value would put dark pixels below their noise), the aligned one's lowered by its
        # resampling, and of its 5x5 mean
        level = np.maximum(uniform_filter(reference[..., c], DIFFERENCE_BOX, mode="nearest"), 0)
        single = np.float32(law.s[c]) * level + np.float32(law.o[c])
        spread = np.sqrt(single * (1 + variance) / DIFFERENCE_BOX**2)
        np.maximum(worst, np.abs(difference) / np.maximum(spread, 1e-12), out=worst)
    weight = np.clip((DIFFERENCE_HIGH - worst) / (DIFFERENCE_HIGH - DIFFERENCE_LOW), 0.0, 1.0)
    # a 5x5 mean straddling a moving edge sees half its difference: a certain difference (beyond
    # HIGH, which noise alone reaches at about 2 pixels in a million) rejects its neighbourhood too
    certain = maximum_filter(worst > DIFFERENCE_HIGH, DIFFERENCE_BOX, mode="nearest")
    return np.where(inside & ~certain, weight, 0.0).astype(np.float32)


def merge(reference: raw.RawFrame, others, law: raw.NoiseLaw) -> tuple[raw.RawFrame, BurstReport]:
    """The reference frame with ``others`` (an iterable of frames, read one at a time) aligned and
    merged into it, and what the merge did. ``law``: the single-frame noise law of the reference.

    The result is a :class:`~sid_keras.runtime.raw.RawFrame` of the reference's geometry and
    metadata whose mosaic holds the merged values (float32, sensor units) and whose
    ``noise_variance_scale`` says how much of the single-frame noise variance is left where.
    """
    base = _signal(reference)
    base_grey = _grey(base)
    total = base.copy()
    weight_sum = np.ones(base.shape[:2], np.float32)
    square_sum = np.ones(base.shape[:2], np.float32)  # sum of w^2, the reference's 1 included
    shifts, weights = [], []
    for frame in others:
        signal = _signal(frame)
        tile_shifts = align(base_grey, _grey(signal))
        aligned, inside, variance = warp(signal, *shift_field(tile_shifts, base.shape[:2]))
        del signal
        weight = robust_weights(base, aligned, variance, inside, law)
        total += weight[..., None] * aligned
        weight_sum += weight
        square_sum += weight**2
        shifts.append(tuple(float(v) for v in np.median(tile_shifts.reshape(-1, 2), axis=0)))
        weights.append(float(weight.mean()))
    merged = total / weight_sum[..., None]
    scale = square_sum / weight_sum**2
    frame = _with_packed(reference, merged, scale)
    return frame, BurstReport(tuple(shifts), tuple(weights), float(1 / scale.mean()))


def _with_packed(reference: raw.RawFrame, signal: np.ndarray, scale: np.ndarray) -> raw.RawFrame:
    """The reference frame holding a merged packed signal (back in sensor units, float32) and its
    noise variance scale per mosaic pixel."""
    layout = reference.cfa
    top, left, h, w = raw.canonical_window(reference.mosaic.shape, reference.cfa_pattern, reference.path)
    black, white = raw.channel_levels(reference)
    values = signal * (np.float32(white) - black) + black
    mosaic = reference.mosaic.astype(np.float32)
    mosaic[top : top + h, left : left + w] = raw.unpack_mosaic(values.astype(np.float32), layout)
    variance = np.ones(mosaic.shape, np.float32)
    variance[top : top + h, left : left + w] = raw.unpack_mosaic(
        np.repeat(scale[..., None], layout.channels, axis=-1), layout)
    return dataclasses.replace(reference, mosaic=mosaic, noise_variance_scale=variance)


def write_merged_dng(path, frame: raw.RawFrame, law: raw.NoiseLaw, *, overwrite: bool = False) -> None:
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
    black = np.asarray(frame.black_level, np.float32)[raw.tile_colours(pattern, frame.mosaic.shape)]
    values = (np.asarray(frame.mosaic, np.float32) - black) * factor + black * factor
    mosaic = np.clip(np.rint(values), 0, UINT16_SCALE).astype(np.uint16)
    blacks = np.asarray(frame.black_level, np.float64)
    tile_blacks = [blacks[pattern[r, c]] * factor for r in range(2) for c in range(2)] if pattern.shape == (2, 2) \
        else [float(blacks.mean()) * factor]
    left = float(frame.noise_variance_scale.mean()) if frame.noise_variance_scale is not None else 1.0
    colours = frame.cfa.channel_colours
    profile = [v for c in (raw.RED, raw.GREEN, raw.BLUE)
               for v in (float(np.mean(law.s[colours == c])) * left, float(np.mean(law.o[colours == c])) * left)]
    camera = (raw.camera_name(frame.path) if os.path.isfile(frame.path) else None) or "camera"
    matrix = np.asarray(frame.color_matrix, np.float64)[:, :3]
    if os.path.exists(path) and not overwrite:
        raise SidError(f"{path}: already exists; pass --overwrite to replace it")
    write_cfa_dng(path, mosaic, pattern, black_level=tile_blacks, white_level=int(round(frame.white_level * factor)),
                  color_matrix=xyz_to_camera(matrix) if has_color_matrix(frame.color_matrix) else None,
                  as_shot_neutral=1.0 / np.asarray(frame.white_balance, np.float64)[:3],
                  exposure_time=frame.exposure_time, iso=frame.iso, make="sid_keras",
                  model=f"{camera} merged burst", noise_profile=profile, orientation=frame.orientation)
