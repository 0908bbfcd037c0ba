"""Colour from the file: white-balanced input, linear output, LibRaw's render, DNG out."""

import keras
import numpy as np
import pytest
from conftest import BLACKMAGIC_DNG

from sid_keras.apps.evaluation import psnr, psnr_8bit
from sid_keras.runtime import model_input, raw, render
from sid_keras.runtime.dng import write_cfa_dng
from sid_keras.synth.synthetic import SONY_A7S2_XYZ_TO_CAM


def test_curve_joins_its_toe_and_power_segments_as_dcraw_computes_them():
    assert render.CURVE_BREAK == pytest.approx(0.018054, abs=1e-6)  # dcraw's g[3] for (0.45, 4.5)
    assert render.CURVE_OFFSET == pytest.approx(0.099297, abs=1e-6)  # dcraw's g[4]
    below, above = render.tone_curve(np.float32([render.CURVE_BREAK - 1e-7, render.CURVE_BREAK + 1e-7]))
    assert below == pytest.approx(above, abs=1e-5)
    assert render.tone_curve(np.float32([0.0, 1.0, 2.0, -1.0])).tolist() == pytest.approx([0, 1, 1, 0], abs=1e-6)


def _render_matches_libraw(path):
    frame = raw.read_raw(path)
    linear = raw.render_reference(path, linear=True).astype(np.float32) / 65535
    srgb = raw.render_reference(path).astype(np.float32) / 65535
    return psnr(render.render(linear, frame.color_matrix), srgb)


def test_render_reproduces_libraw_on_a_dng_with_a_colour_matrix(tmp_path):
    rng = np.random.default_rng(0)
    mosaic = rng.integers(600, 14000, (64, 96)).astype(np.uint16)
    path = tmp_path / "sony.dng"
    write_cfa_dng(path, mosaic, np.array([[0, 1], [1, 2]]), black_level=512, white_level=16383,
                  color_matrix=SONY_A7S2_XYZ_TO_CAM, as_shot_neutral=(1 / 2.1, 1, 1 / 1.6))
    assert _render_matches_libraw(path) > 60


def test_render_reproduces_libraw_on_the_real_blackmagic_dng():
    assert _render_matches_libraw(BLACKMAGIC_DNG) > 40


def test_white_balance_is_libraw_normalised_and_missing_metadata_falls_back_with_a_notice(tmp_path, write_dng):
    path, _ = write_dng(name="wb.dng", as_shot_neutral=(1 / 2.0, 1.0, 1 / 1.5), color_matrix=SONY_A7S2_XYZ_TO_CAM)
    frame = raw.read_raw(path)
    np.testing.assert_allclose(frame.white_balance, [2.0, 1.0, 1.5, 1.0], rtol=1e-4)
    np.testing.assert_allclose(raw.channel_gains(frame), [2.0, 1.0, 1.5, 1.0], rtol=1e-4)
    assert frame.notices == ()
    # green above red: LibRaw scales so the smallest gain is 1, not green
    path, _ = write_dng(name="wb2.dng", as_shot_neutral=(1.25, 1.0, 0.5), color_matrix=SONY_A7S2_XYZ_TO_CAM)
    np.testing.assert_allclose(raw.read_raw(path).white_balance, [1.0, 1.25, 2.5, 1.25], rtol=1e-4)
    # a neutral of zero is no white balance: grey world on the frame, and one line that says so
    rng = np.random.default_rng(1)
    mosaic = np.empty((64, 64), np.uint16)
    mosaic[0::2, 0::2] = rng.integers(1500, 1600, (32, 32))  # red: ~1037 above black
    mosaic[0::2, 1::2] = mosaic[1::2, 0::2] = rng.integers(2500, 2600, (32, 32))  # green: ~2037
    mosaic[1::2, 1::2] = rng.integers(1000, 1100, (32, 32))  # blue: ~537
    path = tmp_path / "nowb.dng"
    write_cfa_dng(path, mosaic, np.array([[0, 1], [1, 2]]), black_level=512, white_level=16383,
                  as_shot_neutral=(0, 1, 0))
    frame = raw.read_raw(path)
    np.testing.assert_allclose(frame.white_balance, [2037.5 / 1037.5, 1.0, 2037.5 / 537.5, 1.0], rtol=0.01)
    assert len(frame.notices) == 2
    assert "grey-world" in frame.notices[0] and str(path) in frame.notices[0]
    assert "no colour matrix" in frame.notices[1]  # and LibRaw's behaviour, the identity, is used
    np.testing.assert_array_equal(render.camera_to_srgb(frame.color_matrix), np.eye(3))


def test_amplify_with_gains_clips_once_as_libraw_clips_after_white_balance():
    packed = np.float32([[[0.001, 0.002, 0.004, 0.5]]])
    out = model_input.amplify(packed, 100, np.float32([2.0, 1.0, 1.5, 1.0]))
    np.testing.assert_allclose(out[0, 0], [0.2, 0.2, 0.6, 1.0], rtol=1e-6)


@pytest.fixture(scope="module")
def tiny_linear():
    from sid_keras.models import UNet

    keras.utils.set_random_seed(5)
    return UNet(width=4, depth=3)


def _sensor_versions(tmp_path, scales):
    """One noisy Sony-layout short exposure, re-expressed as sensors with other red/blue
    sensitivities: raw R and B scaled, AsShotNeutral and ColorMatrix rows scaled to match, so
    LibRaw develops every version identically."""
    rng = np.random.default_rng(2)
    noisy = rng.poisson(rng.uniform(20, 400, (96, 128))).astype(np.float64)
    paths = []
    for red, blue in scales:
        factor = np.ones((96, 128))
        factor[0::2, 0::2], factor[1::2, 1::2] = red, blue
        mosaic = np.rint(512 + noisy * factor).astype(np.uint16)
        matrix = SONY_A7S2_XYZ_TO_CAM * np.array([[red], [1.0], [blue]])
        path = tmp_path / f"sensor_{red}_{blue}.dng"
        write_cfa_dng(path, mosaic, np.array([[0, 1], [1, 2]]), black_level=512, white_level=16383,
                      color_matrix=matrix, as_shot_neutral=(0.45 * red, 1.0, 0.6 * blue), exposure_time=0.01)
        paths.append(path)
    return paths


def test_a_linear_model_gives_the_same_colours_whatever_the_sensor_sensitivities(tmp_path, tiny_linear):
    from sid_keras.runtime.inference import Enhancer

    paths = _sensor_versions(tmp_path, [(1.0, 1.0), (0.5, 1.0), (1.0, 0.6), (0.7, 1.4)])
    enhancer = Enhancer(tiny_linear, tile=64, overlap=8)
    assert enhancer.output == "linear"
    images = [enhancer.enhance(p, ratio=40) for p in paths]
    for other in images[1:]:
        assert psnr_8bit(images[0], other) > 35
    # why: the linear model's inputs are the same frame; SID's sRGB path sees each sensor's own
    # raw balance and would have to guess the colour
    frames = [raw.read_raw(p) for p in paths]
    balanced = [enhancer.network_input(f, 40) for f in frames]
    unbalanced = [model_input.network_input(f, 40, white_balance=False) for f in frames]
    for i in range(1, len(frames)):
        assert np.abs(balanced[i] - balanced[0]).mean() < 0.002
        assert np.abs(unbalanced[i] - unbalanced[0]).mean() > 0.02


def test_dng_output_opens_in_libraw_and_develops_like_the_png(tmp_path, tiny_linear, write_dng):
    import rawpy

    from sid_keras.apps.cli import main

    model = tmp_path / "tiny.keras"
    tiny_linear.save(model)
    dng, _ = write_dng(name="dark.dng", shape=(70, 94), black=512, white=16383,
                       color_matrix=SONY_A7S2_XYZ_TO_CAM, as_shot_neutral=(0.5, 1, 0.7))
    for out in ("out.png", "out.dng"):
        assert main(["enhance", str(dng), "-o", str(tmp_path / out), "--model", str(model), "--ratio", "3"]) == 0
    from PIL import Image

    png = np.asarray(Image.open(tmp_path / "out.png"), np.float32) / 255
    with rawpy.imread(str(tmp_path / "out.dng")) as developed:
        assert developed.raw_pattern is None  # linear (demosaiced) data
        rgb = developed.postprocess(use_camera_wb=True, no_auto_bright=True, output_bps=16).astype(np.float32) / 65535
    assert rgb.shape == png.shape == (70, 94, 3)
    assert psnr_8bit(png, rgb) > 35
    # an sRGB model has no camera RGB to write
    srgb_model = tmp_path / "srgb.keras"
    from sid_keras.models import UNet

    UNet(width=4, depth=3, output="srgb").save(srgb_model)
    assert main(["enhance", str(dng), "-o", str(tmp_path / "s.dng"), "--model", str(srgb_model)]) == 1
    assert not (tmp_path / "s.dng").exists()


def test_a_models_convention_travels_in_its_config_and_its_exported_input_name():
    from sid_keras.errors import SidError
    from sid_keras.models import UNet, convention_of
    from sid_keras.runtime.convention import Convention

    models = [UNet(width=4, depth=2), UNet(width=4, depth=2, output="srgb"), UNet(width=4, depth=2, noise_input=True)]
    conventions = [convention_of(m) for m in models]
    assert conventions == [Convention("linear", False, 4), Convention("srgb", False, 4), Convention("linear", True, 4)]
    assert [c.input_name for c in conventions] == ["packed_wb", "packed", "packed_wb_noise"]
    assert [Convention.from_input(c.input_name, c.input_channels) for c in conventions] == conventions
    with pytest.raises(SidError, match="x.tflite: input 'images' is not a sid-keras export"):
        Convention.from_input("images", 4, "x.tflite")


def test_output_kind_is_saved_with_the_model_and_older_files_read_as_srgb(tmp_path):
    from sid_keras.models import UNet, convention_of

    model = UNet(width=4, depth=2, output="srgb")
    model.save(tmp_path / "m.keras")
    assert convention_of(keras.models.load_model(tmp_path / "m.keras")).output == "srgb"
    config = UNet(width=4, depth=2).get_config()
    assert config["output"] == "linear"
    del config["output"]  # a file saved before the field existed
    assert UNet.from_config(config).get_config()["output"] == "srgb"
    with pytest.raises(TypeError, match="output="):
        UNet(width=4, depth=2, output="rgb")


def test_display_loss_weighs_shadows_as_the_image_shows_them_and_stays_finite():
    import tensorflow as tf

    from sid_keras.models.losses import DisplayL1, display_curve

    loss = DisplayL1()
    target = tf.fill([1, 4, 4, 3], 0.01)
    shadow = loss(target, target + 0.005)
    highlight = loss(target + 0.8, target + 0.805)
    assert float(shadow) > 5 * float(highlight)  # in linear L1 both would be equal
    x = tf.Variable(tf.constant([[-0.1, 0.0, 0.5, 1.5]]))
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(display_curve(x))
    assert np.all(np.isfinite(tape.gradient(y, x).numpy()))
    np.testing.assert_allclose(display_curve(tf.constant([0.3])).numpy(), render.tone_curve(np.float32([0.3])),
                               rtol=1e-6)


def test_the_fast_training_maths_equal_their_textbook_forms():
    """What made a training step faster changed no value: the curve over its whole range and
    its gradient, SSIM against tf.image.ssim, Tukey-lambda noise and the colour response."""
    import tensorflow as tf

    from sid_keras.data.pipeline import camera_rgb
    from sid_keras.models.losses import display_curve
    from sid_keras.models.metrics import ssim
    from sid_keras.runtime import noise

    rng = np.random.default_rng(0)
    x = tf.constant(np.concatenate([np.linspace(-0.1, 1.5, 4001), rng.uniform(0, 1, 4000)]).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        fast = display_curve(x)
        powered = tf.pow(tf.maximum(x, render.CURVE_BREAK), render.LIBRAW_POWER)
        textbook = tf.where(x < render.CURVE_BREAK, x * render.LIBRAW_TOE_SLOPE,
                            powered * (1 + render.CURVE_OFFSET) - render.CURVE_OFFSET)
    np.testing.assert_allclose(fast.numpy(), textbook.numpy(), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(tape.gradient(fast, x).numpy(), tape.gradient(textbook, x).numpy(), rtol=1e-5)

    a = rng.uniform(0, 1, (3, 40, 33, 3)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    reference = tf.image.ssim(a, b, max_val=1.0, filter_size=11, filter_sigma=1.5).numpy()
    np.testing.assert_allclose(ssim(a, b).numpy(), reference, atol=2e-6)
    assert not np.allclose(reference, 1.0)

    seed = tf.constant([3, 4], tf.int64)
    for lam in (-0.3, 0.0, 0.14):
        u = tf.random.stateless_uniform([5000], seed, 1e-6, 1 - 1e-6).numpy().astype(np.float64)
        expected = np.log(u / (1 - u)) if lam == 0 else (u**lam - (1 - u) ** lam) / lam
        np.testing.assert_allclose(noise.tukey_lambda(seed, [5000], tf.constant(lam)).numpy(), expected,
                                   rtol=1e-4, atol=1e-4)

    matrix = rng.normal(size=(3, 3)).astype(np.float32)
    rgb = rng.uniform(size=(8, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(camera_rgb(tf.constant(rgb), tf.constant(matrix)).numpy(), rgb @ matrix.T, rtol=1e-5,
                               atol=1e-6)


def test_ground_truth_keeps_the_exposure_of_a_frame_without_clipped_highlights(tmp_path):
    """LibRaw by default takes a brightest value over 0.75 of the white level as the white level,
    brightening such a frame by up to a third; the ground truth must keep its real exposure."""
    import rawpy

    mosaic = np.full((64, 96), 512 + 6000, np.uint16)
    mosaic[:8, :8] = 512 + int(0.8 * (16383 - 512))  # the brightest patch: 0.8 of the white level
    path = tmp_path / "long.dng"
    write_cfa_dng(path, mosaic, np.array([[0, 1], [1, 2]]), black_level=512, white_level=16383,
                  as_shot_neutral=(1.0, 1.0, 1.0))
    truth = raw.render_reference(path, linear=True).astype(np.float64) / 65535
    assert np.median(truth) == pytest.approx(6000 / (16383 - 512), rel=0.02)
    with rawpy.imread(str(path)) as developed:  # what LibRaw's default would have made of it
        default = developed.postprocess(use_camera_wb=True, no_auto_bright=True, output_bps=16, user_flip=0,
                                        output_color=rawpy.ColorSpace.raw, gamma=(1, 1)) / 65535
    assert np.median(default) == pytest.approx(np.median(truth) / 0.8, rel=0.02)
