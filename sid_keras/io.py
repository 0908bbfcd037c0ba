"""Writing files so that an interrupted run never leaves a half-written output."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator

import numpy as np

from sid_keras.errors import SidError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    With ``overwrite=False`` an existing ``path`` is an error, checked before any work and again
    at the rename (``os.link`` refuses to replace), so a file a user already has is never lost.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if not overwrite and os.path.exists(path):
        raise SidError(f"{path}: already exists; pass --overwrite to replace it")
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield tmp
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise SidError(f"{path}: already exists; pass --overwrite to replace it") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_model_atomic(model, path: str | os.PathLike) -> None:
    """``model.save`` to a temporary ``.keras`` beside ``path``, then rename over it."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    if not tmp.endswith(".keras"):
        tmp += ".keras"
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    """np.save through a temporary file, so readers see the old file or the whole new one."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


# Output formats and the file extension each writes; the extension of an output name picks its
# format when none is given. ``dng`` is the linear DNG of sid_keras.dng.write_linear_dng.
OUTPUT_FORMATS = {"png": ".png", "png16": ".png", "tiff16": ".tif", "dng": ".dng"}
EXTENSION_FORMATS = {".png": "png", ".tif": "tiff16", ".tiff": "tiff16", ".dng": "dng"}
IMAGE_FORMATS = ("png", "png16", "tiff16")


def format_for(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The output format: ``fmt`` if given, else from the extension of ``path`` (default png)."""
    if fmt is None:
        return EXTENSION_FORMATS.get(os.path.splitext(os.fspath(path))[1].lower(), "png")
    if fmt not in OUTPUT_FORMATS:
        raise SidError(f"unknown output format {fmt!r}: use one of {', '.join(OUTPUT_FORMATS)}")
    return fmt


def write_image(path: str | os.PathLike, rgb: np.ndarray, *, fmt: str | None = None,
                overwrite: bool = True) -> str:
    """Write float RGB in [0, 1] as PNG (8/16 bit) or 16-bit TIFF, atomically.

    ``fmt`` is ``png``, ``png16`` or ``tiff16``; by default it follows the file extension.
    """
    path = os.fspath(path)
    fmt = format_for(path, fmt)
    if fmt not in IMAGE_FORMATS:
        raise SidError(f"{path}: {fmt!r} is not an image format ({', '.join(IMAGE_FORMATS)})")
    rgb = np.clip(np.asarray(rgb, np.float32), 0.0, 1.0)
    with atomic_path(path, overwrite=overwrite) as tmp:
        if fmt == "tiff16":
            import tifffile

            tifffile.imwrite(tmp, np.rint(rgb * 65535).astype(np.uint16), photometric="rgb")
        elif fmt == "png16":
            _write_png16(tmp, np.rint(rgb * 65535).astype(np.uint16))
        else:
            from PIL import Image

            Image.fromarray(np.rint(rgb * 255).astype(np.uint8)).save(tmp, format="PNG")
    return path



def _write_png16(path: str, rgb16: np.ndarray) -> None:
    """16-bit RGB PNG with the standard library (Pillow cannot write 16-bit RGB)."""
    import struct
    import zlib

    h, w, _ = rgb16.shape
    rows = np.ascontiguousarray(rgb16.astype(">u2").reshape(h, w * 3)).view(np.uint8)
    raw = b"".join(b"\x00" + rows[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6))
                + chunk(b"IEND", b""))
