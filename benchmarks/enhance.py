"""Speed and memory of `sid-keras enhance`, each figure beside LibRaw's development of the same file.

    python benchmarks/enhance.py [--raw FILE.dng] [--model PATH] [--sizes 12 48] [--batch 10]

Tables (every row measured in this run; machines are shared and noisy, so each time is the
median of --repeats runs and the columns that matter are the ratios):

1. end to end, whole commands in fresh processes: LibRaw's development of the file (rawpy
   ``postprocess`` with the camera white balance, no auto-brightening, and a Pillow PNG at
   compress level 1: the reference) against ``sid-keras enhance FILE -o out.png``;
2. where the time goes inside one enhancement (start-up, read, pack, network, blend, render,
   write);
3. synthetic frames of --sizes megapixels: seconds and peak memory (RSS) of a fresh process;
4. a batch of --batch copies in one command against as many separate commands, alternated
   for --repeats rounds;
5. bursts (`enhance --burst`) of N = --burst-frames frames of --burst-size megapixels (a
   textured scene, each frame shifted by a few pixels, with its own noise): seconds and peak
   memory of a fresh process, beside a single frame's enhancement (N = 1) and LibRaw's
   development of that frame, in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_RAW = os.path.join(HERE, "..", "tests", "data", "blackmagic_pocket4k.dng")
ASPECT = 3 / 2  # width / height of the synthetic frames, like most camera sensors

LIBRAW_DEVELOP = """
import sys, rawpy
from PIL import Image
with rawpy.imread(sys.argv[1]) as raw:
    rgb = raw.postprocess(use_camera_wb=True, no_auto_bright=True)
Image.fromarray(rgb).save(sys.argv[2], format="PNG", compress_level=1)
"""


def wall(command: list[str], repeats: int) -> float:
    """Median wall time of a command run in a fresh process."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def enhance_command(inputs: list[str], out: str, model: str | None) -> list[str]:
    command = [sys.executable, "-m", "sid_keras.apps.cli", "enhance", *inputs, "-o", out, "--overwrite"]
    return command + (["--model", model] if model else [])


def stages(raw_file: str, model: str | None, repeats: int) -> dict:
    """Seconds per stage of one enhancement in this process (the start-up in a fresh one)."""
    code = ("import time; t = time.perf_counter()\nfrom sid_keras.runtime.inference import Enhancer\n"
            f"Enhancer({model!r})\nprint(time.perf_counter() - t)")
    startup = statistics.median(float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                                     text=True).stdout.split()[-1]) for _ in range(repeats))
    from sid_keras.apps.batch import write_pixels
    from sid_keras.runtime import inference, model_input, raw
    from sid_keras.runtime.inference import Enhancer

    enhancer = Enhancer(model)
    totals: dict[str, list[float]] = {}
    for _ in range(repeats):
        clock = {"network": 0.0, "pack": 0.0, "render": 0.0}

        def timed(fn, key):
            def wrapper(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    clock[key] += time.perf_counter() - start
            return wrapper

        predict, network_input, put = enhancer.predict, model_input.network_input, inference.Canvas.put
        enhancer.predict = timed(predict, "network")
        model_input.network_input = timed(network_input, "pack")
        inference.Canvas.put = timed(put, "render")
        try:
            start = time.perf_counter()
            frame = raw.read_raw(raw_file)
            read = time.perf_counter() - start
            start = time.perf_counter()
            pixels, _, _ = enhancer.enhance_to_pixels(frame, "auto", "png")
            enhance = time.perf_counter() - start
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                write_pixels(os.path.join(tmp, "o.png"), pixels, frame, "png")
                write = time.perf_counter() - start
        finally:
            enhancer.predict, model_input.network_input, inference.Canvas.put = predict, network_input, put
        blend = enhance - clock["network"] - clock["pack"] - clock["render"]
        for key, value in {"read (LibRaw decode)": read, "pack + amplify": clock["pack"],
                           "network": clock["network"], "blend (tiles, strips)": blend,
                           "render + quantise": clock["render"], "write PNG": write}.items():
            totals.setdefault(key, []).append(value)
    return {"start-up (imports, model)": startup, **{k: statistics.median(v) for k, v in totals.items()}}


def write_frame(path: str, megapixels: float) -> None:
    from sid_keras.runtime.dng import write_cfa_dng

    height = int(round((megapixels * 1e6 / ASPECT) ** 0.5 / 2)) * 2
    width = int(round(height * ASPECT / 2)) * 2
    rng = np.random.default_rng(0)
    mosaic = rng.integers(512, 1200, (height, width), dtype=np.uint16)
    write_cfa_dng(path, mosaic, np.array([[0, 1], [1, 2]]), black_level=512, white_level=16383,
                  exposure_time=0.04)


def size_worker(model: str | None, dng: str, out: str) -> None:
    """One enhancement as the CLI does it; prints its seconds and the process's peak RSS."""
    from sid_keras.apps.batch import write_pixels
    from sid_keras.runtime import raw
    from sid_keras.runtime.inference import Enhancer

    enhancer = Enhancer(model)
    start = time.perf_counter()
    frame = raw.read_raw(dng)
    pixels, _, _ = enhancer.enhance_to_pixels(frame, 100, "png")
    write_pixels(out, pixels, frame, "png", overwrite=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_mb": peak_mb}))


def write_burst(folder: str, megapixels: float, frames: int) -> list[str]:
    """``frames`` DNGs of one textured scene (smoothed noise, a dark x100 exposure), each shifted
    by up to 6 sensor pixels (an even number: the CFA's phase), with independent noise."""
    from scipy.ndimage import gaussian_filter

    from sid_keras.runtime.dng import write_cfa_dng

    height = int(round((megapixels * 1e6 / ASPECT) ** 0.5 / 2)) * 2
    width = int(round(height * ASPECT / 2)) * 2
    rng = np.random.default_rng(0)
    scene = gaussian_filter(rng.uniform(0, 1, (height // 4 + 8, width // 4 + 8)).astype(np.float32), 1.5)
    scene = np.kron(scene, np.ones((4, 4), np.float32))  # texture at a few pixels' scale
    paths = []
    for i in range(frames):
        dy, dx = (0, 0) if i == 0 else 2 * rng.integers(-3, 4, 2)
        view = scene[16 + dy : 16 + dy + height, 16 + dx : 16 + dx + width]
        mosaic = 512 + view * 160 + rng.normal(0, 12, view.shape)
        paths.append(os.path.join(folder, f"burst{i:02d}.dng"))
        write_cfa_dng(paths[-1], np.clip(mosaic, 0, 16383).astype(np.uint16), np.array([[0, 1], [1, 2]]),
                      black_level=512, white_level=16383, exposure_time=0.04, iso=6400)
    return paths


def burst_worker(model: str | None, out: str, dngs: list[str]) -> None:
    """One burst enhancement as `enhance --burst` does it; prints its seconds and peak RSS."""
    from sid_keras.apps.batch import write_pixels
    from sid_keras.runtime.inference import Enhancer

    enhancer = Enhancer(model)
    start = time.perf_counter()
    merged, law, _ = enhancer.merge_burst(dngs)
    pixels, _, _ = enhancer.enhance_to_pixels(merged, 100, "png", enhancer.told(law))
    write_pixels(out, pixels, merged, "png", overwrite=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_mb": peak_mb}))


def main(argv=None) -> int:
    from sid_keras.apps.console import without_huge_pages

    without_huge_pages()  # as `sid-keras enhance` does: this process's stages and the size workers
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--worker":
        size_worker(None if sys.argv[2] == "-" else sys.argv[2], sys.argv[3], sys.argv[4])
        return 0
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--burst-worker":
        burst_worker(None if sys.argv[2] == "-" else sys.argv[2], sys.argv[3], sys.argv[4:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", default=DEFAULT_RAW, help="a real raw file (default: the Blackmagic DNG)")
    parser.add_argument("--model", default=None, help=".keras or .tflite (default: the shipped model)")
    parser.add_argument("--sizes", type=float, nargs="*", default=[12, 48], help="synthetic frames, megapixels")
    parser.add_argument("--batch", type=int, default=10, help="files in the batch comparison (0: skip)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--burst-size", type=float, default=12, help="megapixels of the burst frames (0: skip)")
    parser.add_argument("--burst-frames", type=int, nargs="*", default=[1, 2, 4, 8])
    args = parser.parse_args(argv)
    print(f"# python benchmarks/enhance.py {' '.join(sys.argv[1:])}")
    print(f"# {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}; "
          f"model: {args.model or 'shipped'}; file: {os.path.basename(args.raw)}\n")
    with tempfile.TemporaryDirectory() as tmp:
        libraw = wall([sys.executable, "-c", LIBRAW_DEVELOP, args.raw, os.path.join(tmp, "libraw.png")], args.repeats)
        ours = wall(enhance_command([args.raw], os.path.join(tmp, "ours.png"), args.model), args.repeats)
        print(f"{'end to end (fresh process)':<40}{'seconds':>9}{'vs LibRaw':>11}")
        print(f"{'LibRaw development + PNG (reference)':<40}{libraw:>9.2f}{1:>10.2f}x")
        print(f"{'sid-keras enhance':<40}{ours:>9.2f}{ours / libraw:>10.2f}x\n")

        print(f"{'inside one enhancement':<40}{'seconds':>9}{'share':>8}")
        parts = stages(args.raw, args.model, args.repeats)
        for name, seconds in parts.items():
            print(f"{name:<40}{seconds:>9.2f}{100 * seconds / sum(parts.values()):>7.0f}%")
        print()

        if args.sizes:
            print(f"{'synthetic frame':<20}{'seconds':>9}{'s/MP':>7}{'peak MB':>9}")
            for mp in args.sizes:
                dng = os.path.join(tmp, f"frame_{mp:g}.dng")
                write_frame(dng, mp)
                run = subprocess.run([sys.executable, __file__, "--worker", args.model or "-", dng,
                                      os.path.join(tmp, "size.png")], capture_output=True, text=True)
                if run.returncode:
                    print(f"{mp:>5g} MP  failed: {(run.stderr.strip().splitlines() or ['?'])[-1][:80]}")
                    continue
                r = json.loads(run.stdout.strip().splitlines()[-1])
                print(f"{f'{mp:g} MP':<20}{r['seconds']:>9.2f}{r['seconds'] / mp:>7.2f}{r['peak_mb']:>9.0f}")
                os.unlink(dng)
            print()

        if args.burst_size and args.burst_frames:
            folder = os.path.join(tmp, "burst")
            os.mkdir(folder)
            dngs = write_burst(folder, args.burst_size, max(args.burst_frames))
            libraw = wall([sys.executable, "-c", LIBRAW_DEVELOP, dngs[0], os.path.join(tmp, "libraw.png")], 1)
            print(f"{f'burst of {args.burst_size:g} MP frames':<28}{'seconds':>9}{'vs 1 frame':>12}{'peak MB':>9}")
            print(f"{'LibRaw, frame 0 (reference)':<28}{libraw:>9.2f}{'':>12}{'':>9}")
            single = None
            for n in args.burst_frames:
                runs = [subprocess.run([sys.executable, __file__, "--burst-worker", args.model or "-",
                                        os.path.join(tmp, "burst.png"), *dngs[:n]], capture_output=True, text=True)
                        for _ in range(args.repeats)]
                if any(run.returncode for run in runs):
                    print(f"{n} frames  failed: {(runs[0].stderr.strip().splitlines() or ['?'])[-1][:80]}")
                    continue
                results = [json.loads(run.stdout.strip().splitlines()[-1]) for run in runs]
                seconds = statistics.median(r["seconds"] for r in results)
                single = single or seconds
                print(f"{f'{n} frame' + ('s' if n > 1 else ''):<28}{seconds:>9.2f}{seconds / single:>11.2f}x"
                      f"{max(r['peak_mb'] for r in results):>9.0f}")
            print()

        if args.batch:
            folder = os.path.join(tmp, "batch")
            os.mkdir(folder)
            files = []
            for i in range(args.batch):
                files.append(os.path.join(folder, f"frame{i:02d}.dng"))
                shutil.copy(args.raw, files[-1])
            # Alternate the two, --repeats rounds, and compare medians: on a shared machine the load
            # drifts over the minutes a round takes.
            ones, separates = [], []
            for _ in range(args.repeats):
                ones.append(wall(enhance_command(files, os.path.join(tmp, "batch_out"), args.model), 1))
                separates.append(sum(wall(enhance_command([f], os.path.join(tmp, "single.png"), args.model), 1)
                                     for f in files))
            one, separate = statistics.median(ones), statistics.median(separates)
            print(f"{f'{args.batch} files':<40}{'seconds':>9}{'files/s':>9}")
            print(f"{'separate commands (reference)':<40}{separate:>9.2f}{args.batch / separate:>9.2f}")
            print(f"{'one batch command':<40}{one:>9.2f}{args.batch / one:>9.2f}   "
                  f"throughput x{separate / one:.2f} (medians; rounds: "
                  f"{' '.join(f'x{s / o:.2f}' for s, o in zip(separates, ones))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
