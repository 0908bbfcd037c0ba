import dataclasses

import numpy as np
import pytest
from conftest import BAYER_PHASES, BLACKMAGIC_DNG
from hypothesis import given, settings
from hypothesis import strategies as st

from sid_keras.errors import SidError
from sid_keras.runtime import cfa, model_input, noise_law, raw


@pytest.mark.parametrize("phase", sorted(BAYER_PHASES))
def test_every_bayer_phase_packs_to_sid_rggb_order(phase, write_dng):
    path, mosaic = write_dng(pattern=BAYER_PHASES[phase])
    frame = raw.read_raw(path)
    np.testing.assert_array_equal(frame.mosaic, mosaic)
    top, left, h, w = cfa.canonical_window(mosaic.shape, frame.cfa_pattern)
    canon = mosaic[top : top + h, left : left + w]
    colours = cfa.tile_colours(np.asarray(BAYER_PHASES[phase]), mosaic.shape)[top:, left:]
    assert colours[0, 0] == cfa.RED and colours[1, 1] == cfa.BLUE
    packed = cfa.pack_mosaic(canon, cfa.BAYER)
    # SID's order: R, G (red row), B, G (blue row)
    np.testing.assert_array_equal(packed[..., 0], canon[0::2, 0::2])
    np.testing.assert_array_equal(packed[..., 1], canon[0::2, 1::2])
    np.testing.assert_array_equal(packed[..., 2], canon[1::2, 1::2])
    np.testing.assert_array_equal(packed[..., 3], canon[1::2, 0::2])
    np.testing.assert_array_equal(cfa.unpack_mosaic(packed, cfa.BAYER), canon)
    normalized = model_input.pack(frame)
    assert normalized.shape == (h // 2, w // 2, 4) and normalized.dtype == np.float32
    np.testing.assert_array_equal(model_input.denormalize(normalized, 512, 16383), packed)


@pytest.mark.parametrize("shift", [(0, 0), (1, 2), (3, 5), (5, 1)])
def test_xtrans_every_phase_packs_to_nine_channels_and_round_trips(shift, write_dng):
    pattern = np.roll(cfa.REFERENCE_XTRANS, shift, axis=(0, 1))
    path, mosaic = write_dng(name="x.dng", pattern=pattern, shape=(78, 96), black=1024)
    frame = raw.read_raw(path)
    assert frame.cfa.kind == "xtrans"
    top, left, h, w = cfa.canonical_window(mosaic.shape, frame.cfa_pattern)
    canon = mosaic[top : top + h, left : left + w]
    colours = cfa.tile_colours(pattern, mosaic.shape)[top:, left:]
    np.testing.assert_array_equal(np.where(colours[:6, :6] == 3, 1, colours[:6, :6]),
                                  cfa.REFERENCE_XTRANS)
    packed = cfa.pack_mosaic(canon, cfa.XTRANS)
    assert packed.shape == (h // 3, w // 3, 9)
    # SID's Fuji packing: channel 0 takes R at (0,0), (0,4), (3,1), (3,3) of each 6x6 tile.
    np.testing.assert_array_equal(packed[0::2, 1::2, 0], canon[0::6, 4::6])
    np.testing.assert_array_equal(packed[1::2, 1::2, 0], canon[3::6, 3::6])
    np.testing.assert_array_equal(packed[..., 5], canon[1::3, 0::3])
    np.testing.assert_array_equal(cfa.unpack_mosaic(packed, cfa.XTRANS), canon)
    np.testing.assert_array_equal(model_input.denormalize(model_input.pack(frame), 1024, 16383), packed)


def test_xtrans_layout_channels_have_one_colour_each():
    colours = cfa.pack_mosaic(cfa.tile_colours(cfa.REFERENCE_XTRANS, (12, 12)), cfa.XTRANS)
    per_channel = [set(np.unique(colours[..., c]).tolist()) for c in range(9)]
    assert per_channel == [{0}, {1}, {2}, {0}, {2}, {1}, {1}, {1}, {1}]
    assert cfa.XTRANS.channel_colours.tolist() == [0, 1, 2, 0, 2, 1, 1, 1, 1]


def test_one_packing_order_serves_the_mosaic_the_rgb_images_and_tensorflow():
    """SID's Bayer order R, G (red row), B, G (blue row), seen by every view of the layout."""
    assert cfa.BAYER.channel_colours.tolist() == [0, 1, 2, 1]
    assert cfa.BAYER.colour_channels() == [[0], [1, 3], [2]]
    rgb = np.random.default_rng(0).random((6, 8, 3))
    packed = cfa.BAYER.pack_rgb(rgb)
    np.testing.assert_array_equal(packed, np.stack([rgb[0::2, 0::2, 0], rgb[0::2, 1::2, 1],
                                                    rgb[1::2, 1::2, 2], rgb[1::2, 0::2, 1]], -1))
    blocks = rgb.reshape(3, 2, 4, 2, 3).transpose(0, 2, 1, 3, 4).reshape(3, 4, 12)  # space_to_depth(2)
    np.testing.assert_array_equal(blocks[..., cfa.BAYER.rgb_block_indices()], packed)
    colour_planes = np.broadcast_to(np.arange(3.0), (12, 12, 3))  # each pixel's value is its colour
    xtrans = cfa.XTRANS.pack_rgb(colour_planes)
    assert xtrans.shape == (4, 4, 9)
    np.testing.assert_array_equal(xtrans, np.broadcast_to(cfa.XTRANS.channel_colours, (4, 4, 9)))


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["bayer", "xtrans"]), tiles=st.tuples(st.integers(1, 5), st.integers(1, 5)),
       seed=st.integers(0, 2**16))
def test_pack_unpack_round_trip_property(kind, tiles, seed):
    layout = cfa.BAYER if kind == "bayer" else cfa.XTRANS
    shape = (tiles[0] * layout.period, tiles[1] * layout.period)
    mosaic = np.random.default_rng(seed).integers(0, 2**16, shape).astype(np.uint16)
    packed = cfa.pack_mosaic(mosaic, layout)
    assert packed.shape[:2] == (shape[0] // layout.scale, shape[1] // layout.scale)
    assert sorted(packed.ravel().tolist()) == sorted(mosaic.ravel().tolist())
    np.testing.assert_array_equal(cfa.unpack_mosaic(packed, layout), mosaic)


def test_pack_subtracts_per_channel_black_and_clips():
    mosaic = np.array([[100, 600], [700, 16383]] * 8, np.uint16).reshape(16, 2)
    mosaic = np.tile(mosaic, (1, 8))
    frame = raw.RawFrame(mosaic=mosaic, cfa_pattern=np.array([[0, 1], [3, 2]]),
                         black_level=np.array([200, 500, 600, 700]), white_level=16383)
    packed = model_input.pack(frame)
    assert packed[0, 0, 0] == 0.0  # 100 below R black 200: clipped, as SID does
    assert packed[0, 0, 1] == pytest.approx((600 - 500) / (16383 - 500))
    assert packed[0, 0, 2] == pytest.approx(1.0)
    assert packed[0, 0, 3] == pytest.approx(0.0)


def test_exposure_ratio_from_metadata_names_and_cap():
    assert raw.exposure_ratio("a.ARW", "b.ARW", short_exposure=0.1, long_exposure=10) == 100
    assert raw.exposure_ratio("s/00001_00_0.04s.ARW", "l/00001_00_10s.ARW") == 250
    assert raw.exposure_ratio("00001_00_0.033s.ARW", "00001_00_10s.ARW") == 300  # 303 capped
    assert raw.exposure_ratio("00001_00_0.033s.ARW", "00001_00_10s.ARW", cap=None) == pytest.approx(303.03, abs=0.01)
    assert raw.exposure_ratio("x_0.1s.ARW", "y_10s.ARW", short_exposure=0.04) == 250  # metadata first
    with pytest.raises(SidError, match="exposure time unknown"):
        raw.exposure_ratio("a.dng", "b.dng")


@pytest.mark.parametrize("bad", [0, -3, float("nan"), float("inf"), "abc"])
def test_bad_ratios_are_rejected(bad):
    with pytest.raises(SidError):
        model_input.amplify(np.zeros((2, 2, 4), np.float32), bad)


def test_amplify_clips_at_one():
    out = model_input.amplify(np.array([0.001, 0.004, 0.5], np.float32), 300)
    np.testing.assert_allclose(out, [0.3, 1.0, 1.0])


def test_metadata_from_dng(write_dng):
    path, _ = write_dng(exposure_time=0.04, as_shot_neutral=(0.5, 1.0, 0.625))
    frame = raw.read_raw(path)
    assert frame.exposure_time == pytest.approx(0.04)
    np.testing.assert_allclose(frame.white_balance[:3], [2.0, 1.0, 1.6], rtol=1e-5)
    assert frame.white_level == 16383 and list(frame.black_level) == [512] * 4


def test_levels_override(write_dng):
    path, _ = write_dng()
    frame = raw.read_raw(path, black_level=100, white_level=4000)
    assert list(frame.black_level) == [100] * 4 and frame.white_level == 4000


def test_missing_not_raw_truncated_and_tiny_files_are_rejected(tmp_path, write_dng):
    with pytest.raises(SidError, match="no such file"):
        raw.read_raw(tmp_path / "nope.ARW")
    text = tmp_path / "notes.ARW"
    text.write_text("hello, this is not a raw file\n" * 200)
    with pytest.raises(SidError, match="not a camera raw"):
        raw.read_raw(text)
    path, _ = write_dng(shape=(256, 256))
    truncated = tmp_path / "cut.dng"
    truncated.write_bytes(path.read_bytes()[:4000])
    with pytest.raises(SidError, match="cut.dng"):
        raw.read_raw(truncated)
    tiny, _ = write_dng(name="tiny.dng", shape=(8, 8))
    with pytest.raises(SidError, match="tiny.dng"):
        raw.read_raw(tiny)
    with pytest.raises(SidError, match="too small"):
        cfa.canonical_window((20, 10), np.array([[0, 1], [3, 2]]), "small.dng")


def test_real_blackmagic_dng():
    frame = raw.read_raw(BLACKMAGIC_DNG)
    assert frame.mosaic.shape == (2176, 4128) and frame.mosaic.dtype == np.uint16
    assert frame.cfa.kind == "bayer" and list(frame.black_level) == [512] * 4
    assert frame.exposure_time is None
    packed = model_input.pack(frame)
    assert packed.shape == (1088, 2064, 4)
    assert 0 <= packed.min() and packed.max() <= 1 and packed.mean() > 0


def test_a_raw_without_a_colour_filter_array_is_rejected(film_scan_dng):
    with pytest.raises(SidError, match="no colour filter array"):
        raw.read_raw(film_scan_dng)


def test_a_phone_dng_black_per_position_lens_shading_and_noise_profile(tmp_path):
    """What Camera2 DNGs carry: a 2x2 BlackLevelRepeatDim, OpcodeList2 GainMaps (lens shading,
    which LibRaw leaves out) and a NoiseProfile."""
    from sid_keras.runtime.dng import GainMap, write_cfa_dng

    rows, cols = np.mgrid[0:64, 0:96]
    falloff = 1.0 / (1.0 + 0.5 * ((rows - 32) ** 2 + (cols - 48) ** 2) / (32**2 + 48**2))  # vignetting
    blacks = np.array([60, 64, 68, 72])  # R, G (red row), G (blue row), B in raster order
    black_map = blacks[(rows % 2) * 2 + cols % 2]
    mosaic = np.rint(black_map + 2000 * falloff).astype(np.uint16)
    grid_rows, grid_cols = np.mgrid[0:9, 0:13]
    grid_falloff = 1.0 / (1.0 + 0.5 * ((grid_rows * 63 / 8 - 32) ** 2 + (grid_cols * 95 / 12 - 48) ** 2)
                          / (32**2 + 48**2))
    maps = [GainMap(dy, dx, 64, 96, 2, 2, (1 / grid_falloff).astype(np.float32), (1 / 8, 1 / 12))
            for dy in (0, 1) for dx in (0, 1)]
    path = tmp_path / "phone.dng"
    write_cfa_dng(path, mosaic, np.array([[0, 1], [1, 2]]), black_level=blacks, white_level=4095,
                  noise_profile=[3e-4, 2e-6], gain_maps=maps)
    frame = raw.read_raw(path)
    np.testing.assert_array_equal(frame.black_map, black_map)
    flat = frame.mosaic.astype(float) - black_map
    assert flat.std() / flat.mean() < 0.01 < (mosaic - black_map).std() / (mosaic - black_map).mean()
    assert frame.noise_profile == ((3e-4, 2e-6),) * 3

    write_cfa_dng(path, mosaic, np.array([[0, 1], [1, 2]]), black_level=64, white_level=4095,
                  noise_profile=[3e-4, float("nan")], gain_maps=maps[:1])
    broken = path.read_bytes().replace(maps[0].encode()[16:40], b"\xff" * 24)  # an impossible map area
    path.write_bytes(broken)
    frame = raw.read_raw(path)
    assert frame.noise_profile is None
    assert any("NoiseProfile tag is malformed" in n for n in frame.notices)
    assert any("GainMap is malformed" in n for n in frame.notices)


def test_the_noise_level_comes_from_the_file_then_the_iso_then_the_frame_itself(tmp_path, write_dng):
    """What a noise-aware model is told: (S, O) of the variance S * y + O, in NoiseProfile units."""
    from sid_keras.runtime import noise
    from sid_keras.runtime.dng import write_cfa_dng

    rng = np.random.default_rng(1)
    clean = np.linspace(0.02, 0.6, 384)[None, :].repeat(256, axis=0)
    s_true, o_true = 4e-4, 3e-6
    noisy = clean + rng.normal(0, 1, clean.shape) * np.sqrt(s_true * clean + o_true)
    mosaic = np.rint(64 + noisy * (4095 - 64)).astype(np.uint16)
    files = {name: tmp_path / f"{name}.dng" for name in ("tagged", "plain", "iso")}
    tags_of = {"tagged": dict(noise_profile=[s_true, o_true], iso=800), "plain": {}, "iso": dict(iso=800)}
    for name, tags in tags_of.items():
        write_cfa_dng(files[name], mosaic, np.array([[0, 1], [1, 2]]), black_level=64, white_level=4095, **tags)

    law = noise_law.noise_law(raw.read_raw(files["tagged"]))
    assert law.source == "the file's NoiseProfile" and np.allclose(law.s, s_true) and np.allclose(law.o, o_true)
    law = noise_law.noise_law(raw.read_raw(files["iso"]))
    assert "ISO 800" in law.source and np.allclose(law.s, noise.iso_variance(800, noise.SONY_A7S2)[0])
    law = noise_law.noise_law(raw.read_raw(files["iso"]), noise.NIKON_D850)  # a calibrated profile
    assert law.source.startswith(noise.NIKON_D850.name)
    assert np.allclose(law.s, noise.iso_variance(800, noise.NIKON_D850)[0])
    law = noise_law.noise_law(raw.read_raw(files["plain"]))
    assert law.source.startswith("estimated") and np.allclose(law.s, s_true, rtol=0.3)

    # A dark frame at the same ISO, drowned in noise: its own noise is measured, not looked up.
    dark = clean / 50 + rng.normal(0, 1, clean.shape) * np.sqrt(s_true * clean / 50 + o_true)
    write_cfa_dng(tmp_path / "dark.dng", np.rint(512 + dark * (4095 - 512)).astype(np.uint16),
                  np.array([[0, 1], [1, 2]]), black_level=512, white_level=4095, iso=800)
    law = noise_law.noise_law(raw.read_raw(tmp_path / "dark.dng"))
    assert law.source.startswith("estimated from the frame (dark and noisy")
    level = np.median(clean / 50)
    np.testing.assert_allclose(np.sqrt(law.s * level + law.o), np.sqrt(s_true * level + o_true), rtol=0.2)

    frame = raw.read_raw(files["tagged"])
    x = model_input.network_input(frame, 4.0, white_balance=True, noise=noise_law.noise_law(frame))
    assert x.shape == (128, 192, 8)
    signal = model_input.pack(frame)
    expected = np.minimum(4.0 * raw.channel_gains(frame) * np.sqrt(s_true * signal + o_true), 1.0)
    np.testing.assert_allclose(x[..., 4:], expected, rtol=1e-5)
    np.testing.assert_array_equal(x[..., :4], model_input.network_input(frame, 4.0, white_balance=True))


def test_the_frame_noise_estimate_sees_through_texture_and_below_black(tmp_path):
    """A frame with neither NoiseProfile nor ISO: flat bands from near black (whose noise reaches
    below black, lost once clipped) to bright, beside lens-blurred, high-contrast texture filling
    whole levels (taken for noise by a local residual, which made the estimate before this one 3
    to 13 times too high here)."""
    from scipy.ndimage import gaussian_filter

    from sid_keras.runtime.dng import write_cfa_dng

    rng = np.random.default_rng(3)
    bands = np.repeat([0.002, 0.03, 0.12, 0.3], 72)[None, :].repeat(512, axis=0)
    squares = rng.choice([0.02, 0.25], size=(256, 112)).repeat(2, axis=0).repeat(2, axis=1)  # 2 pixels a side
    clean = np.concatenate([bands, gaussian_filter(squares, 1.0)], axis=1)
    s_true, o_true = 4e-4, 3e-6
    noisy = clean + rng.normal(0, 1, clean.shape) * np.sqrt(s_true * clean + o_true)
    path = tmp_path / "no_iso.dng"
    write_cfa_dng(path, np.rint(64 + noisy * (4095 - 64)).astype(np.uint16), np.array([[0, 1], [1, 2]]),
                  black_level=64, white_level=4095)
    law = noise_law.noise_law(raw.read_raw(path))
    assert law.source.startswith("estimated")
    for level in (0.002, 0.1, 0.3):
        sigma = np.sqrt(law.s * level + law.o)
        np.testing.assert_allclose(sigma, np.sqrt(s_true * level + o_true), rtol=0.15, err_msg=f"level {level}")


def test_a_calibrated_dark_shading_is_subtracted_at_the_nearest_iso(tmp_path, write_dng):
    path, mosaic = write_dng(name="dark.dng", shape=(64, 96), iso=1600)
    frame = raw.read_raw(path)
    pattern = np.random.default_rng(2).normal(0, 3, mosaic.shape).astype(np.float32)
    maps = {400.0: np.zeros(mosaic.shape, np.float32), 3200.0: pattern}  # 1600 is nearer 3200 (log scale)
    corrected = raw.subtract_dark_shading(frame, maps)
    np.testing.assert_array_equal(corrected.mosaic, np.clip(np.rint(mosaic - pattern), 0, frame.white_level))
    assert corrected.notices == frame.notices
    other = raw.subtract_dark_shading(frame, {400.0: np.zeros((8, 8), np.float32)})
    assert other.mosaic is frame.mosaic and "its size differs" in other.notices[-1]
    no_iso = raw.subtract_dark_shading(dataclasses.replace(frame, iso=None), maps)
    assert "it names no ISO" in no_iso.notices[-1]


def test_a_phone_dngs_corners_are_told_the_noise_their_lens_shading_gain_gave_them(tmp_path):
    """Camera2's NoiseProfile describes the sensor's values; its GainMaps then amplify a corner's
    signal (x2.5 here) and its noise with it. A noise-aware model must be told that corner noise
    (within 10%), or it leaves it: dark corners came out grainy and 1 dB down."""
    from sid_keras.runtime.dng import GainMap, write_cfa_dng

    h, w, black, white, s, o = 96, 128, 64, 1023, 2e-3, 4e-5
    rows, cols = np.mgrid[0:h, 0:w]
    radius2 = ((rows - h / 2) ** 2 + (cols - w / 2) ** 2) / ((h / 2) ** 2 + (w / 2) ** 2)
    falloff = 1 / (1 + 1.5 * radius2)  # the lens: the corners get 1/2.5 of the centre's light
    clean = 0.02 * falloff  # a dark, flat scene as the sensor sees it (units of white - black)
    rng = np.random.default_rng(0)
    noisy = clean + rng.normal(0, 1, clean.shape) * np.sqrt(s * clean + o)
    mosaic = np.clip(np.rint(black + noisy * (white - black)), 0, white).astype(np.uint16)
    grid_r, grid_c = np.mgrid[0:9, 0:9]
    grid_radius2 = (((grid_r / 8 * (h - 1) - h / 2) ** 2 + (grid_c / 8 * (w - 1) - w / 2) ** 2)
                    / ((h / 2) ** 2 + (w / 2) ** 2))
    maps = [GainMap(dy, dx, h, w, 2, 2, (1 + 1.5 * grid_radius2).astype(np.float32), (1 / 8, 1 / 8))
            for dy in (0, 1) for dx in (0, 1)]
    path = tmp_path / "phone.dng"
    write_cfa_dng(path, mosaic, np.array([[0, 1], [1, 2]]), black_level=black, white_level=white,
                  noise_profile=[s, o], gain_maps=maps)
    frame = raw.read_raw(path)
    assert frame.lens_gain is not None and frame.lens_gain.max() == pytest.approx(2.5, rel=0.05)
    ratio = 20
    told = model_input.network_input(frame, ratio, white_balance=False, noise=noise_law.noise_law(frame))[..., 4:]
    gain = cfa.pack_mosaic(frame.lens_gain, cfa.BAYER)
    true = ratio * gain * np.sqrt(s * cfa.pack_mosaic(clean.astype(np.float32), cfa.BAYER) + o)
    corners = cfa.pack_mosaic(radius2.astype(np.float32), cfa.BAYER)[..., 0] > 0.8
    centre = cfa.pack_mosaic(radius2.astype(np.float32), cfa.BAYER)[..., 0] < 0.1
    for where in (corners, centre):
        assert told[where].mean() == pytest.approx(true[where].mean(), rel=0.10)
    assert told[corners].mean() > 1.5 * told[centre].mean()  # the shading amplified the corners' noise


def test_a_jpeg_xl_dng_says_why_it_cannot_be_read_and_what_to_do(tmp_path, write_dng, capsys):
    """DNG 1.7's JPEG XL (Apple ProRAW): rawpy's LibRaw has no decoder for it."""
    import tifffile

    from sid_keras.apps.cli import main

    path, _ = write_dng("prores.dng")
    with tifffile.TiffFile(path, mode="r+") as tif:
        tif.pages[0].tags["Compression"].overwrite(raw.COMPRESSION_JPEG_XL)
    with pytest.raises(SidError, match="compressed with JPEG XL .* convert it to an uncompressed or lossless-JPEG DNG"):
        raw.read_raw(path)
    assert main(["enhance", str(path), "-o", str(tmp_path / "o.png")]) == 1
    assert "Adobe DNG Converter" in capsys.readouterr().err


def test_one_network_input_rule_for_frames_numpy_and_tensorflow(write_dng):
    """The frame path (in place, strip by strip) and the training pipelines (numpy and TF) feed a
    model by the one rule of model_input.amplified_input."""
    import tensorflow as tf

    path, _ = write_dng(black=512, white=16383, noise_profile=[2e-4, 1e-6], as_shot_neutral=(0.5, 1.0, 0.7))
    frame = raw.read_raw(path)
    law = noise_law.noise_law(frame)
    factor = 40.0 * raw.channel_gains(frame)
    signal = raw.raw_signal(frame)
    rule = np.concatenate(model_input.amplified_input(signal, factor, (law.s, law.o)), axis=-1)
    np.testing.assert_allclose(model_input.network_input(frame, 40.0, white_balance=True, noise=law), rule,
                               rtol=1e-6, atol=1e-7)
    in_tf = tf.concat(model_input.amplified_input(tf.constant(signal), factor, (law.s, law.o), xp=tf.math), -1)
    np.testing.assert_allclose(in_tf.numpy(), rule, rtol=1e-6, atol=1e-7)
    clipped = model_input.amplified_input(np.float32([-0.01, 0.001, 0.5]), np.float32(40.0))[0]
    np.testing.assert_allclose(clipped, [0.0, 0.04, 1.0], rtol=1e-6)  # clipped at black and at white
