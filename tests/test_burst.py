"""Bursts: several dark frames of one scene aligned and merged before the network (issue 48)."""

import numpy as np
import pytest
from conftest import one_line_failure
from scipy.ndimage import maximum_filter

from sid_keras.apps.cli import main
from sid_keras.apps.evaluation import psnr
from sid_keras.runtime import burst, cfa, model_input, noise_law, raw, tags
from sid_keras.runtime.dng import write_cfa_dng
from sid_keras.synth.bursts import BLACK, OBJECT_COLOUR, WHITE, make_burst, poisson_gaussian, render


def _scene(side: int = 200, seed: int = 0) -> np.ndarray:
    """A textured, colourful linear scene (smoothed noise: band-limited, as a lens gives)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    texture = gaussian_filter(rng.uniform(0, 1, (side, side, 3)), (2, 2, 0))
    return np.clip((texture - texture.min()) / np.ptp(texture), 0, 1) * 0.6 + 0.05


def _write(burst_frames, folder, changes=None):
    paths = []
    for i, frame in enumerate(burst_frames):
        path = folder / f"f{i}.dng"
        args = dict(black_level=BLACK, white_level=WHITE, as_shot_neutral=1 / frame.white_balance[:3],
                    exposure_time=frame.exposure_time, iso=frame.iso, make="SONY", model="ILCE-7SM2")
        args.update((changes or {}).get(i, {}))
        mosaic = args.pop("mosaic", frame.mosaic)
        write_cfa_dng(path, mosaic, args.pop("pattern", frame.cfa_pattern), **args)
        paths.append(path)
    return paths




@pytest.mark.parametrize("shift", [(3.25, -1.5), (-7.7, 12.3), (0.4, 0.0), (25.5, -30.25)])
def test_known_shifts_are_recovered_within_a_quarter_pixel(shift):
    scene = _scene(360)[..., 1:2].repeat(3, axis=-1)
    reference = render(scene, (256, 256), (0, 0), 0)[..., 0].astype(np.float32)
    other = render(scene, (256, 256), shift, 0)[..., 0].astype(np.float32)
    rng = np.random.default_rng(1)
    reference += rng.normal(0, 0.01, reference.shape).astype(np.float32)
    other += rng.normal(0, 0.01, other.shape).astype(np.float32)
    found, sharpness = burst.align(reference, other)
    # the tiles' content moved by -shift in the other frame: that is where each tile lies in it;
    # tiles whose content left the frame have nothing to match (the merge gives them weight 0)
    margin = [int(np.ceil(abs(s) / burst.TILE)) + 1 for s in shift]
    inner = found[margin[0] : found.shape[0] - margin[0], margin[1] : found.shape[1] - margin[1]].reshape(-1, 2)
    assert np.all(np.abs(np.median(inner, axis=0) + shift) < 0.25), np.median(inner, axis=0)
    assert np.percentile(np.abs(inner + shift), 90) < 0.25
    motion = burst.fit_motion(found, sharpness)  # one motion for the frame: the same shift everywhere
    np.testing.assert_allclose(motion[:, 2], -np.asarray(shift), atol=0.25)
    np.testing.assert_allclose(motion[:, :2], 0, atol=0.002)


def test_a_frames_shake_and_turn_are_recovered_where_its_tiles_are_mostly_noise():
    """A turn of 0.3 degrees and a shift, seen through noise of 1.6 times the texture's contrast (a
    x300 frame's): one affine motion fitted to a thousand noisy tile shifts is within a quarter
    pixel everywhere."""
    scene = _scene(560, seed=3)[..., 1:2].repeat(3, axis=-1)
    shift, turn = (2.6, -1.3), 0.005
    reference = render(scene, (512, 512), (0, 0), 0)[..., 0]
    other = render(scene, (512, 512), shift, turn)[..., 0]
    rng = np.random.default_rng(2)
    noisy = [(image + rng.normal(0, 0.1, image.shape)).astype(np.float32) for image in (reference, other)]
    motion = burst.fit_motion(*burst.align(*noisy))
    dy, dx = burst.motion_field(motion, (512, 512))
    y, x = np.mgrid[0:512, 0:512] - 255.5  # where each reference pixel lies in the other frame
    true_dy = y * np.cos(turn) + x * np.sin(turn) - y - shift[0]  # the inverse of render's turn and shift
    true_dx = -y * np.sin(turn) + x * np.cos(turn) - x - shift[1]
    assert np.abs(dy - true_dy).max() < 0.25 and np.abs(dx - true_dx).max() < 0.25


def test_a_still_frame_too_noisy_for_its_tiles_is_not_moved_by_a_fitted_scaling():
    """Two frames of a still scene at a x300 frame's noise: the tiles' shifts are mostly noise, and
    a full affine fit to them scaled and sheared the frame by 0.6 pixel at its edges on average
    (up to 1); the rigid motion a hand makes (a shift and a turn) has three parameters to fit."""
    largest = []
    for seed in range(8):
        scene = _scene(304, seed=seed)[..., 1:2].repeat(3, axis=-1)
        clean = render(scene, (256, 256), (0, 0), 0)[..., 0]
        rng = np.random.default_rng(seed + 10)
        reference, other = [(clean + rng.normal(0, 0.15, clean.shape)).astype(np.float32) for _ in range(2)]
        dy, dx = burst.motion_field(burst.fit_motion(*burst.align(reference, other)), (256, 256))
        largest.append(np.hypot(dy, dx).max())
    assert np.mean(largest) < 0.45


def test_a_merged_burst_has_less_noise_and_a_moving_object_leaves_no_trail():
    made = make_burst(_scene(220), (192, 192), 8, ratio=100, noise=poisson_gaussian(), seed=2, shake=5)
    reference = made.frames[0]
    law = noise_law.noise_law(reference)
    merged, report = burst.merge(reference, made.frames[1:], law)
    truth = cfa.BAYER.pack_rgb(made.truth / reference.white_balance[:3]) / 100
    single, combined = raw.raw_signal(reference), raw.raw_signal(merged)
    plain = np.mean([raw.raw_signal(f) for f in made.frames], axis=0)  # unaligned, not robust
    obj, trail = made.object_mask[::2, ::2], made.trail_mask[::2, ::2]
    assert psnr(combined * 100, truth * 100) > psnr(single * 100, truth * 100) + 6  # 8 frames: up to 9 dB
    assert psnr(combined * 100, truth * 100, trail) > psnr(single * 100, truth * 100, trail) + 3
    assert psnr(plain * 100, truth * 100, trail) < psnr(combined * 100, truth * 100, trail) - 2  # a ghost avoided
    # the object keeps at least the single frame's quality (the frames where the disc still covers
    # a pixel of it hold the same content there, and count)
    assert psnr(combined * 100, truth * 100, obj) > psnr(single * 100, truth * 100, obj) - 0.5
    # the disc, its trail and the 15x15 test's margin around them (one frame counts there) are a
    # large share of this small frame
    assert 4 < report.effective_frames <= 8 and len(report.shifts) == 7
    still = make_burst(_scene(220), (192, 192), 8, ratio=100, noise=poisson_gaussian(), seed=2, shake=0, rotation=0)
    merged, _ = burst.merge(still.frames[0], still.frames[1:], law)  # frames in the reference's coordinates
    scale = merged.noise_variance_scale[::2, ::2]
    alone, moved = still.only_reference_mask[::2, ::2], (still.object_mask | still.trail_mask)[::2, ::2]
    # told the noise left where it is: all of it where only the reference shows the object (its
    # edge, where a 5x5 mean of differences sees half of it, merges a little), an eighth away from
    # what moved (beyond the 15x15 test's reach)
    away = ~maximum_filter(moved, burst.COARSE_DIFFERENCE_BOX)
    assert scale[alone].mean() > 3 * scale[away].mean() and scale[away].mean() < 0.16


def test_a_faint_moving_object_leaves_no_trail_and_row_noise_is_not_taken_for_motion():
    # x1000 with strong read noise: the red disc differs from the grey behind it by about 2 standard
    # deviations of a 5x5 mean (which let a fifth to a half of it through before), by 6 of a 15x15
    # mean; and each frame's rows have their own offsets, which the noise law does not know
    pixel_noise = poisson_gaussian(gain=1.0, read=6.0)

    def noise(clean, ratio, seed):
        rows = np.random.default_rng(seed + 7).normal(0, 6.0, (clean.shape[0], 1)) / (WHITE - BLACK)
        return pixel_noise(clean, ratio, seed) + rows

    grey = 0.3
    made = make_burst(np.full((220, 220, 3), grey), (192, 192), 8, ratio=1000, noise=noise, seed=4, shake=2)
    law = noise_law.noise_law(made.frames[0])
    merged, _ = burst.merge(made.frames[0], made.frames[1:], law)
    gains = made.frames[0].white_balance[:3]
    truth = cfa.BAYER.pack_rgb(made.truth / gains)
    # how much of the disc came through where only other frames hold it, as a share of its difference
    difference = cfa.BAYER.pack_rgb(np.broadcast_to((np.array(OBJECT_COLOUR) - grey) / gains, (2, 2, 3)))[0, 0]
    trail = made.trail_mask[::2, ::2]
    ghost = np.median((raw.raw_signal(merged) * 1000 - truth)[trail].mean(axis=0) / difference)
    assert ghost < 0.25  # 0.57 before the 15x15 test
    away = ~maximum_filter((made.object_mask | made.trail_mask)[::2, ::2], burst.COARSE_DIFFERENCE_BOX)
    assert merged.noise_variance_scale[::2, ::2][away].mean() < 0.2  # 0.43 before rows were set aside


def test_a_noise_aware_network_is_told_the_noise_left_after_the_merge():
    made = make_burst(_scene(220), (128, 128), 4, ratio=50, noise=poisson_gaussian(), seed=3)
    law = noise_law.noise_law(made.frames[0])
    merged, _ = burst.merge(made.frames[0], made.frames[1:], law)
    alone = model_input.network_input(dataclass_replace(merged, noise_variance_scale=None), 50, white_balance=True,
                              noise=law)
    told = model_input.network_input(merged, 50, white_balance=True, noise=law)
    scale = cfa.pack_mosaic(merged.noise_variance_scale[: 128, : 128], cfa.BAYER)
    np.testing.assert_allclose(told[..., 4:], alone[..., 4:] * np.sqrt(scale), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(told[..., :4], alone[..., :4])


def dataclass_replace(frame, **changes):
    import dataclasses

    return dataclasses.replace(frame, **changes)


def test_a_burst_of_one_is_exactly_the_single_frame_result(tmp_path, tiny_model_file, capsys):
    from sid_keras.runtime.inference import Enhancer

    made = make_burst(_scene(150), (96, 96), 1, ratio=30, noise=poisson_gaussian(), seed=4)
    (path,) = _write(made.frames, tmp_path)
    enhancer = Enhancer(tiny_model_file)
    np.testing.assert_array_equal(enhancer.enhance_burst([path], ratio=30), enhancer.enhance(path, ratio=30))
    assert main(["enhance", "--burst", str(path), "-o", str(tmp_path / "burst.png"), "--model",
                 str(tiny_model_file)]) == 0
    assert main(["enhance", str(path), "-o", str(tmp_path / "single.png"), "--model", str(tiny_model_file)]) == 0
    assert (tmp_path / "burst.png").read_bytes() == (tmp_path / "single.png").read_bytes()
    assert "1 frame: nothing to merge" in capsys.readouterr().out


def test_enhance_burst_writes_one_output_and_the_merged_raw_dng_reads_back(tmp_path, tiny_model_file, capsys):
    made = make_burst(_scene(150), (96, 96), 4, ratio=30, noise=poisson_gaussian(), seed=5)
    paths = _write(made.frames, tmp_path)
    for fmt in ("png", "dng"):
        assert main(["enhance", "--burst", *map(str, paths), "-o", str(tmp_path / f"out.{fmt}"), "--model",
                     str(tiny_model_file)]) == 0
        assert (tmp_path / f"out.{fmt}").is_file()
    assert "f0.dng + 3 frames -> " in capsys.readouterr().out
    assert main(["enhance", "--burst", *map(str, paths), "-o", str(tmp_path / "merged.dng"), "--merge-only"]) == 0
    reference = raw.read_raw(paths[0])
    law = noise_law.noise_law(reference)
    merged, _ = burst.merge(reference, [raw.read_raw(p) for p in paths[1:]], law)
    back = raw.read_raw(tmp_path / "merged.dng")  # LibRaw reads it, four times the sensor's precision
    assert back.white_level == 4 * WHITE and np.all(back.black_level == 4 * BLACK)
    np.testing.assert_allclose((back.mosaic.astype(np.float64) - 4 * BLACK) / 4, merged.mosaic - BLACK, atol=0.13)
    left = merged.noise_variance_scale.mean()
    expected = [(float(np.mean(law.s[cfa.BAYER.channel_colours == c])) * left,
                 float(np.mean(law.o[cfa.BAYER.channel_colours == c])) * left) for c in range(3)]
    np.testing.assert_allclose(back.noise_profile, expected, rtol=1e-6)
    assert back.exposure_time == pytest.approx(reference.exposure_time) and back.iso == reference.iso
    assert tags.camera_identity(tmp_path / "merged.dng")["Model"] == "SONY ILCE-7SM2 merged burst"


def test_frames_that_are_not_one_burst_are_refused_before_any_work(tmp_path, tiny_model_file, capsys):
    made = make_burst(_scene(150), (96, 96), 2, ratio=30, noise=poisson_gaussian(), seed=6)
    cases = {
        "size 96x80 differs": {1: {"mosaic": made.frames[1].mosaic[:, :80]}},
        "CFA pattern": {1: {"pattern": np.array([[2, 1], [1, 0]])}},
        "exposure time": {1: {"exposure_time": 0.01}},
        "iso 6400": {1: {"iso": 6400}},
        "camera NIKON CORPORATION NIKON D850 differs": {1: {"make": "NIKON CORPORATION", "model": "NIKON D850"}},
    }
    for i, (needle, change) in enumerate(cases.items()):
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        paths = _write(made.frames, folder, change)
        out = folder / "out.png"
        one_line_failure(capsys, ["enhance", "--burst", *map(str, paths), "-o", str(out), "--model",
                                  str(tiny_model_file)], f"{paths[1]}: ", needle.split(" differs")[0])
        assert not out.exists()
    bad = tmp_path / "case0" / "f1.dng"
    bad.write_bytes(b"not a raw file")
    one_line_failure(capsys, ["enhance", "--burst", str(tmp_path / "case0" / "f0.dng"), str(bad), "-o",
                              str(tmp_path / "x.png")], str(bad))
    one_line_failure(capsys, ["enhance", str(tmp_path / "case0" / "f0.dng"), "-o", str(tmp_path / "x.dng"),
                              "--merge-only"], "give --burst too")
