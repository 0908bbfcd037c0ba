"""`sid-keras calibrate`: known noise in, the same noise out; bad frames refused in one line."""

import pathlib

import numpy as np
import pytest

from sid_keras.apps.cli import main
from sid_keras.errors import SidError
from sid_keras.runtime.dng import write_cfa_dng
from sid_keras.synth.calibration import calibrate

SHAPE = (128, 192)
BLACK_TILE = np.array([[512.0, 514.0], [513.0, 511.0]])  # an RGGB tile: R, G / G2, B
BLACK = np.array([512.0, 514.0, 511.0, 513.0])  # per colour index: R, G, B, G2
WHITE = 16383
# ISO -> (system gain K, read sigma, Tukey lambda, row sigma)
CAMERA = {400: (0.4, 2.0, -0.1, 0.6), 1600: (1.6, 3.5, 0.05, 1.2), 6400: (6.4, 7.0, -0.2, 2.5)}
DARKS, FLAT_LEVELS = 12, (800.0, 2500.0, 6000.0)


def _tukey(rng, lam, shape):
    u = rng.uniform(1e-9, 1 - 1e-9, shape)
    return np.log(u / (1 - u)) if abs(lam) < 1e-6 else (u**lam - (1 - u) ** lam) / lam


def _frame(rng, signal, iso):
    k, read, lam, row = CAMERA[iso]
    black = np.tile(BLACK_TILE, (SHAPE[0] // 2, SHAPE[1] // 2))
    electrons = rng.poisson(np.maximum(signal, 0) / k) * k if np.any(signal) else 0.0
    values = black + electrons + read * _tukey(rng, lam, SHAPE) + rng.normal(0, row, (SHAPE[0], 1))
    return np.clip(np.rint(values), 0, WHITE).astype(np.uint16)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Dark and flat frames of a camera with known noise, one folder per ISO (no ISO in the files)."""
    root = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(0)
    prnu = 1 + 0.01 * rng.normal(size=SHAPE)  # pixel gains: a fixed pattern the flat pairs cancel
    for iso in CAMERA:
        folder = root / f"iso{iso}"
        for i in range(DARKS):
            write_cfa_dng(folder / f"dark{i:02d}.dng", _frame(rng, np.zeros(SHAPE), iso), np.array([[0, 1], [1, 2]]),
                          black_level=BLACK_TILE.ravel(), white_level=WHITE, exposure_time=0.1)
        for level in FLAT_LEVELS:
            for j in range(2):
                write_cfa_dng(folder / f"flat{level:.0f}_{j}.dng", _frame(rng, level * prnu, iso),
                              np.array([[0, 1], [1, 2]]), black_level=BLACK_TILE.ravel(), white_level=WHITE)
    return root


def test_calibrate_recovers_the_noise_it_was_given(frames):
    calibration, shadings, _ = calibrate([frames])
    assert [r.iso for r in calibration.isos] == sorted(CAMERA)
    for r in calibration.isos:
        k, read, lam, row = CAMERA[r.iso]
        assert r.system_gain == pytest.approx(k, rel=0.05)
        assert r.read_sigma == pytest.approx(read, rel=0.10)
        assert r.read_lambda == pytest.approx(lam, abs=0.05)
        assert r.row_sigma == pytest.approx(row, rel=0.10)
        np.testing.assert_allclose(r.black_level, BLACK, atol=0.3)
        assert r.dark_frames == DARKS and r.flat_levels == len(FLAT_LEVELS)
    profile = calibration.profile
    assert profile.gain == pytest.approx((0.4, 6.4), rel=0.05)
    assert profile.gain_per_iso[0] == pytest.approx(0.001, rel=0.05)  # K = 0.001 x ISO
    assert set(shadings) == set(CAMERA) and shadings[400].shape == SHAPE


def test_cli_writes_a_profile_the_synthesiser_reads(frames, tmp_path, capsys, photo_folder):
    from sid_keras.runtime.noise import load_profile

    out = tmp_path / "mycamera.toml"
    assert main(["calibrate", str(frames), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "K (DN/e-)" in printed and "1600" in printed
    profile = load_profile(str(out))
    assert profile.name == "mycamera" and profile.gain[0] == pytest.approx(0.4, rel=0.05)
    assert (tmp_path / "mycamera.dark_shading.npz").exists()
    assert main(["calibrate", str(frames), "-o", str(out)]) == 1  # an existing profile is kept
    from sid_keras.runtime.inference import Enhancer
    from sid_keras.runtime.noise import load_dark_shading
    from sid_keras.runtime.raw import read_raw

    maps = load_dark_shading(out)
    assert sorted(maps) == sorted(CAMERA) and maps[400.0].shape == SHAPE
    dark = read_raw(frames / "iso1600" / "dark00.dng")
    prepared = Enhancer(lambda x: x, output="linear", dark_shading=maps).prepare(dark)
    assert "dark shading not subtracted: it names no ISO" in prepared.notices[-1]  # these frames do not say
    import dataclasses

    prepared = Enhancer(lambda x: x, output="linear", dark_shading=maps).prepare(dataclasses.replace(dark, iso=1600))
    np.testing.assert_array_equal(prepared.mosaic, np.clip(np.rint(dark.mosaic - maps[1600.0]), 0, WHITE))
    root = tmp_path / "synth"
    photos = photo_folder
    assert main(["synth", "--photos", str(photos), "--out", str(root), "--limit", "1", "--ratios", "100",
                 "--workers", "1", "--noise-profile", str(out)]) == 0


def _one_line(capsys, args):
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_bad_calibration_frames_are_one_line_each(frames, tmp_path, capsys):
    out = ["-o", str(tmp_path / "p.toml")]
    assert "calibrate at least 2 ISOs" in _one_line(capsys, ["calibrate", str(frames / "iso400"), *out])
    few = tmp_path / "few"
    for iso in (400, 1600):
        (few / f"iso{iso}").mkdir(parents=True)
        for name in ["dark00.dng", "dark01.dng", "flat800_0.dng", "flat800_1.dng", "flat2500_0.dng",
                     "flat2500_1.dng"]:
            (few / f"iso{iso}" / name).write_bytes((frames / f"iso{iso}" / name).read_bytes())
    err = _one_line(capsys, ["calibrate", str(few), *out])
    assert "ISO 400: 2 dark frame(s); shoot at least 4" in err
    noiso = tmp_path / "noiso"
    noiso.mkdir()
    (noiso / "dark.dng").write_bytes((frames / "iso400" / "dark00.dng").read_bytes())
    assert "no ISO in the file" in _one_line(capsys, ["calibrate", str(noiso), *out])
    mixed = tmp_path / "mixed" / "iso400"
    mixed.mkdir(parents=True)
    write_cfa_dng(mixed / "small.dng", np.full((64, 64), 600, np.uint16), np.array([[0, 1], [1, 2]]),
                  black_level=512, white_level=WHITE)
    err = _one_line(capsys, ["calibrate", str(frames), str(tmp_path / "mixed"), *out])
    assert "different cameras" in err
    clipped = tmp_path / "clipped" / "iso400"
    clipped.mkdir(parents=True)
    write_cfa_dng(clipped / "flat.dng", np.full(SHAPE, 16000, np.uint16), np.array([[0, 1], [1, 2]]),
                  black_level=512, white_level=WHITE)
    assert "clipped flat" in _one_line(capsys, ["calibrate", str(tmp_path / "clipped"), *out])
    dark_only = tmp_path / "darkonly"
    for iso in (400, 1600):
        (dark_only / f"iso{iso}").mkdir(parents=True)
        for i in range(4):
            name = f"dark{i:02d}.dng"
            (dark_only / f"iso{iso}" / name).write_bytes((frames / f"iso{iso}" / name).read_bytes())
    assert "no flat frames (or they are too dark" in _one_line(capsys, ["calibrate", str(dark_only), *out])
    with pytest.raises(SidError, match="no such file or folder"):
        calibrate([tmp_path / "nowhere"])


@pytest.mark.slow
def test_finetune_adapts_a_model_to_a_few_pairs_and_a_profile(frames, tmp_path, capsys, monkeypatch, photo_folder):
    """`sid-keras finetune`: a model, the camera's pairs and profile in; a .keras that enhance takes out."""
    import keras

    from sid_keras.data import pipeline
    from sid_keras.models import UNet

    photos = photo_folder
    root = tmp_path / "pairs"
    assert main(["synth", "--photos", str(photos), "--out", str(root), "--split", "mine", "--limit", "2",
                 "--ratios", "100", "--workers", "1"]) == 0
    profile = tmp_path / "cam.toml"
    assert main(["calibrate", str(frames), "-o", str(profile)]) == 0
    keras.utils.set_random_seed(0)
    base = tmp_path / "base.keras"
    UNet(width=4, depth=3).save(base)
    out = tmp_path / "mine.keras"
    args = ["finetune", "--model", str(base), "--data", str(root), "--list", "Sony_mine_list.txt",
            "--photos", str(photos), "--noise-profile", str(profile), "-o", str(out), "--steps", "20",
            "--ratios", "50", "200",
            "--set", "data.patch_size=32", "--set", "data.batch_size=2", "--set", "data.val_max_side=64",
            "--set", "data.dead_leaves=1"]
    synthesised = []  # what the pairs made from photos take from the camera's own pairs
    make_source = pipeline.synthetic_source

    def synthetic_source(photos, **kwargs):
        synthesised.extend([list(kwargs["ratio_range"]), len(kwargs["colour_responses"]),
                            sorted("dead_leaves" in pathlib.Path(p).name for p in photos)])
        return make_source(photos, **kwargs)

    monkeypatch.setattr(pipeline, "synthetic_source", synthetic_source)
    assert main(args) == 0 and out.exists()
    assert "fine-tuned model" in capsys.readouterr().out
    # the ratios asked for; the one colour response of the Sony pairs; the photos and a dead-leaves scene
    assert synthesised == [[50.0, 200.0], 1, [False, False, False, True]]
    assert "--ratios 50 2: give LOW HIGH" in _one_line(capsys, [*args, "--ratios", "50", "2"])
    assert "already holds mine.keras" in _one_line(capsys, args)  # never replaces a model the user has
    run = tmp_path / "mine.run"  # a training run: locked, checkpointed, resumed
    epochs = (run / "log.csv").read_text().strip().splitlines()
    assert (run / "checkpoint").exists() and len(epochs) == 1 + 1  # 20 steps: one epoch of 50
    out.unlink()  # as if killed after its last epoch: the same command finishes the job, trains no more
    assert main(args) == 0 and out.exists()
    assert (run / "log.csv").read_text().strip().splitlines() == epochs
    dark = sorted((root / "Sony" / "short").iterdir())[0]
    assert main(["enhance", str(dark), "-o", str(tmp_path / "e.png"), "--model", str(out)]) == 0
    assert "give your camera's pairs" in _one_line(capsys, ["finetune", "-o", str(tmp_path / "x.keras")])
