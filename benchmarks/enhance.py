"""Time and peak memory per megapixel of whole-frame vs tiled inference, at several frame sizes.

    python benchmarks/enhance.py [--model unet|PATH.keras] [--sizes 4 12 24] [--whole-max 12]

Each measurement runs in its own process (peak RSS of that process, from the OS) on a DNG of the
given size written for the run: read, pack, infer, clip. All rows come from the same run; quote
ratios. Target: a 24 MP raw enhances with the SID-size unet in under 3 GB peak memory (tiled).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ASPECT = 3 / 2  # width / height of the benchmark frames, like most camera sensors


def frame_shape(megapixels: float) -> tuple[int, int]:
    height = int(round((megapixels * 1e6 / ASPECT) ** 0.5 / 2)) * 2
    return height, int(round(height * ASPECT / 2)) * 2


def write_frame(path: str, megapixels: float) -> None:
    from sid_keras.dng import write_cfa_dng

    rng = np.random.default_rng(0)
    mosaic = rng.integers(512, 1200, frame_shape(megapixels)).astype(np.uint16)
    write_cfa_dng(path, mosaic, np.array([[0, 1], [1, 2]]), black_level=512, white_level=16383,
                  exposure_time=0.04)


def worker(model_spec: str, dng: str, mode: str, tile: int) -> None:
    """Run one enhancement and print its wall time (the model is built before the clock starts)."""
    from sid_keras.inference import Enhancer, load_model
    from sid_keras.models import build_model

    model = load_model(model_spec) if model_spec.endswith(".keras") else build_model(model_spec)
    enhancer = Enhancer(model, tile=10**9 if mode == "whole" else tile)
    enhancer.predict(np.zeros((1, 64, 64, 4), np.float32))  # build the graph once
    start = time.perf_counter()
    image = enhancer.enhance(dng, ratio=100)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "shape": list(image.shape)}))


def measure(model: str, dng: str, mode: str, tile: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", model, dng, mode, str(tile)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1][:60]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="unet", help="registered name (random weights) or .keras file")
    parser.add_argument("--sizes", type=float, nargs="+", default=[4, 12, 24], help="megapixels")
    parser.add_argument("--whole-max", type=float, default=12, help="largest size to run whole-frame")
    parser.add_argument("--tile", type=int, default=512, help="tile side in packed pixels")
    args = parser.parse_args(argv)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; python {platform.python_version()}")
    print(f"command: python benchmarks/enhance.py --model {args.model} --sizes "
          f"{' '.join(f'{s:g}' for s in args.sizes)} --whole-max {args.whole_max:g} --tile {args.tile}\n")
    print(f"{'MP':>5} {'mode':<7}{'seconds':>9}{'s/MP':>8}{'peak MB':>9}{'MB/MP':>8}  vs whole")
    with tempfile.TemporaryDirectory() as tmp:
        for mp in args.sizes:
            dng = os.path.join(tmp, f"frame_{mp:g}mp.dng")
            write_frame(dng, mp)
            results = {}
            for mode in ("whole", "tiled"):
                if mode == "whole" and mp > args.whole_max:
                    continue
                results[mode] = r = measure(args.model, dng, mode, args.tile)
                if "error" in r:
                    print(f"{mp:>5g} {mode:<7} failed: {r['error']}")
                    continue
                real_mp = r["shape"][0] * r["shape"][1] / 1e6
                ratio = ""
                if mode == "tiled" and "seconds" in results.get("whole", {}):
                    w = results["whole"]
                    ratio = f"time x{r['seconds'] / w['seconds']:.2f}, memory x{r['peak_mb'] / w['peak_mb']:.2f}"
                print(f"{mp:>5g} {mode:<7}{r['seconds']:>9.2f}{r['seconds'] / real_mp:>8.2f}"
                      f"{r['peak_mb']:>9.0f}{r['peak_mb'] / real_mp:>8.0f}  {ratio}", flush=True)
            os.unlink(dng)
    return 0


if __name__ == "__main__":
    sys.exit(main())
