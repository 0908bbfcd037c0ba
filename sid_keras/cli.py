"""The ``sid-keras`` command line: ``main(argv) -> int``.

Subcommand modules (and TensorFlow, rawpy...) are imported only when that subcommand runs, so
``sid-keras --help`` answers at once. A :class:`SidError` prints as one line and exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys

from sid_keras import __version__
from sid_keras.errors import SidError

EXIT_USER_ERROR = 1


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="make a SID-layout dataset (DNG pairs + list) from clean photos")
    p.add_argument("--photos", required=True, help="folder of clean sRGB photos (jpg/png/tif)")
    p.add_argument("--out", required=True, help="dataset root to write (./Sony/short, ./Sony/long, lists)")
    p.add_argument("--split", default="train", help="list name: <camera>_<split>_list.txt (default train)")
    p.add_argument("--ratios", type=int, nargs="+", default=[100, 250, 300])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="use only the first N photos")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.set_defaults(run=_run_synth)


def _run_synth(args) -> int:
    from sid_keras.synthetic import synthesize

    path = synthesize(args.photos, args.out, split=args.split, seed=args.seed, ratios=args.ratios,
                      limit=args.limit, workers=args.workers, progress=sys.stderr.isatty())
    lines = sum(1 for _ in open(path))
    print(f"wrote {lines} pairs; list: {path}")
    return 0


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train (or resume) a model from a config file or named experiment")
    p.add_argument("--config", default=None,
                   help="TOML file, or a shipped experiment: sid_sony, sid_fuji, synthetic")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=100 --set model.args.width=16")
    p.set_defaults(run=_run_train)


def _run_train(args) -> int:
    _quiet_tensorflow()
    from sid_keras.config import load_config
    from sid_keras.training import summarize_history, train

    config = load_config(args.config, args.overrides)
    tty = sys.stdout.isatty()
    history = train(config, verbose="auto" if tty else 2, progress=tty)
    for key, value in summarize_history(history).items():
        print(f"{key}: last {value['last']:.4f}, best {value['best']:.4f}")
    print(f"run folder: {config.train.out_dir}")
    return 0


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list the registered models with parameters and GMACs/MP")
    p.add_argument("--size", type=int, default=256, help="packed side used to count MACs")
    p.set_defaults(run=_run_models)


def _run_models(args) -> int:
    _quiet_tensorflow()
    from sid_keras.models import describe_models

    rows = describe_models((args.size, args.size))
    print(f"{'model':<16}{'parameters':>14}{'GMACs/MP':>10}  description")
    for r in rows:
        print(f"{r['name']:<16}{r['parameters']:>14,}{r['gmacs_per_mp']:>10.1f}  {r['summary']}")
    print("GMACs per output megapixel, counted from the TF graph (generator only for GANs).")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sid-keras",
        description="Learning to See in the Dark with Keras 3: enhance extremely underexposed raw photos.",
    )
    parser.add_argument("--version", action="version", version=f"sid-keras {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_synth, _add_train, _add_models):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except SidError as err:
        print(f"sid-keras {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"sid-keras {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
