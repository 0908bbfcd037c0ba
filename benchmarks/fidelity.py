"""Fidelity: a clean frame comes out as LibRaw develops it (ratio 1), saturated colours and thin
lines included.

    python benchmarks/fidelity.py [--model PATH] [--photos DIR ...] [--per-photo 3] [--noise-error K]

Clean raw frames are made from colourful, sharp photos that training never used, as a camera
records them: band-limited by a lens (Gaussian, sigma 0.6 px), seen through a camera's colour
response under an illuminant (white-balance gains of `synthetic.ILLUMINANTS`), exposed for a
white-balanced mean of 8-25% of white, mosaicked (Sony layout) with base-ISO noise (ISO 100 of
the Sony A7S II calibration). Each photo gives ``--per-photo`` frames that cycle through a
training camera (Sony A7S II, daylight) and two held-out ones (Nikon under tungsten, Canon under
fluorescent light). Every frame is enhanced at `--ratio 1` and scored against LibRaw's
development of the same file (SID's settings: camera white balance, AHD, no auto-brightening),
beside, in the same run:
- the ceiling: the clean scene itself (no mosaic, no noise) rendered as LibRaw renders, scored
  against the same development: what a perfect reconstruction would score (LibRaw's own
  demosaicking and the base-ISO noise are the rest);
- the classical baselines: LibRaw's bilinear demosaicking of the file, and Malvar-He-Cutler's
  gradient-corrected demosaic rendered as the model's output is (an untrained residual U-Net:
  the base `demosaic = "malvar"` refines), what a network that did no harm would keep.

Photo sets: "scikit-image" (eight photos that ship with scikit-image, so every install has
them: chelsea, coffee, rocket, immunohistochemistry (saturated stains), motorcycle (saturated
paint), hubble_deep_field (coloured points on black), retina, colorwheel (every hue at full
saturation); public domain or CC0, see scikit-image's data README), and each `--photos` folder
(e.g. ../shared/data/photos/val, CBSD68: the validation photos, never trained on).

``--noise-error K`` gives every frame a NoiseProfile K times the noise level (K^2 the variance)
of the law the package would use: how a noise-aware model degrades when a file's tag is wrong.

Targets (issue 24): mean within 3 dB of the ceiling's mean, worst within 2 dB of its worst.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import pathlib
import shutil
import sys
import tempfile

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BLUR_SIGMA = 0.6
EXPOSURE_MEANS = (0.08, 0.25)
BASE_ISO = 100.0
# (camera, illuminant) of each frame of a photo, in turn.
SETUPS = (("Sony ILCE-7SM2", "daylight"), ("Nikon", "tungsten"), ("Canon", "fluorescent"))
SKIMAGE_PHOTOS = ("chelsea", "coffee", "rocket", "immunohistochemistry", "stereo_motorcycle", "hubble_deep_field",
                  "retina", "colorwheel")


def skimage_photos(folder: pathlib.Path) -> list[str]:
    """The scikit-image photos as PNG files (largest side cut to 1024 px, alpha dropped)."""
    import skimage.data
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in SKIMAGE_PHOTOS:
        image = getattr(skimage.data, name)()
        image = np.asarray(image[0] if isinstance(image, tuple) else image)[..., :3]
        photo = Image.fromarray(image)
        photo.thumbnail((1024, 1024))
        path = folder / f"{name}.png"
        photo.save(path)
        paths.append(str(path))
    return paths


def plans_for(photos, per_photo: int, seed: int):
    """Frame plans: camera, illuminant and exposure of each frame, drawn from ``seed``."""
    from sid_keras.runtime import noise
    from sid_keras.synth import synthetic

    rng = np.random.default_rng(seed)
    plans = []
    for i, photo in enumerate(photos):
        for j in range(per_photo):
            camera, light = SETUPS[(i + j) % len(SETUPS)]
            red_range, blue_range = synthetic.ILLUMINANTS[light]
            plan = synthetic.ScenePlan(
                scene_id=len(plans) + 1, photo=photo, iso=BASE_ISO, red_gain=float(rng.uniform(*red_range)),
                blue_gain=float(rng.uniform(*blue_range)), exposure_scale=1.0, seed=int(rng.integers(2**31)),
                ratios=(1,), noise_profile=noise.SONY_A7S2.name, camera=camera, noisy_long=False,
                blur_sigma=BLUR_SIGMA)
            mean = float(synthetic.clean_scene(plan).mean())
            plans.append(dataclasses.replace(plan, exposure_scale=float(rng.uniform(*EXPOSURE_MEANS)) / mean))
    return plans


def ceiling(plan, frame) -> np.ndarray:
    """The clean scene as LibRaw renders it: raw values clipped at white, white balance, LibRaw's
    clip after it, the file's colour matrix and curve, 16-bit."""
    from sid_keras.runtime import render
    from sid_keras.synth import synthetic

    gains = np.array([plan.red_gain, 1.0, plan.blue_gain])
    balanced = np.minimum(np.clip(synthetic.clean_scene(plan) / gains, 0.0, 1.0) * gains, 1.0)
    return np.round(render.render(balanced, frame.color_matrix) * 65535) / 65535


def bilinear(path) -> np.ndarray:
    """LibRaw's development with bilinear demosaicking (otherwise the reference's settings)."""
    import rawpy

    with rawpy.imread(str(path)) as raw:
        return raw.postprocess(use_camera_wb=True, no_auto_bright=True, output_bps=16, user_flip=0,
                               adjust_maximum_thr=0.0, demosaic_algorithm=rawpy.DemosaicAlgorithm.LINEAR) / 65535


def malvar_enhancer():
    """Malvar-He-Cutler's demosaic through the package's own rendering: a residual U-Net whose
    correction starts at zero and whose gate starts open returns its classical base unchanged."""
    from sid_keras.models import UNet
    from sid_keras.runtime.inference import Enhancer

    return Enhancer(UNet(width=4, depth=3, demosaic_residual=True, demosaic_gate=True, demosaic="malvar"))


def misreported(frame, noise_error: float):
    """``frame`` with a NoiseProfile tag ``noise_error`` times its true noise level (itself at 1)."""
    from sid_keras.runtime import noise_law

    if noise_error == 1.0:
        return frame
    law = noise_law.noise_law(frame)  # the frames are made at one ISO: one law for every colour
    variance = (float(law.s[0]) * noise_error**2, float(law.o[0]) * noise_error**2)
    return dataclasses.replace(frame, noise_profile=(variance,) * 3)



def score_set(enhancer, photos, work: pathlib.Path, per_photo: int, seed: int, malvar=None,
              noise_error: float = 1.0) -> dict:
    """PSNR and SSIM of the model, the ceiling and the baselines (Malvar's if given its enhancer)
    on every frame of one set, the model told a noise level ``noise_error`` times the true one."""
    from sid_keras.apps.evaluation import psnr, ssim_8bit
    from sid_keras.runtime import raw
    from sid_keras.synth import synthetic

    scores = {"model": [], "ceiling": [], "bilinear": []} | ({"malvar": []} if malvar else {})
    names = []
    for plan in plans_for(photos, per_photo, seed):
        short = work / synthetic.make_scene(plan, work, "Fidelity")[0].split()[0]
        frame = raw.read_raw(short)
        reference = raw.crop_reference(raw.render_reference(short), frame) / 65535
        images = {"model": enhancer.enhance(misreported(frame, noise_error), ratio=1.0),
                  "ceiling": ceiling(plan, frame), "bilinear": raw.crop_reference(bilinear(short), frame)}
        if malvar:
            images["malvar"] = malvar.enhance(short, ratio=1.0)
        for method, image in images.items():
            scores[method].append((psnr(reference, np.clip(image, 0, 1)), ssim_8bit(reference, np.clip(image, 0, 1))))
        names.append(f"{pathlib.Path(plan.photo).stem} ({plan.camera})")
    return {"scores": {m: np.array(v) for m, v in scores.items()}, "names": names}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help=".keras or .tflite (default: the shipped model)")
    parser.add_argument("--photos", nargs="*", default=[], help="more photo folders, one set each")
    parser.add_argument("--per-photo", type=int, default=3, help="frames per photo (cameras x illuminants)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise-error", type=float, default=1.0,
                        help="tell the model K times each frame's noise level (a wrong NoiseProfile tag)")
    args = parser.parse_args(argv)
    from sid_keras.runtime.inference import Enhancer
    from sid_keras.synth.synthetic import find_photos

    enhancer, malvar = Enhancer(args.model), malvar_enhancer()
    work = pathlib.Path(tempfile.mkdtemp(prefix="sid_fidelity_"))
    try:
        sets = {"scikit-image": skimage_photos(work / "photos")}
        sets.update({pathlib.Path(folder).name: find_photos(folder) for folder in args.photos})
        told = f", told {args.noise_error:g}x the noise" if args.noise_error != 1 else ""
        print(f"model: {args.model or 'the shipped model'}{told}; ratio 1, ISO {BASE_ISO:.0f}, "
              f"lens sigma {BLUR_SIGMA} px; PSNR (dB) / SSIM against LibRaw's development of the same file")
        header = f"{'set':<16}{'frames':>7}  {'model mean':>14}{'worst':>14}  {'ceiling mean':>14}{'worst':>14}"
        print(header + f"  {'bilinear mean':>14}  {'Malvar mean':>14}  {'gap mean / worst':>17}")
        for name, photos in sets.items():
            with contextlib.redirect_stdout(io.StringIO()):
                result = score_set(enhancer, photos, work / name, args.per_photo, args.seed, malvar, args.noise_error)
            s = result["scores"]
            worst = {m: s[m][np.argmin(s[m][:, 0])] for m in s}
            mean = {m: s[m].mean(axis=0) for m in s}
            cell = lambda v: f"{v[0]:.2f} / {v[1]:.3f}"  # noqa: E731
            gap = (mean["ceiling"][0] - mean["model"][0], worst["ceiling"][0] - worst["model"][0])
            print(f"{name:<16}{len(s['model']):>7}  {cell(mean['model']):>14}{cell(worst['model']):>14}  "
                  f"{cell(mean['ceiling']):>14}{cell(worst['ceiling']):>14}  {cell(mean['bilinear']):>14}  "
                  f"{cell(mean['malvar']):>14}  "
                  f"{gap[0]:>7.2f} / {gap[1]:.2f}")
            order = np.argsort(s["model"][:, 0])[:3]
            print("  worst frames: " + "; ".join(
                f"{result['names'][i]} {s['model'][i, 0]:.2f} (ceiling {s['ceiling'][i, 0]:.2f})" for i in order))
            harm = s["model"][:, 0] - s["malvar"][:, 0]  # do no harm: what the network loses against its base
            print("  most lost to Malvar: " + "; ".join(
                f"{result['names'][i]} {harm[i]:+.2f}" for i in np.argsort(harm)[:3]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("targets: gap to the ceiling <= 3 dB mean, <= 2 dB worst")
    return 0


if __name__ == "__main__":
    sys.exit(main())
