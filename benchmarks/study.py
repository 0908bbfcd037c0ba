"""The founding paper's experiment: the seven U-Net variants trained under one recipe, compared.

    python benchmarks/study.py train [--out runs/study] [--only NAME ...] [--set KEY=VALUE ...]
    python benchmarks/study.py report --stress DIR [--out runs/study] [--figures docs/study]

``train`` runs every variant of :data:`VARIANTS`, in order, with the recipe of the shipped model
(``sid_keras/configs/experiments/shipped.toml``: the same on-the-fly photo stream and seed, steps, schedule,
noise input and validation set) into ``OUT/NAME``, without the shipped model's classical demosaic base
(a ``unet`` option the other variants lack: the study compares the paper's networks as such).
Killed at any point, the same command continues:
each run resumes from its last checkpoint and finished runs (``final.keras``) are skipped.
``double_unet`` starts its first network from ``OUT/unet/best.keras`` and keeps it frozen (the
U-UNet recipe), so ``unet`` trains first. ``--set`` changes the recipe for every variant (a
shorter study: ``--set train.epochs=20``); the budget is said in the report.

Widths (the fairness rule): every SID-family variant keeps the shipped model's base width (12) and
depth (5), so each adds its own mechanism (attention gates, a discriminator, a second U-Net, a VAE
branch) to the same U-Net; ``unet_deep`` is one level deeper (6) at width 8, GroupNorm needing a
multiple of 8; ``fast_unet`` keeps its own design (8x packing, depth 3) at width 24. Parameters and
GMACs are in the table, so equal-cost comparisons can be read off it.

``report`` writes ``OUT/study.md`` (and prints it) with, per variant: parameters, GMACs per output
megapixel, CPU seconds of the network for a 12 MP frame (forward pass on 1 MP tiles, x12, median of
3), the stress grid's PSNR / SSIM overall and per ISO band with the margin over scaled + non-local
means, the gradient-histogram distance to the truth (GHD, below), the fidelity benchmark at ratio 1
(mean / worst, ``benchmarks/fidelity.py``'s scikit-image set, beside the perfect-scene ceiling),
and the PSNR change of the int8-weight TFLite twin on the stress grid. Figures in ``--figures``:
``quality_vs_gmacs.png`` and ``crops.png`` (the same stress crop through every variant).

GHD, the perceptual measure: the 1-Wasserstein distance between the distributions of log gradient
magnitudes (luminance, forward differences) of the output and of the truth, averaged over the
stress frames. It runs offline and measures what "visually better" claims are usually about: an
over-smoothed output lacks the truth's strong gradients, a noisy or over-sharpened one has too
many; both move the histogram. Lower is closer; it ignores where the gradients are (PSNR's job).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

# name -> (registered model, model.args changed from the shipped recipe's)
VARIANTS = {
    "unet": ("unet", {}),
    "attention_unet": ("attention_unet", {}),
    "unet_gan": ("unet_gan", {}),
    "double_unet": ("double_unet", {"freeze_first": True}),
    "unet_deep": ("unet_deep", {"width": 8, "depth": 6}),
    "vae_gan": ("vae_gan", {}),
    "fast_unet": ("fast_unet", {"width": 24, "depth": 3}),
}
# The founding paper's table (SID Sony test set, sRGB output, its own training budget).
PAPER = {"unet": (27.251, 0.756), "attention_unet": (25.447, 0.727), "unet_gan": (27.178, 0.747)}
# The shipped model's options that only ``unet`` takes: left out, so every variant is the network alone.
DEMOSAIC_BASE = ("demosaic_residual", "demosaic_gate", "demosaic", "demosaic_trust")
TILE = 512  # packed pixels of the timing tile: a 1 MP output


def variant_config(name: str, out: pathlib.Path, overrides: list[str]):
    """The shipped recipe with this variant's model, its run folder under ``out``."""
    from sid_keras.training.config import load_config

    model, args = VARIANTS[name]
    base = load_config("shipped")
    args = {**{k: v for k, v in base.model.args.items() if k not in DEMOSAIC_BASE}, **args}
    if name == "double_unet":
        args["first"] = str(out / "unet" / "best.keras")
    return load_config("shipped", overrides, settings={"model.name": model, "model.args": args,
                                                       "train.out_dir": str(out / name)})


def train(out: pathlib.Path, only: list[str], overrides: list[str]) -> int:
    from sid_keras.training.task import train as run

    for name in only or list(VARIANTS):
        if (out / name / "final.keras").is_file():
            print(f"{name}: done ({out / name / 'final.keras'})")
            continue
        print(f"{name}: training into {out / name}", flush=True)
        run(variant_config(name, out, overrides), verbose=2)
    return 0


def gradient_histogram_distance(truth: np.ndarray, image: np.ndarray) -> float:
    """GHD: 1-Wasserstein distance between the log gradient magnitude distributions (module doc)."""
    from scipy.stats import wasserstein_distance

    def log_gradients(rgb):
        y = rgb @ np.array([0.2126, 0.7152, 0.0722], np.float32)
        gy, gx = np.diff(y, axis=0)[:, :-1], np.diff(y, axis=1)[:-1]
        return np.log10(np.hypot(gx, gy).ravel() + 1e-3)

    return float(wasserstein_distance(log_gradients(truth), log_gradients(np.clip(image, 0, 1))))


def score_stress(enhancer, pairs, nlm: dict | None) -> tuple[list, dict, tuple]:
    """Per pair, in order: (ISO band, PSNR, SSIM, GHD) of the model; the per-band NLM PSNR,
    computed on the first call (``nlm`` None); one crop of the first pair, for the figure."""
    from sid_keras.apps.evaluation import (
        load_pair,
        nlm_denoise,
        psnr_8bit,
        scaled_reference,
        ssim_8bit,
    )
    from sid_keras.synth.synthetic import stress_cell

    rows, baseline, crop = [], {}, None
    truths: dict = {}
    for i, pair in enumerate(pairs):
        frame, ratio, truth = load_pair(pair, truths=truths)
        image = enhancer.to_srgb(enhancer.run(enhancer.network_input(frame, ratio), frame.cfa.scale), frame)
        band = stress_cell(frame.iso or pair.iso)
        rows.append((band, psnr_8bit(truth, image), ssim_8bit(truth, image), gradient_histogram_distance(truth, image)))
        if nlm is None:
            classical = nlm_denoise(scaled_reference(pair.short, frame, truth))
            baseline.setdefault(band, []).append(psnr_8bit(truth, classical))
        if i == 0:
            h, w = truth.shape[:2]
            window = np.s_[h // 4 : h // 4 + 160, w // 4 : w // 4 + 160]
            crop = (image[window], truth[window])
    return rows, nlm if nlm is not None else {k: float(np.mean(v)) for k, v in baseline.items()}, crop


def band_means(rows: list) -> dict:
    """Mean (PSNR, SSIM, GHD) per ISO band and over all rows ("all")."""
    bands = {"all": [r[1:] for r in rows]}
    for band, *scores in rows:
        bands.setdefault(band, []).append(scores)
    return {band: [float(x) for x in np.mean(scores, axis=0)] for band, scores in bands.items()}


def network_seconds_per_12mp(net) -> float:
    from sid_keras.runtime.inference import keras_predictor

    predict = keras_predictor(net)
    tile = np.random.default_rng(0).uniform(0, 1, (1, TILE, TILE, net.inputs[0].shape[-1])).astype(np.float32)
    predict(tile)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        predict(tile)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 12 / (TILE * TILE * 4 / 1e6)


def int8_weights_twin(net, folder: pathlib.Path) -> pathlib.Path:
    from sid_keras.apps.export import _convert

    path = folder / "int8w.tflite"
    path.write_bytes(_convert(net, [1, 256, 256, net.inputs[0].shape[-1]], int8_weights=True))
    return path


def report(out: pathlib.Path, stress_dir: str, figures: pathlib.Path | None) -> int:
    import fidelity

    from sid_keras.data import read_sid_list
    from sid_keras.models import count_macs, inference_model, with_precision
    from sid_keras.runtime.inference import Enhancer, load_model

    pairs = read_sid_list("Stress_val_list.txt", stress_dir)
    work = pathlib.Path(tempfile.mkdtemp(prefix="sid_study_"))
    photos = fidelity.skimage_photos(work / "photos")
    nlm, results, crops = None, {}, {}
    for name in VARIANTS:
        path = out / name / "best.keras"
        if not path.is_file():
            print(f"{name}: not trained yet ({path})", file=sys.stderr)
            continue
        net = with_precision(inference_model(load_model(path)), None)
        enhancer = Enhancer(net)
        rows, nlm, crops[name] = score_stress(enhancer, pairs, nlm)
        fid = fidelity.score_set(enhancer, photos, work / f"fidelity_{name}", 3, 0)["scores"]
        lite, _, _ = score_stress(Enhancer(int8_weights_twin(net, work), tile=256, overlap=8), pairs[::4], nlm)
        epochs = json.loads((out / name / "config.json").read_text())["train"]
        results[name] = {
            "params": int(net.count_params()), "gmacs": count_macs(net, (256, 256)) / (512 * 512) * 1e6 / 1e9,
            "seconds_12mp": network_seconds_per_12mp(net),
            "stress": band_means(rows),
            "fidelity": [float(fid["model"][:, 0].mean()), float(fid["model"][:, 0].min())],
            "ceiling": [float(fid["ceiling"][:, 0].mean()), float(fid["ceiling"][:, 0].min())],
            "int8w_delta": band_means(lite)["all"][0] - band_means(rows[::4])["all"][0],  # same pairs
            "budget": f"{epochs['epochs']} x {epochs['steps_per_epoch']} steps",
        }
        print(f"measured {name}", file=sys.stderr, flush=True)
    if not results:
        print(f"no trained variant under {out}: run `python benchmarks/study.py train --out {out}` first")
        return 1
    text = format_table(results, nlm)
    (out / "study.md").write_text(text + "\n")
    (out / "study.json").write_text(json.dumps({"variants": results, "nlm": nlm}, indent=1))
    print(text)
    if figures:
        figures.mkdir(parents=True, exist_ok=True)
        write_figures(results, crops, figures)
    return 0


def format_table(results: dict, nlm: dict) -> str:
    bands = sorted((k for k in nlm if k), key=lambda band: int(band.split()[1].split("-")[0]))
    lines = ["| variant | params | GMACs/MP | s / 12 MP | stress PSNR / SSIM | "
             + " | ".join(f"{b} (vs NLM)" for b in bands)
             + " | GHD | fidelity mean / worst (ceiling) | int8w dB | budget | paper (SID Sony) |",
             "|---|" + "---:|" * (9 + len(bands))]
    for name, r in results.items():
        s = r["stress"]
        paper = "{:.3f} / {:.3f}".format(*PAPER[name]) if name in PAPER else "not reported"
        cells = " | ".join(f"{s[b][0]:.2f} ({s[b][0] - nlm[b]:+.2f})" if b in s else "" for b in bands)
        lines.append(f"| {name} | {r['params']:,} | {r['gmacs']:.1f} | {r['seconds_12mp']:.1f} | "
                     f"{s['all'][0]:.2f} / {s['all'][1]:.3f} | {cells} | {s['all'][2]:.3f} | "
                     f"{r['fidelity'][0]:.2f} / {r['fidelity'][1]:.2f} ({r['ceiling'][0]:.2f} / {r['ceiling'][1]:.2f})"
                     f" | {r['int8w_delta']:+.2f} | {r['budget']} | {paper} |")
    lines.append("")
    lines.append("NLM per ISO band (dB): " + ", ".join(f"{b} {nlm[b]:.2f}" for b in bands))
    return "\n".join(lines)


def write_figures(results: dict, crops: dict, folder: pathlib.Path) -> None:
    from PIL import Image, ImageDraw, ImageFont

    from sid_keras.apps.evaluation import side_by_side
    from sid_keras.runtime.io import write_image

    size, margin, right = (860, 480), 60, 200  # room on the right for the labels
    plot = Image.new("RGB", size, "white")
    draw, font = ImageDraw.Draw(plot), ImageFont.load_default(size=14)
    gmacs = np.log10([r["gmacs"] for r in results.values()])
    psnrs = np.array([r["stress"]["all"][0] for r in results.values()])
    gx = (gmacs.min() - 0.1, gmacs.max() + 0.1)
    gy = (psnrs.min() - 0.3, psnrs.max() + 0.3)

    def at(x, y):
        return (margin + (x - gx[0]) / (gx[1] - gx[0]) * (size[0] - margin - right),
                size[1] - margin - (y - gy[0]) / (gy[1] - gy[0]) * (size[1] - 2 * margin))

    draw.rectangle([margin, margin, size[0] - right, size[1] - margin], outline="black")
    draw.text((margin, size[1] - margin + 20), "GMACs per output megapixel (log scale)", fill="black", font=font)
    draw.text((margin, 20), "stress-grid PSNR (dB) against cost", fill="black", font=font)
    for name, x, y in zip(results, gmacs, psnrs):
        px, py = at(x, y)
        draw.ellipse([px - 5, py - 5, px + 5, py + 5], fill=(31, 119, 180))
        draw.text((px + 8, py - 8), f"{name}: {y:.2f} dB, {10 ** x:.1f} GMACs", fill="black", font=font)
    for value in (gy[0], gy[1]):
        draw.text((5, at(gx[0], value)[1] - 7), f"{value:.1f}", fill="black", font=font)
    plot.save(folder / "quality_vs_gmacs.png")
    names = [n for n in results if crops.get(n) is not None]
    panels = [crops[n][0] for n in names] + [crops[names[0]][1]]
    write_image(folder / "crops.png", side_by_side(panels, [*names, "truth"]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["train", "report"])
    parser.add_argument("--out", default="runs/study", type=pathlib.Path)
    parser.add_argument("--only", nargs="*", default=[], choices=list(VARIANTS))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides")
    parser.add_argument("--stress", help="the stress set folder (sid-keras synth --stress), for report")
    parser.add_argument("--figures", type=pathlib.Path, help="folder for the two figures, for report")
    args = parser.parse_args(argv)
    if args.command == "train":
        return train(args.out, args.only, args.overrides)
    if not args.stress:
        parser.error("report needs --stress DIR (sid-keras synth --photos ../shared/data/photos/val --out DIR "
                     "--split val --stress)")
    return report(args.out, args.stress, args.figures)


if __name__ == "__main__":
    sys.exit(main())
