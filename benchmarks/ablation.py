"""Models side by side on the three checks of the fidelity issue, measured in one run.

    python benchmarks/ablation.py NAME=MODEL [NAME=MODEL ...] --stress DIR [--raw tests/data/blackmagic_pocket4k.dng]

For every model (a .keras or .tflite file; `shipped` = the package's own):
- stress grid: `sid-keras evaluate` on the stress set made by
  `sid-keras synth --photos ../shared/data/photos/val --out DIR --split val --stress` (68 CBSD68
  photos, held-out cameras and illuminants, ISO 400-51200 x ratios 30/100/300): PSNR / SSIM over
  all pairs and the smallest margin over scaled + non-local means in any ISO band x ratio cell
  (the classical baseline is computed once, in the same run);
- fidelity: `benchmarks/fidelity.py`'s scikit-image set at ratio 1, mean and worst PSNR beside the
  perfect-scene ceiling (the same frames for every model);
- the real Blackmagic frame at ratio 1 against LibRaw's development of it: PSNR / SSIM.
Targets (issue 24): stress >= 25.0 dB and >= +4 dB over NLM in every cell; fidelity within 3 dB
(mean) and 2 dB (worst) of the ceiling; Blackmagic >= 40 dB and SSIM >= 0.975.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import pathlib
import shutil
import sys
import tempfile

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

REPO = pathlib.Path(__file__).resolve().parents[1]


def blackmagic(enhancer, path: str) -> tuple[float, float]:
    from sid_keras.apps.evaluation import psnr_8bit, ssim_8bit
    from sid_keras.runtime import raw

    frame = raw.read_raw(path)
    reference = raw.crop_reference(raw.render_reference(path), frame).astype(np.float32) / 65535
    output = raw.crop_reference(enhancer.enhance(frame, ratio=1.0), frame)
    return psnr_8bit(reference, output), ssim_8bit(reference, output)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", metavar="NAME=MODEL")
    parser.add_argument("--stress", required=True, help="the stress set folder (sid-keras synth --stress)")
    parser.add_argument("--raw", default=str(REPO / "tests" / "data" / "blackmagic_pocket4k.dng"))
    args = parser.parse_args(argv)
    import fidelity

    from sid_keras.apps.evaluation import stress_scores
    from sid_keras.data import read_sid_list
    from sid_keras.runtime.inference import Enhancer
    from sid_keras.runtime.runners import DEFAULT_MODEL_FILE

    pairs = read_sid_list("Stress_val_list.txt", args.stress)
    work = pathlib.Path(tempfile.mkdtemp(prefix="sid_ablation_"))
    photos = fidelity.skimage_photos(work / "photos")
    baseline, rows = None, []
    try:
        for spec in args.models:
            name, _, path = spec.partition("=")
            enhancer = Enhancer(DEFAULT_MODEL_FILE if path == "shipped" else path)
            scores, baseline = stress_scores(enhancer, pairs, work / f"stress_{name}", baseline)
            with contextlib.redirect_stdout(io.StringIO()):
                fid = fidelity.score_set(enhancer, photos, work / f"fidelity_{name}", 3, 0)["scores"]
            bm = blackmagic(enhancer, args.raw)
            rows.append((name, scores["overall"], scores["margin"], fid, bm))
            print(f"measured {name}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'model':<18}{'stress PSNR/SSIM':>18}{'min vs NLM':>12}{'fidelity mean':>15}{'worst':>8}"
          f"{'ceiling':>16}{'Blackmagic x1':>16}")
    for name, overall, margin, fid, bm in rows:
        model, ceiling = fid["model"][:, 0], fid["ceiling"][:, 0]
        print(f"{name:<18}{overall['psnr']:>10.2f} / {overall['ssim']:.3f}{margin:>+11.2f}{model.mean():>15.2f}"
              f"{model.min():>8.2f}{ceiling.mean():>9.2f} / {ceiling.min():.2f}{bm[0]:>9.2f} / {bm[1]:.3f}")
    print(f"NLM per cell (dB): {', '.join(f'{c} {v:.2f}' for c, v in sorted(baseline.items()))}")
    print("targets: stress >= 25.0, >= +4 dB over NLM in every cell; fidelity gap <= 3 dB mean, <= 2 dB worst; "
          "Blackmagic >= 40 dB, SSIM >= 0.975")
    return 0


if __name__ == "__main__":
    sys.exit(main())
