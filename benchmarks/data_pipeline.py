"""Patches per second: decoding the raw every time vs the packed cache vs the model's own step.

    python benchmarks/data_pipeline.py [--raw FILE] [--patch 512] [--batches 20]

Uses a real camera file (default: tests/data/blackmagic_pocket4k.dng, 2176x4128 Bayer).
All three rows are measured in the same run, so compare the ratios, not the absolute numbers.
Target: the cache path delivers 512x512 packed patches at least 20x faster than decoding each
time, and faster than the SID-size U-Net consumes them (a training step never waits on data).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
DEFAULT_RAW = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "blackmagic_pocket4k.dng"


def decode_every_time(path: pathlib.Path, patch: int, count: int, rng) -> float:
    """A training pair without a cache: decode + pack the short, render the long, crop both."""
    from sid_keras.runtime import model_input, raw

    start = time.perf_counter()
    for _ in range(count):
        frame = raw.read_raw(path)
        packed = model_input.amplify(model_input.pack(frame), 100)
        truth = raw.crop_reference(raw.render_reference(path), frame)  # the same file stands in for the long
        top = rng.integers(0, packed.shape[0] - patch + 1)
        left = rng.integers(0, packed.shape[1] - patch + 1)
        np.ascontiguousarray(packed[top : top + patch, left : left + patch])
        np.ascontiguousarray(truth[2 * top : 2 * (top + patch), 2 * left : 2 * (left + patch)]) / 65535.0
    return count / (time.perf_counter() - start)


def cached_pipeline(entries, patch: int, batch: int, batches: int) -> float:
    from sid_keras.data import training_dataset

    ds = training_dataset(entries, patch_size=patch, batch_size=batch, seed=0)
    iterator = iter(ds)
    next(iterator)  # warm up
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch / (time.perf_counter() - start)


def model_step(patch: int, batch: int, steps: int) -> float:
    import keras

    from sid_keras.models import build_model

    model = build_model("unet")
    model.compile(keras.optimizers.Adam(1e-4), loss="mae")
    x = np.random.rand(batch, patch, patch, 4).astype("float32")
    y = np.random.rand(batch, patch * 2, patch * 2, 3).astype("float32")
    model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=pathlib.Path, default=DEFAULT_RAW)
    parser.add_argument("--patch", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--decodes", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    if not args.raw.is_file():
        print(f"{args.raw}: not found; pass --raw FILE", file=sys.stderr)
        return 1
    from sid_keras.data import PackedCache
    from sid_keras.data.cache import CachedPair

    rng = np.random.default_rng(0)
    decode = decode_every_time(args.raw, args.patch, args.decodes, rng)
    with tempfile.TemporaryDirectory() as tmp:
        cache = PackedCache(tmp)
        short_path, meta = cache.short(args.raw)
        # The long rendering of the same frame stands in for a ground truth of the same size.
        long_path, _ = cache.long(args.raw)
        entry = CachedPair(str(short_path), str(long_path), 100.0, meta["channels"], meta["scale"], str(args.raw))
        cached = cached_pipeline([entry], args.patch, args.batch, args.batches)
    step = model_step(args.patch, args.batch, args.steps)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; python {platform.python_version()}")
    print(f"command: python benchmarks/data_pipeline.py --patch {args.patch} --batch {args.batch}")
    print(f"file: {args.raw.name}; {args.patch}x{args.patch} packed patches\n")
    print(f"{'path':<44}{'patches/s':>12}{'vs decode':>12}")
    rows = [("decode every time (short + long render)", decode),
            ("packed cache (memory-mapped, tf.data)", cached),
            ("SID-size unet training step consumes", step)]
    for name, rate in rows:
        print(f"{name:<44}{rate:>12.2f}{rate / decode:>11.1f}x")
    print(f"\ncache / decode: {cached / decode:.1f}x (target >= 20x); "
          f"cache / model step: {cached / step:.1f}x (> 1: the step never waits on data)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
