"""How close the noise law estimated from a frame alone comes to the frame's true noise.

    python benchmarks/noise_estimate.py [--stress data/stress] [--photos ../shared/data/photos/val]
                                        [--large ../shared/data/photos/train_large] [--psnr]

A file with neither a DNG ``NoiseProfile`` nor an ISO (the Blackmagic frame in tests/data, some
converters' DNGs) has its noise estimated from its own pixels (``sid_keras.runtime.raw.
estimate_noise_law``); a noise-aware model is told that estimate. Per set of frames whose true
noise is known (the sampled virtual camera that made them), the error of the standard deviation
it implies at the frame's median and 95th-percentile level, as a factor (median and 90th
percentile over frames), beside the error of the package's reference law at the frame's ISO
(the Sony A7S II), which a file with an ISO is told:
- stress: 72 frames of the stress grid (`sid-keras synth --photos ../shared/data/photos/val --out
  DIR --split val --stress`: ISO 400-51200, x30-x300, three cameras unlike the reference);
- large: 23 larger frames (up to 512x512 packed, sampled in tiles as a 12 MP frame is) made the
  stress grid's way from Urban100 / Sun-Hays photos;
- clean: benchmarks/fidelity.py's frames (ISO 100, ratio 1, photos full of fine detail).
With ``--psnr``, the shipped model on the whole stress grid told the reference law, the true
camera's law and the estimate (about 15 minutes on 2 cores), and with ``--denoise K ...`` as
``enhance --denoise K`` tells it (the chosen law, its standard deviation times K).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import pathlib
import sys
import tempfile

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


def true_law(plan) -> tuple[float, float]:
    """(s, o) of the virtual camera a synthesised scene was made with."""
    from sid_keras.runtime import noise
    from sid_keras.synth import synthetic

    profile = noise.load_profile(plan.noise_profile)
    camera = synthetic._sample_camera(profile, noise.iso_to_gain(plan.iso, profile), plan.seed)
    return tuple(float(v) for v in noise.camera_variance(camera))


def stress_plans(photos: pathlib.Path) -> dict:
    """The stress grid's plans by scene id (the synth's own, from the same photos and seed)."""
    from sid_keras.synth import synthetic

    photos = synthetic.find_photos(photos)
    return {plan.scene_id: plan for plan in synthetic.plan_stress_scenes(photos, 0, 20000)}


def frame_sets(stress: pathlib.Path, photos: pathlib.Path, large: pathlib.Path):
    """(set name, frame, true (s, o)) of each frame measured."""
    import fidelity

    from sid_keras.data import read_sid_list
    from sid_keras.runtime import raw
    from sid_keras.synth import synthetic

    plans = stress_plans(photos)
    pairs = read_sid_list("Stress_val_list.txt", stress)
    for k in np.random.default_rng(1).choice(len(pairs), min(72, len(pairs)), replace=False):
        frame = raw.read_raw(pairs[k].short)
        yield "stress", frame, true_law(plans[int(pathlib.Path(frame.path).name[:5])])
    for plan in synthetic.plan_stress_scenes(synthetic.find_photos(large)[:200:8], 5, 50000, cells_per_photo=1):
        for frame, _ in synthetic.short_frames(plan):
            yield "large", frame, true_law(plan)
    photos = fidelity.skimage_photos(pathlib.Path(tempfile.mkdtemp(prefix="sid_noise_")) / "photos")
    for plan in fidelity.plans_for(photos, 3, 0):
        for frame, _ in synthetic.short_frames(plan):
            yield "clean", frame, true_law(plan)


def sigma_errors(s, o, true: tuple[float, float], levels) -> list[float]:
    """log2 of the estimated over the true standard deviation at each level."""
    return [float(np.log2(np.sqrt(np.mean(s * y + o) / (true[0] * y + true[1])))) for y in levels]


def accuracy_table(stress: pathlib.Path, photos: pathlib.Path, large: pathlib.Path) -> None:
    from sid_keras.runtime import noise, noise_law

    errors: dict[tuple[str, str], list] = {}
    for name, frame, true in frame_sets(stress, photos, large):
        sample = noise_law._noise_sample(frame)
        levels = np.maximum(np.quantile(np.concatenate([t.ravel() for t in sample]), [0.5, 0.95]), 0.0)
        estimate = noise_law.estimate_noise_law(sample)
        reference = noise.iso_variance(frame.iso, noise.SONY_A7S2)
        errors.setdefault((name, "estimate"), []).append(sigma_errors(*estimate, true, levels))
        errors.setdefault((name, "reference law"), []).append(sigma_errors(*reference, true, levels))
    print(f"{'frames':<8}{'law':<15}{'n':>4}{'median level: median':>22}{'90th':>7}{'95th-pct level: median':>25}"
          f"{'90th':>7}{'worst':>7}")
    for (name, law), values in errors.items():
        factor = 2 ** np.abs(np.array(values))
        middle, high = factor[:, 0], factor[:, 1]
        print(f"{name:<8}{law:<15}{len(values):>4}{np.median(middle):>21.2f}x{np.quantile(middle, 0.9):>6.2f}x"
              f"{np.median(high):>24.2f}x{np.quantile(high, 0.9):>6.2f}x{factor.max():>6.2f}x")
    print("(a factor on the standard deviation, either way; 1.00x is exact)")


def psnr_table(stress: pathlib.Path, photos: pathlib.Path, strengths: list[float]) -> None:
    from sid_keras.apps.evaluation import stress_scores
    from sid_keras.data import read_sid_list
    from sid_keras.runtime import noise, noise_law
    from sid_keras.runtime.inference import Enhancer

    plans = stress_plans(photos)

    class Told(Enhancer):
        """The shipped model told one source's noise law, whatever the file says."""

        source = "reference law"

        def noise_law(self, frame):
            channels = frame.cfa.channels
            if self.source == "estimate":
                s, o = noise_law.estimate_noise_law(noise_law._noise_sample(frame))
                return noise_law.NoiseLaw(s, o, self.source)
            if self.source == "true law":
                s, o = true_law(plans[int(pathlib.Path(frame.path).name[:5])])
            else:
                s, o = noise.iso_variance(frame.iso, noise.SONY_A7S2)
            return noise_law.NoiseLaw(np.full(channels, s, np.float32), np.full(channels, o, np.float32), self.source)

    pairs = read_sid_list("Stress_val_list.txt", stress)
    work = pathlib.Path(tempfile.mkdtemp(prefix="sid_noise_"))
    baseline = None
    rows = []
    for source in ("reference law", "true law", "estimate"):
        enhancer = Told()
        enhancer.source = source
        rows.append((source, enhancer))
    rows += [(f"enhance x{k:g}", Enhancer(denoise=k)) for k in strengths]
    print(f"{'told':<15}{'stress PSNR / SSIM':>20}{'min vs NLM':>12}")
    for name, enhancer in rows:
        with contextlib.redirect_stdout(io.StringIO()):
            scores, baseline = stress_scores(enhancer, pairs, work / name.replace(" ", "_"), baseline)
        overall = scores["overall"]
        print(f"{name:<15}{overall['psnr']:>12.2f} / {overall['ssim']:.3f}{scores['margin']:>+12.2f}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stress", default="data/stress", type=pathlib.Path)
    parser.add_argument("--photos", default="../shared/data/photos/val", type=pathlib.Path,
                        help="the photos the stress set was made from")
    parser.add_argument("--large", default="../shared/data/photos/train_large", type=pathlib.Path)
    parser.add_argument("--psnr", action="store_true", help="also the shipped model's stress PSNR told each law")
    parser.add_argument("--denoise", type=float, nargs="*", default=[], metavar="K",
                        help="with --psnr, also as enhance chooses the law at each --denoise strength")
    args = parser.parse_args(argv)
    accuracy_table(args.stress, args.photos, args.large)
    if args.psnr:
        psnr_table(args.stress, args.photos, args.denoise)
    return 0


if __name__ == "__main__":
    sys.exit(main())
