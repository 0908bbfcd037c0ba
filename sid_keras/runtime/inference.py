"""Enhancer: raw file -> clean sRGB, at any size, in bounded memory.

The packed frame is cut into overlapping tiles; each tile runs through the network with
``overlap`` packed pixels of real context on every side, and the outputs are blended with linear
ramps across the overlaps, so memory depends on the tile size, not the frame size. The output is
padded back to the frame's full visible size and turned to its stored orientation.

The network is anything that maps a batch of packed tiles to RGB: a Keras model, or a TFLite
interpreter (:mod:`sid_keras.runtime.lite`), so one tiling code serves both.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import pathlib
from typing import Callable, Sequence

import numpy as np

from sid_keras import ASSETS_DIR
from sid_keras.errors import SidError, describe, unexpected
from sid_keras.runtime import cfa, noise_law, raw, tags
from sid_keras.runtime.burst import BurstReport
from sid_keras.runtime.convention import Convention
from sid_keras.runtime.render import OUTPUT_KINDS

# --ratio auto: amplify so the frame's mean (white-balanced for linear models) lands at the median
# mean input of the training data: 0.13 for the sRGB model trained on `sid-keras synth` data,
# 0.16 for linear models trained on pairs synthesised from the BSDS, Urban100 and Sun-Hays photos.
AUTO_TARGET_MEAN = {"srgb": 0.13, "linear": 0.16}
AUTO_RATIO_RANGE = (1.0, 1000.0)
# Defaults in packed pixels: 512 (1024 output pixels) tiles with 16 packed pixels of context.
DEFAULT_TILE = 512
# The smallest tile the command line takes: below it the network sees too little of the frame
# around each tile, and memory (the frame's own buffers by then) falls no further.
SMALLEST_TILE = 32


def default_overlap(tile: int) -> int:
    """The context a tile gets unless told: 1/32 of it, cheap and invisible from 256 up, but at
    least 8 packed pixels where the tile allows (a quarter of it at most). Why: a small tile's
    1/32 is next to nothing; the Blackmagic frame at --tile 32 came out 48.6 dB from the default
    tiling with 1 pixel of context (seams 66 levels deep), 54.7 with the 7 it gets now."""
    return max(tile // 32, min(8, (tile - 1) // 4))


DEFAULT_OVERLAP = default_overlap(DEFAULT_TILE)  # 16

# The shipped model: training, fine-tuning and export start from the .keras file; enhancing uses
# the same weights as TFLite (no TensorFlow import; the model card says which variant).
DEFAULT_MODEL_FILE = ASSETS_DIR / "default.keras"
DEFAULT_TFLITE_FILE = ASSETS_DIR / "default.tflite"
# Files a batch enhances side by side at most (each holds a raw frame and its output image).
MAX_LANES = 4
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


def _weigh(result: np.ndarray, weights: np.ndarray, axis: int) -> None:
    """``result *= weights`` along ``axis`` (0: rows, 1: columns), touching only the ramps at the
    ends: between them the weights are 1, and that is most of a tile."""
    ones = np.flatnonzero(weights == 1)  # one run, between the ramps
    parts = [slice(0, ones[0]), slice(ones[-1] + 1, None)] if ones.size else [slice(None)]
    shape = (-1, 1, 1) if axis == 0 else (1, -1, 1)
    for part in parts:
        result[(part,) if axis == 0 else (slice(None), part)] *= weights[part].reshape(shape)


def _starts(size: int, tile: int, step: int, align: int = 1) -> list[int]:
    """Tile starts at most ``step`` apart, as few as that allows, spread evenly over ``size`` (so
    every seam gets about the same overlap, usually more than the minimum); multiples of ``align``
    except the last, which ends at ``size``."""
    if size <= tile:
        return [0]
    count = -(-(size - tile) // step) + 1
    starts = [(i * (size - tile) // (count - 1)) // align * align for i in range(count - 1)]
    return sorted(set(starts)) + [size - tile]


def fitted_side(size: int, tile: int, overlap: int, multiple: int) -> int:
    """The shortest tile side, a multiple of ``multiple`` and at most ``tile``, that covers ``size``
    with as few tiles (overlapping by ``2 * overlap``) as ``tile`` needs.

    Why: a network's time follows the pixels it runs on, and ``tile``-sized tiles can run a third
    more than the frame has (the Blackmagic frame, 2048 x 1080 packed: 45 fixed 256 tiles are 2.95 M
    pixels for its 2.21 M; three rows of 512 would be 1536 rows for its 1080); fitted 512 / 16
    tiles (15 of 384 x 448) are 2.58 M.
    """
    if size <= tile:
        return size
    count = -(-(size - tile) // (tile - 2 * overlap)) + 1
    side = -(-(size + 2 * overlap * (count - 1)) // count)
    return min(tile, -(-side // multiple) * multiple)


# Finished rows are handed on in chunks of at most this many, so the float temporaries of
# normalising, rendering and quantising stay a few MB whatever the frame's width.
EMIT_ROWS = 64


def blend_tiles(predict: Callable[[np.ndarray], np.ndarray], read_rows: Callable[[int, int], np.ndarray],
                height: int, width: int, scale: int, emit: Callable[[int, np.ndarray], None], *,
                tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP, align: int = 1,
                multiple: int | None = None) -> None:
    """Run ``predict`` over overlapping tiles of a packed frame, strip by strip, and blend.

    ``read_rows(start, stop)`` gives packed rows (h, width, c) of the network's input; ``emit(y,
    rows)`` receives finished output rows (float32, ``scale`` times the packed size) in order.
    Tiles are ``tile`` packed pixels a side (a fixed-size model's; ``multiple``: a dynamic-size
    model's sides must be multiples of it, and tiles shrink to :func:`fitted_side`), overlap by
    ``2 * overlap`` and are blended with linear ramps. The ramps are separable (weight = row ramp
    x column ramp), so tiles accumulate into one strip-high buffer and each finished row is divided
    by its row weight times the column weights: one strip of floats exists at a time, whatever the
    frame's size. ``align``: strip starts are multiples of it (the packed rows of one CFA period).
    """
    if overlap < 0 or tile <= 2 * overlap:
        raise SidError(f"tile {tile} must be larger than twice the overlap {overlap} (and overlap >= 0)")
    tile_h, tile_w = min(max(tile // align, 1) * align, height), min(tile, width)
    step_h = step_w = tile - 2 * overlap
    if multiple:
        tile_h = fitted_side(height, tile_h, overlap, math.lcm(multiple, align))
        tile_w = fitted_side(width, tile_w, overlap, multiple)
        step_h, step_w = tile_h - 2 * overlap, tile_w - 2 * overlap
    row_starts = _starts(height, tile_h, max(step_h // align * align, align), align)
    col_starts = _starts(width, tile_w, step_w)
    col_weights = [_ramp(tile_w * scale, 2 * overlap * scale if left > 0 else 0,
                         2 * overlap * scale if left + tile_w < width else 0) for left in col_starts]
    col_total = np.zeros(width * scale, np.float32)
    for left, wx in zip(col_starts, col_weights):
        col_total[left * scale : (left + tile_w) * scale] += wx
    rows_per_strip = tile_h * scale
    acc = np.zeros((rows_per_strip, width * scale, 3), np.float32)  # weighted sums, rows from acc_top
    row_total = np.zeros(rows_per_strip, np.float32)
    acc_top = 0
    for i, top in enumerate(row_starts):
        offset = top * scale - acc_top
        wy = _ramp(rows_per_strip, 2 * overlap * scale if top > 0 else 0,
                   2 * overlap * scale if top + tile_h < height else 0)
        band = read_rows(top, top + tile_h)
        for left, wx in zip(col_starts, col_weights):
            result = checked_output(np.asarray(predict(band[None, :, left : left + tile_w]), np.float32)[0],
                                    (tile_h * scale, tile_w * scale, 3))
            _weigh(result, wy, 0)
            _weigh(result, wx, 1)
            acc[offset:, left * scale : (left + tile_w) * scale] += result[: rows_per_strip - offset]
        row_total[offset:] += wy[: rows_per_strip - offset]
        end = (top + tile_h) * scale
        finished = (row_starts[i + 1] * scale if i + 1 < len(row_starts) else end) - acc_top
        for y in range(0, finished, EMIT_ROWS):
            n = min(EMIT_ROWS, finished - y)
            weight = row_total[y : y + n, None, None] * col_total[None, :, None]
            emit(acc_top + y, acc[y : y + n] / weight)
        rest = rows_per_strip - finished  # rows the next strip overlaps: move them to the front
        acc[:rest] = acc[finished:].copy()
        acc[rest:] = 0
        row_total[:rest] = row_total[finished:].copy()
        row_total[rest:] = 0
        acc_top += finished


def checked_output(result: np.ndarray, shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """A network's output, checked: NaN or infinity (broken weights) would be written as a black
    or white image and scored as one, so it stops the frame instead; so does an output of another
    ``shape`` than an RGB image at the layout's scale (a model that is not a sid-keras network).
    Every runner's tiles (and the exporter's reference outputs) pass here."""
    if shape is not None and result.shape != shape:
        raise SidError(f"the model's output is {'x'.join(map(str, result.shape))} where this frame's tile needs "
                       f"{'x'.join(map(str, shape))} (RGB at full resolution): not a sid-keras model for this "
                       "sensor; use another model")
    if not np.isfinite(result).all():
        raise SidError("the model's output holds NaN or infinite values: its weights are broken "
                       "(a diverged training, a damaged file): use another model")
    return result


def run_tiled(predict: Callable[[np.ndarray], np.ndarray], packed: np.ndarray, scale: int, *,
              tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP, multiple: int | None = None) -> np.ndarray:
    """:func:`blend_tiles` over a packed array (h, w, c) in memory: the output (h*s, w*s, 3)."""
    h, w = packed.shape[:2]
    out = np.empty((h * scale, w * scale, 3), np.float32)

    def emit(y: int, rows: np.ndarray) -> None:
        out[y : y + len(rows)] = rows

    blend_tiles(predict, lambda a, b: packed[a:b], h, w, scale, emit, tile=tile, overlap=overlap, multiple=multiple)
    return out


def restore_frame_geometry(rgb: np.ndarray, frame: raw.RawFrame) -> np.ndarray:
    """Pad the output (of the packed window) back to the full visible size, in sensor orientation."""
    top, left, h, w = cfa.canonical_window(frame.mosaic.shape, frame.cfa_pattern, frame.path)
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

    from sid_keras.models import inference_model, with_precision

    net = with_precision(inference_model(model), None)  # float32, whatever it was trained in
    fn = tf.function(lambda x: net(x, training=False), reduce_retracing=True)
    fixed = tuple(net.inputs[0].shape[1:3])
    if None in fixed:
        predict = lambda x: fn(tf.convert_to_tensor(x, tf.float32)).numpy()  # noqa: E731
        predict.fixed_tile = None
        return predict

    def padded(x: np.ndarray) -> np.ndarray:  # a fixed-size model: tiles padded to its size, as TFLite's
        h, w = x.shape[1:3]
        if h > fixed[0] or w > fixed[1]:
            raise SidError(f"the model takes a fixed {fixed[0]}x{fixed[1]} input, smaller than the tile {h}x{w}; "
                           f"use --tile {min(fixed)} or less")
        y = fn(tf.convert_to_tensor(np.pad(x, ((0, 0), (0, fixed[0] - h), (0, fixed[1] - w), (0, 0)),
                                           mode="symmetric"), tf.float32)).numpy()
        scale = y.shape[1] // fixed[0]
        return y[:, : h * scale, : w * scale]

    padded.fixed_tile = min(fixed)
    return padded


def load_model(path: str | os.PathLike | None = None):
    """A Keras model from a ``.keras`` file (default: the model shipped with the package)."""
    import keras

    import sid_keras.models  # noqa: F401  (registers the custom classes)

    path = pathlib.Path(path) if path else DEFAULT_MODEL_FILE
    if not path.is_file():
        from sid_keras.runtime.lite import missing_model_message

        raise SidError(missing_model_message(path))
    import zipfile

    if not zipfile.is_zipfile(path):
        raise SidError(f"{path}: not a .keras model (not a zip archive: truncated, or another format)")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as err:  # Keras raises many types for a bad file
        reason = str(err).splitlines()[0] if str(err) else ""
        raise SidError(f"{path}: not a loadable .keras model ({type(err).__name__}: {reason})") from None


@dataclasses.dataclass
class Enhanced:
    """The result of enhancing one frame, as float arrays (the Python API)."""

    output: np.ndarray  # the network's output, full visible size, sensor orientation, in [0, 1]
    convention: Convention  # the model's: linear camera RGB (white-balanced) or sRGB output
    frame: raw.RawFrame
    ratio: float
    ratio_source: str  # "given", "auto"

    @property
    def kind(self) -> str:
        """``"linear"``: white-balanced linear camera RGB; ``"srgb"``: sRGB."""
        return self.convention.output

    @property
    def image(self) -> np.ndarray:
        """The sRGB image a user sees, float32 (H, W, 3) in [0, 1], upright."""
        return orient(self.convention.to_srgb(self.output, self.frame.color_matrix), self.frame.orientation)


def available_memory() -> int | None:
    """Bytes this process can still allocate: the kernel's MemAvailable, capped by the cgroup
    (container) limit; None where neither can be read."""
    figures = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    figures.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        limit = pathlib.Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(pathlib.Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            figures.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    return min(figures) if figures else None


# Bytes per output pixel of the float strips (accumulator, a tile's result, normalised chunk)
# and a margin for the network's activations on one tile, per output pixel of the tile.
STRIP_BYTES_PER_PIXEL = 3 * 4 * 3
TILE_ACTIVATION_BYTES_PER_PIXEL = 400


MAX_DENOISE = 10.0  # beyond ten times a file's noise the network smooths any frame flat


def check_denoise(value, noise_aware: bool) -> float:
    """A denoising strength (:class:`Enhancer`), or a one-line error that says what to give."""
    given = value
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0 <= value <= MAX_DENOISE:  # NaN too
        raise SidError(f"--denoise {given}: give a factor from 0 to {MAX_DENOISE:g} "
                       "(1: the file's noise; above 1 smoother, below 1 more grain kept, 0: no denoising)")
    if value != 1 and not noise_aware:
        raise SidError(f"--denoise {value:g}: this model is blind to noise (no noise input), so its strength "
                       "is fixed; use a noise-aware model such as the shipped one")
    return value


def check_memory(frame: raw.RawFrame, bytes_per_pixel: int, tile: int) -> None:
    """Refuse, in one line and before any work, a frame whose enhancement cannot fit in memory."""
    available = available_memory()
    if available is None:
        return
    height, width = frame.mosaic.shape
    scale = frame.cfa.scale
    strip_rows = min(tile * scale, height)  # a tile larger than the frame is the frame
    needed = (height * width * bytes_per_pixel + strip_rows * width * STRIP_BYTES_PER_PIXEL
              + strip_rows * min(tile * scale, width) * TILE_ACTIVATION_BYTES_PER_PIXEL)
    if needed > available:
        raise SidError(f"{frame.path}: a {width}x{height} frame needs about {needed / 2**30:.1f} GB to enhance "
                       f"and {available / 2**30:.1f} GB is free; use a smaller --tile, free memory, or write "
                       "8-bit PNG/JPEG instead of 16-bit")


class Canvas:
    """The full-size output of one frame at its file's bit depth, filled strip by strip.

    Finished strips are rendered (linear models: the file's colour matrix and LibRaw's curve,
    through a 16-bit lookup table) and quantised as they arrive, so the only full-frame array is
    the 8- or 16-bit image that gets written. ``dng`` keeps linear camera RGB before white
    balance (:func:`sid_keras.runtime.dng.linear_dng_pixels`), in sensor orientation.
    """

    def __init__(self, frame: raw.RawFrame, convention: Convention, fmt: str):
        from sid_keras.runtime.io import FORMAT_BITS

        if fmt == "dng" and not convention.white_balanced:
            raise SidError(f"{frame.path}: DNG output needs a 'linear' model (camera RGB out); this model "
                           "predicts sRGB: write png, png16 or tiff16")
        self.frame, self.convention, self.fmt = frame, convention, fmt
        self.window = cfa.canonical_window(frame.mosaic.shape, frame.cfa_pattern, frame.path)
        dtype = np.uint8 if FORMAT_BITS[fmt] == 8 else np.uint16
        self.pixels = np.empty((*frame.mosaic.shape, 3), dtype)

    def put(self, y: int, rows: np.ndarray) -> None:
        """Finished output rows, starting at row ``y`` of the packed window's output."""
        top, left, _, w = self.window
        rows = np.clip(rows, 0.0, 1.0)
        if self.fmt == "dng":
            from sid_keras.runtime.dng import linear_dng_pixels

            values = linear_dng_pixels(rows, self.frame.white_balance)
        else:
            values = self.convention.to_pixels(rows, self.frame.color_matrix, self.pixels.dtype)
        self.pixels[top + y : top + y + len(rows), left : left + w] = values

    def finish(self) -> np.ndarray:
        """The image: edge rows and columns outside the packed window copied from their
        neighbours, turned upright (except a DNG, which records its orientation)."""
        top, left, h, w = self.window
        p = self.pixels
        p[:top], p[top + h :] = p[top], p[top + h - 1]
        p[:, :left], p[:, left + w :] = p[:, left : left + 1], p[:, left + w - 1 : left + w]
        return p if self.fmt == "dng" else orient(p, self.frame.orientation)


class Enhancer:
    """Enhance raw frames with a model, tiled so memory stays bounded.

    What the model is fed and predicts comes from the model itself (its :class:`Convention`:
    its config, or the input name of a TFLite file): a ``linear`` model gets the file's white
    balance multiplied into its input and its output is rendered with the file's colour matrix
    and LibRaw's curve; an ``srgb`` model (SID's original) is fed and shown as SID did.

    Args:
        model: a Keras model, a path to a ``.keras`` or ``.tflite`` file, None for the model
            that ships with the package (its TFLite file), or a callable on packed tiles (then
            give ``output``).
        tile, overlap: in packed pixels; by default 512, or a fixed-size model's own side, and
            :func:`default_overlap` of it (the least context; evenly spread tiles get more). A dynamic-size
            TFLite file's tiles shrink to fit the frame (:func:`fitted_side`).
        auto_target: linear mean that ``ratio="auto"`` aims for (default per output kind).
        output: ``"linear"`` or ``"srgb"``, only for a plain callable.
        noise_profile: a calibrated camera (:class:`sid_keras.runtime.noise.NoiseProfile`) whose noise
            law a noise-aware model is told for files without a NoiseProfile tag.
        dark_shading: that camera's dark-shading maps by ISO (:func:`sid_keras.runtime.noise.load_dark_shading`),
            subtracted from every frame before the network (:meth:`prepare`).
        denoise: the strength of a noise-aware model's denoising, as a factor on the noise it is
            told (:meth:`noise_law`): 1 as the file says (the best PSNR on the stress grid), above 1
            smoother, below 1 more grain and texture kept, 0 the classical demosaic alone.

    Example:
        >>> enhancer = Enhancer()  # the shipped model
        >>> rgb = enhancer.enhance("DARK.dng", ratio="auto")  # doctest: +SKIP
    """

    def __init__(self, model=None, *, tile: int | None = None, overlap: int | None = None,
                 auto_target: float | None = None, output: str | None = None, noise_profile=None,
                 dark_shading: dict[float, np.ndarray] | None = None, denoise: float = 1.0):
        self.noise_profile = noise_profile  # a calibrated camera's, for files without a NoiseProfile
        self.dark_shading = dark_shading or {}
        self.tflite_file = None  # set for TFLite models: lanes of a batch each load their own
        fixed_tile = None  # the side of a fixed-size TFLite model's input
        self.multiple = None  # a dynamic-size TFLite file's: tiles shrink to fit the frame (blend_tiles)
        if model is None or isinstance(model, (str, os.PathLike)):
            path = pathlib.Path(model) if model else DEFAULT_TFLITE_FILE
            if path.suffix.lower() == ".tflite":
                from sid_keras.runtime.lite import tflite_predictor

                self.predict = tflite_predictor(path)
                self.tflite_file = path
                self.convention, fixed_tile = self.predict.convention, self.predict.fixed_tile
                self.multiple = self.predict.multiple
            else:
                fixed_tile = self._from_keras(load_model(path))
        elif callable(getattr(model, "predict", None)) and hasattr(model, "layers"):
            fixed_tile = self._from_keras(model)
        elif callable(model):
            if output not in OUTPUT_KINDS:
                raise SidError(f"a model callable needs output='linear' or 'srgb', not {output!r}")
            self.predict, self.convention = model, Convention(output, channels=None)
        else:
            raise SidError(f"cannot enhance with {model!r}: give a Keras model or a model file")
        if tile is None:
            tile = fixed_tile or DEFAULT_TILE
        if overlap is None:
            # on the Blackmagic frame, 63.4 dB from whole-frame inference with fixed 256 / 8 tiles,
            # 59.8 with fitted 512 / 16
            overlap = default_overlap(tile)
        if not (isinstance(tile, int) and isinstance(overlap, int) and overlap >= 0 and tile > 2 * overlap):
            raise SidError(f"--tile {tile} and --overlap {overlap}: need overlap >= 0 and tile > 2 x overlap "
                           f"(defaults: {DEFAULT_TILE} and {DEFAULT_OVERLAP}, or the model's fixed size)")
        self.tile, self.overlap = tile, overlap
        self.auto_target = AUTO_TARGET_MEAN[self.convention.output] if auto_target is None else auto_target
        self.denoise = check_denoise(denoise, self.convention.noise)

    def _from_keras(self, model) -> int | None:
        """Run a Keras model; returns the side of its fixed input (None: any size)."""
        from sid_keras.models import convention_of

        self.predict, self.convention = keras_predictor(model), convention_of(model)
        return self.predict.fixed_tile

    @property
    def output(self) -> str:
        """What the model predicts: ``"linear"`` (camera RGB) or ``"srgb"``."""
        return self.convention.output

    def lanes(self, files: int) -> list[Enhancer]:
        """Enhancers that may run side by side on a batch of ``files``, each with its own share of the cores.

        Why: on few cores a network on one thread per file, two files at once, keeps every core
        busy while the other file is decoded, rendered or encoded (single-threaded stages), where
        one network on all cores leaves them idle in between. Only TFLite models are replicated (an
        interpreter serves one thread); a Keras model runs one file at a time on TensorFlow's pool.
        """
        cores = os.cpu_count() or 1
        count = min(files, cores, MAX_LANES)
        if self.tflite_file is None or count < 2:
            return [self]
        from sid_keras.runtime.lite import tflite_predictor

        replicas = []
        for _ in range(count):
            replica = copy.copy(self)
            replica.predict = tflite_predictor(self.tflite_file, num_threads=max(1, cores // count))
            replicas.append(replica)
        return replicas

    def prepare(self, frame: raw.RawFrame) -> raw.RawFrame:
        """The frame as the network should see it: less the camera's calibrated dark shading."""
        return raw.subtract_dark_shading(frame, self.dark_shading)

    def noise_law(self, frame: raw.RawFrame) -> noise_law.NoiseLaw | None:
        """The noise law a noise-aware model is told of the frame (:func:`sid_keras.runtime.noise_law.noise_law`),
        its standard deviation times :attr:`denoise`; None for a blind model."""
        return self.told(noise_law.noise_law(frame, self.noise_profile))

    def told(self, law: noise_law.NoiseLaw) -> noise_law.NoiseLaw | None:
        """What a noise-aware model is told of a frame whose noise follows ``law``: its standard
        deviation times :attr:`denoise`; None for a blind model."""
        if not self.convention.noise:
            return None
        if self.denoise == 1:
            return law
        variance = np.float32(self.denoise**2)
        return noise_law.NoiseLaw(law.s * variance, law.o * variance, f"{law.source}, x{self.denoise:g} (denoise)")

    def network_input(self, frame: raw.RawFrame, ratio: float) -> np.ndarray:
        """The packed, amplified (and for linear models white-balanced) input of ``frame``, with
        its noise level for a model that takes it."""
        return self.convention.network_input(frame, ratio, self.noise_law(frame))

    def run(self, packed: np.ndarray, scale: int) -> np.ndarray:
        """Network input (h, w, c) -> its output (h*scale, w*scale, 3) in [0, 1], tiled."""
        rgb = run_tiled(self.predict, packed, scale, tile=self.tile, overlap=self.overlap, multiple=self.multiple)
        return np.clip(rgb, 0.0, 1.0)

    def to_srgb(self, output: np.ndarray, frame: raw.RawFrame) -> np.ndarray:
        """The network's output as sRGB (rendered with the file's colour for linear models)."""
        return self.convention.to_srgb(output, frame.color_matrix)

    def resolve_ratio(self, frame: raw.RawFrame, ratio: float | str | None) -> tuple[float, str]:
        if ratio is None or ratio == "auto":
            return auto_ratio(frame, self.auto_target, white_balance=self.convention.white_balanced), "auto"
        return raw.check_ratio(ratio), "given"

    def stream(self, frame: raw.RawFrame, ratio: float, emit: Callable[[int, np.ndarray], None],
               noise: noise_law.NoiseLaw | None = None) -> None:
        """Enhance ``frame`` strip by strip; ``emit(y, rows)`` gets the output rows of the packed window.
        ``noise``: the frame's :meth:`noise_law` where the caller has it already."""
        layout = frame.cfa
        channels = self.convention.channels
        if channels is not None and channels != layout.channels:
            kinds = {4: "Bayer", 9: "X-Trans"}
            raise SidError(f"{frame.path}: a {layout.kind} frame ({layout.channels} packed channels), but the "
                           f"model takes {kinds.get(channels, channels)} input ({channels} "
                           f"channels); use a model trained for this sensor")
        height, width = raw.packed_shape(frame)
        if noise is None:
            noise = self.noise_law(frame)

        def read_rows(start: int, stop: int) -> np.ndarray:
            return self.convention.network_input(frame, ratio, noise, rows=(start, stop))

        blend_tiles(self.predict, read_rows, height, width, layout.scale, emit, tile=self.tile,
                    overlap=self.overlap, align=layout.layout.shape[1], multiple=self.multiple)

    def enhance_frame(self, frame: raw.RawFrame, ratio: float | str | None = "auto",
                      noise: noise_law.NoiseLaw | None = None) -> Enhanced:
        """The frame's output as float arrays (:class:`Enhanced`). ``noise``: as in :meth:`stream`."""
        check_memory(frame, 2 * 3 * 4, self.tile)  # the float output and its padded copy
        value, source = self.resolve_ratio(frame, ratio)
        _, _, h, w = cfa.canonical_window(frame.mosaic.shape, frame.cfa_pattern, frame.path)
        output = np.empty((h, w, 3), np.float32)

        def emit(y: int, rows: np.ndarray) -> None:
            output[y : y + len(rows)] = np.clip(rows, 0.0, 1.0)

        self.stream(frame, value, emit, noise)
        return Enhanced(restore_frame_geometry(output, frame), self.convention, frame, value, source)

    def enhance_to_pixels(self, frame: raw.RawFrame, ratio: float | str | None, fmt: str,
                          noise: noise_law.NoiseLaw | None = None):
        """The frame's output as the 8- or 16-bit pixels of format ``fmt`` (memory: one such image
        and a strip of floats); returns ``(pixels, ratio, ratio source)``. ``noise``: as in :meth:`stream`."""
        from sid_keras.runtime.io import FORMAT_BITS

        check_memory(frame, 3 * FORMAT_BITS[fmt] // 8, self.tile)
        value, source = self.resolve_ratio(frame, ratio)
        canvas = Canvas(frame, self.convention, fmt)
        self.stream(frame, value, canvas.put, noise)
        return canvas.finish(), value, source

    def enhance(self, source: str | os.PathLike | raw.RawFrame, ratio: float | str | None = "auto") -> np.ndarray:
        """Enhance a raw file or :class:`~sid_keras.runtime.raw.RawFrame`; float32 sRGB (H, W, 3) in [0, 1]."""
        frame = source if isinstance(source, raw.RawFrame) else raw.read_raw(source)
        return self.enhance_frame(self.prepare(frame), ratio).image

    def merge_burst(self, sources: Sequence) -> tuple[raw.RawFrame, noise_law.NoiseLaw, BurstReport]:
        """Read a burst (files or frames of one scene, the first the reference), check that it is
        one, and align and merge it (:mod:`sid_keras.runtime.burst`). Returns the merged frame,
        the single-frame noise law of its reference (the merged frame says how much of it is
        left where; an estimate from the merge itself would count the merge twice) and what
        the merge did."""
        from concurrent.futures import ThreadPoolExecutor

        from sid_keras.runtime import burst

        if not sources:
            raise SidError("a burst needs at least one raw file")

        def read(source):
            return self.prepare(source if isinstance(source, raw.RawFrame) else raw.read_raw(source))

        with ThreadPoolExecutor(os.cpu_count() or 1, "sid-read") as pool:  # LibRaw decodes without the GIL
            frames = list(pool.map(read, sources))
        burst.check_burst(frames)
        reference = frames[0]
        law = noise_law.noise_law(reference, self.noise_profile)
        if len(frames) == 1:
            return reference, law, burst.BurstReport((), (), 1.0)

        def one_at_a_time():  # each frame is let go once merged
            while len(frames) > 1:
                yield frames.pop(1)

        merged, report = burst.merge(reference, one_at_a_time(), law)
        return merged, law, report

    def enhance_burst(self, sources: Sequence, ratio: float | str | None = "auto") -> np.ndarray:
        """Enhance a burst of raw files of one scene (the first the reference: its geometry); float32
        sRGB (H, W, 3) in [0, 1]. A burst of one file is exactly :meth:`enhance` of it."""
        merged, law, _ = self.merge_burst(sources)
        return self.enhance_frame(merged, ratio, self.told(law)).image


def expand_inputs(inputs: Sequence[str]) -> list[pathlib.Path]:
    """Files, folders (their raw files) and globs, in order, without duplicates.

    An existing file is taken as it is even when its name has glob characters (``shot[1].dng``).
    """
    import glob

    found: list[pathlib.Path] = []
    for item in inputs:
        path = pathlib.Path(item)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in RAW_SUFFIXES)
        elif not path.exists() and any(c in item for c in "*?["):
            found += sorted(pathlib.Path(p) for p in glob.glob(item) if pathlib.Path(p).is_file())
        else:
            found.append(path)
    seen, unique = set(), []
    for p in found:
        real = os.path.realpath(p)  # unlike Path.resolve, no error on a symlink loop: read_raw reports it
        if real not in seen:
            seen.add(real)
            unique.append(p)
    return unique


def plan_outputs(inputs: Sequence[pathlib.Path], out: str | os.PathLike, fmt: str | None) -> tuple[str, list]:
    """The output format and ``[(input, output file)]`` of an enhance command, checked up front.

    ``out`` is a file name for one input (its extension picks the format) or a folder (an
    existing one, a name ending in a slash, or a name without extension); a ``fmt`` that
    contradicts the extension, an unknown extension, two inputs that would write the same file
    and an output that is an input are refused before any work.
    """
    from sid_keras.runtime.io import EXTENSION_FORMATS, OUTPUT_FORMATS, format_for, refuse_writing_over_inputs

    named_folder = str(out).endswith(("/", os.sep))
    out = pathlib.Path(out)
    is_file_name = not named_folder and not out.is_dir() and out.suffix != ""
    if is_file_name and out.suffix.lower() not in EXTENSION_FORMATS:
        raise SidError(f"{out}: unknown output extension {out.suffix!r}; use "
                       f"{', '.join(sorted(EXTENSION_FORMATS))} or a folder name")
    if is_file_name and len(inputs) > 1:
        raise SidError(f"{out}: {len(inputs)} inputs need an output folder, not a file name")
    if is_file_name:
        named = EXTENSION_FORMATS[out.suffix.lower()]
        if fmt is not None and OUTPUT_FORMATS[format_for(out, fmt)] != OUTPUT_FORMATS[named]:
            raise SidError(f"{out}: the name says {named} but --format is {fmt}; make them agree")
        chosen = format_for(out, fmt) if fmt else named
        refuse_writing_over_inputs(inputs, [out])
        return chosen, [(inputs[0], out)]
    chosen = format_for(out, fmt) if fmt else "png"
    plan = [(source, out / f"{source.stem}{OUTPUT_FORMATS[chosen]}") for source in inputs]
    seen: dict[pathlib.Path, pathlib.Path] = {}
    for source, target in plan:
        if target in seen:
            raise SidError(f"{seen[target]} and {source} would both write {target}; "
                           "enhance them into separate folders")
        seen[target] = source
    refuse_writing_over_inputs(inputs, [target for _, target in plan])
    return chosen, plan


def write_pixels(target: pathlib.Path, pixels: np.ndarray, frame: raw.RawFrame, fmt: str, *,
                 overwrite: bool = False, **encoding) -> None:
    """Write the pixels of :meth:`Enhancer.enhance_to_pixels` in format ``fmt``, atomically.

    ``encoding``: ``quality`` (JPEG) and ``compression`` (PNG) of :func:`sid_keras.runtime.io.write_image`.
    """
    if fmt == "dng":
        from sid_keras.runtime.dng import write_linear_dng

        names = tags.camera_identity(frame.path) if os.path.isfile(frame.path) else {}
        write_linear_dng(target, pixels, white_balance=frame.white_balance, color_matrix=frame.color_matrix,
                         orientation=frame.orientation, crop=frame.crop, overwrite=overwrite,
                         make=names.get("Make"), model=names.get("Model"),
                         unique_model=names.get("UniqueCameraModel"))
    else:
        from sid_keras.runtime.io import write_image

        write_image(target, pixels, fmt=fmt, overwrite=overwrite, **encoding)


def enhance_files(enhancer: Enhancer, plan: Sequence[tuple[pathlib.Path, pathlib.Path]], *,
                  ratio: float | str | None = "auto", fmt: str = "png", overwrite: bool = False,
                  progress: bool = False, log: Callable[[str], None] = print, verbose: bool = False,
                  **encoding) -> list[tuple[str, str]]:
    """Enhance ``[(input, output)]`` (:func:`plan_outputs`), going on past bad files and failed
    writes; returns ``[(file, message)]`` for the failures.

    A small pipeline overlaps the stages of consecutive files: threads decode the next raws, the
    network runs in the lanes of :meth:`Enhancer.lanes` (two files at once on a 2-core machine),
    and threads encode finished images; LibRaw, the network runtimes, numpy and zlib release the
    GIL. A few files are in flight at a time and messages come in the plan's order.
    ``encoding``: ``quality`` and ``compression`` of :func:`sid_keras.runtime.io.write_image`.
    ``verbose``: each file's line also says where a noise-aware model's noise level came from.
    """
    import collections
    import queue
    from concurrent.futures import ThreadPoolExecutor

    from sid_keras.runtime.io import check_encoding

    check_encoding(**encoding)
    from sid_keras.runtime.progress import Progress

    failures: list[tuple[str, str]] = []
    bar = Progress(len(plan), "enhance", "file", enabled=progress)
    log = bar.above(log)
    lanes = enhancer.lanes(len(plan))
    idle_lanes: queue.SimpleQueue = queue.SimpleQueue()
    for lane in lanes:
        idle_lanes.put(lane)

    def read(source: pathlib.Path, target: pathlib.Path) -> raw.RawFrame:
        if target.exists() and not overwrite:
            raise SidError(f"{target}: already exists; pass --overwrite to replace it")
        return enhancer.prepare(raw.read_raw(source))

    def enhance(reading):
        frame = reading.result()
        lane = idle_lanes.get()
        try:
            noise = lane.noise_law(frame)
            return frame, noise, *lane.enhance_to_pixels(frame, ratio, fmt, noise)
        finally:
            idle_lanes.put(lane)

    def write(source: pathlib.Path, target: pathlib.Path, enhancing) -> list[str]:
        frame, noise, pixels, value, how = enhancing.result()
        write_pixels(target, pixels, frame, fmt, overwrite=overwrite, **encoding)
        if verbose and noise is not None:
            how += f"; noise level: {noise.source}"
        return [*frame.notices, f"{source} -> {target} (ratio x{value:.1f} {how})"]

    def finish(source: pathlib.Path, writing) -> None:
        """Report a finished file: its lines, or the error of whichever stage failed."""
        try:
            lines = writing.result()
        except Exception as err:  # noqa: BLE001 - a bad file, a full disk, a bug: report it, go on with the next
            message = describe(err)
            if message is None and verbose:
                raise  # the traceback, for the report
            message = message or unexpected(err)  # a bug that one file meets does not cost the others
            if str(source) not in message and str(target_of[source]) not in message:
                message = f"{source}: {message}"  # out of memory, say: the line names the file too
            failures.append((str(source), message))
            lines = []
        for line in lines:  # outside the try: a file written is a success whatever happens to its line
            log(line)
        bar.update()

    target_of = dict(plan)
    in_flight = collections.deque()
    # As many readers and writers as lanes, so that the lanes start together and the last files'
    # images are encoded side by side instead of one after another on one core.
    with ThreadPoolExecutor(len(lanes), "sid-read") as reader, \
            ThreadPoolExecutor(len(lanes), "sid-enhance") as network, \
            ThreadPoolExecutor(len(lanes), "sid-write") as writer:
        try:
            for source, target in plan:
                enhancing = network.submit(enhance, reader.submit(read, source, target))
                in_flight.append((source, writer.submit(write, source, target, enhancing)))
                if len(in_flight) > len(lanes) + 1:
                    finish(*in_flight.popleft())
            while in_flight:
                finish(*in_flight.popleft())
        except BaseException:  # Ctrl-C or a bug: drop the files not started; running writes stay atomic
            for pool in (reader, network, writer):
                pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            bar.close()
    return failures
