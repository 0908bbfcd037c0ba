"""The enhanced DNG (`enhance -o out.dng`): lossless, named like its source, and developed by
LibRaw, RawTherapee and darktable with the colours of the package's own PNG."""

import shutil
import subprocess

import numpy as np
import pytest
import rawpy
import tifffile

from sid_keras.runtime import render
from sid_keras.runtime.dng import linear_dng_pixels, write_linear_dng
from sid_keras.synth.synthetic import srgb_to_linear

# rawpy's colour_matrix of a Sony A7S II file (camera -> sRGB), the matrix write_linear_dng gets.
CAMERA_TO_SRGB = np.array([[1.9712, -0.6789, -0.2923, 0], [-0.2910, 1.7484, -0.4574, 0],
                           [0.0205, -0.5380, 1.5175, 0]], np.float32)


def _scene(height: int, width: int) -> np.ndarray:
    """White-balanced linear camera RGB, exposed as a photo is (mid-grey 0.1): coloured patches over
    smooth gradients, away from white (darktable's default tone mapping bends highlights)."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([0.03 + 0.25 * cols / width, 0.03 + 0.2 * rows / height,
                    0.03 + 0.15 * (1 - cols / width)], axis=-1)
    colours = [(0.2, 0.06, 0.05), (0.05, 0.15, 0.05), (0.05, 0.06, 0.18), (0.18, 0.15, 0.04)]
    for i, colour in enumerate(colours):
        rgb[height // 6: height // 2, (2 * i + 1) * width // 10: (2 * i + 2) * width // 10] = colour
    return rgb


def _balance(linear_rgb) -> np.ndarray:
    means = linear_rgb.reshape(-1, 3).mean(axis=0)
    return means / means[1]


def test_the_dng_is_lossless_compressed_and_names_the_source_camera(tmp_path):
    rng = np.random.default_rng(0)
    scene = np.clip(_scene(300, 520) + rng.normal(0, 0.0005, (300, 520, 3)), 0, 1)  # edge tiles, noise
    gains = np.array([2.2, 1.0, 1.6])
    pixels = linear_dng_pixels(scene, gains)
    path = tmp_path / "out.dng"
    write_linear_dng(path, pixels, white_balance=gains, color_matrix=CAMERA_TO_SRGB, orientation=6,
                     crop=(4, 6, 290, 500), unique_model="Blackmagic Pocket Cinema Camera 4K")
    with rawpy.imread(str(path)) as developed:
        sizes = developed.sizes
        stored = developed.postprocess(output_bps=16, gamma=(1, 1), no_auto_bright=True, user_wb=[1, 1, 1, 1],
                                       output_color=rawpy.ColorSpace.raw, user_black=0, user_sat=65535,
                                       user_flip=0)
    np.testing.assert_array_equal(stored, pixels)  # lossless, as LibRaw decodes it
    assert (sizes.crop_top_margin, sizes.crop_left_margin, sizes.crop_height, sizes.crop_width) == (4, 6, 290, 500)
    assert sizes.flip == 6
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        assert tags["Compression"].value == 7  # lossless JPEG
        assert (tags["Make"].value, tags["Model"].value) == ("Blackmagic", "Pocket Cinema Camera 4K")
        assert tags["UniqueCameraModel"].value == "Blackmagic Pocket Cinema Camera 4K"
        assert tags["Software"].value.startswith("sid-keras")
    assert path.stat().st_size < 0.6 * pixels.nbytes


def test_a_pixel_difference_of_every_size_survives_the_lossless_code():
    import imagecodecs  # an independent decoder (liblj92), installed with the dev extra

    from sid_keras.runtime.dng import _lossless_jpeg

    rng = np.random.default_rng(1)
    for block in (rng.integers(0, 65536, (64, 64, 3)), np.full((8, 8, 3), 65535), np.zeros((8, 8, 3)),
                  np.tile([[0], [65535]], (4, 8)).reshape(8, 4, 2)):  # every category, 32768 steps too
        block = block.astype(np.uint16)
        decoded = imagecodecs.ljpeg_decode(_lossless_jpeg(block))
        np.testing.assert_array_equal(decoded.reshape(block.shape), block)


DEVELOPERS = {
    "rawtherapee-cli": lambda dng, out: ["rawtherapee-cli", "-o", str(out), "-t", "-b16", "-d", "-Y", "-c", str(dng)],
    "darktable-cli": lambda dng, out: ["darktable-cli", str(dng), str(out), "--core", "--configdir",
                                       str(out.parent / "darktable"), "--library", ":memory:"],
}


@pytest.mark.parametrize("gains", [(3.0, 1.0, 1.1), (1.2, 1.0, 3.5)], ids=["reddish light", "tungsten"])
def test_raw_developers_see_the_colours_of_the_png(tmp_path, gains):
    """RawTherapee whitened the wrong colour (a 56% cast) when ColorMatrix1 did not map the white
    to AsShotNeutral; LibRaw, which normalises the matrix, never noticed."""
    installed = [name for name in DEVELOPERS if shutil.which(name)]
    if not installed:
        pytest.skip("neither rawtherapee-cli nor darktable-cli is installed (apt-get install rawtherapee darktable)")
    scene = _scene(256, 384)  # RawTherapee refuses smaller files
    png = render.render(scene, CAMERA_TO_SRGB)  # what enhance writes as out.png
    gains = np.asarray(gains) / min(gains)
    dng = tmp_path / "out.dng"
    write_linear_dng(dng, linear_dng_pixels(scene, gains), white_balance=gains, color_matrix=CAMERA_TO_SRGB)
    with rawpy.imread(str(dng)) as developed:
        libraw = developed.postprocess(use_camera_wb=True, no_auto_bright=True, output_bps=16) / 65535
    assert 10 * np.log10(1 / np.mean((libraw - png) ** 2)) >= 50
    expected = _balance(srgb_to_linear(png))
    for name in installed:
        out = tmp_path / f"{name}.tif"
        subprocess.run(DEVELOPERS[name](dng, out), capture_output=True, timeout=300, check=True)
        developed = tifffile.imread(out)[..., :3]
        scale = np.iinfo(developed.dtype).max if developed.dtype.kind == "u" else 1.0
        balance = _balance(srgb_to_linear(developed.astype(np.float64) / scale))
        np.testing.assert_allclose(balance, expected, rtol=0.10, err_msg=name)
