"""Keras fp32 vs TFLite fp32 / fp16 / int8: latency per megapixel and PSNR against Keras.

    python benchmarks/export.py [--models shipped unet] [--tile 256]

For each model (the shipped one, and the SID-size ``unet``, untrained unless you pass a
``.keras`` file) the export runs once; every figure comes from the same run on this machine, so
compare the ratios. Targets: fp16 within 0.05 dB of Keras (PSNR vs Keras above ~45 dB), int8
within 0.5 dB of Keras' quality and at least 2x faster than fp32 TFLite on CPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["shipped", "unet"],
                        help="'shipped', a registered model name (random weights) or a .keras file")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--calibration-crops", type=int, default=32)
    args = parser.parse_args(argv)
    from sid_keras.apps.export import ExportProfile, export_model, format_report
    from sid_keras.models import build_model
    from sid_keras.runtime.runners import DEFAULT_MODEL_FILE

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; python {platform.python_version()}")
    print(f"command: python benchmarks/export.py --models {' '.join(args.models)} --tile {args.tile}")
    profile = ExportProfile(tile=args.tile, calibration_crops=args.calibration_crops, check_crops=4)
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.models:
            if spec == "shipped":
                path = str(DEFAULT_MODEL_FILE)
            elif spec.endswith(".keras"):
                path = spec
            else:
                path = os.path.join(tmp, f"{spec}.keras")
                build_model(spec).save(path)
            report = export_model(path, os.path.join(tmp, f"out_{os.path.basename(path)}"), profile,
                                  log=lambda s: None)
            print(f"\n{spec} ({path if spec != 'shipped' else 'sid_keras/assets/default.keras'})")
            print(format_report(report))
            files = report["files"]
            fp32 = next((f for n, f in files.items() if "fp32" in n), None)
            int8 = next((f for n, f in files.items() if "int8" in n), None)
            if fp32 and int8:
                print(f"int8 speed-up over fp32 TFLite: {fp32['seconds_per_mp'] / int8['seconds_per_mp']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
