"""What a model is fed: the packed frame amplified by the exposure ratio (and white-balanced),
clipped at black and at white, followed for a noise-aware model by each value's noise level.
"""

from __future__ import annotations

import numpy as np

from sid_keras.runtime.noise_law import NoiseLaw
from sid_keras.runtime.raw import RawFrame, channel_gains, channel_levels, check_ratio, packed_rows, raw_signal


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


def amplified_input(signal, factor, law=None, xp=np) -> list:
    """The network-input rule, for numpy and TensorFlow alike (``xp``: numpy or ``tf.math``): a
    black-subtracted, normalised packed ``signal`` clipped at black, times ``factor`` (the exposure
    ratio, times the white-balance gains for a ``linear`` model), at most 1; with ``law = (s, o)``
    followed by each value's noise level (:func:`noise_sigma`). The channel groups, for the caller
    to concatenate on the last axis. :func:`network_input` is its in-place form for a whole frame."""
    x = xp.minimum(xp.maximum(signal, 0.0) * factor, 1.0)
    return [x] if law is None else [x, noise_sigma(signal, factor, law[0], law[1], xp=xp)]


def network_input(frame: RawFrame, ratio: float, *, white_balance: bool,
                  rows: tuple[int, int] | None = None, noise: NoiseLaw | None = None) -> np.ndarray:
    """The packed, amplified (and, for ``linear`` models, white-balanced) input of a frame:
    :func:`amplified_input`'s rule, computed in place strip by strip.

    ``rows = (start, stop)`` packs only those packed rows (multiples of the layout's cells per
    period: 1 for Bayer, 2 for X-Trans), so a large frame can be processed strip by strip.
    With ``noise`` (a model that takes its input's noise level) the packed channels are followed
    by as many channels of :func:`noise_sigma`.
    """
    black, white = channel_levels(frame)
    packed = packed_rows(frame, rows)
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
        gain = packed_rows(frame, rows, frame.lens_gain)
        signal /= gain
        scale = scale * gain
    if frame.noise_variance_scale is not None:  # a merged burst: less noise, pixel by pixel
        scale = scale * np.sqrt(packed_rows(frame, rows, frame.noise_variance_scale))
    out[..., channels:] = noise_sigma(signal, scale, noise.s, noise.o, out=signal)
    return out


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
