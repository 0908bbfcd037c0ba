"""Phone DNGs at night: lens shading undone by GainMaps, and the corners told their noise.

    python benchmarks/phone.py [--photos ../shared/data/photos/val] [--limit 8] [--seeds 3] [--model PATH]

A phone's raw frame is darker in its corners (its lens), and its DNG carries OpcodeList2 GainMaps
that brighten them back, and a NoiseProfile of the sensor's values before that. Frames are made
as Camera2 writes them from the validation photos (CBSD68): 10-bit, a black level per CFA
position (60, 64, 68, 72), corners at 1/2.5 of the centre's light with GainMaps x2.5 there, the
noise of a small sensor at a high ISO (variance 2e-3 x + 4e-5 of a signal x in units of white
minus black) in its NoiseProfile, at x20, x50 and x100. Each is enhanced with the shipped model
(or ``--model``) at its ratio with ``--seeds`` noise draws, beside, in the same run, the network's
own output before the package holds a shaded frame's coarse brightness to its raw data's
(:mod:`sid_keras.runtime.shading`) and the unshaded twin (the same scene and noise law, no lens
falloff: the corners' fewer photons are physics, the rest is the package's).

Columns: PSNR / SSIM against the truth (the clean scene as LibRaw renders it); corner brightness
error (the corners' mean linear luminance over the centre's, output against truth, less 1: pooled
over all frames, the bias, target within 3%; then the mean of each frame's own figure and its
spread, which at x100 is mostly the noise of a few thousand corner pixels); the noise level
told in the corners over the true one (both at most the network input's ceiling of 1, target
within 10%), and what it was told before the GainMap's gain counted (the sensor's law at the
brightened level).
"""

from __future__ import annotations

import argparse
import itertools
import os
import pathlib
import sys
import tempfile

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from sid_keras.apps.evaluation import psnr  # noqa: E402 - the package's one PSNR

REPO = pathlib.Path(__file__).resolve().parents[1]
BLACKS, WHITE = (60, 64, 68, 72), 1023
NOISE = (2e-3, 4e-5)  # NoiseProfile (S, O)
CORNER_GAIN = 2.5
RATIOS = (20, 50, 100)
GRID = 9  # GainMap points a side


def falloff(shape) -> tuple[np.ndarray, np.ndarray]:
    """The lens's relative light (1 in the centre, 1/2.5 in the corners) and the squared radius."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    radius2 = ((rows - shape[0] / 2) ** 2 + (cols - shape[1] / 2) ** 2) / ((shape[0] / 2) ** 2 + (shape[1] / 2) ** 2)
    return 1 / (1 + (CORNER_GAIN - 1) * radius2), radius2


def write_phone_dng(path, scene: np.ndarray, ratio: float, shaded: bool, seed: int) -> None:
    """A phone's short exposure of ``scene`` (white-balanced linear camera RGB) as its DNG."""
    from sid_keras.runtime.cfa import BAYER
    from sid_keras.runtime.dng import GainMap, write_cfa_dng

    gains = np.array([2.0, 1.0, 1.7])
    light, _ = falloff(scene.shape[:2])
    clean = BAYER.mosaic_of(scene / gains) * (light if shaded else 1) / ratio
    rng = np.random.default_rng(seed)
    noisy = clean + rng.normal(0, 1, clean.shape) * np.sqrt(NOISE[0] * np.maximum(clean, 0) + NOISE[1])
    black = np.asarray(BLACKS)[(np.arange(clean.shape[0])[:, None] % 2) * 2 + np.arange(clean.shape[1])[None] % 2]
    mosaic = np.clip(np.rint(black + noisy * (WHITE - np.mean(BLACKS))), 0, WHITE).astype(np.uint16)
    maps = []
    if shaded:
        h, w = clean.shape
        grid = np.linspace(0, 1, GRID)
        gy, gx = np.meshgrid(grid * h, grid * w, indexing="ij")
        radius2 = ((gy - h / 2) ** 2 + (gx - w / 2) ** 2) / ((h / 2) ** 2 + (w / 2) ** 2)
        maps = [GainMap(dy, dx, h, w, 2, 2, (1 + (CORNER_GAIN - 1) * radius2).astype(np.float32),
                        (1 / (GRID - 1), 1 / (GRID - 1))) for dy in (0, 1) for dx in (0, 1)]
    write_cfa_dng(path, mosaic, np.array([[0, 1], [1, 2]]), black_level=BLACKS, white_level=WHITE,
                  as_shot_neutral=1 / gains, noise_profile=list(NOISE), gain_maps=maps, make="Google",
                  model="Pixel", exposure_time=0.1 / ratio, iso=3200)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", default=str(REPO.parent / "shared" / "data" / "photos" / "val"))
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--model", default=None)
    parser.add_argument("--seeds", type=int, default=3, help="noise draws per photo and ratio")
    args = parser.parse_args(argv)

    import dataclasses

    from sid_keras.apps.evaluation import ssim_8bit
    from sid_keras.runtime import cfa, model_input, noise_law, raw
    from sid_keras.runtime.inference import Enhanced, Enhancer
    from sid_keras.runtime.render import render
    from sid_keras.synth.synthetic import find_photos, linear_photo, srgb_to_linear

    enhancer = Enhancer(args.model)
    rows: dict = {}
    with tempfile.TemporaryDirectory() as folder:
        for index, photo in enumerate(find_photos(args.photos)[: args.limit]):
            scene = np.clip(linear_photo(photo), 0, None) * 0.8
            scene = scene[: scene.shape[0] // 2 * 2, : scene.shape[1] // 2 * 2]
            truth = render(np.clip(scene, 0, 1).astype(np.float32), np.zeros((3, 4)))  # no matrix: camera RGB
            light, radius2 = falloff(scene.shape[:2])
            corners, centre = radius2 > 0.8, radius2 < 0.1
            truth_luminance = srgb_to_linear(truth).mean(axis=-1)
            for ratio, shaded, seed in itertools.product(RATIOS, (True, False), range(args.seeds)):
                path = pathlib.Path(folder) / f"{index}_{ratio}_{shaded}_{seed}.dng"
                write_phone_dng(path, scene, ratio, shaded, seed=index * 100 + ratio + 7919 * seed)
                frame = raw.read_raw(path)
                # the network's own output, then as enhance writes it (a shaded frame's held to its raw data)
                network = np.empty((*frame.mosaic.shape, 3), np.float32)  # whole 2x2 cells: the packed window
                enhancer.stream(frame, float(ratio), lambda y, r: network.__setitem__(slice(y, y + len(r)), r))
                np.clip(network, 0, 1, out=network)
                shipped = Enhanced(enhancer.anchored(network.copy(), frame, float(ratio)), enhancer.convention,
                                   frame, float(ratio), "given")
                outputs = {"": shipped.image}
                if shaded:
                    outputs["network"] = dataclasses.replace(shipped, output=network).image
                row = {}
                for name, image in outputs.items():
                    luminance = srgb_to_linear(image).mean(axis=-1)
                    row |= {name + "psnr": psnr(truth, image), name + "ssim": ssim_8bit(truth, image),
                            name + "corner": luminance[corners].mean(), name + "centre": luminance[centre].mean()}
                row |= {"truth corner": truth_luminance[corners].mean(), "truth centre": truth_luminance[centre].mean()}
                if shaded:
                    law = noise_law.noise_law(frame)
                    told = model_input.network_input(frame, ratio, white_balance=True, noise=law)[..., 4:]
                    before = model_input.network_input(dataclasses.replace(frame, lens_gain=None), ratio,
                                                       white_balance=True, noise=law)[..., 4:]
                    gain = cfa.pack_mosaic(frame.lens_gain, cfa.BAYER)
                    clean = cfa.BAYER.pack_rgb(scene / np.array([2.0, 1.0, 1.7])) / ratio
                    wb = raw.channel_gains(frame)
                    true = ratio * wb * gain * np.sqrt(NOISE[0] * clean * cfa.pack_mosaic(light, cfa.BAYER)[..., :1]
                                                       + NOISE[1])
                    true = np.minimum(true, model_input.NOISE_SIGMA_CLIP)  # as much as a network can be told
                    where = cfa.pack_mosaic(corners.astype(np.float32), cfa.BAYER)[..., 0] > 0.5
                    row["told"] = float(told[where].mean() / true[where].mean())
                    row["before"] = float(before[where].mean() / true[where].mean())
                rows.setdefault((ratio, shaded), []).append(row)
            print(f"{pathlib.Path(photo).stem}: done", file=sys.stderr, flush=True)
    print("| ratio | frame | PSNR / SSIM | corner brightness error: pooled (per frame, sd) "
          "| corner noise told / true (before) |")
    print("|---|---|---:|---:|---:|")
    for (ratio, shaded), found in rows.items():
        for name in ("", "network") if shaded else ("",):
            print(f"| x{ratio} | {label(shaded, name)} | {mean(found, name + 'psnr'):.2f} / "
                  f"{mean(found, name + 'ssim'):.3f} | {brightness(found, name)} | "
                  f"{noise_told(found) if shaded and not name else ''} |")
    return 0


def mean(rows: list[dict], key: str) -> float:
    return float(np.mean([r[key] for r in rows]))


def label(shaded: bool, name: str) -> str:
    if not shaded:
        return "unshaded twin"
    return "shaded, GainMaps" + (", the network's own (no scaling)" if name else "")


def brightness(rows: list[dict], name: str) -> str:
    """The corners' brightness relative to the centre's, output over truth, less 1: pooled over the
    frames (the bias), then the mean of each frame's own figure and its spread (noise included)."""
    pooled = (sum(r[name + "corner"] for r in rows) / sum(r[name + "centre"] for r in rows)) / (
        sum(r["truth corner"] for r in rows) / sum(r["truth centre"] for r in rows)) - 1
    each = [(r[name + "corner"] / r[name + "centre"]) / (r["truth corner"] / r["truth centre"]) - 1 for r in rows]
    return f"{100 * pooled:+.1f}% ({100 * np.mean(each):+.0f}%, {100 * np.std(each):.0f}%)"


def noise_told(rows: list[dict]) -> str:
    return f"{mean(rows, 'told'):.2f} ({mean(rows, 'before'):.2f})"


if __name__ == "__main__":
    sys.exit(main())
