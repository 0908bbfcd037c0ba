"""`sid-keras demo`: a dark raw from a shipped photo, enhanced by the shipped model, compared.

The photo is NASA's public-domain portrait of astronaut Eileen Collins (as shipped by
scikit-image), unprocessed to a Sony-like raw and darkened by the ratio with the calibrated noise
model of :mod:`sid_keras.synth.synthetic`, so the result can be scored against the truth.
"""

from __future__ import annotations

import os
import pathlib
import shutil

from sid_keras import ASSETS_DIR
from sid_keras.apps.evaluation import (
    load_pair,
    nlm_denoise,
    psnr_8bit,
    scaled_reference,
    side_by_side,
    ssim_8bit,
)
from sid_keras.data.lists import SidPair
from sid_keras.runtime.io import write_image

DEMO_PHOTO = ASSETS_DIR / "astronaut.jpg"


def make_demo_raw(out: pathlib.Path, ratio: int, seed: int) -> tuple[pathlib.Path, pathlib.Path]:
    """Write ``dark.dng`` (the short exposure) and ``reference.dng`` (the long) into ``out``."""
    from sid_keras.synth.synthetic import make_scene, plan_scenes

    work = out / ".demo_scene"
    plan = plan_scenes([str(DEMO_PHOTO)], seed, first_id=0, ratios=[ratio])[0]
    line = make_scene(plan, work, "raw")[0]
    short, long = (work / p for p in line.split()[:2])
    dark, reference = out / "dark.dng", out / "reference.dng"
    os.replace(short, dark)
    os.replace(long, reference)
    shutil.rmtree(work, ignore_errors=True)
    return dark, reference


DEMO_FILES = ("dark.dng", "reference.dng", "input.png", "classical.png", "output.png", "truth.png",
              "comparison.png")


def run_demo(out_dir: str | os.PathLike, *, ratio: int = 250, model=None, seed: int = 0,
             overwrite: bool = False, log=print) -> dict:
    """Make, enhance and score the demo frame; write the images; return the scores."""
    from sid_keras.runtime.inference import Enhancer
    from sid_keras.runtime.io import check_outputs_free
    from sid_keras.runtime.render import packed_preview

    out = pathlib.Path(out_dir)
    check_outputs_free(out, DEMO_FILES, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    dark, reference = make_demo_raw(out, ratio, seed)
    frame, used, truth = load_pair(SidPair(dark, reference))
    enhancer = Enhancer(model)
    packed = enhancer.network_input(frame, used)
    images = {
        "input": packed_preview(packed, frame.cfa),
        "classical": nlm_denoise(scaled_reference(dark, frame, truth)),
        "output": enhancer.to_srgb(enhancer.run(packed, frame.cfa.scale), frame),
        "truth": truth,
    }
    scores = {name: {"psnr": psnr_8bit(truth, images[name]), "ssim": ssim_8bit(truth, images[name])}
              for name in ("input", "classical", "output")}
    labels = {"input": "input, amplified (preview)", "classical": "classical: scaled + non-local means",
              "output": "sid-keras shipped model" if model is None else "sid-keras model"}
    for name, image in images.items():
        write_image(out / f"{name}.png", image)
    captions = [f"{labels[name]}: {scores[name]['psnr']:.1f} dB" for name in labels] + ["truth (long exposure)"]
    write_image(out / "comparison.png", side_by_side(list(images.values()), captions))
    log(f"dark raw: {dark} (x{used:.0f} underexposed); truth: {reference}")
    log(f"{'':<34}{'PSNR':>8}{'SSIM':>8}")
    for name, label in labels.items():
        log(f"{label:<34}{scores[name]['psnr']:>8.2f}{scores[name]['ssim']:>8.3f}")
    log(f"images: {out}/input.png output.png classical.png truth.png comparison.png")
    return scores
