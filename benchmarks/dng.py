"""The enhanced DNG (`enhance -o out.dng`) as raw developers see it, beside the package's PNG.

    python benchmarks/dng.py [--model PATH] [--raw tests/data/blackmagic_pocket4k.dng]

Two frames: the real Blackmagic DNG (--ratio auto) and the demo's dark frame made from the
shipped photo (x250). Each is enhanced to PNG and to DNG; the DNG is developed by LibRaw
(rawpy, camera white balance, no auto-brightening, and no "maximum adjustment": by default
LibRaw takes a frame whose brightest value lies within 75-100% of white as clipped there and
brightens it, the demo frame by 5 levels of 255), `rawtherapee-cli` and `darktable-cli` with
their default profiles. Rows: the DNG's size beside the same pixels stored uncompressed (the
writer before lossless JPEG; target <= 60%), LibRaw's PSNR against the PNG (target >= 50 dB),
and each developer's per-channel colour balance (channel means in linear light, R/G and B/G)
against the PNG's (target within 10%). A developer that is not installed is said so.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = pathlib.Path(__file__).resolve().parents[1]
DEVELOPERS = {
    "rawtherapee-cli": lambda dng, out: ["rawtherapee-cli", "-o", str(out), "-t", "-b16", "-d", "-Y", "-c", str(dng)],
    "darktable-cli": lambda dng, out: ["darktable-cli", str(dng), str(out), "--core", "--configdir",
                                       str(out.parent / "darktable"), "--library", ":memory:"],
}


def linear(image: np.ndarray) -> np.ndarray:
    from sid_keras.synth.synthetic import srgb_to_linear

    scale = np.iinfo(image.dtype).max if image.dtype.kind == "u" else 1.0
    return srgb_to_linear(image[..., :3].astype(np.float64) / scale)


def balance(image: np.ndarray) -> np.ndarray:
    means = linear(image).reshape(-1, 3).mean(axis=0)
    return means[[0, 2]] / means[1]


def crop_like(png: np.ndarray, developed: np.ndarray, crop) -> np.ndarray:
    """The PNG cut to the DNG's default crop when the developer applied it."""
    if crop is not None and developed.shape[:2] == (crop[2], crop[3]):
        top, left, height, width = crop
        return png[top:top + height, left:left + width]
    return png


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help=".keras or .tflite (default: the shipped model)")
    parser.add_argument("--raw", default=str(REPO / "tests" / "data" / "blackmagic_pocket4k.dng"))
    args = parser.parse_args(argv)
    import rawpy
    import tifffile
    from PIL import Image

    from sid_keras.apps import evaluation
    from sid_keras.apps.cli import main as cli
    from sid_keras.apps.demo import make_demo_raw
    from sid_keras.runtime import raw

    work = pathlib.Path(tempfile.mkdtemp(prefix="sid_dng_bench_"))
    frames = {"Blackmagic (real)": pathlib.Path(args.raw), "demo x250": make_demo_raw(work, 250, 0)[0]}
    model = ["--model", args.model] if args.model else []
    print(f"{'frame':<20}{'DNG MB':>8}{'uncompr.':>10}{'ratio':>7}{'LibRaw dB':>11}  developer balance R/G, B/G vs PNG")
    try:
        for name, source in frames.items():
            png_path, dng_path = work / f"{source.stem}_enhanced.png", work / f"{source.stem}_enhanced.dng"
            for out in (png_path, dng_path):
                with contextlib.redirect_stdout(io.StringIO()):
                    if cli(["enhance", str(source), "-o", str(out), "--overwrite", *model]) != 0:
                        return 1
            png = np.asarray(Image.open(png_path))
            pixels = tifffile.imread(dng_path)  # decoding lossless JPEG tiles needs imagecodecs (the dev extra)
            with rawpy.imread(str(dng_path)) as developed:
                libraw = developed.postprocess(use_camera_wb=True, no_auto_bright=True, output_bps=8,
                                               adjust_maximum_thr=0.0)
            psnr = evaluation.psnr(libraw, png, peak=255)
            size, plain = dng_path.stat().st_size / 1e6, pixels.nbytes / 1e6
            cells = []
            crop = raw.read_raw(source).crop
            for developer, command in DEVELOPERS.items():
                if shutil.which(developer) is None:
                    cells.append(f"{developer}: not installed")
                    continue
                out = work / f"{source.stem}.{developer}.tif"
                subprocess.run(command(dng_path, out), capture_output=True, check=True, timeout=600)
                image = tifffile.imread(out)
                error = balance(image) / balance(crop_like(png, image, crop)) - 1
                cells.append(f"{developer}: {error[0]:+.1%}, {error[1]:+.1%}")
            print(f"{name:<20}{size:>8.1f}{plain:>10.1f}{size / plain:>7.0%}{psnr:>11.2f}  {'; '.join(cells)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"targets: ratio <= 60%, LibRaw >= 50 dB, balance within 10%; {sys.platform}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
