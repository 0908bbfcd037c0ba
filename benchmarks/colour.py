"""Colour from the file's metadata, measured on real-size frames.

    python benchmarks/colour.py [--model PATH] [--raw tests/data/blackmagic_pocket4k.dng]

Rows:
- sensor invariance: the real frame re-expressed as sensors with other red/blue sensitivities
  (raw R and B scaled, AsShotNeutral and ColorMatrix rows scaled to match, so LibRaw develops
  every version identically), darkened x100 with read noise, enhanced: PSNR of each version's
  output against the first version's (target >= 35 dB);
- colour against LibRaw at ratio 1: channel-mean colour of the model's output and of LibRaw's
  development of the same file, for the file as it is (target within 3%) and with its white
  balance set to 1:1:1 and its colour matrix removed, as a camera without metadata
  (target within 15%); and the energy of an 8-pixel periodic pattern in the output beside
  that of LibRaw's development (the packing's block pattern shows as an excess).
LibRaw's own development is the reference in every row, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SENSITIVITIES = [(1.0, 1.0), (0.5, 1.0), (1.0, 0.6), (0.7, 1.4)]
DARKEN = 100
READ_NOISE_DN = 3.0


def write_version(path, frame, red: float, blue: float, *, darken: float = 1.0, neutral=None, matrix=True,
                  seed: int = 0):
    """The frame as a sensor whose red and blue respond ``red`` and ``blue`` times as much."""
    from sid_keras.runtime import cfa
    from sid_keras.runtime.dng import write_cfa_dng, xyz_to_camera

    top, left, h, w = cfa.canonical_window(frame.mosaic.shape, frame.cfa_pattern, frame.path)
    mosaic = frame.mosaic[top : top + h, left : left + w].astype(np.float64)
    black = float(frame.black_level[0])
    factor = np.ones_like(mosaic)
    factor[0::2, 0::2], factor[1::2, 1::2] = red, blue
    signal = (mosaic - black) * factor / darken
    if darken > 1:
        signal += np.random.default_rng(seed).normal(0, READ_NOISE_DN, signal.shape)
    values = np.clip(np.rint(signal + black), 0, frame.white_level).astype(np.uint16)
    gains = np.asarray(frame.white_balance, np.float64)
    as_shot = neutral if neutral is not None else (1 / gains[0] * red, 1.0, 1 / gains[2] * blue)
    cam = xyz_to_camera(frame.color_matrix) * np.array([[red], [1.0], [blue]]) if matrix else None
    write_cfa_dng(path, values, np.array([[0, 1], [1, 2]]), black_level=black, white_level=int(frame.white_level),
                  color_matrix=cam, as_shot_neutral=as_shot, exposure_time=0.01)


def mean_colour_error(image: np.ndarray, reference: np.ndarray) -> float:
    """Largest relative difference of the R/G and B/G ratios of the channel means."""
    a, b = image.reshape(-1, 3).mean(0), reference.reshape(-1, 3).mean(0)
    return float(max(abs((a[0] / a[1]) / (b[0] / b[1]) - 1), abs((a[2] / a[1]) / (b[2] / b[1]) - 1)))


def periodic_energy(image: np.ndarray, period: int = 8) -> float:
    """Energy of the luminance pattern that repeats every ``period`` pixels (the packing's block
    pattern): the variance of the means of the period x period pixel phases."""
    luma = image.mean(axis=2)
    h, w = luma.shape[0] // period * period, luma.shape[1] // period * period
    phases = luma[:h, :w].reshape(h // period, period, w // period, period).mean(axis=(0, 2))
    return float(phases.var())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help=".keras or .tflite (default: the shipped model)")
    parser.add_argument("--raw", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data",
                                                      "blackmagic_pocket4k.dng"))
    args = parser.parse_args(argv)
    from sid_keras.apps.evaluation import psnr_8bit
    from sid_keras.runtime import raw
    from sid_keras.runtime.inference import Enhancer

    frame = raw.read_raw(args.raw)
    enhancer = Enhancer(args.model)
    print(f"# {' '.join(sys.argv)}\n# {platform.node()}, {platform.processor() or platform.machine()}")
    print(f"# model: {args.model or 'shipped'} ({enhancer.output}); frame {args.raw} {frame.mosaic.shape}")
    with tempfile.TemporaryDirectory() as tmp:
        outputs = []
        for i, (red, blue) in enumerate(SENSITIVITIES):
            path = os.path.join(tmp, f"v{i}.dng")
            write_version(path, frame, red, blue, darken=DARKEN)
            outputs.append(enhancer.enhance(path, ratio=DARKEN))
        print(f"\n{'sensor (R, B sensitivity)':<28}{'PSNR vs first':>14}")
        for (red, blue), out in zip(SENSITIVITIES[1:], outputs[1:]):
            print(f"{f'x{red:g}, x{blue:g}':<28}{psnr_8bit(outputs[0], out):>11.2f} dB")
        print(f"\n{'file at ratio 1':<28}{'colour vs LibRaw':>17}{'PSNR vs LibRaw':>16}{'SSIM':>7}"
              f"{'8-px energy (LibRaw)':>24}")
        from sid_keras.apps.evaluation import ssim_8bit

        cases = [("as shot", None, True), ("1:1:1 neutral, no matrix", (1.0, 1.0, 1.0), False)]
        for label, neutral, matrix in cases:
            path = os.path.join(tmp, "meta.dng")
            write_version(path, frame, 1.0, 1.0, neutral=neutral, matrix=matrix)
            reference = raw.render_reference(path).astype(np.float32) / 65535
            version = raw.read_raw(path)
            reference = raw.crop_reference(reference, version)
            result = enhancer.enhance_frame(version, ratio=1)
            image = enhancer.to_srgb(raw.crop_reference(result.output, version), version)
            print(f"{label:<28}{100 * mean_colour_error(image, reference):>15.1f} %"
                  f"{psnr_8bit(reference, image):>13.2f} dB{ssim_8bit(reference, image):>7.3f}"
                  f"{periodic_energy(image):>13.2e} ({periodic_energy(reference):.2e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
