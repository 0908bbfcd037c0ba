"""Camera raw frames: reading a file into a :class:`RawFrame`, its levels, and the exposure ratio.

The data path starts here: a raw file becomes a :class:`RawFrame` (the mosaic and the metadata
needed to interpret it: levels, white balance, colour, exposure, the DNG tags LibRaw leaves out),
refused in one line when it is missing, damaged or not a CFA raw. The CFA's packing is
:mod:`~sid_keras.runtime.cfa`'s, the tags' reading :mod:`~sid_keras.runtime.tags`', the noise law
:mod:`~sid_keras.runtime.noise_law`'s and what a model is fed :mod:`~sid_keras.runtime.model_input`'s.
Only numpy is imported at module level; rawpy is imported by :func:`read_raw`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Sequence

import numpy as np

from sid_keras.errors import SidError
from sid_keras.runtime.cfa import (
    BLUE,
    GREEN,
    GREEN2,
    RED,
    CfaLayout,
    canonical_offset,
    canonical_window,
    cfa_layout,
    pack_mosaic,
    tile_colours,
)
from sid_keras.runtime.tags import (
    apply_gain_maps,
    default_crop,
    dng_data_end,
    dng_ifds,
    dng_raw_tags,
    noise_profile_tag,
    read_tiff,
)

# What `enhance` and `calibrate` take from a folder: raw files by their suffix.
RAW_SUFFIXES = (".dng", ".arw", ".raf", ".nef", ".cr2", ".cr3", ".orf", ".rw2", ".pef", ".srw", ".raw",
                ".3fr", ".erf", ".mef", ".mos", ".nrw", ".rwl", ".iiq", ".x3f", ".srf", ".sr2", ".kdc", ".dcr")

# SID's exposure-ratio cap: its test set only has x100, x250 and x300 (Chen et al. 2018).
DEFAULT_RATIO_CAP = 300.0
# Amplifications outside these are typos, not exposures (a 14-bit sensor spans 2^14 = 16384).
RATIO_BOUNDS = (0.01, 10000.0)


# Grey-world gains beyond this are a colourful scene, not an illuminant: cap them.
GREY_WORLD_MAX_GAIN = 8.0


_SID_EXPOSURE_RE = re.compile(r"_(\d+(?:\.\d+)?)s\.[A-Za-z0-9]+$")


@dataclasses.dataclass(frozen=True)
class RawFrame:
    """One raw frame and the metadata needed to interpret it.

    Attributes:
        mosaic: uint16 (H, W) visible sensor area, exactly as stored (not black-subtracted).
        cfa_pattern: colour index per position of the repeating CFA tile (2x2 or 6x6);
            0 = R, 1 = G, 2 = B, 3 = second G.
        black_level: per colour index (4 values), in sensor units.
        white_level: saturation value in sensor units.
        white_balance: as-shot multipliers per colour index, normalised as LibRaw does (the
            smallest of R, G, B is 1), so white-balanced values clip where LibRaw's do.
        color_matrix: 3x4 camera-RGB to sRGB matrix as rawpy reports it (zeros if unknown).
        exposure_time: seconds, or None when the file does not say.
        iso: ISO speed, or None when the file does not say.
        orientation: LibRaw's flip code (0 none, 3 180°, 5 90° CCW, 6 90° CW).
        crop: the file's default crop (top, left, height, width) in the mosaic, or None.
        noise_profile: the DNG NoiseProfile as ``(S, O)`` per colour R, G, B (variance
            ``S * x + O`` of a signal ``x`` in units of white minus black), or None.
        noise_variance_scale: the share of a single frame's noise variance each pixel still has
            (mosaic-shaped, float32; a merged burst's, :mod:`sid_keras.runtime.burst`), or None
            (all of it). Such a frame's mosaic holds float32 values, in sensor units too.
        lens_gain: the gain the file's lens-shading GainMaps applied to each pixel's signal
            (mosaic-shaped, float32), or None: the noise law describes the sensor's values before
            it, so a corner amplified x2.5 holds x2.5 the noise of its level.
        path: the file the frame came from, for messages.
        notices: one-line remarks for the user (a white balance or colour matrix that had to be
            replaced because the file lacks it).
    """

    mosaic: np.ndarray
    cfa_pattern: np.ndarray
    black_level: np.ndarray
    white_level: float
    white_balance: np.ndarray = dataclasses.field(default_factory=lambda: np.ones(4))
    color_matrix: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((3, 4)))
    exposure_time: float | None = None
    iso: float | None = None
    orientation: int = 0
    crop: tuple[int, int, int, int] | None = None
    noise_profile: tuple[tuple[float, float], ...] | None = None
    noise_variance_scale: np.ndarray | None = None
    lens_gain: np.ndarray | None = None
    path: str = "<array>"
    notices: tuple[str, ...] = ()

    @property
    def cfa(self) -> CfaLayout:
        return cfa_layout(self.cfa_pattern, self.path)

    @property
    def black_map(self) -> np.ndarray:
        """Black level of every mosaic position, from the per-colour levels and the CFA."""
        colours = tile_colours(self.cfa_pattern, self.mosaic.shape)
        return np.asarray(self.black_level, np.float32)[colours]


def channel_levels(frame: RawFrame) -> tuple[np.ndarray, float]:
    """Per packed channel black level (from the canonical tile) and the white level."""
    return per_channel(frame, frame.black_level), float(frame.white_level)


def per_channel(frame: RawFrame, per_colour: Sequence[float]) -> np.ndarray:
    """A per-colour-index quantity (4 values) mapped onto the packed channels."""
    dy, dx = canonical_offset(frame.cfa_pattern, frame.path)
    tile = np.roll(np.asarray(frame.cfa_pattern), (-dy, -dx), axis=(0, 1))
    values = np.asarray(per_colour, np.float32)
    return np.array([values[tile[tuple(g[0][0])]] for g in frame.cfa.layout], np.float32)


def channel_gains(frame: RawFrame) -> np.ndarray:
    """The file's white-balance gain of each packed channel."""
    return per_channel(frame, frame.white_balance)


def packed_shape(frame: RawFrame) -> tuple[int, int]:
    """(height, width) of the frame's packed form."""
    _, _, h, w = canonical_window(frame.mosaic.shape, frame.cfa_pattern, frame.path)
    layout = frame.cfa
    cells = layout.layout.shape[1]
    return h // layout.period * cells, w // layout.period * cells


def packed_rows(frame: RawFrame, rows: tuple[int, int] | None, mosaic: np.ndarray | None = None) -> np.ndarray:
    """The frame's packed raw values (uint16), all rows or packed ``rows = (start, stop)``; or
    those of another array of the mosaic's shape (``mosaic``)."""
    top, left, h, w = canonical_window(frame.mosaic.shape, frame.cfa_pattern, frame.path)
    layout = frame.cfa
    cells = layout.layout.shape[1]
    start, stop = rows if rows is not None else (0, h // layout.period * cells)
    if start % cells or stop % cells:
        raise ValueError(f"packed rows {start}:{stop} are not whole CFA periods of {cells} rows")
    mosaic_rows = slice(top + start // cells * layout.period, top + stop // cells * layout.period)
    return pack_mosaic((frame.mosaic if mosaic is None else mosaic)[mosaic_rows, left : left + w], layout)


def raw_signal(frame: RawFrame, rows: tuple[int, int] | None = None, packed: np.ndarray | None = None) -> np.ndarray:
    """The packed raw signal in units of white minus black (a noise law's units), not clipped:
    values below black stay negative, as the dark noise's negative half is, where the file keeps it.
    ``packed``: the frame's packed values when the caller has them."""
    black, white = channel_levels(frame)
    signal = (packed_rows(frame, rows) if packed is None else packed).astype(np.float32)
    signal -= black
    signal /= np.float32(white) - black
    return signal


def subtract_dark_shading(frame: RawFrame, maps: dict[float, np.ndarray]) -> RawFrame:
    """The frame less its camera's fixed dark pattern (the calibrated map of the nearest ISO):
    what PMN measured +0.76 dB on SID from. A frame of another size, or without an ISO when
    several ISOs were calibrated, is left as it is, with a notice."""
    if not maps:
        return frame
    usable = {iso: m for iso, m in maps.items() if m.shape == frame.mosaic.shape}
    if not usable or (frame.iso is None and len(usable) > 1):
        why = "its size differs from the calibration frames'" if not usable else "it names no ISO"
        return dataclasses.replace(frame, notices=(*frame.notices,
                                                   f"{frame.path}: dark shading not subtracted: {why}"))
    iso = min(usable, key=lambda i: abs(math.log(i / frame.iso)) if frame.iso else 0.0)
    mosaic = np.clip(np.rint(frame.mosaic.astype(np.float32) - usable[iso]), 0, frame.white_level)
    return dataclasses.replace(frame, mosaic=mosaic.astype(np.uint16))


def check_ratio(ratio: float, what: str = "exposure ratio") -> float:
    """A ratio within :data:`RATIO_BOUNDS`, or a SidError that says so."""
    try:
        value = float(ratio)
    except (TypeError, ValueError):
        raise SidError(f"{what} {ratio!r} is not a number; give a positive amplification") from None
    low, high = RATIO_BOUNDS
    if not math.isfinite(value) or not low <= value <= high:
        raise SidError(f"{what} {ratio!r} must be between {low:g} and {high:g} (SID uses 100, 250, 300)")
    return value


def exposure_from_sid_name(path: str) -> float | None:
    """Exposure seconds from a SID file name (``00001_00_0.04s.ARW`` -> 0.04), else None."""
    match = _SID_EXPOSURE_RE.search(os.path.basename(str(path)))
    return float(match.group(1)) if match else None


def exposure_ratio(
    short_path: str,
    long_path: str,
    *,
    short_exposure: float | None = None,
    long_exposure: float | None = None,
    cap: float | None = DEFAULT_RATIO_CAP,
) -> float:
    """SID's amplification ``min(long / short, cap)``.

    Exposure times come from the files' metadata when given (> 0), else from SID file names.
    ``cap=None`` disables the cap.
    """
    times = []
    for path, meta in ((short_path, short_exposure), (long_path, long_exposure)):
        value = meta if meta and meta > 0 else exposure_from_sid_name(path)
        if value is None or not value > 0:
            raise SidError(
                f"{path}: exposure time unknown (no metadata and no SID-style name like "
                "00001_00_0.04s.ARW); give the ratio explicitly"
            )
        times.append(float(value))
    # Metadata stores times as float32 (0.1 s reads 0.100000001): keep the ratio to 4 decimals.
    ratio = round(times[1] / times[0], 4)
    if cap is not None:
        ratio = min(ratio, check_ratio(cap, "ratio cap"))
    return check_ratio(ratio)


def open_raw(path: str):
    """``rawpy.imread``, also for a file name that is not UTF-8 (an ordinary name on Linux, which
    LibRaw cannot be given): such a file is handed to LibRaw from memory."""
    import rawpy

    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        with open(path, "rb") as f:
            return rawpy.imread(f)
    return rawpy.imread(path)


def check_complete(path: str) -> None:
    """Refuse a DNG whose image data ends early (a copy cut short): LibRaw fills the missing
    tiles with black and reports nothing."""
    end, size = dng_data_end(path), os.path.getsize(path)
    if end is not None and end > size:
        raise SidError(f"{path}: truncated: its image data runs to byte {end:,} but the file has {size:,} bytes; "
                       "copy it again from the camera or card")


# LibRaw fills what it cannot decode (damaged data, a wrong compression tag) with 0 and says
# nothing. A sensor with a black level reads 0 only far below it: real frames have at most a few
# in ten thousand (0.05% in the Blackmagic DNG, a dark corner); damaged ones had 50-60%.
DAMAGED_ZERO_SHARE = 0.01
DAMAGED_MIN_BLACK = 16  # below this, noise reaches 0 in dark frames and zeros say nothing


def check_decoded(path: str, mosaic: np.ndarray, blacks: np.ndarray) -> None:
    """Refuse a frame whose image data LibRaw could not decode (module constants above)."""
    if blacks.min() < DAMAGED_MIN_BLACK or mosaic.size == 0:
        return
    share = np.count_nonzero(mosaic == 0) / mosaic.size
    if share > DAMAGED_ZERO_SHARE:
        raise SidError(f"{path}: {share:.0%} of its pixels decode as 0, far below the black level "
                       f"{blacks.min():g}: its image data is damaged (LibRaw fills what it cannot decode with "
                       "black); copy it again from the camera or card")


def check_unchanged(path: str, before: os.stat_result) -> None:
    """Refuse a file that changed while it was read (still being copied or written): its data may be
    cut anywhere, after the size check passed."""
    try:
        after = os.stat(path)
    except OSError:
        after = None
    if after is None or (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise SidError(f"{path}: changed while it was read (still being copied or written?); read it again "
                       "once it is complete")


def read_raw(
    path: str | os.PathLike,
    *,
    black_level: float | Sequence[float] | None = None,
    white_level: float | None = None,
) -> RawFrame:
    """Read a camera raw file with rawpy into a :class:`RawFrame`.

    Args:
        path: any file LibRaw opens (ARW, RAF, DNG, NEF, CR2, ...).
        black_level: explicit override (one value or one per colour index).
        white_level: explicit override.

    Raises:
        SidError: missing, unreadable, truncated or CFA-less files, with the file's name.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        if os.path.islink(path) and not os.path.exists(path):
            raise SidError(f"{path}: a symlink to nothing (broken, or a loop); skipped")
        if os.path.isdir(path):
            raise SidError(f"{path}: is a folder; give raw files (a folder's raw files are taken by `enhance`)")
        if os.path.exists(path):  # a FIFO would block the read, a device would never end
            raise SidError(f"{path}: not a regular file (a pipe, a device or a socket); give a raw file")
        raise SidError(f"{path}: no such file")
    try:
        import rawpy
    except ImportError as err:  # pragma: no cover - rawpy is a core dependency
        raise SidError("reading raw files needs rawpy: pip install rawpy") from err
    try:
        check_complete(path)  # opens the file first: LibRaw would call an unreadable file corrupt
        before = os.stat(path)
    except PermissionError:
        raise SidError(f"{path}: permission denied: this user cannot read it; fix its permissions") from None
    try:
        with open_raw(path) as raw:
            pattern = raw.raw_pattern
            cfa_layout(None if pattern is None else np.asarray(pattern), path)
            mosaic = np.array(raw.raw_image_visible, dtype=np.uint16, copy=True)
            blacks = np.array(raw.black_level_per_channel, np.float32)
            white = float(raw.white_level)
            wb = np.array(raw.camera_whitebalance, np.float32)
            color_matrix = np.array(raw.color_matrix, np.float32)
            other = raw.other
            flip = int(raw.sizes.flip)
            crop = default_crop(raw.sizes)
            pattern = np.array(pattern)
    except rawpy.LibRawFileUnsupportedError:
        raise SidError(_unsupported_message(path)) from None
    except (rawpy.LibRawIOError, rawpy.LibRawDataError, rawpy.LibRawError) as err:
        raise SidError(f"{path}: truncated or corrupt raw file ({_libraw_text(err)})") from None
    check_unchanged(path, before)
    check_decoded(path, mosaic, blacks)
    if black_level is not None:
        blacks = np.broadcast_to(np.asarray(black_level, np.float32), (4,)).copy()
    if white_level is not None:
        white = float(white_level)
    if not white > blacks.max():
        raise SidError(f"{path}: white level {white} is not above the black level {blacks.max()}")
    canonical_window(mosaic.shape, pattern, path)
    notices: list[str] = []
    if wb[GREEN2] == 0:
        wb[GREEN2] = wb[GREEN]
    if not (np.all(np.isfinite(wb)) and np.all(wb > 0)):
        wb = grey_world_balance(mosaic, pattern, blacks)
        notices.append(f"{path}: the file has no as-shot white balance; using a grey-world estimate "
                       f"(R x{wb[RED] / wb[GREEN]:.2f}, B x{wb[BLUE] / wb[GREEN]:.2f})")
    from sid_keras.runtime.render import has_color_matrix

    if not has_color_matrix(color_matrix):
        notices.append(f"{path}: the file has no colour matrix; showing camera RGB as it is, as LibRaw does")
    from sid_keras.runtime.dng import TAG_NOISE_PROFILE, TAG_OPCODE_LIST_2

    extra = dng_raw_tags(path)
    noise_profile = (noise_profile_tag(extra[TAG_NOISE_PROFILE], path, notices) if TAG_NOISE_PROFILE in extra
                     else None)
    if TAG_OPCODE_LIST_2 in extra:
        black_map = np.asarray(blacks, np.float32)[tile_colours(pattern, mosaic.shape)]
        mosaic, lens_gain = apply_gain_maps(mosaic, black_map, white, extra[TAG_OPCODE_LIST_2], path, notices)
    else:
        lens_gain = None
    frame = RawFrame(
        mosaic=mosaic,
        cfa_pattern=pattern,
        black_level=blacks,
        white_level=white,
        white_balance=libraw_normalised(wb),
        color_matrix=color_matrix,
        exposure_time=float(other.shutter_speed) or None,
        iso=float(other.iso_speed) or extra.get("iso"),
        orientation=flip,
        crop=crop,
        noise_profile=noise_profile,
        lens_gain=lens_gain,
        path=path,
        notices=tuple(notices),
    )
    return frame


# LibRaw refuses images with fewer pixels than this a side (its identify() sanity check).
LIBRAW_MIN_SIDE = 22


def _libraw_text(err: Exception) -> str:
    """LibRaw's message without Python's bytes repr (``b'Input/output error'``)."""
    text = err.args[0] if err.args else str(err)
    return text.decode(errors="replace") if isinstance(text, bytes) else str(text)


# DNG 1.7's JPEG XL compression (Apple ProRAW, newer phones): the LibRaw rawpy bundles cannot
# decode it (LibRaw needs to be built with a JPEG XL decoder, which no rawpy wheel is).
COMPRESSION_JPEG_XL = 52546


def _unsupported_message(path: str) -> str:
    """Why LibRaw refused a file: a compression it cannot decode, too small a TIFF/DNG, or not a
    camera raw format at all."""
    import rawpy

    def compressions(tif):
        return {page.tags.valueof("Compression") for page in [*dng_ifds(tif)] or tif.pages[:1]}

    if COMPRESSION_JPEG_XL in (read_tiff(path, compressions) or set()):
        return (f"{path}: a DNG 1.7 file compressed with JPEG XL (Apple ProRAW, newer phones), which LibRaw "
                f"{'.'.join(map(str, rawpy.libraw_version))} in rawpy cannot decode; convert it to an "
                "uncompressed or lossless-JPEG DNG (Adobe DNG Converter), or shoot plain RAW instead of ProRAW")
    shape = read_tiff(path, lambda tif: tif.pages[0].shape[:2])  # None: not a TIFF it follows
    if shape is not None and min(shape) < LIBRAW_MIN_SIDE:
        return (f"{path}: a {shape[0]}x{shape[1]} pixel image is too small for LibRaw (it needs at least "
                f"{LIBRAW_MIN_SIDE} pixels a side)")
    return f"{path}: not a camera raw file rawpy can read (LibRaw does not support its format)"


def libraw_normalised(white_balance: Sequence[float]) -> np.ndarray:
    """White-balance multipliers scaled so the smallest of R, G, B is 1, as LibRaw scales them.

    With gains >= 1 every channel clips at the sensor's white level after balancing, which is
    how LibRaw's default development (highlight mode 0) turns blown highlights white.
    """
    wb = np.asarray(white_balance, np.float32).copy()
    return wb / wb[:3].min()


def tile_means(mosaic: np.ndarray, pattern: np.ndarray, black_level: Sequence[float]) -> np.ndarray:
    """Mean black-subtracted value (not clipped) at each position of the CFA tile.

    Strided views only, so no full-frame float copy; not clipping at black keeps read noise from
    biasing the means of dark frames upwards.
    """
    pattern = np.asarray(pattern)
    blacks = np.asarray(black_level, np.float64)
    p = pattern.shape[0]
    means = np.empty(pattern.shape, np.float64)
    for r in range(p):
        for c in range(p):
            means[r, c] = np.mean(mosaic[r::p, c::p], dtype=np.float64) - blacks[pattern[r, c]]
    return means


def grey_world_balance(mosaic: np.ndarray, pattern: np.ndarray, black_level: Sequence[float]) -> np.ndarray:
    """White-balance multipliers per colour index that make the frame's mean grey."""
    means = tile_means(mosaic, pattern, black_level)
    pattern = np.asarray(pattern)
    colour = np.array([means[np.isin(pattern, [c, GREEN2] if c == GREEN else [c])].mean()
                       for c in (RED, GREEN, BLUE)])
    if not np.all(colour > 0):  # a black frame carries no colour: leave it unbalanced
        return np.ones(4, np.float32)
    gains = np.clip(colour[GREEN] / colour, 1 / GREY_WORLD_MAX_GAIN, GREY_WORLD_MAX_GAIN)
    return np.array([gains[RED], gains[GREEN], gains[BLUE], gains[GREEN]], np.float32)


def render_reference(path: str | os.PathLike, *, linear: bool = False) -> np.ndarray:
    """The long exposure as ground truth: LibRaw's development, uint16 (H, W, 3).

    SID's settings (``use_camera_wb``, full size, no auto-brightening, 16 bit) in sensor
    orientation, so it stays aligned with the packed mosaic, and without LibRaw's maximum
    adjustment: by default LibRaw takes the brightest raw value as the white level whenever it
    is over 0.75 of the file's, which brightens a long exposure without clipped highlights by
    up to a third, by an amount no short exposure can tell (65% of the stress set's truths, 11%
    on average; the classical baselines, scaled to the truth's mean, never saw it).
    ``linear=True`` gives the same development in white-balanced linear camera RGB (no colour
    matrix, no curve): the target of ``linear`` models, which :func:`sid_keras.runtime.render.render`
    turns into the sRGB one.
    """
    import rawpy

    path = os.fspath(path)
    colour = dict(output_color=rawpy.ColorSpace.raw, gamma=(1, 1)) if linear else {}
    try:
        with open_raw(path) as raw:
            return raw.postprocess(use_camera_wb=True, half_size=False, no_auto_bright=True, output_bps=16,
                                   user_flip=0, adjust_maximum_thr=0.0, **colour)
    except rawpy.LibRawError as err:
        raise SidError(f"{path}: cannot render the reference image ({err})") from None


def crop_reference(reference: np.ndarray, frame: RawFrame) -> np.ndarray:
    """Crop a full-frame rendering to the window :func:`pack` used, so both stay aligned."""
    top, left, h, w = canonical_window(frame.mosaic.shape, frame.cfa_pattern, frame.path)
    return reference[top : top + h, left : left + w]
