"""The ``sid-keras`` command line: ``main(argv) -> int``.

Subcommand modules (and TensorFlow, rawpy...) are imported only when that subcommand runs, so
``sid-keras --help`` answers at once. A :class:`SidError` prints as one line and exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys

from sid_keras import __version__
from sid_keras.apps.console import (
    names_print_as_bytes,
    only_our_lines,
    print_while_read,
    terminate_as_interrupt,
    without_huge_pages,
)
from sid_keras.errors import BUG_ADVICE, SidError, describe, printable, unexpected
from sid_keras.runtime.io import DEFAULT_JPEG_QUALITY, OUTPUT_FORMATS, PNG_COMPRESSION
from sid_keras.runtime.progress import on_terminal

EXIT_USER_ERROR = 1
EXIT_BUG = 2
EXIT_INTERRUPTED = 130


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="make a SID-layout dataset (DNG pairs + list) from clean photos")
    p.add_argument("--photos", required=True, help="folder of clean sRGB photos (jpg/png/tif)")
    p.add_argument("-o", "--out", type=_path_arg, required=True,
                   help="dataset root to write (./Sony/short, ./Sony/long, lists)")
    p.add_argument("--split", default="train", help="list name: <camera>_<split>_list.txt (default train)")
    p.add_argument("--ratios", type=int, nargs="+", default=[100, 250, 300])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="use only the first N photos")
    p.add_argument("--workers", type=_workers_arg, default=os.cpu_count() or 1)
    p.add_argument("--noise-profile", default=None,
                   help="noise of a `sid-keras calibrate` TOML (or a built-in: SonyA7S2, NikonD850, SonyA7M4)")
    p.add_argument("--stress", action="store_true",
                   help="write the stress validation instead: ISO bands x ratios x illuminants with "
                        "cameras training does not use (list: Stress_<split>_list.txt)")
    p.add_argument("--overwrite", action="store_true", help="replace the scenes and list of an earlier run")
    p.set_defaults(run=_run_synth)


def _run_synth(args) -> int:
    from sid_keras.synth.synthetic import synthesize

    path = synthesize(args.photos, args.out, split=args.split, seed=args.seed, ratios=args.ratios,
                      limit=args.limit, workers=args.workers, stress=args.stress, noise_profile=args.noise_profile,
                      camera_dir="Stress" if args.stress else "Sony", progress=on_terminal(),
                      overwrite=args.overwrite)
    lines = sum(1 for _ in open(path))
    print_while_read(f"wrote {lines} pairs; list: {path}")
    return 0


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train (or resume) a model from a config file or named experiment")
    p.add_argument("--config", default=None,
                   help="TOML file, or a shipped experiment: sid_sony, sid_fuji, synthetic")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=100 --set model.args.width=16")
    p.set_defaults(run=_run_train)


def _run_train(args) -> int:
    from sid_keras.training.config import load_config
    from sid_keras.training.task import summarize_history, train

    config = load_config(args.config, args.overrides)
    from sid_keras.training.distributed import cluster_workers

    if cluster_workers() > 1:  # TF_CONFIG names several workers: Keras fit cannot do it
        from sid_keras.training.distributed import train_multi_worker

        result = train_multi_worker(config)
        print_while_read(f"loss per epoch: {', '.join(f'{v:.4f}' for v in result['loss'])}")
        print_while_read(f"run folder: {config.train.out_dir}")
        return 0
    tty = sys.stdout.isatty()
    history = train(config, verbose="auto" if tty else 2, progress=tty)
    for key, value in summarize_history(history).items():
        print_while_read(f"{key}: last {value['last']:.4f}, best {value['best']:.4f}")
    print_while_read(f"run folder: {config.train.out_dir}")
    return 0


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list the registered models with parameters and GMACs/MP")
    p.add_argument("--size", type=int, default=256,
                   help="packed side to count MACs at; other than 256 counts again from the TF graph (slow)")
    p.add_argument("--recount", action="store_true",
                   help="count again from the TF graph (about 20 s) instead of the package's table")
    p.set_defaults(run=_run_models)


def _run_models(args) -> int:
    if args.recount or args.size != 256:
        from sid_keras.models import describe_models

        rows = describe_models((args.size, args.size))
    else:  # the package's table: no TensorFlow to import
        import json
        from importlib import resources

        rows = json.loads(resources.files("sid_keras").joinpath("assets", "models.json").read_text())
    print_while_read(f"{'model':<16}{'parameters':>14}{'GMACs/MP':>10}  description")
    for r in rows:
        print_while_read(f"{r['name']:<16}{r['parameters']:>14,}{r['gmacs_per_mp']:>10.1f}  {r['summary']}")
    print_while_read("GMACs per output megapixel, counted from the TF graph (generator only for GANs).")
    return 0


def _add_cache(sub) -> None:
    p = sub.add_parser("cache", help="show (or --clear) the decoded-data cache that training fills")
    p.add_argument("--clear", action="store_true", help="delete the cached files (they are made again on demand)")
    p.add_argument("--folder", default=None,
                   help="a cache folder other than the default (a config's data.cache_dir)")
    p.set_defaults(run=_run_cache)


def _run_cache(args) -> int:
    import pathlib

    from sid_keras.data.cache import cache_files, clear_cache, default_cache_dir

    folder = pathlib.Path(args.folder) if args.folder else default_cache_dir()
    if args.folder and not folder.is_dir():  # the default folder appears with the first decode; a named one exists
        raise SidError(f"{folder}: {'is a file, not' if folder.exists() else 'no such folder: give'} a cache folder "
                       "(a config's data.cache_dir)")
    if args.clear:
        count, freed = clear_cache(folder)
        print_while_read(f"removed {count} cached files ({freed / 1e6:,.0f} MB) from {folder}")
        return 0
    files = cache_files(folder)
    size = sum(p.stat().st_size for p in files)
    print_while_read(f"cache folder: {folder} ({len(files)} files, {size / 1e6:,.0f} MB)")
    if not args.folder:
        print("set SID_KERAS_CACHE (or XDG_CACHE_HOME) to move it; sid-keras cache --clear frees it")
    return 0


def _ratio_arg(text: str):
    if text == "auto":
        return "auto"
    from sid_keras.runtime.raw import check_ratio

    try:
        return check_ratio(text)
    except SidError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _add_denoise(p) -> None:
    p.add_argument("--denoise", default=1.0, metavar="K",
                   help="denoising strength of a noise-aware model, a factor on the noise it is told: 1 (default) "
                        "as the file says, e.g. 1.5 smoother, 0.7 more grain and texture kept, 0 none")


def _path_arg(text: str) -> str:
    """An output path: an empty one would write into the current folder unasked."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: give an output file or folder name")
    return text


def _workers_arg(text: str) -> int:
    from sid_keras.training.config import MAX_DECODE_WORKERS

    count = _count_arg(text)
    if count > MAX_DECODE_WORKERS:
        raise argparse.ArgumentTypeError(f"{count}: give at most {MAX_DECODE_WORKERS} worker processes (this machine "
                                         f"has {os.cpu_count()} cores)")
    return count


def _count_arg(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number, 1 or more")
    return count


def _tile_arg(text: str) -> int:
    from sid_keras.runtime.tiling import SMALLEST_TILE

    try:
        side = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"tile side {text!r} is not a whole number of packed pixels") from None
    if side < SMALLEST_TILE:
        raise argparse.ArgumentTypeError(
            f"tile side {side} is under {SMALLEST_TILE} packed pixels: so little context shows seams and "
            f"saves no memory; give {SMALLEST_TILE} or more")
    return side


def _add_tiling(p) -> None:
    p.add_argument("--tile", type=_tile_arg, default=None,
                   help="tile side in packed pixels, 32 or more (memory bound; default 512, or a fixed-size "
                        "model's side)")
    p.add_argument("--overlap", type=int, default=None,
                   help="least tile context in packed pixels (default: 1/32 of the tile and at least 8 "
                        "where the tile allows; 16 for 512)")


def _add_enhance(sub) -> None:
    p = sub.add_parser("enhance", help="enhance dark raw files (files, folders or globs)")
    p.add_argument("inputs", nargs="+", help="raw files, folders of raw files, or globs")
    p.add_argument("-o", "--out", type=_path_arg, required=True,
                   help="output file (one input) or folder (one image per input)")
    p.add_argument("--model", default=None, help=".keras or .tflite file (default: the shipped model)")
    p.add_argument("--ratio", type=_ratio_arg, default="auto",
                   help="amplification, e.g. 100, or 'auto' to estimate it from the frame (default)")
    p.add_argument("--format", dest="fmt", choices=list(OUTPUT_FORMATS), default=None,
                   help="output format (default: from the output extension, else png); dng: the "
                        "enhanced linear camera RGB as a DNG a raw developer opens")
    _add_tiling(p)
    p.add_argument("--noise-profile", default=None, metavar="TOML",
                   help="your camera's noise (`sid-keras calibrate`): its dark shading is subtracted, and a "
                        "noise-aware model is told its noise law for files without a NoiseProfile tag")
    _add_denoise(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quality", type=int, default=DEFAULT_JPEG_QUALITY, help="JPEG quality, 1-100 (default 95)")
    p.add_argument("--compression", choices=PNG_COMPRESSION, default="fast",
                   help="PNG: fast (default) or small (smallest files, several times slower)")
    p.add_argument("--burst", action="store_true",
                   help="the inputs are one burst of one scene (the first the reference): aligned and merged "
                        "into one output, with N times less noise where nothing moved")
    p.add_argument("--merge-only", action="store_true",
                   help="with --burst: write the merged raw mosaic as a DNG (-o merged.dng) to develop elsewhere")
    p.set_defaults(run=_run_enhance)


def _run_enhance(args) -> int:
    without_huge_pages()
    from sid_keras.apps.batch import enhance_files, expand_inputs, plan_outputs
    from sid_keras.runtime.inference import Enhancer

    inputs = expand_inputs(args.inputs)
    # a folder or pattern that brings no raw file is a typo or a wrong folder: said before any work,
    # not left for the user to notice among the outputs
    barren = [item for item in args.inputs if not expand_inputs([item])]
    if barren:
        raise SidError(f"no raw files found in {', '.join(barren)}: check the folder or pattern "
                       f"(raw suffixes such as .dng, .arw, .cr2, .nef), or leave it out")
    if args.merge_only and not args.burst:
        raise SidError("--merge-only writes a merged burst: give --burst too")
    fmt, plan = plan_outputs(inputs[:1] if args.burst else inputs, args.out, "dng" if args.merge_only else args.fmt)
    profile, shading = None, None
    if args.noise_profile:
        from sid_keras.runtime.noise import load_dark_shading, load_profile

        profile, shading = load_profile(args.noise_profile), load_dark_shading(args.noise_profile)
    enhancer = Enhancer(args.model, tile=args.tile, overlap=args.overlap, noise_profile=profile,
                        dark_shading=shading, denoise=args.denoise)
    if args.burst:
        return _enhance_burst(enhancer, inputs, plan[0][1], fmt, args)
    failures = enhance_files(enhancer, plan, ratio=args.ratio, fmt=fmt, overwrite=args.overwrite,
                             progress=on_terminal(), log=print_while_read, verbose=args.verbose,
                             quality=args.quality,
                             compression=args.compression)
    for _, message in failures:
        print(f"sid-keras enhance: failed: {printable(message)}", file=sys.stderr)
    if failures:
        print(f"sid-keras enhance: {len(failures)} of {len(inputs)} files failed", file=sys.stderr)
        return EXIT_BUG if any(message.endswith(BUG_ADVICE) for _, message in failures) else EXIT_USER_ERROR
    return 0


def _enhance_burst(enhancer, inputs, out, fmt: str, args) -> int:
    """`enhance --burst`: one output from the aligned and merged frames (or, with --merge-only,
    the merged raw DNG)."""
    from sid_keras.apps.batch import write_pixels
    from sid_keras.runtime.burst import write_merged_dng
    from sid_keras.runtime.io import check_encoding, refuse_writing_over_inputs

    refuse_writing_over_inputs(inputs, [out])
    check_encoding(quality=args.quality, compression=args.compression)
    if out.exists() and not args.overwrite:
        raise SidError(f"{out}: already exists; pass --overwrite to replace it")
    merged, law, report = enhancer.merge_burst(inputs)
    if args.merge_only:
        write_merged_dng(out, merged, law, overwrite=args.overwrite)
        print_while_read(f"{inputs[0]} + {len(inputs) - 1} frames -> {out} (merged raw; {report.describe()})")
        return 0
    pixels, value, how = enhancer.enhance_to_pixels(merged, args.ratio, fmt, enhancer.told(law))
    write_pixels(out, pixels, merged, fmt, overwrite=args.overwrite, quality=args.quality,
                 compression=args.compression)
    for notice in merged.notices:
        print_while_read(notice)
    print_while_read(f"{inputs[0]} + {len(inputs) - 1} frames -> {out} (ratio x{value:.1f} {how}; "
                      f"{report.describe()})")
    return 0


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="SID test protocol on full frames, beside classical pipelines")
    p.add_argument("--data", required=True, help="dataset root")
    p.add_argument("--list", required=True, help="list file (e.g. Sony_test_list.txt)")
    p.add_argument("--model", default=None, help=".keras or .tflite file (default: the shipped model)")
    p.add_argument("-o", "--out", type=_path_arg, required=True, help="folder for metrics.json, metrics.csv, figures/")
    p.add_argument("--first-burst-only", action="store_true", help="only _00 short exposures")
    p.add_argument("--exclude-misaligned", action="store_true",
                   help="drop SID's misaligned scenes 10034, 10045, 10172")
    p.add_argument("--no-denoiser", action="store_true", help="skip the scaled + NLM baseline")
    p.add_argument("--bm3d", action="store_true",
                   help="also score scaled + BM3D (slow: ~9 s per 0.15 MP image; needs the bm3d package)")
    p.add_argument("--no-figures", action="store_true", help="skip the side-by-side figures")
    p.add_argument("--report", action="store_true", help="also write report.html")
    p.add_argument("--limit", type=_count_arg, default=None, help="evaluate only the first N pairs")
    _add_tiling(p)
    _add_denoise(p)
    p.add_argument("--overwrite", action="store_true", help="replace the metrics already in --out")
    p.set_defaults(run=_run_evaluate)


def _run_evaluate(args) -> int:
    import pathlib

    from sid_keras.apps.evaluation import (
        REPORT_FILES,
        evaluate,
        format_table,
        write_html_report,
    )
    from sid_keras.data import MISALIGNED_SCENES, read_sid_list
    from sid_keras.runtime.inference import Enhancer
    from sid_keras.runtime.io import check_outputs_free

    check_outputs_free(args.out, REPORT_FILES, args.overwrite)
    pairs = read_sid_list(args.list, args.data, first_burst_only=args.first_burst_only,
                          exclude_scenes=MISALIGNED_SCENES if args.exclude_misaligned else ())
    enhancer = Enhancer(args.model, tile=args.tile, overlap=args.overlap, denoise=args.denoise)
    summary = evaluate(enhancer, pairs[: args.limit], args.out, denoiser=not args.no_denoiser, bm3d=args.bm3d,
                       figures=not args.no_figures, progress=on_terminal(),
                       log=lambda line: print(f"sid-keras evaluate: {printable(line)}", file=sys.stderr))
    print(format_table(summary))
    if args.report:
        print_while_read(f"report: {write_html_report(pathlib.Path(args.out), summary)}")
    print_while_read(f"metrics: {pathlib.Path(args.out) / 'metrics.json'}")
    if summary["failures"]:
        print(f"sid-keras evaluate: {len(summary['failures'])} of {len(pairs[: args.limit])} pairs failed",
              file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="make a dark raw from a shipped photo, enhance it, compare")
    p.add_argument("-o", "--out", type=_path_arg, default="sid_demo", help="output folder (default: sid_demo)")
    p.add_argument("--ratio", type=int, default=250, choices=[100, 250, 300], help="darkness of the raw")
    p.add_argument("--model", default=None, help=".keras or .tflite file (default: the shipped model)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace outputs already in --out")
    p.set_defaults(run=_run_demo)


def _run_demo(args) -> int:
    from sid_keras.apps.demo import run_demo

    run_demo(args.out, ratio=args.ratio, model=args.model, seed=args.seed, overwrite=args.overwrite)
    return 0


def _add_finetune(sub) -> None:
    p = sub.add_parser("finetune", help="adapt a model to your camera: a few real pairs and/or its noise profile")
    p.add_argument("-o", "--out", type=_path_arg, required=True, help=".keras file to write")
    p.add_argument("--model", default=None, help="the .keras model to start from (default: the shipped model)")
    p.add_argument("--data", default=None, help="root of your pairs (SID layout and list, see docs/training.md)")
    p.add_argument("--list", default=None, help="list file of your short/long pairs (2 per ratio is enough)")
    p.add_argument("--val-list", default=None, help="pairs to validate on (default: --list)")
    p.add_argument("--photos", nargs="*", default=[], help="clean photo folders for pairs with your camera's noise")
    p.add_argument("--noise-profile", default=None, help="your camera's profile (`sid-keras calibrate`)")
    p.add_argument("--steps", type=int, default=2000, help="training steps (default 2000: ~10 min on 2 CPU cores)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="default 3e-4 with --photos (measured: benchmarks/finetune.py); 5e-5 with pairs alone")
    p.add_argument("--ratios", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="exposure ratios of the pairs made from --photos (default: 1 300)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any other training setting, e.g. --set data.patch_size=64")
    p.set_defaults(run=_run_finetune)


# Fine-tuning epochs: short, so validation and the schedule's steps come often.
FINETUNE_STEPS_PER_EPOCH = 50
# Share of fine-tuning samples made from photos when pairs are given too: a handful of pairs shows
# few scenes, and the photos bring the content (measured with it: benchmarks/finetune.py).
FINETUNE_SYNTHETIC_SHARE = 0.8


def _run_finetune(args) -> int:
    from sid_keras.training.config import load_config
    from sid_keras.training.task import finetune

    if not args.list and not (args.photos and args.noise_profile):
        raise SidError("give your camera's pairs (--data and --list) and/or clean photos with its noise profile "
                       "(--photos and --noise-profile)")
    if args.list and not args.data:
        raise SidError("--list needs --data, the folder the listed pairs are relative to")
    if args.steps <= 0:
        raise SidError(f"--steps {args.steps}: must be a positive number of training steps")
    if args.ratios and not 1 <= args.ratios[0] <= args.ratios[1]:
        raise SidError(f"--ratios {args.ratios[0]:g} {args.ratios[1]:g}: give LOW HIGH with 1 <= LOW <= HIGH, "
                       "e.g. 30 300")
    epochs = max(1, round(args.steps / FINETUNE_STEPS_PER_EPOCH))
    learning_rate = args.learning_rate if args.learning_rate is not None else 3e-4 if args.photos else 5e-5
    settings = {"data.root": args.data or "", "data.train_list": args.list or "",
                "data.val_list": args.val_list or args.list or "", "data.photos": list(args.photos),
                "data.noise_profile": args.noise_profile or "virtual", "train.epochs": epochs,
                "train.steps_per_epoch": FINETUNE_STEPS_PER_EPOCH, "train.learning_rate": learning_rate,
                "train.step_epochs": max(1, epochs // 4), "train.gamma": 0.5, "train.val_every": epochs,
                "data.cameras": "pairs" if args.list else "training",
                "data.synthetic_share": FINETUNE_SYNTHETIC_SHARE,
                **({"data.ratio_range": list(args.ratios)} if args.ratios else {})}
    config = load_config("shipped", args.overrides, settings)
    if not config.data.val_list:
        raise SidError("fine-tuning on photos alone needs pairs to check the result on: give --data and --val-list")
    finetune(args.model, config, args.out, overwrite=args.overwrite, verbose="auto" if sys.stdout.isatty() else 2)
    print_while_read(f"fine-tuned model: {args.out}  (sid-keras enhance DARK.dng -o out.png --model {args.out})")
    return 0


def _add_calibrate(sub) -> None:
    p = sub.add_parser("calibrate", help="your camera's noise profile from dark and flat frames")
    p.add_argument("frames", nargs="+", help="dark and flat raw frames (files or folders, e.g. iso800/)")
    p.add_argument("-o", "--out", type=_path_arg, required=True,
                   help="noise profile TOML to write (e.g. mycamera.toml)")
    p.add_argument("--name", default=None, help="the camera's name in the profile (default: the file's stem)")
    p.add_argument("--figure", default=None, help="PNG of the fits (default: next to the profile; needs matplotlib)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing profile, shading map and figure")
    p.set_defaults(run=_run_calibrate)


def _run_calibrate(args) -> int:
    import pathlib

    import numpy as np

    from sid_keras.runtime.io import atomic_path, check_outputs_free
    from sid_keras.synth.calibration import (
        calibrate,
        format_table,
        profile_toml,
        write_figure,
    )

    out = pathlib.Path(args.out)
    if out.suffix.lower() != ".toml":
        raise SidError(f"{out}: give the profile a .toml name, e.g. mycamera.toml")
    shading = out.with_name(f"{out.stem}.dark_shading.npz")
    figure = pathlib.Path(args.figure) if args.figure else out.with_name(f"{out.stem}.fits.png")
    if figure.is_dir() or figure.suffix.lower() != ".png":
        raise SidError(f"--figure {figure}: give the figure a .png file name, e.g. {out.stem}.fits.png")
    for path in (out, shading, figure):  # every output checked before the frames are read
        if not path.parent.is_dir():
            raise SidError(f"{path.parent}: no such folder to write {path.name} in; create it first")
        check_outputs_free(path.parent, [path.name], args.overwrite)
    calibration, shadings, samples = calibrate(args.frames, name=args.name or out.stem, progress=on_terminal())
    print(format_table(calibration))
    with atomic_path(out, overwrite=True) as tmp:
        pathlib.Path(tmp).write_text(profile_toml(calibration))
    if shadings:
        with atomic_path(shading) as tmp:
            np.savez_compressed(tmp, **{f"iso{iso:g}": m for iso, m in shadings.items()})
        print_while_read(f"dark shading (fixed pattern per ISO): {shading}")
    if write_figure(figure, calibration, samples):
        print_while_read(f"fits: {figure}")
    else:
        print("fits: not drawn (pip install 'sid-keras[plots]' for the figure)")
    print_while_read(f"noise profile: {out}  (sid-keras synth --noise-profile {out}; data.noise_profile = '{out}')")
    return 0


def _add_tune(sub) -> None:
    p = sub.add_parser("tune",
                       help="hyperparameter search (keras-tuner) from a search job (a shipped name or a TOML file)")
    p.add_argument("--job", required=True,
                   help="search job: a TOML file or a shipped name (synthetic_quick, sid_sony_lr_depth)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override job.*, space.* or training keys, e.g. --set data.root=/data/SID")
    p.set_defaults(run=_run_tune)


def _run_tune(args) -> int:
    from sid_keras.training.tuning import load_job, run_search

    result = run_search(load_job(args.job, args.overrides), verbose=1 if sys.stdout.isatty() else 2)
    print(result["table"])
    print_while_read(f"best configuration (a training config): {result['best_config']}")
    return 0


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="SavedModel + TFLite fp32/fp16/int8-weight/int8 with a parity report")
    p.add_argument("model", help=".keras model file")
    p.add_argument("-o", "--out", type=_path_arg, required=True, help="output folder")
    p.add_argument("--profile", default=None, help="export profile: a TOML file or a shipped name (default)")
    p.add_argument("--calibration", default=None, metavar="DIR",
                   help="calibrate the int8 file on the dark raw files in DIR (the target camera's); "
                        "default: synthetic frames of the demo photo")
    p.add_argument("--overwrite", action="store_true", help="replace outputs already in --out")
    p.set_defaults(run=_run_export)


def _run_export(args) -> int:
    from sid_keras.apps.export import export_model, format_report, load_profile

    overrides = {"calibration_dir": args.calibration} if args.calibration else None
    report = export_model(args.model, args.out, load_profile(args.profile, overrides), overwrite=args.overwrite,
                          progress=on_terminal())
    print(format_report(report))
    print_while_read(f"report: {args.out}/export_report.json; app sidecar: {args.out}/model_info.json")
    return 0


class _OneLineParser(argparse.ArgumentParser):
    """A command line that cannot be parsed is one line naming what is wrong, exit 1 (argparse
    prints a usage block and exits 2, the status this package keeps for bugs)."""

    def error(self, message):
        print(f"{self.prog}: error: {printable(message)} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="sid-keras",
        description="Learning to See in the Dark with Keras 3: enhance extremely underexposed raw photos.",
    )
    parser.add_argument("--version", action="version", version=f"sid-keras {__version__}")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's log, Python warnings and tracebacks (or SID_KERAS_VERBOSE=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_OneLineParser)
    for add in (_add_enhance, _add_demo, _add_evaluate, _add_synth, _add_train, _add_finetune, _add_calibrate,
                _add_models, _add_tune, _add_export, _add_cache):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    names_print_as_bytes()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    verbose = args.verbose or os.environ.get("SID_KERAS_VERBOSE", "") not in ("", "0")
    from sid_keras.runtime.io import private_temporary_folder

    with only_our_lines(verbose), terminate_as_interrupt(), private_temporary_folder():
        try:
            return args.run(args)
        except KeyboardInterrupt as err:
            _interrupted.append(err.__traceback__)  # its frames are let go by the process's end (entry_point)
            print(f"sid-keras {args.command}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as err:  # noqa: BLE001 - every failure ends in one line unless --verbose
            message = describe(err)
            if verbose and not isinstance(err, SidError):
                raise
            if message is None:
                message = unexpected(err)
            print(f"sid-keras {args.command}: error: {printable(message)}", file=sys.stderr)
            return EXIT_USER_ERROR if isinstance(err, SidError) or describe(err) else EXIT_BUG


# The frames of an interrupted command. Tearing them down (TensorFlow's data iterators wait for
# the elements in flight) took up to 16 s after Ctrl-C or SIGTERM; the console command ends the
# process without that wait, once its outputs are final and its temporaries gone.
_interrupted: list = []


def entry_point() -> None:
    """The ``sid-keras`` console command: :func:`main`, and a prompt end after an interruption."""
    code = main()
    if _interrupted:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry_point()
