"""A phone's lens-shaded frame: the output's coarse brightness held to its raw data's."""

from __future__ import annotations

import numpy as np
import pytest

from sid_keras.runtime import cfa, raw, shading

BLACK, WHITE, NOISE = 64, 1023, (2e-3, 4e-5)  # a small sensor at a high ISO (variance s x + o)


def shaded_phone_frame(tmp_path, level: float, ratio: float, h: int = 384, w: int = 512) -> raw.RawFrame:
    """A flat grey scene of ``level`` (a long exposure's white-balanced value) taken ``ratio`` times
    too short through a lens that gives the corners 1/2.5 of the centre's light, written as Camera2
    does (10-bit, NoiseProfile, GainMaps x2.5 in the corners) and read back."""
    from sid_keras.runtime.dng import GainMap, write_cfa_dng

    gains = np.array([2.0, 1.0, 1.7])
    clean = cfa.BAYER.mosaic_of(np.full((h, w, 3), level) / gains) / (1 + 1.5 * squared_radius((h, w))) / ratio
    noisy = clean + np.random.default_rng(0).normal(0, 1, clean.shape) * np.sqrt(NOISE[0] * clean + NOISE[1])
    mosaic = np.clip(np.rint(BLACK + noisy * (WHITE - BLACK)), 0, WHITE).astype(np.uint16)
    grid_r, grid_c = np.mgrid[0:9, 0:9] / 8
    grid_radius2 = ((grid_r * h - h / 2) ** 2 + (grid_c * w - w / 2) ** 2) / ((h / 2) ** 2 + (w / 2) ** 2)
    maps = [GainMap(dy, dx, h, w, 2, 2, (1 + 1.5 * grid_radius2).astype(np.float32), (1 / 8, 1 / 8))
            for dy in (0, 1) for dx in (0, 1)]
    path = tmp_path / f"phone_{ratio}.dng"
    write_cfa_dng(path, mosaic, np.array([[0, 1], [1, 2]]), black_level=BLACK, white_level=WHITE,
                  as_shot_neutral=1 / gains, noise_profile=list(NOISE), gain_maps=maps, make="Google", model="Pixel")
    frame = raw.read_raw(path)
    assert frame.lens_gain is not None
    return frame


def squared_radius(shape):
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    return ((rows - shape[0] / 2) ** 2 + (cols - shape[1] / 2) ** 2) / ((shape[0] / 2) ** 2 + (shape[1] / 2) ** 2)


def regions(shape):
    radius2 = squared_radius(shape)
    return radius2 > 0.8, radius2 < 0.1


def test_the_output_is_scaled_to_the_raw_datas_local_mean_and_near_white_is_left_alone(tmp_path):
    level, ratio = 0.3, 20
    frame = shaded_phone_frame(tmp_path, level, ratio)
    corners, centre = regions(frame.mosaic.shape)
    lifted = 1 + 0.4 * squared_radius(frame.mosaic.shape)  # a clip at black lifted the corners, as the gain grows
    output = (np.full((*frame.mosaic.shape, 3), level) * lifted[..., None]).astype(np.float32)
    output[:8, :8] = 0.95  # near white: the raw mean of a clipped highlight is not its mean
    output[-64:, -64:] = 0.002  # left almost black: brightened at most MAX_FACTOR times, no speck
    output[-1, -1] = 0.05
    shading.anchor_brightness(output, frame, ratio)
    assert np.all(output[-1, -1] <= 0.2 + 1e-6)  # 4x, where the raw mean asked 150x
    top_left = corners & (np.arange(corners.shape[0])[:, None] < corners.shape[0] // 2)
    assert abs(output[top_left].mean() / level - 1) < 0.35 / 3  # a Gaussian's reach: most of it, at the edge
    assert output[centre].mean() == pytest.approx(level, rel=0.03)
    assert np.all(output[:8, :8] == np.float32(0.95))


def test_a_shaded_phone_frames_corners_and_centre_keep_their_brightness(tmp_path):
    """At x100 the GainMaps amplify the corners' noise 2.5x beyond what the network learned; its
    clip at black made a dark, flat scene's corners 1.85x the centre's and the centre 15% dark."""
    from sid_keras.runtime.dng import LINEAR_DNG_WHITE
    from sid_keras.runtime.inference import Enhancer

    level, ratio, enhancer = 0.1, 100.0, Enhancer()
    frame = shaded_phone_frame(tmp_path, level, ratio)
    corners, centre = regions(frame.mosaic.shape)
    network = np.empty((*frame.mosaic.shape, 3), np.float32)  # its own output, as it was before
    enhancer.stream(frame, ratio, lambda y, rows: network.__setitem__(slice(y, y + len(rows)), np.clip(rows, 0, 1)))
    output = enhancer.enhance_frame(frame, ratio).output
    pixels, _, _ = enhancer.enhance_to_pixels(frame, ratio, "dng")  # the CLI's path holds it too
    written = pixels / LINEAR_DNG_WHITE * np.asarray(frame.white_balance)[:3]  # a DNG keeps it before white balance
    # what evaluate and the study score (the network's output, then Enhancer.anchored) is what enhance writes
    np.testing.assert_allclose(enhancer.anchored(network.copy(), frame, ratio), output, atol=1e-6)
    for image, good in ((output, True), (written, True), (network, False)):
        luminance = image.mean(axis=-1)
        held = (luminance[corners].mean() / luminance[centre].mean() < 1.35
                and luminance[centre].mean() == pytest.approx(level, rel=0.10))
        assert held == good
