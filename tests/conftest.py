"""Shared fixtures: DNG files and photos written by the tests, and the real raw file in tests/data
(its source and licence in tests/data/README.md). Nothing here needs ../shared."""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Decode caches of the tests stay out of the user's cache folder, and go when the tests end.
TEST_CACHE = tempfile.mkdtemp(prefix="sid_keras_test_cache_")
os.environ.setdefault("SID_KERAS_CACHE", TEST_CACHE)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(TEST_CACHE, ignore_errors=True)

TEST_DATA = pathlib.Path(__file__).resolve().parent / "data"
# A real Bayer DNG: Blackmagic Pocket Cinema Camera 4K, 12-bit lossless JPEG, CC0 (tests/data/README.md).
BLACKMAGIC_DNG = TEST_DATA / "blackmagic_pocket4k.dng"

BAYER_PHASES = {
    "RGGB": [[0, 1], [3, 2]],
    "BGGR": [[2, 3], [1, 0]],
    "GRBG": [[1, 0], [2, 3]],
    "GBRG": [[3, 2], [0, 1]],
}


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory) -> pathlib.Path:
    """Three clean photos as BSDS ships them (481x321 and 321x481, PNG and JPEG), cut from the
    package's public-domain astronaut portrait: what `synth`, `train` and `finetune` read."""
    from PIL import Image

    from sid_keras.apps.demo import DEMO_PHOTO

    portrait = Image.open(DEMO_PHOTO).convert("RGB")
    folder = tmp_path_factory.mktemp("photos")
    portrait.crop((0, 0, 481, 321)).save(folder / "a.png")
    portrait.crop((31, 191, 512, 512)).transpose(Image.Transpose.ROTATE_90).save(folder / "b.png")
    portrait.crop((20, 100, 501, 421)).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "c.jpg", quality=92)
    return folder


@pytest.fixture(scope="session")
def film_scan_dng(tmp_path_factory) -> pathlib.Path:
    """A raw file without a colour filter array (a film scanner's or a linear DNG's): LinearRaw."""
    from sid_keras.runtime.dng import write_linear_dng

    rng = np.random.default_rng(3)
    path = tmp_path_factory.mktemp("scan") / "film_scan.dng"
    write_linear_dng(path, rng.integers(0, 65536, (64, 96, 3), dtype=np.uint16), white_balance=(1, 1, 1),
                     color_matrix=None, make="Nikon", model="LS-40 ED")
    return path


@pytest.fixture(scope="session")
def mini_dataset(tmp_path_factory, photo_folder):
    """A SID-layout dataset of three training and one validation scene, from the photos."""
    from sid_keras.apps.cli import main

    root = tmp_path_factory.mktemp("mini")
    assert main(["synth", "--photos", str(photo_folder), "--out", str(root), "--split", "train", "--limit", "3",
                 "--workers", "1"]) == 0
    assert main(["synth", "--photos", str(photo_folder), "--out", str(root), "--split", "val", "--limit", "1",
                 "--workers", "1", "--seed", "1"]) == 0
    return root


@pytest.fixture
def write_dng(tmp_path):
    """Write a random CFA DNG and return (path, mosaic)."""
    from sid_keras.runtime.dng import write_cfa_dng

    def make(name="frame.dng", pattern=BAYER_PHASES["RGGB"], shape=(64, 96), black=512,
             white=16383, seed=0, **kwargs):
        rng = np.random.default_rng(seed)
        mosaic = rng.integers(black, white + 1, shape).astype(np.uint16)
        path = tmp_path / name
        write_cfa_dng(path, mosaic, np.asarray(pattern), black_level=black, white_level=white,
                      **kwargs)
        return path, mosaic

    return make


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory):
    """A 4-wide, 3-level U-Net saved as a .keras file: what the CLI tests enhance with."""
    import keras

    from sid_keras.models import UNet

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    UNet(width=4, depth=3).save(path)
    return path


def one_line_failure(capsys, command, *needles) -> str:
    """Run a CLI command that must fail: exit 1, one or two lines on stderr holding each of
    ``needles``, no traceback."""
    from sid_keras.apps.cli import main

    assert main(command) == 1
    err = capsys.readouterr().err.strip()
    assert 1 <= len(err.splitlines()) <= 2 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err
