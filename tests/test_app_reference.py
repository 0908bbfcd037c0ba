"""export/app_reference.py, what an app ports, gives the picture `sid-keras enhance` gives."""

import importlib.util
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from sid_keras.runtime import raw
from sid_keras.runtime.dng import write_cfa_dng
from sid_keras.runtime.inference import Enhancer
from sid_keras.runtime.runners import DEFAULT_TFLITE_FILE

REFERENCE = pathlib.Path(__file__).resolve().parents[1] / "export" / "app_reference.py"


def _reference():
    spec = importlib.util.spec_from_file_location("app_reference", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _phone_frame(path, arrangement="BGGR", seed=0):
    """A dark 10-bit phone capture of a smooth colourful scene: a black level per CFA position,
    a NoiseProfile, a neutral point, as Camera2 gives them."""
    rng = np.random.default_rng(seed)
    h, w = 96, 128
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    colour = {"R": 0.3 + 0.2 * x, "G": 0.4 + 0.1 * y, "B": 0.2 + 0.2 * x * y}
    letters = {"RGGB": "RGGB", "GRBG": "GRBG", "GBRG": "GBRG", "BGGR": "BGGR"}[arrangement]
    clean = np.zeros((h, w))
    for (r, c), letter in zip([(0, 0), (0, 1), (1, 0), (1, 1)], letters):
        clean[r::2, c::2] = colour[letter][r::2, c::2] / 40  # x40 too dark
    black, white, noise = np.array([[60, 64], [68, 72]]), 1023, (2e-3, 4e-5)
    noisy = clean + rng.normal(0, 1, clean.shape) * np.sqrt(noise[0] * clean + noise[1])
    mosaic = np.clip(np.rint(black[np.arange(h)[:, None] % 2, np.arange(w)[None] % 2] + noisy * (white - 66)),
                     0, white).astype(np.uint16)
    index = {"R": 0, "G": 1, "B": 2}
    pattern = np.array([[index[letters[0]], index[letters[1]]], [index[letters[2]], index[letters[3]]]])
    pattern[pattern == 1] = [1, 3]  # the second green has its own index, as rawpy reports it
    neutral = np.array([0.5, 1.0, 0.6])
    write_cfa_dng(path, mosaic, pattern, black_level=black.ravel().tolist(), white_level=white,
                  as_shot_neutral=neutral, noise_profile=list(noise),
                  color_matrix=np.array([[0.9, -0.1, -0.05], [-0.3, 1.2, 0.1], [-0.05, 0.2, 0.7]]))
    return {"mosaic": mosaic, "arrangement": arrangement, "black": black, "white": white, "neutral": neutral,
            "noise_profile": [noise] * 3}


@pytest.mark.parametrize("arrangement", ["BGGR", "GRBG"])
def test_the_app_reference_gives_the_package_picture(tmp_path, arrangement):
    reference = _reference()
    capture = _phone_frame(tmp_path / "phone.dng", arrangement)
    frame = raw.read_raw(tmp_path / "phone.dng")
    enhancer = Enhancer(DEFAULT_TFLITE_FILE, tile=1024)  # one tile: the reference runs the whole frame
    ours = enhancer.enhance_frame(frame, "auto")
    theirs = reference.enhance(str(DEFAULT_TFLITE_FILE), **capture, camera_to_srgb=frame.color_matrix[:, :3])
    assert reference.auto_ratio(reference.pack(capture["mosaic"], arrangement, capture["black"], capture["white"]),
                                reference.white_balance_gains(capture["neutral"])) == pytest.approx(ours.ratio,
                                                                                                     rel=0.02)
    top, left, h, w = raw.canonical_window(frame.mosaic.shape, frame.cfa_pattern)
    assert theirs.shape == (h, w, 3)
    difference = np.abs(ours.image[top : top + h, left : left + w] - theirs)
    assert difference.mean() < 1e-3 and difference.max() < 0.02  # measured 6e-4 and 6e-3: float rounding


def test_the_app_reference_curve_is_the_packages():
    from sid_keras.runtime import render

    reference = _reference()
    assert (reference.CURVE_KNEE, reference.CURVE_OFFSET) == (render.CURVE_BREAK, render.CURVE_OFFSET)
    assert (reference.LIBRAW_POWER, reference.LIBRAW_TOE_SLOPE) == (render.LIBRAW_POWER, render.LIBRAW_TOE_SLOPE)


def test_the_app_reference_imports_nothing_of_the_package_or_tensorflow():
    code = (f"import sys; sys.path.insert(0, {str(REFERENCE.parent)!r}); import app_reference; "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('sid_keras', 'tensorflow', 'keras')]")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
