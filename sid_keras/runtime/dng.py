"""Minimal DNG writers (tifffile) that rawpy / LibRaw read back exactly.

- :func:`write_cfa_dng`: a CFA mosaic, for test fixtures and :mod:`sid_keras.synth.synthetic`'s
  SID-layout datasets: mosaic, CFA pattern, black and white levels, colour matrix, as-shot white
  balance, exposure time and ISO are DNG tags, so synthetic files read like camera files.
- :func:`write_linear_dng`: an enhanced result (`sid-keras enhance --format dng`), demosaiced
  linear camera RGB (LinearRaw, lossless JPEG) with the source's camera names, colour matrix,
  white balance, orientation and crop, so raw developers (darktable, RawTherapee, Lightroom,
  LibRaw) develop it like a clean long exposure.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from fractions import Fraction
from typing import Sequence

import numpy as np

from sid_keras import __version__
from sid_keras.runtime.io import atomic_path
from sid_keras.runtime.render import UINT16_SCALE

# TIFF / DNG tag codes (TIFF 6.0, TIFF/EP and DNG 1.4 specifications).
TAG_MAKE = 271
TAG_MODEL = 272
TAG_CFA_REPEAT_PATTERN_DIM = 33421
TAG_CFA_PATTERN = 33422
TAG_EXPOSURE_TIME = 33434
TAG_ISO = 34855
TAG_DNG_VERSION = 50706
TAG_DNG_BACKWARD_VERSION = 50707
TAG_UNIQUE_CAMERA_MODEL = 50708
TAG_CFA_PLANE_COLOR = 50710
TAG_CFA_LAYOUT = 50711
TAG_BLACK_LEVEL_REPEAT_DIM = 50713
TAG_BLACK_LEVEL = 50714
TAG_WHITE_LEVEL = 50717
TAG_DEFAULT_CROP_ORIGIN = 50719
TAG_DEFAULT_CROP_SIZE = 50720
TAG_COLOR_MATRIX_1 = 50721
TAG_AS_SHOT_NEUTRAL = 50728
TAG_CALIBRATION_ILLUMINANT_1 = 50778
TAG_OPCODE_LIST_2 = 51009
TAG_NOISE_PROFILE = 51041

TAG_ORIENTATION = 274

PHOTOMETRIC_CFA = 32803
PHOTOMETRIC_LINEAR_RAW = 34892
COMPRESSION_LOSSLESS_JPEG = 7
# Tiles of the compressed linear DNG: each one a lossless-JPEG stream (DNG 1.4, section 3).
LINEAR_DNG_TILE = 256
# LibRaw's flip code -> TIFF/DNG Orientation (1 normal, 3 180°, 6 90° CW, 8 90° CCW).
FLIP_TO_TIFF_ORIENTATION = {0: 1, 3: 3, 5: 8, 6: 6}
LINEAR_DNG_WHITE = UINT16_SCALE
ILLUMINANT_D65 = 21
# TIFF field types.
BYTE, ASCII, SHORT, LONG, RATIONAL, UNDEFINED, SRATIONAL, DOUBLE = 1, 2, 3, 4, 5, 7, 10, 12
OPCODE_GAIN_MAP = 9
_RATIONAL_DENOMINATOR_LIMIT = 1_000_000


def _rationals(values: Sequence[float]) -> tuple[int, ...]:
    out: list[int] = []
    for v in values:
        f = Fraction(float(v)).limit_denominator(_RATIONAL_DENOMINATOR_LIMIT)
        out += [f.numerator, f.denominator]
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class GainMap:
    """A DNG ``GainMap`` opcode (DNG 1.4, section 6.2.2): gains on a grid over an area of the
    mosaic, for the pixels at ``row_pitch`` / ``col_pitch`` steps from ``top`` / ``left`` (a
    phone writes four, one per Bayer position: its lens shading). Grid point ``(i, j)`` sits at
    ``origin + (i, j) * spacing`` in units of the area's height and width."""

    top: int
    left: int
    bottom: int
    right: int
    row_pitch: int
    col_pitch: int
    gains: np.ndarray  # (points_v, points_h) float32
    spacing: tuple[float, float]
    origin: tuple[float, float] = (0.0, 0.0)

    _HEAD = ">IIIIIIIIIIddddI"  # area, plane, planes, pitches, points, spacing, origin, map planes

    def encode(self) -> bytes:
        rows, cols = self.gains.shape
        params = struct.pack(self._HEAD, self.top, self.left, self.bottom, self.right, 0, 1, self.row_pitch,
                             self.col_pitch, rows, cols, *self.spacing, *self.origin, 1)
        params += np.asarray(self.gains, ">f4").tobytes()
        return struct.pack(">IIII", OPCODE_GAIN_MAP, 0x01030000, 0, len(params)) + params

    @classmethod
    def decode(cls, params: bytes) -> GainMap:
        head = struct.calcsize(cls._HEAD)
        top, left, bottom, right, _, _, row_pitch, col_pitch, rows, cols, sv, sh, ov, oh, planes = \
            struct.unpack(cls._HEAD, params[:head])
        count = rows * cols * planes
        if not (bottom > top and right > left and row_pitch > 0 and col_pitch > 0 and count > 0
                and len(params) >= head + 4 * count and np.isfinite([sv, sh, ov, oh]).all()):
            raise ValueError("inconsistent GainMap parameters")
        gains = np.frombuffer(params, ">f4", count, head).reshape(rows, cols, planes)[..., 0]
        if not np.all(np.isfinite(gains)) or gains.min() <= 0:
            raise ValueError("GainMap gains must be positive numbers")
        return cls(top, left, bottom, right, row_pitch, col_pitch, gains.astype(np.float32), (sv, sh), (ov, oh))

    def gains_at(self, shape: tuple[int, int]) -> tuple[slice, slice, np.ndarray]:
        """The rows and columns of a mosaic of ``shape`` this map covers, and their gains
        (bilinear between grid points, the edge values beyond them)."""
        bottom, right = min(self.bottom, shape[0]), min(self.right, shape[1])
        rows = np.arange(self.top, bottom, self.row_pitch)
        cols = np.arange(self.left, right, self.col_pitch)

        def grid_position(pixels, start, stop, origin, spacing, points):
            relative = (pixels - start) / (stop - start)
            return np.clip((relative - origin) / spacing if spacing > 0 else 0.0, 0, points - 1)

        v = grid_position(rows, self.top, self.bottom, self.origin[0], self.spacing[0], self.gains.shape[0])
        h = grid_position(cols, self.left, self.right, self.origin[1], self.spacing[1], self.gains.shape[1])
        v0, h0 = np.floor(v).astype(int), np.floor(h).astype(int)
        v1, h1 = np.minimum(v0 + 1, self.gains.shape[0] - 1), np.minimum(h0 + 1, self.gains.shape[1] - 1)
        fv, fh = (v - v0)[:, None], (h - h0)[None, :]
        g = self.gains
        gains = ((1 - fv) * ((1 - fh) * g[np.ix_(v0, h0)] + fh * g[np.ix_(v0, h1)])
                 + fv * ((1 - fh) * g[np.ix_(v1, h0)] + fh * g[np.ix_(v1, h1)]))
        return (slice(self.top, bottom, self.row_pitch), slice(self.left, right, self.col_pitch),
                gains.astype(np.float32))


def encode_opcode_list(opcodes: Sequence[bytes]) -> bytes:
    return struct.pack(">I", len(opcodes)) + b"".join(opcodes)


def decode_gain_maps(data: bytes) -> list[GainMap]:
    """The GainMap opcodes of an OpcodeList (others, e.g. WarpRectilinear, are not this
    package's business and are passed over)."""
    (count,) = struct.unpack_from(">I", data, 0)
    offset, maps = 4, []
    for _ in range(count):
        opcode, _, _, size = struct.unpack_from(">IIII", data, offset)
        offset += 16
        if offset + size > len(data):
            raise ValueError("the opcode list is cut short")
        if opcode == OPCODE_GAIN_MAP:
            maps.append(GainMap.decode(data[offset:offset + size]))
        offset += size
    return maps


def _identity_tags(make: str | None, model: str | None, unique_model: str | None = None) -> list[tuple]:
    """The tags every DNG we write starts with: which camera (Make and Model when known), and the
    DNG version."""
    names = [(TAG_MAKE, make), (TAG_MODEL, model)]
    return [
        *[(tag, ASCII, 0, name, True) for tag, name in names if name],
        (TAG_UNIQUE_CAMERA_MODEL, ASCII, 0, unique_model or " ".join(n for _, n in names if n), True),
        (TAG_DNG_VERSION, BYTE, 4, (1, 4, 0, 0), True),
        (TAG_DNG_BACKWARD_VERSION, BYTE, 4, (1, 1, 0, 0), True),
    ]


def write_cfa_dng(
    path: str | os.PathLike,
    mosaic: np.ndarray,
    cfa_pattern: np.ndarray,
    *,
    black_level: float | Sequence[float] = 0,
    white_level: int = UINT16_SCALE,
    color_matrix: np.ndarray | None = None,
    as_shot_neutral: Sequence[float] = (1.0, 1.0, 1.0),
    exposure_time: float | None = None,
    iso: float | None = None,
    make: str = "sid_keras",
    model: str = "synthetic",
    noise_profile: Sequence[float] | None = None,
    gain_maps: Sequence[GainMap] = (),
    orientation: int = 0,
) -> None:
    """Write a uint16 CFA mosaic as a DNG.

    Args:
        mosaic: (H, W) uint16 sensor values.
        cfa_pattern: 2x2 or 6x6 colour indices (0 R, 1 G, 2 B; 3 is written as G).
        black_level: one value, or four for a 2x2 Bayer tile in raster order.
        color_matrix: 3x3 XYZ(D65) -> camera matrix (DNG ColorMatrix1); None writes a file
            without one (LibRaw then shows camera RGB as it is).
        as_shot_neutral: camera-space RGB of a neutral grey (reciprocal of the WB multipliers).
        noise_profile: DNG NoiseProfile, ``(S, O)`` once or per colour plane: variance
            ``S * x + O`` of a signal ``x`` in units of white minus black.
        gain_maps: OpcodeList2 GainMaps (a phone's lens shading).
        orientation: LibRaw's flip code of the picture (the mosaic is in sensor orientation).
    """
    import tifffile

    mosaic = np.ascontiguousarray(mosaic, dtype=np.uint16)
    pattern = np.asarray(cfa_pattern, np.uint8).copy()
    pattern[pattern == 3] = 1
    blacks = np.atleast_1d(np.asarray(black_level, np.float64))
    tags = [
        *_identity_tags(make, model),
        (TAG_CFA_REPEAT_PATTERN_DIM, SHORT, 2, pattern.shape, True),
        (TAG_CFA_PATTERN, BYTE, pattern.size, tuple(pattern.ravel().tolist()), True),
        (TAG_CFA_PLANE_COLOR, BYTE, 3, (0, 1, 2), True),
        (TAG_CFA_LAYOUT, SHORT, 1, 1, True),
        (TAG_WHITE_LEVEL, LONG, 1, int(white_level), True),
        (TAG_AS_SHOT_NEUTRAL, RATIONAL, 3, _rationals(as_shot_neutral), True),
        (TAG_ORIENTATION, SHORT, 1, FLIP_TO_TIFF_ORIENTATION.get(int(orientation), 1), True),
    ]
    if color_matrix is not None:
        matrix = np.asarray(color_matrix, np.float64).ravel()
        tags += [(TAG_COLOR_MATRIX_1, SRATIONAL, 9, _rationals(matrix), True),
                 (TAG_CALIBRATION_ILLUMINANT_1, SHORT, 1, ILLUMINANT_D65, True)]
    if blacks.size == 4:
        tags.append((TAG_BLACK_LEVEL_REPEAT_DIM, SHORT, 2, (2, 2), True))
    tags.append((TAG_BLACK_LEVEL, RATIONAL, blacks.size, _rationals(blacks), True))
    if exposure_time:
        tags.append((TAG_EXPOSURE_TIME, RATIONAL, 1, _rationals([exposure_time]), True))
    if iso:
        tags.append((TAG_ISO, SHORT, 1, int(round(iso)), True))
    if noise_profile is not None:
        values = tuple(float(v) for v in noise_profile)
        tags.append((TAG_NOISE_PROFILE, DOUBLE, len(values), values, True))
    if gain_maps:
        opcodes = encode_opcode_list([m.encode() for m in gain_maps])
        tags.append((TAG_OPCODE_LIST_2, UNDEFINED, len(opcodes), opcodes, True))
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            mosaic,
            photometric=PHOTOMETRIC_CFA,
            subfiletype=0,
            extratags=tags,
            metadata=None,
        )


def xyz_to_camera(camera_to_srgb: np.ndarray) -> np.ndarray:
    """The DNG ColorMatrix (XYZ D65 -> camera) that makes LibRaw compute ``camera_to_srgb``.

    LibRaw inverts ``ColorMatrix @ sRGB_to_XYZ`` after normalising its rows to 1; this undoes it.
    """
    from sid_keras.runtime.render import SRGB_TO_XYZ

    camera_from_srgb = np.linalg.inv(np.asarray(camera_to_srgb, np.float64)[:3, :3])
    return camera_from_srgb @ np.linalg.inv(SRGB_TO_XYZ)


def linear_dng_pixels(camera_rgb: np.ndarray, white_balance: Sequence[float]) -> np.ndarray:
    """White-balanced linear camera RGB in [0, 1] -> the uint16 values a LinearRaw DNG stores:
    before white balance (divided by the gains, which are >= 1, so nothing clips)."""
    gains = np.asarray(white_balance, np.float32)[:3]
    stored = np.clip(np.asarray(camera_rgb, np.float32) / gains, 0.0, 1.0) * np.float32(LINEAR_DNG_WHITE)
    return np.rint(stored, out=stored).astype(np.uint16)


def _huffman_lengths(counts: np.ndarray) -> np.ndarray:
    """Code lengths (at most 16 bits) for the difference categories' ``counts``, plus a last
    dummy symbol that takes the all-ones code JPEG reserves (ITU T.81, Annex K.2)."""
    import heapq

    freq = np.append(np.asarray(counts, np.int64), 0) + 1  # every category codable
    while True:
        heap = [(int(f), i, [i]) for i, f in enumerate(freq)]
        heapq.heapify(heap)
        lengths = np.zeros(freq.size, np.int64)
        while len(heap) > 1:
            fa, ia, a = heapq.heappop(heap)
            fb, _, b = heapq.heappop(heap)
            lengths[a + b] += 1
            heapq.heappush(heap, (fa + fb, ia, a + b))
        if lengths.max() <= 16:
            break
        freq = np.maximum(freq, freq.sum() >> 10)  # flatten a very skewed histogram
    deepest = int(np.flatnonzero(lengths == lengths.max())[-1])
    lengths[[deepest, -1]] = lengths[[-1, deepest]]  # the dummy takes a deepest place
    return lengths


def _lossless_jpeg(block: np.ndarray) -> bytes:
    """One (H, W, C) uint16 block as a lossless JPEG (ITU T.81 process 14, predictor 1: the left
    neighbour; each row starts from the one above), with a Huffman table fitted to the block."""
    height, width, channels = block.shape
    x = block.astype(np.int64)
    predicted = np.empty_like(x)
    predicted[:, 1:] = x[:, :-1]
    predicted[1:, 0] = x[:-1, 0]
    predicted[0, 0] = 1 << 15
    diff = (x - predicted) & 0xFFFF
    diff = np.where(diff > 0x8000, diff - 0x10000, diff).ravel()  # modulo 2^16, in (-32768, 32768]
    magnitude = np.abs(diff)
    category = np.zeros(diff.size, np.int64)
    nonzero = magnitude > 0
    category[nonzero] = np.floor(np.log2(magnitude[nonzero])).astype(np.int64) + 1
    extra = np.where(diff < 0, diff - 1, diff) & ((1 << category) - 1)
    extra_bits = np.where(category == 16, 0, category)  # 32768 is coded by its category alone

    lengths = _huffman_lengths(np.bincount(category, minlength=17))
    symbols = sorted(range(lengths.size), key=lambda sym: (lengths[sym], sym == lengths.size - 1, sym))
    codes = np.zeros(lengths.size, np.int64)
    code, previous = 0, lengths[symbols[0]]
    for sym in symbols:
        code <<= int(lengths[sym] - previous)
        previous = lengths[sym]
        codes[sym] = code
        code += 1
    # Bit-pack every (code, extra bits) word; none is longer than 32 bits, so each 64-bit word of
    # the stream holds the start of at least one and a word spills into the next one at most.
    size = lengths[category] + extra_bits
    value = (codes[category] << extra_bits) | (extra & ((1 << extra_bits) - 1))
    offset = np.concatenate([[0], np.cumsum(size)])
    total = int(offset[-1])
    offset = offset[:-1]
    word, shift = offset >> 6, offset & 63
    aligned = (value << (64 - size)).astype(np.uint64)
    words = np.zeros(total // 64 + 2, np.uint64)
    starts = np.flatnonzero(np.diff(word, prepend=-1))
    words[word[starts]] = np.bitwise_or.reduceat(aligned >> shift.astype(np.uint64), starts)
    spills = shift + size > 64
    words[word[spills] + 1] |= aligned[spills] << (64 - shift[spills]).astype(np.uint64)
    stream = words.byteswap().view(np.uint8)[: (total + 7) // 8].copy()
    if total % 8:
        stream[-1] |= (1 << (8 - total % 8)) - 1  # pad with one bits
    stream = np.insert(stream, np.flatnonzero(stream == 0xFF) + 1, 0)  # byte stuffing

    def segment(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload

    ids = range(1, channels + 1)
    frame = bytes([16]) + height.to_bytes(2, "big") + width.to_bytes(2, "big") + bytes([channels])
    frame += b"".join(bytes([i, 0x11, 0]) for i in ids)
    used = [sym for sym in symbols if sym != lengths.size - 1]
    counts = np.bincount(lengths[used], minlength=17)[1:17]
    table = bytes([0]) + bytes(counts.tolist()) + bytes(used)
    scan = bytes([channels]) + b"".join(bytes([i, 0]) for i in ids) + bytes([1, 0, 0])
    return (b"\xff\xd8" + segment(0xC3, frame) + segment(0xC4, table) + segment(0xDA, scan)
            + stream.tobytes() + b"\xff\xd9")


def _lossless_jpeg_tiles(pixels: np.ndarray, tile: tuple[int, int]):
    """Each tile of (H, W, C) uint16 pixels as one lossless-JPEG stream of C components, as DNG
    stores tiled LinearRaw data. Edge tiles are padded with what the left predictor codes in a
    bit a sample: the last column repeated, then rows of one value."""
    height, width, channels = pixels.shape
    tile_height, tile_width = tile
    for top in range(0, height, tile_height):
        for left in range(0, width, tile_width):
            block = pixels[top:top + tile_height, left:left + tile_width]
            rows, cols = block.shape[:2]
            padded = np.empty((tile_height, tile_width, channels), np.uint16)
            padded[:rows, :cols] = block
            padded[:rows, cols:] = block[:, -1:]
            padded[rows:] = block[-1, 0]
            yield _lossless_jpeg(padded)


def _tile_shape(width: int) -> tuple[int, int]:
    """LINEAR_DNG_TILE square, but never wider than the image (a multiple of 16, as TIFF wants):
    LibRaw wraps a tile's rows at the image's width."""
    return LINEAR_DNG_TILE, max(16, min(LINEAR_DNG_TILE, width // 16 * 16))


# The Make of every enhanced DNG. Developers apply what they know of a camera, looked up by its
# Make and Model, to its raw data: RawTherapee's camconst.json black and white levels (Sony
# A7S II: 512 and 16300) and raw crops, darktable's presets. On our linear, denoised 16-bit data
# those ruin the picture (RawTherapee developed a Sony file's DNG 1.5 stops too bright, its
# highlights blown), so no developer may recognise the camera: it is named in Model instead.
ENHANCED_MAKE = "sid_keras"


def _camera_names(make: str | None, model: str | None, unique_model: str | None) -> tuple[str, str, str]:
    """Make, Model and UniqueCameraModel of an enhanced DNG: Make is :data:`ENHANCED_MAKE`, Model
    the source's camera as its file names it ("SONY ILCE-7SM2", "Canon EOS 6D"; "enhanced" for
    a file that names none), so a user still sees which camera took the photo."""
    if make and model:
        camera = model if model.lower().startswith(make.split()[0].lower()) else f"{make} {model}"
    else:
        camera = unique_model or make or model or "enhanced"
    return ENHANCED_MAKE, camera, unique_model or camera


def write_linear_dng(
    path: str | os.PathLike,
    pixels: np.ndarray,
    *,
    white_balance: Sequence[float],
    color_matrix: np.ndarray | None,
    orientation: int = 0,
    crop: Sequence[int] | None = None,
    overwrite: bool = True,
    make: str | None = None,
    model: str | None = None,
    unique_model: str | None = None,
) -> None:
    """Write linear camera RGB as a LinearRaw DNG (``pixels``: :func:`linear_dng_pixels`, uint16),
    compressed losslessly.

    AsShotNeutral = 1 / gains: a developer applying the as-shot white balance gets the model's
    output back, then applies the colour matrix (rawpy's ``color_matrix`` of the source, camera
    -> sRGB; none if the source had none) and its curve. ColorMatrix1 maps the white to that
    neutral, as DNG requires: developers that find the scene's white from the two (RawTherapee,
    darktable) then keep the model's colours, and LibRaw (which normalises the matrix) is
    unaffected. ``orientation`` is LibRaw's flip code of the source; the pixels are in sensor
    orientation; ``crop`` = (top, left, height, width) is the source's default crop. ``make``,
    ``model`` and ``unique_model`` name the source's camera, as far as it did (written as
    :func:`_camera_names` says).
    """
    import tifffile

    from sid_keras.runtime.render import has_color_matrix

    gains = np.asarray(white_balance, np.float64)[:3]
    neutral = 1.0 / gains
    pixels = np.ascontiguousarray(pixels, np.uint16)
    tags = [
        *_identity_tags(*_camera_names(make, model, unique_model)),
        (TAG_ORIENTATION, SHORT, 1, FLIP_TO_TIFF_ORIENTATION.get(int(orientation), 1), True),
        (TAG_BLACK_LEVEL, LONG, 1, 0, True),
        (TAG_WHITE_LEVEL, LONG, 1, LINEAR_DNG_WHITE, True),
        (TAG_AS_SHOT_NEUTRAL, RATIONAL, 3, _rationals(neutral), True),
    ]
    if has_color_matrix(color_matrix):
        xyz_to_raw = np.diag(neutral / neutral.max()) @ xyz_to_camera(color_matrix)
        tags += [(TAG_COLOR_MATRIX_1, SRATIONAL, 9, _rationals(xyz_to_raw.ravel()), True),
                 (TAG_CALIBRATION_ILLUMINANT_1, SHORT, 1, ILLUMINANT_D65, True)]
    if crop is not None:
        top, left, height, width = (int(v) for v in crop)
        tags += [(TAG_DEFAULT_CROP_ORIGIN, LONG, 2, (left, top), True),
                 (TAG_DEFAULT_CROP_SIZE, LONG, 2, (width, height), True)]
    tile = _tile_shape(pixels.shape[1])
    with atomic_path(path, overwrite=overwrite) as tmp:
        tifffile.imwrite(tmp, _lossless_jpeg_tiles(pixels, tile), shape=pixels.shape, dtype=np.uint16,
                         tile=tile, compression=COMPRESSION_LOSSLESS_JPEG,
                         photometric=PHOTOMETRIC_LINEAR_RAW, planarconfig="contig", subfiletype=0,
                         software=f"sid-keras {__version__}", extratags=tags, metadata=None)
