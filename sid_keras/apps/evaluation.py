"""SID's test protocol: full frames, published PSNR/SSIM, per-ratio tables, classical baselines.

Metrics are computed the published way: outputs clipped to [0, 1] and quantised to 8 bits, PSNR
with data range 255, SSIM with an 11x11 Gaussian window (sigma 1.5) on RGB. The ground truth is
LibRaw's development of the long exposure with SID's settings, without LibRaw's maximum
adjustment (:func:`sid_keras.runtime.raw.render_reference` says why). Beside the model the
same frames are scored for SID's "scaled" reference (the short exposure rendered by rawpy and
scaled to the ground truth's mean) and for that reference plus a classical denoiser (non-local
means), so every table shows the model's margin over each.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import os
import pathlib
from typing import Sequence

import numpy as np

from sid_keras.errors import SidError, describe
from sid_keras.runtime import noise_law, raw
from sid_keras.runtime.render import UINT16_SCALE

PEAK_8BIT = 255.0
SSIM_SIGMA = 1.5  # Gaussian window sigma; the window is 11x11 (truncate 3.5 sigma)
# Non-local means (Buades et al. 2005, scikit-image), filter strength h = NLM_STRENGTH x the
# Immerkaer noise estimate. The estimate sees demosaiced, spatially correlated noise and comes out
# low, so the usual 0.8 barely denoises; 4 was best on synthetic validation pairs (3.5-5 all
# within 0.05 dB; mean PSNR 13.3 dB undenoised, 19.2 dB at 4).
NLM_STRENGTH = 4.0
NLM_PATCH, NLM_DISTANCE = 5, 6
METHODS = ("model", "scaled", "scaled_nlm", "scaled_bm3d")
REPORT_FILES = ("metrics.json", "metrics.csv", "table.txt", "report.html", "figures")


def quantize(rgb: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(rgb, 0.0, 1.0) * PEAK_8BIT).astype(np.uint8)


def psnr(reference: np.ndarray, image: np.ndarray, where: np.ndarray | None = None, *, peak: float = 1.0) -> float:
    """The package's one PSNR (dB; inf for equal images) of ``image`` against ``reference``, in
    float64, over the pixels ``where`` says (a mask of the images' leading axes) or all of them.
    Evaluation, export and the benchmarks score with it; training's metric is its Keras twin
    (:func:`sid_keras.models.metrics.psnr`)."""
    error = np.asarray(image, np.float64) - np.asarray(reference, np.float64)
    mse = float(np.mean((error if where is None else error[where]) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(peak**2 / mse))


def psnr_8bit(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR (dB) of 8-bit quantised images, data range 255."""
    return psnr(quantize(reference), quantize(test), peak=PEAK_8BIT)


def ssim_8bit(reference: np.ndarray, test: np.ndarray) -> float:
    """SSIM of 8-bit quantised RGB images, Gaussian 11x11 window with sigma 1.5 (Wang et al.)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(quantize(reference), quantize(test), channel_axis=-1,
                                       gaussian_weights=True, sigma=SSIM_SIGMA,
                                       use_sample_covariance=False, data_range=PEAK_8BIT))


def scaled_reference(short_path: str | os.PathLike, frame: raw.RawFrame, truth: np.ndarray) -> np.ndarray:
    """SID's 'scaled' baseline: the short exposure rendered by rawpy, scaled to the truth's mean."""
    rendered = raw.crop_reference(raw.render_reference(short_path), frame).astype(np.float32) / UINT16_SCALE
    return np.clip(rendered * (truth.mean() / max(float(rendered.mean()), 1e-8)), 0.0, 1.0)


def estimate_noise_sigma(rgb: np.ndarray) -> float:
    """Gaussian noise level of an image (Immerkaer, "Fast Noise Variance Estimation", 1996)."""
    residual = noise_law.second_difference(rgb[None].astype(np.float64))
    return float(np.mean(np.sqrt(np.pi / 2) * np.abs(residual).mean(axis=(0, 1, 2))))


def nlm_denoise(rgb: np.ndarray) -> np.ndarray:
    """Non-local means with the noise level estimated from the image itself."""
    from skimage.restoration import denoise_nl_means

    sigma = estimate_noise_sigma(rgb)
    return denoise_nl_means(rgb, h=NLM_STRENGTH * sigma, sigma=sigma, fast_mode=True,
                            patch_size=NLM_PATCH, patch_distance=NLM_DISTANCE, channel_axis=-1)


def bm3d_denoise(rgb: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """BM3D (Dabov et al. 2007; the ``bm3d`` package) at the noise level measured against the
    truth: an oracle, so this classical pipeline is scored at its best."""
    try:
        import bm3d
    except ImportError:
        raise SidError("the BM3D baseline needs the bm3d package: pip install 'sid-keras[baselines]'") from None
    sigma = float(np.std(rgb - truth))
    return np.clip(bm3d.bm3d_rgb(rgb, sigma), 0.0, 1.0).astype(np.float32)


@dataclasses.dataclass
class PairResult:
    short: str
    long: str
    ratio: float
    scores: dict  # method -> {"psnr": .., "ssim": ..}
    iso: int | None = None


def side_by_side(images: Sequence[np.ndarray], labels: Sequence[str] | None = None,
                 max_width: int = 2400) -> np.ndarray:
    """Images of one height next to each other, downscaled to ``max_width`` in all, each under
    its label (which panel is which, and its score) when ``labels`` are given."""
    strip = np.concatenate([np.clip(i, 0, 1) for i in images], axis=1)
    step = max(1, int(np.ceil(strip.shape[1] / max_width)))
    strip = strip[::step, ::step]
    if not labels:
        return strip
    from PIL import Image, ImageDraw, ImageFont

    bar = 28
    canvas = Image.new("RGB", (strip.shape[1], bar), "black")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=16)
    left = 0
    for image, label in zip(images, labels):
        draw.text((left + 6, 5), label, fill="white", font=font)
        left += int(np.ceil(image.shape[1] / step))
    caption = np.asarray(canvas, np.float32) / 255
    return np.concatenate([caption, strip], axis=0)


def stress_scores(enhancer, pairs, out_dir: str | os.PathLike, baseline: dict | None = None) -> tuple[dict, dict]:
    """A model's stress-grid figures, as the benchmarks compare models: ``overall`` (its PSNR and
    SSIM), ``cells`` (its PSNR per ISO band x ratio cell) and ``margin`` (its smallest lead over
    scaled + non-local means across the cells), and that baseline's per-cell PSNR, computed when
    ``baseline`` is None and returned for the next model (the baseline does not depend on it)."""
    summary = evaluate(enhancer, pairs, out_dir, denoiser=baseline is None, figures=False, log=lambda *_: None)
    cells = {name: row["model"]["psnr"] for name, row in summary["per_cell"].items()}
    if not cells:
        raise SidError("no pair is in a stress cell (an ISO band of the stress grid): score a stress set "
                       "(sid-keras synth --stress)")
    if baseline is None:
        baseline = {name: row["scaled_nlm"]["psnr"] for name, row in summary["per_cell"].items()}
    margin = min(cells[c] - baseline[c] for c in cells)
    return {"overall": summary["overall"]["model"], "cells": cells, "margin": margin}, baseline


def evaluate(enhancer, pairs, out_dir: str | os.PathLike, *, denoiser: bool = True, bm3d: bool = False,
             figures: bool = True, ratio_cap: float | None = raw.DEFAULT_RATIO_CAP, progress: bool = False,
             log=print) -> dict:
    """Score the model and the classical pipelines on full frames; write metrics and figures.

    A pair that cannot be read is reported (``summary["failures"]``) and the others still count.
    """
    from sid_keras.runtime.io import write_image

    out = pathlib.Path(out_dir)
    (out / "figures" if figures else out).mkdir(parents=True, exist_ok=True)  # no empty figures/ to block a rerun
    results: list[PairResult] = []
    failures: list[tuple[str, str]] = []
    truths: dict[str, np.ndarray] = {}
    from sid_keras.runtime.progress import tracked

    for pair in tracked(pairs, len(pairs), "evaluate", "pair", enabled=progress):
        try:
            scored = score_pair(enhancer, pair, truths, denoiser=denoiser, bm3d=bm3d, ratio_cap=ratio_cap)
        except Exception as err:  # noqa: BLE001 - one bad pair does not discard the others
            message = describe(err)
            if message is None:
                raise
            failures.append((str(pair.short), message))
            log(f"skipped: {message}")
            continue
        result = scored.result
        results.append(result)
        if figures:
            panels = [scored.preview] + [scored.outputs[m] for m in METHODS if m in scored.outputs] + [scored.truth]
            labels = (["input (amplified)"] + [f"{m}: {result.scores[m]['psnr']:.2f} dB" for m in METHODS
                                               if m in result.scores] + ["truth (long exposure)"])
            write_image(out / "figures" / f"{pathlib.Path(pair.short).stem}.png", side_by_side(panels, labels))
    summary = summarize(results)
    summary["failures"] = [{"short": f, "error": e} for f, e in failures]
    write_reports(out, summary, results)
    return summary


def load_pair(pair, *, ratio_cap: float | None = raw.DEFAULT_RATIO_CAP, truths: dict | None = None):
    """(short frame, ratio, SID's ground truth in sRGB [0, 1]) of a list pair.

    The truth is LibRaw's rendering of the long exposure (:func:`sid_keras.runtime.raw.render_reference`),
    cropped to the packed window so it aligns with the model's output. ``truths`` keeps the last
    one, as consecutive shorts of a list share their long exposure.
    """
    frame, long_frame, ratio = pair.read(ratio_cap)
    key = str(pair.long)
    truth = truths.get(key) if truths is not None else None
    if truth is None:
        truth = raw.crop_reference(raw.render_reference(pair.long), long_frame).astype(np.float32) / UINT16_SCALE
        if truths is not None:
            truths.clear()
            truths[key] = truth
    return frame, ratio, truth


@dataclasses.dataclass
class ScoredPair:
    """One pair as the package scores it: the figures, and the images behind them."""

    result: PairResult
    outputs: dict  # method -> sRGB image in [0, 1] ("model", "scaled", "scaled_nlm"...)
    truth: np.ndarray
    preview: np.ndarray  # the amplified input as it looks
    frame: raw.RawFrame  # the short exposure


def score_pair(enhancer, pair, truths: dict | None = None, *, denoiser: bool = True, bm3d: bool = False,
               ratio_cap: float | None = raw.DEFAULT_RATIO_CAP) -> ScoredPair:
    """The model's output of a list pair and the classical pipelines' (scaled, and with
    ``denoiser`` non-local means on it, with ``bm3d`` BM3D), each scored against the truth: the one
    per-pair scoring of :func:`evaluate`, :func:`stress_scores` and the study."""
    from sid_keras.runtime.render import packed_preview

    frame, ratio, truth = load_pair(pair, ratio_cap=ratio_cap, truths=truths)
    packed = enhancer.network_input(frame, ratio)
    outputs = {"model": enhancer.to_srgb(enhancer.anchored(enhancer.run(packed, frame.cfa.scale), frame, ratio), frame)}
    if outputs["model"].shape != truth.shape:
        raise SidError(f"{pair.short}: output {outputs['model'].shape} and ground truth {truth.shape} "
                       "differ; are short and long from the same camera?")
    outputs["scaled"] = scaled_reference(pair.short, frame, truth)
    if denoiser:
        outputs["scaled_nlm"] = nlm_denoise(outputs["scaled"])
    if bm3d:
        outputs["scaled_bm3d"] = bm3d_denoise(outputs["scaled"], truth)
    scores = {m: {"psnr": psnr_8bit(truth, o), "ssim": ssim_8bit(truth, o)} for m, o in outputs.items()}
    iso = frame.iso or getattr(pair, "iso", None)
    result = PairResult(str(pair.short), str(pair.long), ratio, scores, int(iso) if iso else None)
    return ScoredPair(result, outputs, truth, packed_preview(packed, frame.cfa), frame)


def _mean_scores(results: Sequence[PairResult]) -> dict:
    methods = results[0].scores.keys()
    return {m: {k: float(np.mean([r.scores[m][k] for r in results])) for k in ("psnr", "ssim")}
            for m in methods}


def summarize(results: Sequence[PairResult]) -> dict:
    from sid_keras.synth.synthetic import stress_cell

    if not results:
        raise SidError("no pairs were evaluated")
    by_ratio: dict[str, list[PairResult]] = {}
    by_cell: dict[str, list[PairResult]] = {}
    for r in results:
        by_ratio.setdefault(f"x{round(r.ratio)}", []).append(r)
        band = stress_cell(r.iso)
        if band:
            by_cell.setdefault(f"{band} x{round(r.ratio)}", []).append(r)
    return {
        "overall": _mean_scores(results),
        "per_ratio": {k: {"count": len(v), **_mean_scores(v)}
                      for k, v in sorted(by_ratio.items(), key=lambda kv: float(kv[0][1:]))},
        "per_cell": {k: {"count": len(v), **_mean_scores(v)} for k, v in by_cell.items()},
        "count": len(results),
        "images": [dataclasses.asdict(r) for r in results],
        "protocol": "full frames; 8-bit quantised; PSNR range 255; SSIM Gaussian 11x11 sigma 1.5 on RGB",
    }


def format_table(summary: dict) -> str:
    """Per-ratio (and, for stress sets, per ISO band x ratio) PSNR/SSIM of each method and the
    model's margin over each baseline."""
    methods = [m for m in METHODS if m in summary["overall"]]
    margins = [m for m in methods if m != "model"]
    rows = list(summary["per_ratio"].items())
    if summary.get("per_cell"):
        rows += list(summary["per_cell"].items())
    rows.append(("all", {"count": summary["count"], **summary["overall"]}))
    width = max(8, *(len(name) + 2 for name, _ in rows))
    head = f"{'pairs':<{width}}{'n':>4}" + "".join(f"{m + ' PSNR/SSIM':>26}" for m in methods)
    head += "".join(f"{'vs ' + m:>16}" for m in margins)
    lines = [head]
    for name, row in rows:
        line = f"{name:<{width}}{row['count']:>4}"
        line += "".join(f"{row[m]['psnr']:>17.2f} / {row[m]['ssim']:.3f}" for m in methods)
        line += "".join(f"{row['model']['psnr'] - row[m]['psnr']:>+13.2f} dB" for m in margins)
        lines.append(line)
    return "\n".join(lines)


def write_reports(out: pathlib.Path, summary: dict, results: Sequence[PairResult]) -> None:
    from sid_keras.runtime.io import atomic_path, write_json

    write_json(out / "metrics.json", summary, indent=2)
    methods = list(results[0].scores)
    with atomic_path(out / "metrics.csv") as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["short", "long", "ratio"] + [f"{m}_{k}" for m in methods for k in ("psnr", "ssim")])
            for r in results:
                writer.writerow([r.short, r.long, f"{r.ratio:.2f}"]
                                + [f"{r.scores[m][k]:.4f}" for m in methods for k in ("psnr", "ssim")])
    with atomic_path(out / "table.txt") as tmp:
        pathlib.Path(tmp).write_text(format_table(summary) + "\n")


def write_html_report(out: pathlib.Path, summary: dict) -> pathlib.Path:
    """A self-contained page: the per-ratio table and each image's before/after strip."""
    from sid_keras.runtime.io import atomic_path

    methods = [m for m in METHODS if m in summary["overall"]]
    rows = list(summary["per_ratio"].items()) + [("all", {"count": summary["count"], **summary["overall"]})]
    table = "<tr><th>ratio</th><th>n</th>" + "".join(f"<th>{m} PSNR / SSIM</th>" for m in methods) + "</tr>"
    for name, row in rows:
        table += f"<tr><td>{name}</td><td>{row['count']}</td>" + "".join(
            f"<td>{row[m]['psnr']:.2f} / {row[m]['ssim']:.3f}</td>" for m in methods) + "</tr>"
    images = ""
    for item in summary["images"]:
        stem = pathlib.Path(item["short"]).stem
        scores = ", ".join(f"{m} {item['scores'][m]['psnr']:.2f} dB" for m in methods)
        images += (f"<figure><img src='figures/{html.escape(stem)}.png' loading='lazy'>"
                   f"<figcaption>{html.escape(stem)} (x{item['ratio']:.0f}): {scores}</figcaption></figure>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>sid-keras evaluation</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:4px 8px;text-align:right}}img{{max-width:100%}}figure{{margin:1em 0}}</style></head><body>
<h1>sid-keras evaluation</h1><p>{html.escape(summary['protocol'])}. Panels: amplified input, model,
scaled, scaled + NLM (when run), ground truth.</p><table>{table}</table>{images}</body></html>"""
    path = out / "report.html"
    with atomic_path(path) as tmp:
        pathlib.Path(tmp).write_text(page)
    return path
