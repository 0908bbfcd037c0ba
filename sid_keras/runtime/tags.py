"""The TIFF and DNG tags LibRaw leaves to its reader: the camera's names, a DNG's NoiseProfile,
its OpcodeList2 GainMaps (applied here), where its image data ends. Read with tifffile.
"""

from __future__ import annotations

import os
import struct
from typing import Callable

import numpy as np


def read_tiff(path: str, read: Callable):
    """``read(tifffile.TiffFile)`` for a TIFF-based raw (DNG, NEF, ARW, CR2...); None for other
    formats or a structure tifffile does not follow (LibRaw then decides alone)."""
    import logging

    with open(path, "rb") as f:
        if f.read(4) not in (b"II*\x00", b"MM\x00*"):
            return None
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # its complaints about odd tags are not the user's business
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return read(tif)
    except Exception:  # noqa: BLE001 - a structure tifffile cannot follow
        return None
    finally:
        logger.setLevel(level)


def dng_ifds(tif):
    """Every IFD of a DNG, its SubIFDs included, breadth first; nothing for other formats (their
    makers' tags need not follow the TIFF rules the readers below rely on)."""
    if "DNGVersion" not in tif.pages[0].tags:
        return
    pages = list(tif.pages)
    while pages:
        page = pages.pop(0)
        yield page
        pages += list(getattr(page, "pages", None) or [])


def dng_data_end(path: str) -> int | None:
    """Where the image data of a DNG ends, from its IFDs and SubIFDs (None for other formats)."""
    def end_of(tif) -> int | None:
        ends = [o + c for page in dng_ifds(tif) for o, c in zip(page.dataoffsets, page.databytecounts)]
        return max(ends, default=0) if "DNGVersion" in tif.pages[0].tags else None

    return read_tiff(path, end_of)


def camera_name(path: str | os.PathLike) -> str | None:
    """The camera a TIFF-based raw names (Make and Model, or DNG's UniqueCameraModel); None if
    the file does not say."""
    names = camera_identity(path)
    return " ".join(names[key] for key in ("Make", "Model") if key in names) or names.get("UniqueCameraModel")


def dng_raw_tags(path: str | os.PathLike) -> dict:
    """What LibRaw leaves to the reader of a DNG: its raw image's (NewSubfileType 0: IFD0 or a
    SubIFD) ``NoiseProfile`` and ``OpcodeList2`` tags, and an ISO written in IFD0 (``"iso"``),
    those present; empty for other formats."""
    from sid_keras.runtime.dng import (
        PHOTOMETRIC_CFA,
        PHOTOMETRIC_LINEAR_RAW,
        TAG_NOISE_PROFILE,
        TAG_OPCODE_LIST_2,
    )

    def tags_of(tif) -> dict:
        found = {}
        for page in dng_ifds(tif):
            tags = page.tags
            if not found:
                iso = tags.valueof("ISOSpeedRatings")  # in IFD0; LibRaw reads it from the EXIF IFD only
                found["iso"] = float(np.atleast_1d(iso)[0]) if iso else None
            raw_data = tags.valueof("PhotometricInterpretation") in (PHOTOMETRIC_CFA, PHOTOMETRIC_LINEAR_RAW)
            if raw_data and tags.valueof("NewSubfileType", 0) == 0:
                found.update({code: tags[code].value for code in (TAG_NOISE_PROFILE, TAG_OPCODE_LIST_2)
                              if code in tags})
                break
        return {key: value for key, value in found.items() if value is not None}

    return read_tiff(os.fspath(path), tags_of) or {}


def noise_profile_tag(values, path: str, notices: list[str]) -> tuple[tuple[float, float], ...] | None:
    """A NoiseProfile tag as (S, O) for R, G, B; a malformed one is a notice and None."""
    values = np.atleast_1d(np.asarray(values, np.float64))
    pairs = values.reshape(-1, 2) if values.size in (2, 6) else None
    if pairs is None or not np.all(np.isfinite(pairs)) or np.any(pairs[:, 0] <= 0) or np.any(pairs[:, 1] < 0):
        notices.append(f"{path}: its NoiseProfile tag is malformed ({values.size} values: {values[:6].tolist()}); "
                       "ignoring it")
        return None
    pairs = np.repeat(pairs, 3 // len(pairs), axis=0)
    return tuple((float(s), float(o)) for s, o in pairs)


def apply_gain_maps(mosaic: np.ndarray, black_map: np.ndarray, white: float, opcodes: bytes, path: str,
                     notices: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """The mosaic with OpcodeList2's GainMaps (a phone's lens shading) applied to the signal
    above black, as DNG readers do before developing (LibRaw leaves them out), and the gain each
    pixel got (None without maps)."""
    from sid_keras.runtime.dng import decode_gain_maps

    try:
        maps = decode_gain_maps(bytes(opcodes))
    except (ValueError, struct.error) as err:
        notices.append(f"{path}: its lens-shading GainMap is malformed ({err}); developing without it")
        return mosaic, None
    if not maps:
        return mosaic, None
    gain = np.ones(mosaic.shape, np.float32)
    for gain_map in maps:
        rows, cols, gains = gain_map.gains_at(mosaic.shape)
        gain[rows, cols] *= gains
    signal = (mosaic.astype(np.float32) - black_map) * gain
    return np.clip(np.rint(signal + black_map), 0, white).astype(np.uint16), gain


def camera_identity(path: str | os.PathLike) -> dict[str, str]:
    """The Make, Model and UniqueCameraModel a TIFF-based raw names (those it has; empty for
    other formats), for files written from it."""
    def names_of(tif) -> dict[str, str]:
        tags = tif.pages[0].tags
        names = {key: str(tags[key].value).strip("\x00 ") for key in ("Make", "Model", "UniqueCameraModel")
                 if key in tags}
        return {key: value for key, value in names.items() if value}

    return read_tiff(os.fspath(path), names_of) or {}


def default_crop(sizes) -> tuple[int, int, int, int] | None:
    """LibRaw's first inset crop (a DNG's DefaultCrop) within the visible area, or None when the
    file has none or it is the whole area."""
    top = int(sizes.crop_top_margin) - int(sizes.top_margin)
    left = int(sizes.crop_left_margin) - int(sizes.left_margin)
    height, width = int(sizes.crop_height), int(sizes.crop_width)
    inside = (height > 0 and width > 0 and top >= 0 and left >= 0
              and top + height <= sizes.height and left + width <= sizes.width)
    if not inside or (height, width) == (sizes.height, sizes.width):
        return None
    return top, left, height, width
