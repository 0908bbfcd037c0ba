"""A frame's noise law: the variance ``s * y + o`` of its raw signal ``y``, and where it comes from.

From the file's DNG NoiseProfile, a calibrated profile at the file's ISO, the reference law, or
an estimate from the frame itself (Immerkaer's second difference on its flattest parts).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sid_keras.runtime.raw import RawFrame, packed_shape, per_channel, raw_signal


@dataclasses.dataclass(frozen=True)
class NoiseLaw:
    """Variance ``s * y + o`` of a raw signal ``y`` (units of white minus black), per packed
    channel, and where it came from (said with ``--verbose``)."""

    s: np.ndarray
    o: np.ndarray
    source: str


# Below this signal-to-noise ratio at its median level (by the reference law) a frame is dark and
# noisy enough for its own noise to be measured better than a law at its ISO can say: its fine
# detail is small against its noise. Every stress-grid frame is below it (at most 17; there the
# shipped model told the estimate scores as told each camera's true law, above the reference
# law: `python benchmarks/noise_estimate.py --psnr`, figures in docs/models.md); the clean frames of
# the fidelity set are far above (84 and more), where the estimate reads fine detail as noise and
# the law is kept.
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
        s, o = per_channel(frame, per_colour[:, 0]), per_channel(frame, per_colour[:, 1])
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
