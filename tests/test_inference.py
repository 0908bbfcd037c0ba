import dataclasses

import keras
import numpy as np
import pytest
from conftest import BAYER_PHASES

from sid_keras.apps.batch import enhance_files, expand_inputs, plan_outputs
from sid_keras.apps.evaluation import (
    PairResult,
    format_table,
    psnr_8bit,
    ssim_8bit,
    summarize,
)
from sid_keras.errors import SidError
from sid_keras.runtime import model_input, raw
from sid_keras.runtime.inference import Enhancer, auto_ratio
from sid_keras.runtime.runners import DEFAULT_TFLITE_FILE
from sid_keras.runtime.tiling import run_tiled


@pytest.fixture(scope="module")
def tiny_model():
    from sid_keras.models import UNet

    keras.utils.set_random_seed(3)
    return UNet(width=4, depth=3)


def test_tiled_output_matches_whole_frame(tiny_model):
    rng = np.random.default_rng(0)
    packed = rng.uniform(0, 1, (120, 104, 4)).astype("float32")
    enhancer = Enhancer(tiny_model, tile=48, overlap=12)
    whole = np.asarray(tiny_model(packed[None]))[0]
    tiled = run_tiled(enhancer.predict, packed, 2, tile=48, overlap=12)
    assert tiled.shape == whole.shape == (240, 208, 3)
    target = np.clip(whole + rng.normal(0, 0.05, whole.shape), 0, 1)
    assert abs(psnr_8bit(target, tiled) - psnr_8bit(target, whole)) < 0.05
    assert psnr_8bit(whole, tiled) > 40


def test_a_small_tile_gets_enough_context_by_default(tiny_model):
    """1/32 of a 32-pixel tile is 1 pixel of context: seams. The default gives small tiles more."""
    rng = np.random.default_rng(1)
    packed = rng.uniform(0, 1, (96, 128, 4)).astype("float32")
    whole = np.asarray(tiny_model(packed[None]))[0]
    enhancer = Enhancer(tiny_model, tile=32)
    tiled = run_tiled(enhancer.predict, packed, 2, tile=32, overlap=enhancer.overlap)
    one_pixel = run_tiled(enhancer.predict, packed, 2, tile=32, overlap=1)
    assert psnr_8bit(whole, tiled) > psnr_8bit(whole, one_pixel) + 3
    assert Enhancer(tiny_model).overlap == 16 and Enhancer(tiny_model, tile=256).overlap == 8


@pytest.mark.parametrize("size, tile, step, align", [(2064, 256, 240, 1), (1088, 256, 240, 2), (300, 256, 224, 1),
                                                     (256, 256, 240, 1), (1000, 64, 40, 3)])
def test_tiles_are_as_few_as_the_overlap_allows_and_spread_evenly(size, tile, step, align):
    from sid_keras.runtime.tiling import _starts

    starts = _starts(size, tile, step, align)
    gaps = np.diff(starts)
    assert starts[0] == 0 and starts[-1] == max(size - tile, 0)
    assert len(starts) == (1 if size <= tile else -(-(size - tile) // step) + 1)  # no more tiles than needed
    assert all(g <= step + align - 1 for g in gaps) and all(s % align == 0 for s in starts[:-1])
    assert len(gaps) == 0 or gaps.max() - gaps.min() <= align  # every seam about the same overlap


@pytest.mark.parametrize("size, tile, overlap, multiple", [(1080, 512, 16, 16), (2048, 512, 16, 16), (300, 512, 16, 16),
                                                           (1000, 64, 4, 4), (513, 512, 16, 1)])
def test_fitted_tiles_cover_the_frame_with_as_few_tiles_and_little_more(size, tile, overlap, multiple):
    from sid_keras.runtime.tiling import _starts, fitted_side

    side = fitted_side(size, tile, overlap, multiple)
    count = len(_starts(size, side, side - 2 * overlap))
    assert count == len(_starts(size, min(tile, size), tile - 2 * overlap))  # as few tiles as `tile` needs
    assert side <= tile and (side == size or side % multiple == 0)
    assert count * side - 2 * overlap * (count - 1) < size + count * multiple  # the least such side
    assert fitted_side(1080, 512, 16, 16) == 384  # 3 x 384 rows where 3 x 512 ran 42% more than the 1080


@pytest.mark.parametrize("phase", ["GRBG", "BGGR"])
def test_odd_sizes_are_padded_back_to_the_full_visible_frame(phase, write_dng, tiny_model):
    path, _ = write_dng(pattern=BAYER_PHASES[phase], shape=(67, 93), black=512, white=16383)
    out = Enhancer(tiny_model, tile=32, overlap=4).enhance(path, ratio=4)
    assert out.shape == (67, 93, 3) and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 1


@pytest.mark.parametrize("flip", [3, 5, 6])
def test_orientation_turns_the_picture_as_libraw_does(tmp_path, flip):
    """A bright sensor corner ends up in the corner where LibRaw's development puts it (a turn
    the wrong way round keeps the shape and lands it elsewhere)."""
    import rawpy

    from sid_keras.runtime.dng import write_cfa_dng

    mosaic = np.full((40, 64), 600, np.uint16)
    mosaic[:10, :16] = 12000  # the sensor's top-left corner, bright
    path = tmp_path / f"flip{flip}.dng"
    write_cfa_dng(path, mosaic, np.array([[0, 1], [1, 2]]), black_level=512, white_level=16383, orientation=flip)
    with rawpy.imread(str(path)) as developed:
        libraw = developed.postprocess(use_camera_wb=True, no_auto_bright=True, output_bps=8).mean(axis=-1)
    ours = Enhancer(DEFAULT_TFLITE_FILE).enhance(path, ratio=1).mean(axis=-1)
    assert ours.shape == libraw.shape

    def brightest_corner(image):
        h, w = image.shape
        corners = {(0, 0): image[: h // 4, : w // 4], (0, 1): image[: h // 4, -w // 4 :],
                   (1, 0): image[-h // 4 :, : w // 4], (1, 1): image[-h // 4 :, -w // 4 :]}
        return max(corners, key=lambda k: corners[k].mean())

    assert brightest_corner(ours) == brightest_corner(libraw) != (0, 0)


def test_auto_ratio_brings_a_dark_frame_to_a_sensible_brightness():
    rng = np.random.default_rng(1)
    scene = rng.uniform(0.02, 0.3, (64, 64))  # a well exposed linear scene, mean ~0.16
    dark = scene / 200 * (16383 - 512) + 512 + rng.normal(0, 4, scene.shape)  # x200 darker, read noise
    frame = raw.RawFrame(mosaic=np.clip(np.rint(dark), 0, 16383).astype(np.uint16),
                         cfa_pattern=np.array([[0, 1], [3, 2]]), black_level=np.full(4, 512.0),
                         white_level=16383)
    ratio = auto_ratio(frame, target_mean=float(scene.mean()))
    assert ratio == pytest.approx(200, rel=0.05)
    assert model_input.amplify(model_input.pack(frame), ratio).mean() == pytest.approx(scene.mean(), rel=0.1)
    # a linear model's input is white-balanced: the ratio aims the balanced mean at the target
    tinted = dataclasses.replace(frame, white_balance=np.array([2.0, 1.0, 3.0, 1.0], np.float32))
    balanced = auto_ratio(tinted, target_mean=float(scene.mean()), white_balance=True)
    assert balanced == pytest.approx(200 / 1.75, rel=0.05)  # mean gain of R, G, B, G
    bright = raw.RawFrame(mosaic=np.full((32, 32), 16000, np.uint16), cfa_pattern=np.array([[0, 1], [3, 2]]),
                          black_level=np.zeros(4), white_level=16383)
    assert auto_ratio(bright, 0.13) == 1.0  # never darkens


def test_batch_keeps_going_past_bad_files_and_never_overwrites(tmp_path, write_dng, tiny_model):
    good, _ = write_dng(name="good.dng")
    bad = tmp_path / "bad.dng"
    bad.write_text("not a raw file at all\n" * 100)
    out = tmp_path / "out"
    enhancer = Enhancer(tiny_model)
    fmt, plan = plan_outputs(expand_inputs([str(tmp_path / "*.dng")]), out, None)
    failures = enhance_files(enhancer, plan, fmt=fmt, ratio=10, log=lambda s: None)
    assert [f for f, _ in failures] == [str(bad)]
    assert (out / "good.png").exists() and not (out / "bad.png").exists()
    before = (out / "good.png").read_bytes()
    fmt, plan = plan_outputs([good], out / "good.png", None)
    failures = enhance_files(enhancer, plan, fmt=fmt, ratio=20, log=lambda s: None)
    assert "already exists" in failures[0][1] and (out / "good.png").read_bytes() == before
    assert not enhance_files(enhancer, plan, fmt=fmt, ratio=20, overwrite=True, log=lambda s: None)
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]


def test_an_interrupted_batch_stops_soon_and_leaves_no_partial_file(tmp_path, write_dng, tiny_model):
    sources = [write_dng(name=f"f{i}.dng", shape=(40, 48), seed=i)[0] for i in range(8)]
    out = tmp_path / "out"
    _, plan = plan_outputs(sources, out, None)

    def interrupt(line):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        enhance_files(Enhancer(tiny_model), plan, ratio=10, log=interrupt)
    written = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert 1 <= len(written) <= 3 and not [n for n in written if n.startswith(".tmp-")]


def test_metrics_match_hand_computed_values():
    ref = np.zeros((16, 16, 3), np.float32)
    off_by_one = np.full((16, 16, 3), 1 / 255, np.float32)
    assert psnr_8bit(ref, off_by_one) == pytest.approx(10 * np.log10(255**2 / 1.0))
    half = ref.copy()
    half[:8] = 2 / 255  # mse = (4 * 128 * 3) / 768 = 2
    assert psnr_8bit(ref, half) == pytest.approx(10 * np.log10(255**2 / 2.0))
    img = np.random.default_rng(0).uniform(0, 1, (32, 32, 3))
    assert ssim_8bit(img, img) == pytest.approx(1.0)
    assert ssim_8bit(img, np.clip(img + 0.2, 0, 1)) < 0.99
    results = [PairResult("a", "b", 100.0, {"model": {"psnr": 30, "ssim": 0.8}, "scaled": {"psnr": 20, "ssim": 0.5}}),
               PairResult("c", "b", 300.0, {"model": {"psnr": 26, "ssim": 0.7}, "scaled": {"psnr": 18, "ssim": 0.4}})]
    summary = summarize(results)
    assert summary["overall"]["model"]["psnr"] == 28 and summary["per_ratio"]["x300"]["scaled"]["psnr"] == 18
    table = format_table(summary)
    assert "+10.00 dB" in table and "+8.00 dB" in table


def test_bad_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(SidError, match="no such model"):
        Enhancer(tmp_path / "missing.keras")
    junk = tmp_path / "junk.keras"
    junk.write_text("junk")
    with pytest.raises(SidError, match="not a .keras model"):
        Enhancer(junk)


def test_stress_scores_give_each_cell_and_the_smallest_margin_over_nlm(photo_folder, tmp_path):
    """The benchmarks' one stress scorer: the baseline is computed once and reused as given."""
    from sid_keras.apps.cli import main
    from sid_keras.apps.evaluation import stress_scores
    from sid_keras.data import read_sid_list

    assert main(["synth", "--photos", str(photo_folder), "--out", str(tmp_path / "stress"), "--split", "val",
                 "--stress", "--limit", "1", "--workers", "1"]) == 0
    pairs = read_sid_list("Stress_val_list.txt", tmp_path / "stress")[:3]
    scores, baseline = stress_scores(Enhancer(), pairs, tmp_path / "a")
    assert set(scores["cells"]) == set(baseline) and scores["cells"]
    assert scores["margin"] == pytest.approx(min(scores["cells"][c] - baseline[c] for c in baseline))
    again, same = stress_scores(Enhancer(denoise=0.5), pairs, tmp_path / "b", baseline)
    assert same is baseline and again["cells"] != scores["cells"]
