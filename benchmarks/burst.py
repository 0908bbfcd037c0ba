"""Bursts: what aligning and merging N dark frames before the network gives, against one frame.

    python benchmarks/burst.py [--photos ../shared/data/photos/val] [--limit 8] [--model PATH]
                               [--figure docs/burst.png]

Bursts of 8 frames are made from the validation photos (CBSD68, never trained on) by
:mod:`sid_keras.synth.bursts`: hand shake (up to 4 sensor pixels and 0.17 degrees, sub-pixel),
a saturated disc crossing the scene (5% of the smaller side a frame), the Sony A7S II's
calibrated noise at x30 (ISO 1600), x100 (ISO 6400) and x300 (ISO 25600). Each burst's first
N = 1, 2, 4, 8 frames are enhanced with the shipped model (or ``--model``) and scored against the
reference's truth (its clean scene, rendered as LibRaw renders the file), beside, in the same
run, a plain unaligned average of the 8 frames (told its noise is 1/8) and the ceiling (the model
on the noise-free short exposure, told almost no noise: what no merge can pass) and one exposure as
long as the 8 frames together (the same ISO and scene, no motion: 8 times less read noise than the
burst, which reads the sensor 8 times): PSNR / SSIM overall,
PSNR inside the moving disc (where only the reference can say what is there) and over its trail
(where an average ghosts), and the alignment error (sensor pixels, each frame's median tile
shift against its true shift). A second table is what 8 frames can give at best with the model: a
tripod's burst of a still scene (no shake, nothing moving), one frame, the merge of 8 and their
plain mean (a perfect merge), and one frame whose own noise is made a square root of 8 smaller
(the plain mean's noise level, a single frame's noise shape). Targets (issue 48): 8 frames at
least 3 dB above one overall, more at x300; the trail no worse than one frame; the disc within
0.5 dB of one frame.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from sid_keras.apps.evaluation import psnr  # noqa: E402 - the package's one PSNR

REPO = pathlib.Path(__file__).resolve().parents[1]
SETTINGS = ((30, 1600.0), (100, 6400.0), (300, 25600.0))  # ratio, ISO
FRAMES = (1, 2, 4, 8)
SIZE = (304, 464)  # sensor pixels: a CBSD68 photo (321 x 481) less the shake's margin


def scenes(folder: str, limit: int):
    """(name, white-balanced camera RGB of the photo, camera -> sRGB matrix) of each photo."""
    from sid_keras.synth.synthetic import TRAINING_CAMERAS, find_photos, linear_photo, rgb_to_camera_matrix

    to_camera = rgb_to_camera_matrix(TRAINING_CAMERAS["Sony ILCE-7SM2"])
    matrix = np.pad(np.linalg.inv(to_camera), ((0, 0), (0, 1)))
    for path in find_photos(folder)[:limit]:
        photo = linear_photo(path)
        if photo.shape[0] > photo.shape[1]:
            photo = np.rot90(photo)
        yield pathlib.Path(path).stem, np.clip(photo @ to_camera.T, 0, None) * 0.7, matrix


def score(enhancer, made, ratio: float, long=None) -> dict:
    """Every row's figures for one burst (module doc)."""
    from sid_keras.apps.evaluation import ssim_8bit
    from sid_keras.runtime import noise_law, raw, render

    truth = render.render(made.truth.astype(np.float32), made.frames[0].color_matrix)
    regions = {"disc": made.object_mask, "trail": made.trail_mask}
    rows = {}
    for n in FRAMES:
        merged, law, report = enhancer.merge_burst(made.frames[:n])
        image = enhancer.enhance_frame(merged, ratio, enhancer.told(law)).image
        # where a frame's content lies in the reference (packed pixels) is minus its shift, halved
        errors = [float(np.hypot(2 * sy + ty, 2 * sx + tx)) for (sy, sx), (ty, tx) in
                  zip(report.shifts, made.shifts[1:n])]
        rows[f"{n} frame{'s' if n > 1 else ''}"] = {
            "psnr": psnr(truth, image), "ssim": ssim_8bit(truth, image), "image": image,
            **{k: psnr(truth, image, where) for k, where in regions.items()},
            "align": float(np.median(errors)) if errors else 0.0}
    plain = raw.RawFrame(**{**{f.name: getattr(made.frames[0], f.name) for f in dataclasses.fields(raw.RawFrame)},
                            "mosaic": np.mean([f.mosaic for f in made.frames], axis=0, dtype=np.float32),
                            "noise_variance_scale": np.full(made.frames[0].mosaic.shape, 1 / len(made.frames),
                                                            np.float32)})
    law = noise_law.noise_law(made.frames[0])
    image = enhancer.enhance_frame(plain, ratio, enhancer.told(law)).image
    rows["plain average of 8"] = {"psnr": psnr(truth, image), "ssim": ssim_8bit(truth, image), "image": image,
                                  **{k: psnr(truth, image, where) for k, where in regions.items()}, "align": None}
    # the ceiling: the model on the noise-free short exposure (told almost no noise), what no merge can pass
    clean = noise_free_mosaic(made, ratio)
    ideal = dataclasses.replace(made.frames[0], mosaic=clean.astype(np.float32),
                                noise_variance_scale=np.full(clean.shape, 1e-4, np.float32))
    image = enhancer.enhance_frame(ideal, ratio, enhancer.told(law)).image
    rows["noise-free (ceiling)"] = {"psnr": psnr(truth, image), "ssim": ssim_8bit(truth, image), "image": image,
                                    **{k: psnr(truth, image, where) for k, where in regions.items()}, "align": None}
    if long is not None:  # one exposure as long as the 8 frames (module doc)
        image = enhancer.enhance_frame(long, ratio / len(made.frames), enhancer.told(noise_law.noise_law(long))).image
        rows["one exposure of 8 frames' time"] = {"psnr": psnr(truth, image), "ssim": ssim_8bit(truth, image),
                                                 "image": image, "align": None,
                                                 **{k: psnr(truth, image, where) for k, where in regions.items()}}
    rows["truth"] = {"image": truth}
    return rows


def noise_free_mosaic(made, ratio: float) -> np.ndarray:
    """The reference's short exposure without its noise (sensor units)."""
    from sid_keras.runtime import cfa
    from sid_keras.synth.bursts import BLACK, WHITE

    return cfa.BAYER.mosaic_of(made.truth / made.frames[0].white_balance[:3]) / ratio * (WHITE - BLACK) + BLACK


def still_scene(enhancer, scene, ratio: float, iso: float, index: int, matrix) -> dict:
    """What 8 frames can give at best with this model: a tripod's burst of a still scene (no
    shake, nothing moving), its one frame, our merge of 8 and their plain mean (a perfect merge:
    nothing to align or reject)."""
    from sid_keras.runtime import noise_law, render
    from sid_keras.synth.bursts import camera_noise, make_burst

    made = make_burst(scene, SIZE, max(FRAMES), ratio=ratio, noise=camera_noise("SonyA7S2", iso, seed=index),
                      seed=index, iso=iso, color_matrix=matrix, shake=0.0, rotation=0.0, object_radius=0.0)
    truth = render.render(made.truth.astype(np.float32), made.frames[0].color_matrix)
    law = noise_law.noise_law(made.frames[0])
    shape = made.frames[0].mosaic.shape
    average = np.mean([f.mosaic for f in made.frames], axis=0, dtype=np.float32)
    mean = dataclasses.replace(made.frames[0], mosaic=average,
                               noise_variance_scale=np.full(shape, 1 / len(made.frames), np.float32))
    merged, merged_law, _ = enhancer.merge_burst(made.frames)
    # one frame's own noise, a square root of 8 smaller: what the plain mean is but for the shape of its noise
    clean = noise_free_mosaic(made, ratio)
    quieter = dataclasses.replace(mean, mosaic=(clean + (made.frames[0].mosaic - clean) / np.sqrt(len(made.frames)))
                                  .astype(np.float32))
    return {label: psnr(truth, enhancer.enhance_frame(frame, ratio, enhancer.told(told)).image)
            for label, frame, told in (("still: 1 frame", made.frames[0], law), ("still: 8 merged", merged, merged_law),
                                       ("still: plain mean of 8", mean, law),
                                       ("still: 1 frame, its noise / sqrt(8)", quieter, law))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", default=str(REPO.parent / "shared" / "data" / "photos" / "val"))
    parser.add_argument("--limit", type=int, default=8, help="photos (each gives one burst per ratio)")
    parser.add_argument("--model", default=None, help=".keras or .tflite (default: the shipped model)")
    parser.add_argument("--figure", type=pathlib.Path, default=None,
                        help="PNG of one x100 crop: 1 frame, 8, the plain average, the truth")
    args = parser.parse_args(argv)

    from sid_keras.runtime.inference import Enhancer
    from sid_keras.synth.bursts import camera_noise, make_burst

    enhancer = Enhancer(args.model)
    table: dict = {}
    still: dict = {}
    crop = None
    for index, (name, scene, matrix) in enumerate(scenes(args.photos, args.limit)):
        for ratio, iso in SETTINGS:
            made = make_burst(scene, SIZE, max(FRAMES), ratio=ratio, noise=camera_noise("SonyA7S2", iso, seed=index),
                              seed=index, iso=iso, color_matrix=matrix)
            long = make_burst(scene, SIZE, 1, ratio=ratio / max(FRAMES), seed=index, iso=iso, color_matrix=matrix,
                              noise=camera_noise("SonyA7S2", iso, seed=index)).frames[0]
            rows = score(enhancer, made, ratio, long)
            for label, row in rows.items():
                if label != "truth":
                    table.setdefault((ratio, label), []).append(row)
            for label, value in still_scene(enhancer, scene, ratio, iso, index, matrix).items():
                still.setdefault((ratio, label), []).append(value)
            if crop is None and ratio == 100:
                crop = [(rows[k]["image"], k) for k in ("1 frame", "8 frames", "plain average of 8", "truth")]
        print(f"{name}: done", file=sys.stderr, flush=True)
    print("| ratio (ISO) | frames | PSNR | SSIM | disc PSNR | trail PSNR | alignment error (px) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (ratio, label), rows in table.items():
        mean = {k: np.mean([r[k] for r in rows]) for k in ("psnr", "ssim", "disc", "trail")}
        align = "" if rows[0]["align"] is None else f"{np.median([r['align'] for r in rows]):.2f}"
        iso = dict(SETTINGS)[ratio]
        print(f"| x{ratio} ({iso:.0f}) | {label} | {mean['psnr']:.2f} | {mean['ssim']:.3f} | {mean['disc']:.2f} | "
              f"{mean['trail']:.2f} | {align} |")
    print("\n| ratio (ISO) | still scene | PSNR |\n|---|---|---:|")
    for (ratio, label), values in still.items():
        print(f"| x{ratio} ({dict(SETTINGS)[ratio]:.0f}) | {label.removeprefix('still: ')} | {np.mean(values):.2f} |")
    if args.figure and crop:
        from sid_keras.apps.evaluation import side_by_side
        from sid_keras.runtime.io import write_image

        window = np.s_[60:240, 60:300]
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        write_image(args.figure, side_by_side([image[window] for image, _ in crop], [label for _, label in crop]))
        print(f"figure: {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
