"""Lens-shaded frames: the output's coarse brightness held to the raw data's, region by region.

A phone's DNG undoes its lens's shading with GainMaps that amplify the corners' values, noise
included, by 2-3x. The network clips its input at black, as it was trained, and where the noise
is amplified beyond what it learned that clip moves a dark corner's mean (a fifth to a half at
x50-x100 in ``benchmarks/phone.py``). The raw signal before the clip is unbiased: its local mean (a
Gaussian of :data:`ANCHOR_SIGMA` packed pixels over the pixels not near white) says how bright each
region is, and the output is scaled, colour by colour, by that mean over its own (a factor, not an
offset: an offset was undone by the clip at black of a dark, grainy output); detail finer than that
scale stays the network's. Frames without GainMaps are left as the network made them: on the stress
grid (SID-style noise, with row noise and colour offsets the network learned to remove and a plain
mean keeps) the same correction cost 0.2 dB overall, 0.6 dB at x300.
"""

from __future__ import annotations

import numpy as np

from sid_keras.runtime.raw import RawFrame, channel_gains, raw_signal

# Packed pixels: the Gaussian's width (32 output pixels). 32 and 64 left more of the corners' bias,
# 8 let more raw noise through (benchmarks/phone.py).
ANCHOR_SIGMA = 16.0
# Output values from here up may be clipped at white, where the raw mean is not their mean.
NEAR_WHITE = 0.9
# The most a region is brightened: where the network left a region almost black, its tiny mean
# would otherwise turn a stray value into a bright speck.
MAX_FACTOR = 4.0
TINY = np.float32(1e-6)


def needs_anchor(frame: RawFrame, white_balanced: bool) -> bool:
    """Whether :func:`anchor_brightness` applies: a frame whose GainMaps were applied, enhanced by a
    model whose output is linear camera RGB (the raw signal's own space)."""
    return frame.lens_gain is not None and white_balanced


def anchor_brightness(output: np.ndarray, frame: RawFrame, ratio: float) -> np.ndarray:
    """Scale a linear model's ``output`` of ``frame`` (float32, its packed window's: the packed size
    times the layout's scale, in [0, 1]) in place so that its local means match the unclipped raw
    signal's, amplified as the network's input is (``ratio`` x white-balance gains); returns it."""
    from scipy.ndimage import gaussian_filter

    layout = frame.cfa
    signal = raw_signal(frame)
    signal *= np.float32(ratio) * channel_gains(frame)
    h, w = signal.shape[:2]
    cells = output.reshape(h, layout.scale, w, layout.scale, 3)  # a view: scaled in place
    blocks = cells.mean(axis=(1, 3))
    usable = (blocks.max(axis=-1) < NEAR_WHITE).astype(np.float32)
    coverage = gaussian_filter(usable, ANCHOR_SIGMA)
    trusted = (usable > 0) & (coverage > 0.5)
    for colour, channels in enumerate(layout.colour_channels()):
        raw_mean = gaussian_filter(signal[..., channels].mean(axis=-1) * usable, ANCHOR_SIGMA)
        output_mean = gaussian_filter(blocks[..., colour] * usable, ANCHOR_SIGMA)
        factor = np.clip(raw_mean / np.maximum(output_mean, TINY), 0, MAX_FACTOR)
        cells[..., colour] *= np.where(trusted, factor, 1)[:, None, :, None]
    return np.minimum(output, 1.0, out=output)
