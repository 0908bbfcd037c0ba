"""Enhancer: raw file -> clean sRGB, at any size, in bounded memory.

An :class:`Enhancer` holds a model (the shipped one by default) and its convention, resolves the
exposure ratio (``auto``: from the frame's own signal), tells a noise-aware model the frame's
noise, and streams the output strip by strip through :mod:`~sid_keras.runtime.tiling` into
floats or the pixels of an output format, checking memory first. The network is anything that
maps a batch of packed tiles to RGB (:mod:`~sid_keras.runtime.runners`): a Keras model, or a
TFLite interpreter (:mod:`sid_keras.runtime.lite`), so one tiling code serves both. Bursts are
merged first (:mod:`~sid_keras.runtime.burst`).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import pathlib
from typing import Callable, Sequence

import numpy as np

from sid_keras.errors import SidError
from sid_keras.runtime import cfa, noise_law, raw, shading
from sid_keras.runtime.burst import BurstReport
from sid_keras.runtime.convention import Convention
from sid_keras.runtime.render import OUTPUT_KINDS
from sid_keras.runtime.runners import DEFAULT_TFLITE_FILE, keras_predictor, load_model
from sid_keras.runtime.tiling import (
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    blend_tiles,
    default_overlap,
    orient,
    restore_frame_geometry,
    run_tiled,
)

# --ratio auto: amplify so the frame's mean (white-balanced for linear models) lands at the median
# mean input of the training data: 0.13 for the sRGB model trained on `sid-keras synth` data,
# 0.16 for linear models trained on pairs synthesised from the BSDS, Urban100 and Sun-Hays photos.
AUTO_TARGET_MEAN = {"srgb": 0.13, "linear": 0.16}
AUTO_RATIO_RANGE = (1.0, 1000.0)


# Files a batch enhances side by side at most (each holds a raw frame and its output image).
MAX_LANES = 4


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
        self.predict = keras_predictor(model)
        self.convention = self.predict.convention
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
        output, value, source = self.float_output(frame, ratio, noise)
        return Enhanced(restore_frame_geometry(output, frame), self.convention, frame, value, source)

    def float_output(self, frame: raw.RawFrame, ratio: float | str | None, noise: noise_law.NoiseLaw | None):
        """The output of the frame's packed window as one float32 array, with a lens-shaded frame's
        brightness held to its raw data's (:mod:`sid_keras.runtime.shading`); ``(output, ratio, ratio source)``."""
        value, source = self.resolve_ratio(frame, ratio)
        _, _, h, w = cfa.canonical_window(frame.mosaic.shape, frame.cfa_pattern, frame.path)
        output = np.empty((h, w, 3), np.float32)

        def emit(y: int, rows: np.ndarray) -> None:
            output[y : y + len(rows)] = np.clip(rows, 0.0, 1.0)

        self.stream(frame, value, emit, noise)
        return self.anchored(output, frame, value), value, source

    def anchored(self, output: np.ndarray, frame: raw.RawFrame, ratio: float) -> np.ndarray:
        """The network's ``output`` of the frame's packed window, a lens-shaded frame's brightness
        held to its raw data's in place (:mod:`sid_keras.runtime.shading`); other frames' as it is."""
        if shading.needs_anchor(frame, self.convention.white_balanced):
            shading.anchor_brightness(output, frame, ratio)
        return output

    def enhance_to_pixels(self, frame: raw.RawFrame, ratio: float | str | None, fmt: str,
                          noise: noise_law.NoiseLaw | None = None):
        """The frame's output as the 8- or 16-bit pixels of format ``fmt`` (memory: one such image
        and a strip of floats, or for a lens-shaded frame the whole float output, which is scaled
        as a whole); returns ``(pixels, ratio, ratio source)``. ``noise``: as in :meth:`stream`."""
        from sid_keras.runtime.io import FORMAT_BITS

        canvas = Canvas(frame, self.convention, fmt)
        if shading.needs_anchor(frame, self.convention.white_balanced):
            check_memory(frame, 3 * FORMAT_BITS[fmt] // 8 + 3 * 4, self.tile)
            output, value, source = self.float_output(frame, ratio, noise)
            canvas.put(0, output)
            return canvas.finish(), value, source
        check_memory(frame, 3 * FORMAT_BITS[fmt] // 8, self.tile)
        value, source = self.resolve_ratio(frame, ratio)
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


