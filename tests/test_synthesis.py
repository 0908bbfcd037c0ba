"""Noise synthesis, on-the-fly training pairs and the stress validation grid."""

import numpy as np
import pytest
import tensorflow as tf

from sid_keras.errors import SidError
from sid_keras.runtime import noise
from sid_keras.runtime.cfa import BAYER
from sid_keras.synth import synthetic


def _camera(**overrides):
    camera = {"gain": 2.0, "read_lambda": 0.14, "read_sigma": 0.0, "row_sigma": 0.0, "bias_sigma": 0.0,
              "adc_step": 1.0}
    return {k: tf.constant(float(v)) for k, v in {**camera, **overrides}.items()}


def _noisy(clean_dn, seed=(1, 2), **overrides):
    clean = tf.fill([200, 200, 4], clean_dn / noise.FULL_SCALE_DN)
    return noise.add_noise(clean, _camera(**overrides), tf.constant(seed, tf.int64)).numpy() * noise.FULL_SCALE_DN


def test_shot_noise_has_the_poisson_variance_of_the_system_gain():
    out = _noisy(100.0, gain=2.0)  # 50 electrons, 2 DN each
    assert out.mean() == pytest.approx(100, rel=0.01)
    assert out.var() == pytest.approx(2.0 * 100, rel=0.05)  # K * signal


def test_read_row_and_bias_noise_add_where_the_model_says():
    base = _noisy(100.0, gain=0.01)
    read = _noisy(100.0, gain=0.01, read_sigma=3.0, read_lambda=-0.2)
    assert read.var() > base.var() + 9  # heavy-tailed Tukey lambda of scale 3
    rows = _noisy(100.0, gain=0.01, row_sigma=5.0)
    row_means = rows[..., 0].mean(axis=1)
    assert row_means.std() > 4  # one offset per sensor row...
    np.testing.assert_allclose(rows[..., 0].mean(axis=1), rows[..., 1].mean(axis=1), atol=1.0)  # ...shared
    biased = _noisy(100.0, gain=0.01, bias_sigma=3.0)
    assert abs(biased.mean() - 100) > 0.2
    # a 12-bit converter quantises to 4 DN of the 14-bit scale; dark values clip at black
    coarse = _noisy(10.0, gain=0.01, adc_step=4.0)
    assert set(np.unique(coarse % 4)) == {0.0}
    assert _noisy(1.0, gain=1.0, read_sigma=5.0).min() == 0.0


def test_dark_noise_keeps_its_negative_half_in_files_and_is_clipped_at_black_for_the_network(photo_folder):
    """Raw files (Sony, Canon, most others) keep the dark noise below their black level: clipped
    at black, half of a dark frame's pixels read 0 and its mean rises by about 0.4 sigma. The
    synthesised files keep it; the network input still clips at black, as it is trained."""
    import dataclasses

    from sid_keras.runtime import model_input

    clean, camera, seed = tf.zeros([200, 200, 4]), _camera(read_sigma=20.0), tf.constant((1, 2), tf.int64)
    clipped = noise.add_noise(clean, camera, seed).numpy() * noise.FULL_SCALE_DN
    kept = noise.add_noise(clean, camera, seed, noise.FILE_FLOOR).numpy() * noise.FULL_SCALE_DN
    assert abs(kept.mean()) < 0.5 and clipped.mean() > 5 and (clipped == 0).mean() > 0.4
    np.testing.assert_array_equal(np.maximum(kept, 0), clipped)

    plan = synthetic.plan_stress_scenes([str(photo_folder / "a.png")], seed=3, first_id=7, cells_per_photo=1)[0]
    (frame, _), = synthetic.short_frames(dataclasses.replace(plan, iso=40000.0, ratios=(300,)))
    assert (frame.mosaic < synthetic.SONY_BLACK).mean() > 0.1
    assert model_input.network_input(frame, 300.0, white_balance=True).min() == 0.0


def test_noise_is_reproducible_from_its_seed():
    a, b, c = _noisy(50.0, (3, 4), read_sigma=2.0), _noisy(50.0, (3, 4), read_sigma=2.0), _noisy(50.0, (3, 5))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_virtual_cameras_span_the_calibrated_ones():
    seeds = tf.random.experimental.stateless_split(tf.constant([0, 1], tf.int64), 400)
    draws = [noise.sample_camera(noise.VIRTUAL, s) for s in seeds]
    gains = np.array([float(d["gain"]) for d in draws])
    for camera in noise.CALIBRATED.values():
        assert gains.min() < camera.gain[0] and gains.max() > camera.gain[1]
        for gain in camera.gain:
            # the calibrated read noise at its own gain lies inside the virtual family's spread
            nearby = [float(d["read_sigma"]) for d in draws if abs(np.log(float(d["gain"]) / gain)) < 0.3]
            assert min(nearby) < camera.law("read", gain) < max(nearby)
    fixed = noise.sample_camera(noise.SONY_A7S2, seeds[0], gain=(3.0, 3.0))
    assert float(fixed["gain"]) == pytest.approx(3.0)


def test_noise_profiles_load_by_name_or_from_toml(tmp_path):
    assert noise.load_profile(None) is noise.VIRTUAL
    assert noise.load_profile("NikonD850") is noise.NIKON_D850
    path = tmp_path / "cam.toml"
    path.write_text("[profile]\nname = 'mine'\ngain = [0.5, 8.0]\nread_lambda = [0.1, 0.1]\n"
                    "read_slope = [0.5, 0.5]\nread_bias = [0.2, 0.2]\nread_spread = 0.1\n"
                    "row_slope = [0.5, 0.5]\nrow_bias = [-1.0, -1.0]\nrow_spread = 0.1\n")
    assert noise.load_profile(str(path)).gain == (0.5, 8.0)
    path.write_text("[profile]\nname = 'mine'\ngain = [8.0, 0.5]\n")
    with pytest.raises(SidError, match="incomplete"):
        noise.load_profile(str(path))
    with pytest.raises(SidError, match="no such file or built-in profile"):
        noise.load_profile("Leica")


@pytest.fixture(scope="module")
def linear_photos(tmp_path_factory, photo_folder):
    from sid_keras.data import cache_photos
    from sid_keras.synth.synthetic import find_photos

    photos = find_photos(photo_folder)[:3]
    return cache_photos(photos, tmp_path_factory.mktemp("photo_cache"))


def test_synthetic_pairs_are_aligned_white_balanced_and_seeded(linear_photos):
    from sid_keras.data import synthetic_dataset

    ds = synthetic_dataset(linear_photos, patch_size=32, batch_size=4, seed=3, ratio_range=(1.0, 1.0),
                           profile=noise.SONY_A7S2)
    x, y = next(iter(ds))
    assert x.shape == (4, 32, 32, 4) and y.shape == (4, 64, 64, 3)
    assert 0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(y)) <= 1
    # at ratio 1 and low noise the white-balanced input is the target's mosaic
    mosaic = tf.gather(tf.nn.space_to_depth(y, 2), BAYER.rgb_block_indices(), axis=-1)
    assert float(tf.reduce_mean(tf.abs(mosaic - x))) < 0.03
    again, _ = next(iter(synthetic_dataset(linear_photos, patch_size=32, batch_size=4, seed=3,
                                           ratio_range=(1.0, 1.0), profile=noise.SONY_A7S2)))
    np.testing.assert_array_equal(x.numpy(), again.numpy())
    dark, target = next(iter(synthetic_dataset(linear_photos, patch_size=32, batch_size=4, seed=3,
                                               ratio_range=(200.0, 300.0))))
    dark_mosaic = tf.gather(tf.nn.space_to_depth(target, 2), BAYER.rgb_block_indices(), axis=-1)
    assert float(tf.math.reduce_std(dark - dark_mosaic)) > 0.03  # amplified noise of a dark shot
    with pytest.raises(SidError, match="lower data.patch_size"):
        synthetic_dataset(linear_photos, patch_size=400, batch_size=1)


def test_stress_grid_is_balanced_and_uses_held_out_cameras():
    photos = [f"p{i}.jpg" for i in range(8)]
    plans = synthetic.plan_stress_scenes(photos, seed=0, first_id=20000, cells_per_photo=3)
    assert len(plans) == 24
    cells = {}
    for plan in plans:
        band = synthetic.stress_cell(plan.iso)
        assert band is not None and len(plan.ratios) == 1 and not plan.noisy_long
        cells[(band, plan.ratios[0])] = cells.get((band, plan.ratios[0]), 0) + 1
        assert plan.camera in synthetic.STRESS_CAMERAS and plan.noise_profile in noise.CALIBRATED
    assert len(cells) == 12 and set(cells.values()) == {2}  # 24 scenes: every cell twice
    assert not set(synthetic.STRESS_CAMERAS) & set(synthetic.TRAINING_CAMERAS)


def test_a_files_colour_response_is_its_cameras(tmp_path):
    """Fine-tuning synthesises pairs with the colours of the user's files: the response read back
    from a DNG's matrix is the camera's own (identity for a file without one)."""
    from sid_keras.runtime import raw
    from sid_keras.runtime.dng import write_cfa_dng

    mosaic = np.full((32, 32), 600, np.uint16)
    for name, xyz_to_cam in [("Fujifilm X-T2", synthetic.STRESS_CAMERAS["Fujifilm X-T2"]), ("no matrix", None)]:
        path = tmp_path / f"{name}.dng"
        write_cfa_dng(path, mosaic, np.array([[0, 1], [1, 2]]), black_level=512, white_level=16383,
                      color_matrix=xyz_to_cam)
        response = synthetic.file_colour_response(raw.read_raw(path).color_matrix)
        np.testing.assert_allclose(response, synthetic.rgb_to_camera_matrix(xyz_to_cam), atol=1e-4)


def test_a_scenes_frames_made_in_memory_are_what_its_files_read_back(photo_folder, tmp_path):
    """Export calibrates int8 on frames made in memory: each is the frame rawpy reads from the
    DNG `synth` writes for the same plan (mosaic to the DN, white balance, LibRaw's matrix)."""
    from sid_keras.runtime import raw

    plan = synthetic.plan_stress_scenes([str(photo_folder / "a.png")], seed=3, first_id=7, cells_per_photo=1)[0]
    line = synthetic.make_scene(plan, tmp_path, "Sony")[0]
    from_file = raw.read_raw(tmp_path / line.split()[0])
    (in_memory, ratio), = synthetic.short_frames(plan)
    assert ratio == plan.ratios[0] and in_memory.exposure_time == pytest.approx(from_file.exposure_time)
    np.testing.assert_array_equal(in_memory.mosaic, from_file.mosaic)
    np.testing.assert_array_equal(in_memory.cfa_pattern, from_file.cfa_pattern)
    np.testing.assert_allclose(in_memory.black_level, from_file.black_level)
    assert in_memory.white_level == from_file.white_level and in_memory.iso == from_file.iso
    np.testing.assert_allclose(in_memory.white_balance, from_file.white_balance, rtol=1e-4)
    np.testing.assert_allclose(in_memory.color_matrix, from_file.color_matrix, atol=2e-4)


def test_a_noise_aware_model_is_told_its_inputs_noise_which_grows_with_the_ratio(linear_photos):
    from sid_keras.data.pipeline import synthetic_source

    levels = {}
    for ratio in (1.0, 100.0):
        source = synthetic_source(linear_photos, patch_size=32, seed=3, ratio_range=(ratio, ratio),
                                  profile=noise.SONY_A7S2, noise_input=True)
        x, _ = source.sample(tf.constant(0, tf.int64))
        assert x.shape == (32, 32, 8)
        sigma = x[..., 4:].numpy()
        assert 0 < sigma.min() and sigma.max() <= 1
        levels[ratio] = float(np.median(sigma))
    assert levels[100.0] > 5 * levels[1.0]


def test_saturation_boost_pushes_half_the_scenes_colours_away_from_grey(linear_photos):
    from sid_keras.data.pipeline import saturate, synthetic_source

    white, red = tf.constant([[1.0, 1.0, 1.0]]), tf.constant([[0.6, 0.3, 0.3]])
    np.testing.assert_allclose(saturate(white, 3.0), white)
    np.testing.assert_allclose(saturate(red, 2.0), [[0.8, 0.2, 0.2]], atol=1e-6)
    np.testing.assert_allclose(saturate(red, 5.0), [[1.4, 0.0, 0.0]], atol=1e-6)  # clipped at 0

    def chroma(y):
        return float(tf.reduce_mean(tf.math.reduce_std(y, axis=-1)))

    def targets(saturation):
        source = synthetic_source(linear_photos, patch_size=32, seed=3, saturation=saturation)
        return [source.sample(tf.constant(i, tf.int64))[1] for i in range(16)]

    plain, boosted = targets(1.0), targets(4.0)
    gains = [chroma(b) / chroma(p) for p, b in zip(plain, boosted)]
    assert 4 <= sum(g > 1.05 for g in gains) <= 12  # about half the scenes
    assert all(g > 0.999 for g in gains) and all(float(tf.reduce_min(b)) >= 0 for b in boosted)
    # the other draws (crop, camera, light, noise) are those of the plain stream
    unchanged = [i for i, g in enumerate(gains) if g < 1.001]
    np.testing.assert_array_equal(plain[unchanged[0]].numpy(), boosted[unchanged[0]].numpy())


def test_dead_leaves_scenes_hold_the_saturated_colours_and_edges_photos_lack(linear_photos, tmp_path):
    from sid_keras.data.cache import cache_dead_leaves

    scene = synthetic.dead_leaves(96, seed=5)
    assert scene.shape == (96, 96, 3) and 0 <= scene.min() and scene.max() <= 1
    np.testing.assert_array_equal(scene, synthetic.dead_leaves(96, seed=5))  # made from its seed
    assert not np.array_equal(scene, synthetic.dead_leaves(96, seed=6))
    photo = np.load(linear_photos[0]).astype(np.float64) / 65535

    def saturated_share(rgb):  # pixels with one channel under a fifth of the brightest
        return float(np.mean(rgb.min(-1) < 0.2 * rgb.max(-1)))

    def edge_share(rgb):  # pixels next to a step of a tenth of white
        return float(np.mean(np.abs(np.diff(rgb.mean(-1), axis=1)) > 0.1))

    assert saturated_share(scene) > 0.3 > saturated_share(photo)
    assert edge_share(scene) > 2 * edge_share(photo)
    assert len(np.unique(scene.reshape(-1, 3), axis=0)) > 200  # many leaves, anti-aliased edges
    cached = cache_dead_leaves(2, tmp_path, workers=1)
    assert len(cached) == 2 and cache_dead_leaves(2, tmp_path) == cached  # made once
    assert np.load(cached[0], mmap_mode="r").shape == (synthetic.DEAD_LEAVES_SIDE,) * 2 + (3,)
