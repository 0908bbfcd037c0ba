"""Training speed of the shipped recipe on this machine, per configuration, and what each learns.

    python benchmarks/train_speed.py [--window 20] [--windows 5] [--learn-steps 0] [--configs NAMES]

The shipped recipe (`sid-keras train --config shipped`: unet width 12, batches of 8 x 128x128
packed patches synthesised on the fly from ../shared/data/photos) runs in one process per
configuration, all with the same seed, so every configuration sees the very same batches:

- ``before``: the recipe as it was before this benchmark (float32; the display curve through the
  Pow kernel, SSIM with a 2-D window on every training batch, a per-pixel matvec and Pow in the
  synthesis), rebuilt here by swapping those back in: the reference every other row is divided by;
- ``float32``, ``float32_xla`` (``jit_compile=True``), ``mixed_bfloat16``: today's code;
- ``bf16_intra1`` / ``bf16_inter1``: one thread per op and two ops at once, or the reverse
  (TensorFlow's default is two and two on this machine);
- ``*_avx2`` rows: the same with oneDNN held to AVX2 (``ONEDNN_MAX_CPU_ISA``), the closest this
  machine gets to the AVX2-only machines (whose cores are also slower: compare ratios);
- ``default``: what `sid-keras train` picks here (``train.precision = "auto"``).

For each: the data stream alone (seconds per batch), the model step alone on one fixed batch,
and the real training step (stream + model on the same cores), each the median of ``--windows``
timed windows of ``--window`` steps after a warm-up; samples per second and the ratio to
``before``; the mean training loss over the run and the validation PSNR after it (in float32)
(24 CBSD68 photos as Sony A7S II pairs, made in a temporary folder), so a faster configuration
that learns worse shows. ``--learn-steps N`` trains every configuration N steps before
validating (the check that a precision stays within 0.1 dB of float32).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
CONFIGS = {  # name: (precision, jit_compile, code, oneDNN ISA cap, (intra-op, inter-op threads) or None)
    "before": ("float32", False, "before", None, None),
    "float32": ("float32", False, "today", None, None),
    "float32_xla": ("float32", True, "today", None, None),
    "mixed_bfloat16": ("mixed_bfloat16", False, "today", None, None),
    "bf16_intra1": ("mixed_bfloat16", False, "today", None, (1, 2)),
    "bf16_inter1": ("mixed_bfloat16", False, "today", None, (2, 1)),
    "float32_intra1": ("float32", False, "today", None, (1, 2)),
    "before_avx2": ("float32", False, "before", "AVX2", None),
    "float32_avx2": ("float32", False, "today", "AVX2", None),
    "float32_avx2_intra1": ("float32", False, "today", "AVX2", (1, 2)),
    "default": ("auto", False, "today", None, None),
}
WARMUP = 10


def use_code_before() -> None:
    """Swap back the four functions this benchmark's first measurement made faster, and SSIM on
    every training batch."""
    import tensorflow as tf
    from keras import ops

    from sid_keras.data import pipeline
    from sid_keras.models import losses, metrics
    from sid_keras.runtime import noise, render

    def display_curve(x):
        x = ops.cast(x, "float32")
        powered = ops.power(ops.maximum(x, render.CURVE_BREAK), render.LIBRAW_POWER)
        curved = powered * (1 + render.CURVE_OFFSET) - render.CURVE_OFFSET
        return ops.where(x < render.CURVE_BREAK, x * render.LIBRAW_TOE_SLOPE, curved)

    def ssim(y_true, y_pred, display=False):
        y_true, y_pred = metrics._prepare(y_true, y_pred, display)
        return tf.image.ssim(y_true, y_pred, max_val=1.0, filter_size=metrics.SSIM_WINDOW,
                             filter_sigma=metrics.SSIM_SIGMA)

    def tukey_lambda(seed, shape, lam):
        u = tf.random.stateless_uniform(shape, seed, 1e-6, 1 - 1e-6)
        safe = tf.where(tf.abs(lam) < 1e-4, 1e-4, lam)
        return tf.where(tf.abs(lam) < 1e-4, tf.math.log(u / (1 - u)), (u**safe - (1 - u) ** safe) / safe)

    losses.display_curve = metrics.display_curve = display_curve
    metrics.ssim = ssim
    metrics.in_training_step = lambda: False  # SSIM on every training batch too
    noise.tukey_lambda = tukey_lambda
    pipeline.camera_rgb = lambda rgb, matrix: tf.linalg.matvec(matrix, rgb)


def step_times(model, dataset, steps: int) -> list[float]:
    """Seconds of each training step of ``fit`` (the time between batch ends)."""
    import keras

    ends = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            float((logs or {}).get("loss", 0.0))  # read each step's loss, as the run's divergence guard does
            ends.append(time.perf_counter())

    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[Clock()])
    return [b - a for a, b in zip(ends, ends[1:])]


def window_medians(times: list[float], window: int, windows: int) -> float:
    """Median over windows of each window's mean step time, after the warm-up."""
    timed = times[WARMUP - 1 :]
    means = [statistics.fmean(timed[i * window : (i + 1) * window]) for i in range(windows)]
    return statistics.median([m for m in means if m == m])


def child(name: str, args) -> dict:
    """One configuration, in its own process (thread pools and oneDNN's ISA are per process)."""
    import numpy as np
    import tensorflow as tf

    from sid_keras.models import with_precision
    from sid_keras.training.config import load_config
    from sid_keras.training.task import Task

    precision, jit, code, _, threads = CONFIGS[name]
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads[0])
        tf.config.threading.set_inter_op_parallelism_threads(threads[1])
    if code == "before":
        use_code_before()
    config = load_config("shipped", [f"data.root={json.dumps(args.val)}",
                                      f"data.photos={json.dumps([str(p) for p in args.photos])}",
                                      f"train.precision={json.dumps(precision)}"])
    task = Task(config)
    data = task.data()
    window, windows = args.window, args.windows
    timed_steps = WARMUP + window * windows

    stream = iter(task.train_dataset(data))
    for _ in range(WARMUP):
        batch = next(stream)
    data_times = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(window):
            next(stream)
        data_times.append((time.perf_counter() - start) / window)

    def compiled():
        model = task.build_model(data.channels, data.scale)
        model.compile(optimizer=model.optimizer, loss=model.loss, metrics=task.metrics(), jit_compile=jit)
        return model

    fixed = tf.data.Dataset.from_tensors(batch).repeat()
    model_alone = window_medians(step_times(compiled(), fixed, timed_steps + 1), window, windows)

    model = compiled()
    full = step_times(model, task.train_dataset(data), max(timed_steps, args.learn_steps) + 1)
    step = window_medians(full, window, windows)
    losses = model.history.history["loss"]
    net = with_precision(model, None)  # validated as enhance runs it: in float32
    net.compile(loss=task.loss(), metrics=task.metrics())
    evaluation = net.evaluate(data.val, verbose=0, return_dict=True)
    return {
        "name": name,
        "policy": task.precision.policy,
        "data_s": statistics.median(data_times),
        "model_s": model_alone,
        "step_s": step,
        "samples_per_s": config.data.batch_size / step,
        "steps": len(full) + 1,
        "loss": float(np.mean(losses)),
        "val_psnr": float(evaluation["psnr"]),
        "val_ssim": float(evaluation["ssim"]),
    }


def make_val_set(folder: pathlib.Path, photos: pathlib.Path) -> str:
    from sid_keras.synth.synthetic import synthesize

    synthesize(photos, folder, split="val", limit=24)
    return str(folder)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of: {', '.join(CONFIGS)}")
    parser.add_argument("--window", type=int, default=20, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--learn-steps", type=int, default=0, help="train this many steps before validating")
    parser.add_argument("--photos", type=pathlib.Path, nargs="+",
                        default=[SHARED / "train", SHARED / "train_large"])
    parser.add_argument("--val-photos", type=pathlib.Path, default=SHARED / "val")
    parser.add_argument("--val", help="a validation set made by `sid-keras synth --split val` (default: made here)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args)))
        return 0
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    missing = [p for p in [*args.photos, args.val_photos] if not p.is_dir()]
    if unknown or missing:
        print(f"unknown configurations {unknown}" if unknown else f"{missing[0]}: no such folder of photos; "
              "pass --photos and --val-photos", file=sys.stderr)
        return 1
    from sid_keras.training.task import cpu_has_bf16

    with tempfile.TemporaryDirectory(prefix="train_speed_") as tmp:
        args.val = args.val or make_val_set(pathlib.Path(tmp) / "val24", args.val_photos)
        rows = []
        for name in names:
            cap = CONFIGS[name][3]
            env = {**os.environ, **({"ONEDNN_MAX_CPU_ISA": cap} if cap else {})}
            command = [sys.executable, __file__, "--child", name, "--window", str(args.window), "--windows",
                       str(args.windows), "--learn-steps", str(args.learn_steps), "--val", args.val,
                       "--photos", *map(str, args.photos)]
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode:
                print(f"{name}: failed\n{done.stderr[-3000:]}", file=sys.stderr)
                return 1
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"  measured {name}", file=sys.stderr, flush=True)
    reference = {r["name"]: r for r in rows}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, bfloat16 instructions: "
          f"{'yes' if cpu_has_bf16() else 'no'}; python {platform.python_version()}")
    print(f"command: python benchmarks/train_speed.py --window {args.window} --windows {args.windows} "
          f"--learn-steps {args.learn_steps}")
    print(f"shipped recipe, batches of 8 x 128x128 packed patches; {rows[0]['steps']} steps per configuration, "
          "same seed; times are medians of windows\n")
    header = (f"{'configuration':<16}{'policy':<16}{'data s/batch':>13}{'model s/step':>13}{'step s':>8}"
              f"{'samples/s':>10}{'x before':>9}{'data share':>11}{'loss':>8}{'val PSNR':>9}{'val SSIM':>9}")
    print(header)
    print("-" * len(header))
    for r in rows:
        base = reference.get("before_avx2" if r["name"].endswith("_avx2") else "before")
        speedup = f"{base['step_s'] / r['step_s']:.2f}x" if base else "-"
        share = max(0.0, 1 - r["model_s"] / r["step_s"])  # what the stream costs the step
        print(f"{r['name']:<16}{r['policy']:<16}{r['data_s']:>13.3f}{r['model_s']:>13.3f}{r['step_s']:>8.3f}"
              f"{r['samples_per_s']:>10.1f}{speedup:>9}{share:>10.0%}{r['loss']:>8.4f}{r['val_psnr']:>9.2f}"
              f"{r['val_ssim']:>9.3f}")
    print("\ndata share: the part of a training step the synthesis takes from the model on the same cores "
          "(1 - model alone / step); x before: step time of `before` (AVX2 rows: of `before_avx2`) / this one")
    return 0


if __name__ == "__main__":
    sys.exit(main())
