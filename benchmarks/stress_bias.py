"""How much of a model's error on the stress grid is a global colour / brightness bias.

    python benchmarks/stress_bias.py [--model PATH] [--data data/stress] [--list Stress_val_list.txt]

Per stress cell (ISO band x ratio), beside the model's PSNR:
- ``gain fit``: its PSNR once each output channel is scaled by the gain that best fits the truth
  (an oracle no user has: the headroom a perfect exposure and colour balance would give);
- ``truth / output mean``: below 1 the model renders the frame too bright;
- ``short at black``: the share of the short exposure's pixels at or below the black level, which
  the network input clips at black (its mean is then biased upward by the dark noise).
The stress set comes from ``sid-keras synth --photos ../shared/data/photos/val --out data/stress
--split val --stress``.
"""

from __future__ import annotations

import argparse
import collections
import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def channel_gain_fit(output: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``output`` with each channel scaled by its least-squares gain onto ``truth``, clipped to [0, 1]."""
    gain = (output * truth).sum((0, 1)) / np.maximum((output * output).sum((0, 1)), 1e-12)
    return np.clip(output * gain, 0.0, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help=".keras or .tflite (default: the shipped model)")
    parser.add_argument("--data", default="data/stress")
    parser.add_argument("--list", default="Stress_val_list.txt")
    args = parser.parse_args()

    from sid_keras.apps.evaluation import psnr_8bit, score_pair
    from sid_keras.data import read_sid_list
    from sid_keras.runtime.inference import Enhancer
    from sid_keras.synth.synthetic import stress_cell

    enhancer = Enhancer(args.model)
    rows: dict[str, dict[str, list[float]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    truths: dict = {}
    for pair in read_sid_list(args.list, args.data):
        scored = score_pair(enhancer, pair, truths, denoiser=False)  # the package's one per-pair scoring
        frame, ratio, truth, output = scored.frame, scored.result.ratio, scored.truth, scored.outputs["model"]
        black = np.min(frame.black_level)
        scores = {"model": scored.result.scores["model"]["psnr"],
                  "gain fit": psnr_8bit(truth, channel_gain_fit(output, truth)),
                  "truth / output mean": float(truth.mean() / max(output.mean(), 1e-12)),
                  "short at black": float((frame.mosaic <= black).mean())}
        for cell in (f"{stress_cell(frame.iso or pair.iso)} x{round(ratio)}", "all"):
            for name, value in scores.items():
                rows[cell][name].append(value)
    rows["all"] = rows.pop("all")  # last; the cells in the list's order, as `sid-keras evaluate` prints them

    names = ["model", "gain fit", "truth / output mean", "short at black"]
    print(f"{'cell':<24}{'n':>4}  {'model dB':>9}  {'gain fit dB':>11}  {'headroom':>8}  {'truth/output':>12}  "
          f"{'at black':>8}")
    for cell, values in rows.items():
        model, fit, mean_ratio, at_black = (float(np.mean(values[n])) for n in names)
        print(f"{cell:<24}{len(values['model']):>4}  {model:>9.2f}  {fit:>11.2f}  {fit - model:>+8.2f}  "
              f"{mean_ratio:>12.3f}  {at_black:>8.1%}")


if __name__ == "__main__":
    main()
