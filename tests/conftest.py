"""Shared fixtures: DNG files written by the tests, and the real files in ../shared/data."""

from __future__ import annotations

import os
import pathlib
import tempfile

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Decode caches of the tests stay out of the user's cache folder.
os.environ.setdefault("SID_KERAS_CACHE", tempfile.mkdtemp(prefix="sid_keras_test_cache_"))

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"

BAYER_PHASES = {
    "RGGB": [[0, 1], [3, 2]],
    "BGGR": [[2, 3], [1, 0]],
    "GRBG": [[1, 0], [2, 3]],
    "GBRG": [[3, 2], [0, 1]],
}


def shared_file(*parts: str) -> pathlib.Path:
    """A file from ../shared/data, or a clean skip when the folder is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


@pytest.fixture
def write_dng(tmp_path):
    """Write a random CFA DNG and return (path, mosaic)."""
    from sid_keras.dng import write_cfa_dng

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
    keras = pytest.importorskip("keras")
    from sid_keras.models import UNet

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    UNet(width=4, depth=3).save(path)
    return path


def one_line_failure(capsys, command, *needles) -> str:
    """Run a CLI command that must fail: exit 1, one or two lines on stderr holding each of
    ``needles``, no traceback."""
    from sid_keras.cli import main

    assert main(command) == 1
    err = capsys.readouterr().err.strip()
    assert 1 <= len(err.splitlines()) <= 2 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err
