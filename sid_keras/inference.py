"""Enhancer: raw file -> clean sRGB, at any size, in bounded memory.

The packed frame is cut into overlapping tiles; each tile runs through the network with
``overlap`` packed pixels of real context on every side, and the outputs are blended with linear
ramps across the overlaps, so memory depends on the tile size, not the frame size. The output is
padded back to the frame's full visible size and turned to its stored orientation.

The network is anything that maps a batch of packed tiles to RGB: a Keras model, or a TFLite
interpreter (:mod:`sid_keras.lite`), so one tiling code serves both.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Callable, Iterable, Sequence

import numpy as np

from sid_keras import raw
from sid_keras.errors import SidError
from sid_keras.render import LINEAR, OUTPUT_KINDS, render

# --ratio auto: amplify so the frame's mean (white-balanced for linear models) lands at the median
# mean input of the training data: 0.13 for the sRGB model trained on `sid-keras synth` data,
# 0.16 for linear models trained on pairs synthesised from the BSDS, Urban100 and Sun-Hays photos.
AUTO_TARGET_MEAN = {"srgb": 0.13, "linear": 0.16}
AUTO_RATIO_RANGE = (1.0, 1000.0)
# Defaults in packed pixels: 512 (1024 output pixels) tiles with 64 packed pixels of context.
DEFAULT_TILE = 512
DEFAULT_OVERLAP = 64
DEFAULT_MODEL_FILE = pathlib.Path(__file__).parent / "assets" / "default.keras"
RAW_SUFFIXES = (".dng", ".arw", ".raf", ".nef", ".cr2", ".cr3", ".orf", ".rw2", ".pef", ".srw", ".raw",
                ".3fr", ".erf", ".mef", ".mos", ".nrw", ".rwl", ".iiq", ".x3f", ".srf", ".sr2", ".kdc", ".dcr")


def auto_ratio(frame: raw.RawFrame, target_mean: float, *, white_balance: bool = False) -> float:
    """Amplification that brings the frame's mean linear signal to ``target_mean``.

    The mean is taken before clipping at the black level, so read noise averages out instead of
    biasing dark frames upwards, and from strided views, so no full-frame copy is made. With
    ``white_balance`` each colour counts with its white-balance gain, as the input of a linear
    model does. The result is kept in :data:`AUTO_RATIO_RANGE`.
    """
    pattern = np.asarray(frame.cfa_pattern)
    means = raw.tile_means(frame.mosaic, pattern, frame.black_level)
    blacks = np.asarray(frame.black_level, np.float64)[pattern]
    signal = means / (float(frame.white_level) - blacks)
    if white_balance:
        signal = signal * np.asarray(frame.white_balance, np.float64)[pattern]
    mean = float(signal.mean())
    low, high = AUTO_RATIO_RANGE
    if not mean > 0:
        return high
    return float(np.clip(target_mean / mean, low, high))


def _ramp(length: int, overlap_before: int, overlap_after: int) -> np.ndarray:
    """1D blending weights: linear ramps over the overlaps, 1 in between (never exactly 0)."""
    w = np.ones(length, np.float32)
    if overlap_before:
        w[:overlap_before] = (np.arange(overlap_before, dtype=np.float32) + 1) / (overlap_before + 1)
    if overlap_after:
        w[length - overlap_after:] = np.minimum(
            w[length - overlap_after:], (np.arange(overlap_after, 0, -1, dtype=np.float32)) / (overlap_after + 1))
    return w


def _starts(size: int, tile: int, step: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, step)) + [size - tile]
    return sorted(set(starts))


def run_tiled(predict: Callable[[np.ndarray], np.ndarray], packed: np.ndarray, scale: int, *,
              tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP) -> np.ndarray:
    """Run ``predict`` over overlapping tiles of ``packed`` (h, w, c) and blend to (h*s, w*s, 3).

    Tiles are ``tile`` packed pixels a side and overlap by ``2 * overlap``; a frame no larger
    than one tile runs whole.
    """
    h, w = packed.shape[:2]
    if tile <= 2 * overlap:
        raise SidError(f"tile {tile} must be larger than twice the overlap {overlap}")
    if h <= tile and w <= tile:
        return np.asarray(predict(packed[None]), np.float32)[0]
    out = np.zeros((h * scale, w * scale, 3), np.float32)
    weight = np.zeros((h * scale, w * scale, 1), np.float32)
    step = tile - 2 * overlap
    for top in _starts(h, tile, step):
        for left in _starts(w, tile, step):
            th, tw = min(tile, h), min(tile, w)
            result = np.asarray(predict(packed[None, top : top + th, left : left + tw]), np.float32)[0]
            ov_top = overlap * scale if top > 0 else 0
            ov_left = overlap * scale if left > 0 else 0
            ov_bottom = overlap * scale if top + th < h else 0
            ov_right = overlap * scale if left + tw < w else 0
            wy = _ramp(th * scale, 2 * ov_top, 2 * ov_bottom)
            wx = _ramp(tw * scale, 2 * ov_left, 2 * ov_right)
            weights = (wy[:, None] * wx[None, :])[..., None]
            rows = slice(top * scale, (top + th) * scale)
            cols = slice(left * scale, (left + tw) * scale)
            out[rows, cols] += result * weights
            weight[rows, cols] += weights
    return out / weight


def restore_frame_geometry(rgb: np.ndarray, frame: raw.RawFrame) -> np.ndarray:
    """Pad the output (of the packed window) back to the full visible size, in sensor orientation."""
    top, left, h, w = raw.canonical_window(frame.mosaic.shape, frame.cfa_pattern, frame.path)
    full_h, full_w = frame.mosaic.shape
    return np.pad(rgb, ((top, full_h - top - h), (left, full_w - left - w), (0, 0)), mode="edge")


# LibRaw's flip code -> quarter turns of np.rot90 that show the image upright.
FLIP_TURNS = {3: 2, 5: 1, 6: -1}


def orient(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a sensor-oriented image upright by the file's orientation (LibRaw flip code)."""
    turns = FLIP_TURNS.get(orientation, 0)
    return np.rot90(rgb, turns) if turns else rgb


def keras_predictor(model) -> Callable[[np.ndarray], np.ndarray]:
    """A tile predictor from a Keras model (the generator of a GAN), compiled once per shape."""
    import tensorflow as tf

    from sid_keras.models import inference_model

    net = inference_model(model)
    fn = tf.function(lambda x: net(x, training=False), reduce_retracing=True)
    return lambda x: fn(tf.convert_to_tensor(x, tf.float32)).numpy()


def load_model(path: str | os.PathLike | None = None):
    """A Keras model from a ``.keras`` file (default: the model shipped with the package)."""
    import keras

    import sid_keras.models  # noqa: F401  (registers the custom classes)

    path = pathlib.Path(path) if path else DEFAULT_MODEL_FILE
    if not path.is_file():
        raise SidError(f"{path}: no such model file")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as err:  # Keras raises many types for a bad file
        raise SidError(f"{path}: not a loadable .keras model ({type(err).__name__}: {err})") from None


@dataclasses.dataclass
class Enhanced:
    """The result of enhancing one frame."""

    output: np.ndarray  # the network's output, full visible size, sensor orientation, in [0, 1]
    kind: str  # "linear": white-balanced linear camera RGB; "srgb": sRGB
    frame: raw.RawFrame
    ratio: float
    ratio_source: str  # "given", "auto"

    @property
    def image(self) -> np.ndarray:
        """The sRGB image a user sees, float32 (H, W, 3) in [0, 1], upright."""
        rgb = render(self.output, self.frame.color_matrix) if self.kind == LINEAR else self.output
        return orient(rgb, self.frame.orientation)


class Enhancer:
    """Enhance raw frames with a model, tiled so memory stays bounded.

    What the model predicts comes from the model itself (its config, or the input name of a
    TFLite file): a ``linear`` model gets the file's white balance multiplied into its input
    and its output is rendered with the file's colour matrix and LibRaw's curve; an ``srgb``
    model (SID's original) is fed and shown as SID did.

    Args:
        model: a Keras model, a path to a ``.keras`` or ``.tflite`` file, None for the model
            that ships with the package, or a callable on packed tiles (then give ``output``).
        tile, overlap: in packed pixels.
        auto_target: linear mean that ``ratio="auto"`` aims for (default per output kind).
        output: ``"linear"`` or ``"srgb"``, only for a plain callable.

    Example:
        >>> enhancer = Enhancer()  # the shipped model
        >>> rgb = enhancer.enhance("DARK.dng", ratio="auto")  # doctest: +SKIP
    """

    def __init__(self, model=None, *, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP,
                 auto_target: float | None = None, output: str | None = None):
        if model is None or isinstance(model, (str, os.PathLike)):
            path = pathlib.Path(model) if model else DEFAULT_MODEL_FILE
            if path.suffix.lower() == ".tflite":
                from sid_keras.lite import tflite_predictor

                self.predict = tflite_predictor(path)
                kind = self.predict.output_kind
            else:
                self.predict, kind = _keras_predictor_and_kind(load_model(path))
        elif callable(getattr(model, "predict", None)) and hasattr(model, "layers"):
            self.predict, kind = _keras_predictor_and_kind(model)
        elif callable(model):
            if output not in OUTPUT_KINDS:
                raise SidError(f"a model callable needs output='linear' or 'srgb', not {output!r}")
            self.predict, kind = model, output
        else:
            raise SidError(f"cannot enhance with {model!r}: give a Keras model or a model file")
        self.output = kind
        self.tile, self.overlap = tile, overlap
        self.auto_target = AUTO_TARGET_MEAN[kind] if auto_target is None else auto_target

    @property
    def white_balance(self) -> bool:
        return self.output == LINEAR

    def network_input(self, frame: raw.RawFrame, ratio: float) -> np.ndarray:
        """The packed, amplified (and for linear models white-balanced) input of ``frame``."""
        return raw.network_input(frame, ratio, white_balance=self.white_balance)

    def run(self, packed: np.ndarray, scale: int) -> np.ndarray:
        """Network input (h, w, c) -> its output (h*scale, w*scale, 3) in [0, 1], tiled."""
        rgb = run_tiled(self.predict, packed, scale, tile=self.tile, overlap=self.overlap)
        return np.clip(rgb, 0.0, 1.0)

    def to_srgb(self, output: np.ndarray, frame: raw.RawFrame) -> np.ndarray:
        """The network's output as sRGB (rendered with the file's colour for linear models)."""
        return render(output, frame.color_matrix) if self.output == LINEAR else output

    def resolve_ratio(self, frame: raw.RawFrame, ratio: float | str | None) -> tuple[float, str]:
        if ratio is None or ratio == "auto":
            return auto_ratio(frame, self.auto_target, white_balance=self.white_balance), "auto"
        return raw.check_ratio(ratio), "given"

    def enhance_frame(self, frame: raw.RawFrame, ratio: float | str | None = "auto") -> Enhanced:
        value, source = self.resolve_ratio(frame, ratio)
        output = self.run(self.network_input(frame, value), frame.cfa.scale)
        return Enhanced(restore_frame_geometry(output, frame), self.output, frame, value, source)

    def enhance(self, source: str | os.PathLike | raw.RawFrame, ratio: float | str | None = "auto") -> np.ndarray:
        """Enhance a raw file or :class:`~sid_keras.raw.RawFrame`; float32 sRGB (H, W, 3) in [0, 1]."""
        frame = source if isinstance(source, raw.RawFrame) else raw.read_raw(source)
        return self.enhance_frame(frame, ratio).image


def _keras_predictor_and_kind(model):
    from sid_keras.models import output_kind

    return keras_predictor(model), output_kind(model)


def expand_inputs(inputs: Sequence[str]) -> list[pathlib.Path]:
    """Files, folders (their raw files) and globs, in order, without duplicates."""
    import glob

    found: list[pathlib.Path] = []
    for item in inputs:
        path = pathlib.Path(item)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in RAW_SUFFIXES)
        elif any(c in item for c in "*?["):
            found += sorted(pathlib.Path(p) for p in glob.glob(item) if pathlib.Path(p).is_file())
        else:
            found.append(path)
    seen, unique = set(), []
    for p in found:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p)
    return unique


def output_path(source: pathlib.Path, out: pathlib.Path, fmt: str, single: bool) -> pathlib.Path:
    from sid_keras.io import EXTENSION_FORMATS, OUTPUT_FORMATS

    if single and out.suffix.lower() in EXTENSION_FORMATS:
        return out
    return out / f"{source.stem}{OUTPUT_FORMATS[fmt]}"


def write_result(target: pathlib.Path, result: Enhanced, fmt: str, *, overwrite: bool = False) -> None:
    """Write an enhanced frame: an sRGB image, or (``dng``) the linear camera RGB as a DNG."""
    from sid_keras.io import write_image

    if fmt != "dng":
        write_image(target, result.image, fmt=fmt, overwrite=overwrite)
        return
    if result.kind != LINEAR:
        raise SidError(f"{target}: DNG output needs a 'linear' model (camera RGB out); this model "
                       "predicts sRGB: write png, png16 or tiff16")
    from sid_keras.dng import write_linear_dng

    frame = result.frame
    write_linear_dng(target, result.output, white_balance=frame.white_balance, color_matrix=frame.color_matrix,
                     orientation=frame.orientation, overwrite=overwrite)


def enhance_files(enhancer: Enhancer, inputs: Iterable[pathlib.Path], out: pathlib.Path, *,
                  ratio: float | str | None = "auto", fmt: str = "png", overwrite: bool = False,
                  progress: bool = False, log: Callable[[str], None] = print) -> list[tuple[str, str]]:
    """Enhance many files, keep going past bad ones; returns [(file, error)] for the failures."""
    inputs = list(inputs)
    single = len(inputs) == 1
    failures: list[tuple[str, str]] = []
    iterator = inputs
    if progress and len(inputs) > 1:
        from tqdm import tqdm

        iterator = tqdm(inputs, desc="enhance", unit="file")
    for source in iterator:
        target = output_path(source, out, fmt, single)
        try:
            if target.exists() and not overwrite:
                raise SidError(f"{target}: already exists; pass --overwrite to replace it")
            frame = raw.read_raw(source)
            for notice in frame.notices:
                log(notice)
            result = enhancer.enhance_frame(frame, ratio)
            write_result(target, result, fmt, overwrite=overwrite)
            log(f"{source} -> {target} (ratio x{result.ratio:.1f} {result.ratio_source})")
        except SidError as err:
            failures.append((str(source), str(err)))
    return failures
