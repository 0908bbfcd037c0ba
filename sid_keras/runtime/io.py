"""Files in and out: writing so that an interrupted run never leaves a half-written output,
and reading TOML with one clear error for every way it can fail."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import pathlib
import sys
import tempfile
from typing import Any, Iterable, Iterator

import numpy as np

from sid_keras.errors import SidError

# Temporary files and folders of this package are named ".tmp-sid-keras-PID-...": a later run
# removes those of processes that no longer exist (killed with SIGKILL), and nobody else's.
TEMPORARY_PREFIX = ".tmp-sid-keras-"


def _temporary_prefix() -> str:
    return f"{TEMPORARY_PREFIX}{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> None:
    """Remove the temporary files and folders that killed sid-keras processes left in ``folder``."""
    import shutil

    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(TEMPORARY_PREFIX):
            continue
        pid = entry.name[len(TEMPORARY_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)


@contextlib.contextmanager
def private_temporary_folder() -> Iterator[str]:
    """The system temporary folder, for this process and the processes it starts, is a folder of
    its own, removed when the block ends; those of killed processes go at the next start.

    Why: the libraries underneath leave files there (TensorFlow's autograph writes a module per
    traced function and removes it only at a clean interpreter exit, so killed or spawned
    processes left about five a training run).
    """
    import shutil

    base = tempfile.gettempdir()
    remove_stale_temporaries(base)
    folder = tempfile.mkdtemp(prefix=_temporary_prefix(), dir=base)
    saved, saved_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir, os.environ["TMPDIR"] = folder, folder
    try:
        yield folder
    finally:
        tempfile.tempdir = saved
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True, suffix: str | None = None) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    The temporary file is created exclusively under a fresh name (``mkstemp``), so nothing planted
    beside ``path`` (a symlink to another file) is ever written through; the rename replaces a
    symlink at ``path`` itself, not its target. ``suffix``: the temporary's ending, where a
    writer needs more than the extension (``.weights.h5``).

    With ``overwrite=False`` an existing ``path`` is an error, checked before any work and again
    at the rename (``os.link`` refuses to replace), so a file a user already has is never lost.
    The file gets the permissions a plain ``open`` would give (the umask), or keeps those of
    the file it replaces. An OS error while writing (a full disk) names ``path``, not the
    temporary file, and leaves no temporary file behind.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise SidError(f"{path}: is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise SidError(f"{path}: a part of the path is a file, not a folder; choose another path") from None
    if not overwrite and os.path.exists(path):
        raise SidError(f"{path}: already exists; pass --overwrite to replace it")
    suffix = os.path.splitext(path)[1] if suffix is None else suffix
    remove_stale_temporaries(folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(), suffix=suffix, dir=folder)
    except OSError as err:  # a read-only folder: name the file the user asked for
        raise OSError(err.errno, err.strerror, path) from err
    os.close(fd)
    try:
        os.chmod(tmp, _mode_for(path))
        try:
            yield tmp
        except OSError as err:
            code = err.errno
            if code is None and "written" in str(err):  # numpy's tofile (tifffile): a short write, a full disk
                code = errno.ENOSPC
            raise OSError(code, os.strerror(code) if code else str(err), path) from err
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


def _mode_for(path: str) -> int:
    """Permissions for a new file at ``path``: those of the file it replaces, else 0666 & ~umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def check_outputs_free(folder: str | os.PathLike, names: Iterable[str], overwrite: bool) -> None:
    """Refuse, before any work, to replace outputs a user already has (unless ``overwrite``)."""
    folder = pathlib.Path(folder)
    if folder.exists() and not folder.is_dir():
        raise SidError(f"{folder}: is a file; give a folder for the outputs")
    taken = sorted(name for name in names if (folder / name).exists())
    if taken and not overwrite:
        raise SidError(f"{folder}: already holds {', '.join(taken)}; pass --overwrite to replace them "
                       "or choose another output folder")


def refuse_writing_over_inputs(inputs: Iterable[str | os.PathLike], targets: Iterable[str | os.PathLike]) -> None:
    """A camera file (or a model) is irreplaceable: an output that is an input (the same path, a hard
    link or a symlink to it) is refused, ``--overwrite`` or not."""
    def identity(path: pathlib.Path):
        try:
            stat = os.stat(path)
        except OSError:
            return None
        return stat.st_dev, stat.st_ino

    sources = {identity(p): p for p in inputs}
    sources.pop(None, None)
    for target in targets:
        source = sources.get(identity(target))
        if source is not None:
            raise SidError(f"{target}: is the input {source} itself; an input file is never replaced, "
                           "--overwrite or not: choose another output name or folder")


@contextlib.contextmanager
def staged_folder(folder: str | os.PathLike, *, merge: bool = False) -> Iterator[pathlib.Path]:
    """A temporary folder inside ``folder`` whose entries move into ``folder`` only if the block
    succeeds: a failure halfway (a bad profile, a full disk) leaves no partial outputs.

    ``merge``: subfolders are merged file by file into those already there (a dataset's splits
    share ``Sony/short``), instead of replacing them."""
    import shutil

    folder = pathlib.Path(folder)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise SidError(f"{folder}: is a file, or lies under one; give a folder for the outputs") from None
    remove_stale_temporaries(folder)
    stage = pathlib.Path(tempfile.mkdtemp(prefix=_temporary_prefix(), dir=folder))
    try:
        try:
            yield stage
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            if created:  # a failure leaves no empty output folder either
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
        if merge:
            for source in sorted(stage.rglob("*")):
                target = folder / source.relative_to(stage)
                if source.is_dir():
                    target.mkdir(exist_ok=True)
                else:
                    os.replace(source, target)
            return
        for entry in stage.iterdir():
            target = folder / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def save_model_atomic(model, path: str | os.PathLike) -> None:
    """``model.save`` to a temporary ``.keras`` beside ``path``, then rename over it."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def strict_json(data: Any, *, indent: int | None = None) -> str:
    """JSON that every parser reads: NaN and infinities (the PSNR of two identical images) are
    written as null, not as the bare ``NaN`` / ``Infinity`` tokens of Python's json."""
    def finite(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [finite(v) for v in value]
        if isinstance(value, np.generic):
            return finite(value.item())
        return value

    return json.dumps(finite(data), indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike, data: Any, *, indent: int | None = None) -> None:
    """:func:`strict_json` of ``data`` written atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        pathlib.Path(tmp).write_text(strict_json(data, indent=indent) + "\n")


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    """np.save through a temporary file, so readers see the old file or the whole new one."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


# Output formats and the file extension each writes; the extension of an output name picks its
# format when none is given. ``dng`` is the linear DNG of sid_keras.runtime.dng.write_linear_dng.
OUTPUT_FORMATS = {"png": ".png", "png16": ".png", "jpeg": ".jpg", "tiff16": ".tif", "dng": ".dng"}
EXTENSION_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff16", ".tiff": "tiff16",
                     ".dng": "dng"}
IMAGE_FORMATS = ("png", "png16", "jpeg", "tiff16")
FORMAT_BITS = {"png": 8, "png16": 16, "jpeg": 8, "tiff16": 16, "dng": 16}
DEFAULT_JPEG_QUALITY = 95
# PNG compression: "fast" deflates the Sub-filtered rows with Huffman coding only (zlib level 1,
# Z_HUFFMAN_ONLY): 0.22 s for the 9 MP Blackmagic frame, 9.7 MB, against 5.7 s / 9.6 MB for
# Pillow's default and 0.9 s / 11.2 MB for Pillow at level 1 (measured when this was chosen).
# "small" is zlib level 9 on the same filter, for the smallest files at many times the time.
PNG_COMPRESSION = ("fast", "small")
# Rows filtered and deflated at a time: memory stays a few MB whatever the image's size.
_PNG_ROWS_PER_CHUNK = 256


def format_for(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The output format: ``fmt`` if given, else from the extension of ``path`` (default png)."""
    if fmt is None:
        return EXTENSION_FORMATS.get(os.path.splitext(os.fspath(path))[1].lower(), "png")
    if fmt not in OUTPUT_FORMATS:
        raise SidError(f"unknown output format {fmt!r}: use one of {', '.join(OUTPUT_FORMATS)}")
    return fmt


def write_image(path: str | os.PathLike, rgb: np.ndarray, *, fmt: str | None = None, overwrite: bool = True,
                quality: int = DEFAULT_JPEG_QUALITY, compression: str = "fast") -> str:
    """Write RGB (floats in [0, 1], or uint8 / uint16 of the format's depth) as PNG (8/16 bit),
    JPEG or 16-bit TIFF, atomically. ``fmt`` is ``png``, ``png16``, ``jpeg`` or ``tiff16``; by
    default it follows the file extension."""
    path = os.fspath(path)
    fmt = format_for(path, fmt)
    if fmt not in IMAGE_FORMATS:
        raise SidError(f"{path}: {fmt!r} is not an image format ({', '.join(IMAGE_FORMATS)})")
    check_encoding(quality, compression)
    pixels = _to_bits(rgb, FORMAT_BITS[fmt])
    with atomic_path(path, overwrite=overwrite) as tmp:
        if fmt == "tiff16":
            import tifffile

            tifffile.imwrite(tmp, pixels, photometric="rgb")
        elif fmt == "jpeg":
            from PIL import Image

            Image.fromarray(np.ascontiguousarray(pixels)).save(tmp, format="JPEG", quality=int(quality))
        else:
            write_png(tmp, pixels, compression=compression)
    return path


def check_encoding(quality: int = DEFAULT_JPEG_QUALITY, compression: str = "fast") -> None:
    """JPEG quality and PNG compression settings, checked before any work."""
    if not 1 <= int(quality) <= 100:
        raise SidError(f"--quality {quality}: JPEG quality must be between 1 and 100")
    if compression not in PNG_COMPRESSION:
        raise SidError(f"--compression {compression!r}: use one of {', '.join(PNG_COMPRESSION)}")


def _to_bits(rgb: np.ndarray, bits: int) -> np.ndarray:
    """uint8 / uint16 pixels: integer input of that depth as it is, floats in [0, 1] quantised."""
    dtype = np.uint8 if bits == 8 else np.uint16
    rgb = np.asarray(rgb)
    if rgb.dtype == dtype:
        return rgb
    if np.issubdtype(rgb.dtype, np.integer):
        raise SidError(f"{rgb.dtype} pixels cannot be written as {bits}-bit; give floats in [0, 1]")
    from sid_keras.runtime.render import quantize

    return quantize(rgb.astype(np.float32), dtype)


def write_png(path: str, rgb: np.ndarray, *, compression: str = "fast") -> None:
    """An 8- or 16-bit RGB PNG, written with numpy and the standard library's zlib.

    Every row uses PNG's Sub filter (each byte minus the one a pixel to its left, computed on a
    block of rows at once), and blocks of rows are deflated as they come, so memory stays
    bounded; see :data:`PNG_COMPRESSION` for the speed of each setting.
    """
    import struct
    import zlib

    h, w, _ = rgb.shape
    bits = rgb.dtype.itemsize * 8
    row_bytes = w * 3 * rgb.dtype.itemsize
    pixel_bytes = 3 * rgb.dtype.itemsize
    level, strategy = (1, zlib.Z_HUFFMAN_ONLY) if compression == "fast" else (9, zlib.Z_DEFAULT_STRATEGY)
    deflate = zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS, 9, strategy)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bits, 2, 0, 0, 0)))
        for top in range(0, h, _PNG_ROWS_PER_CHUNK):
            block = np.ascontiguousarray(rgb[top : top + _PNG_ROWS_PER_CHUNK], dtype=rgb.dtype.newbyteorder(">"))
            block = block.view(np.uint8).reshape(-1, row_bytes)
            filtered = np.empty((len(block), row_bytes + 1), np.uint8)
            filtered[:, 0] = 1  # the Sub filter
            filtered[:, 1 : 1 + pixel_bytes] = block[:, :pixel_bytes]
            np.subtract(block[:, pixel_bytes:], block[:, :-pixel_bytes], out=filtered[:, 1 + pixel_bytes :])
            data = deflate.compress(filtered)
            if data:
                f.write(chunk(b"IDAT", data))
        f.write(chunk(b"IDAT", deflate.flush()) + chunk(b"IEND", b""))


def read_toml(path: str | pathlib.Path, what: str = "file") -> dict:
    """A TOML file as a dict; a missing, unreadable or invalid file is one clear :class:`SidError`.

    The one TOML reader of the package: training configs, search jobs, export profiles and
    noise profiles all come through here.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    path = pathlib.Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SidError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise SidError(f"{path}: is a folder, not a {what}") from None
    except UnicodeDecodeError:
        raise SidError(f"{path}: not a UTF-8 text file; save the {what} as UTF-8 TOML") from None
    except OSError as err:
        raise SidError(f"{path}: cannot read the {what} ({err.strerror})") from None
    except tomllib.TOMLDecodeError as err:
        raise SidError(f"{path}: not valid TOML ({err})") from None
    except RecursionError:
        raise SidError(f"{path}: nests tables or lists too deeply to be a {what}") from None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(raw: dict) -> str:
    """A config dict (tables of plain values; dicts inside become inline tables) as TOML text."""
    lines = []
    for table, values in raw.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
        lines.append("")
    return "\n".join(lines)


# What each kind of shipped TOML file is, as error messages name it.
SHIPPED_CONFIGS = {"experiments": "config file or experiment", "tuning": "search job", "export": "export profile"}


def shipped_or_path(name_or_path: str | pathlib.Path, kind: str) -> pathlib.Path:
    """A TOML file's path, or the name of one the package ships (:func:`sid_keras.shipped_configs`:
    ``tuning/experiments``, ``tuning/jobs``, ``export/profiles``).

    ``--config shipped``, ``--job synthetic_quick`` and ``--profile default`` work from any folder
    of an installed package; a path that exists always wins.
    """
    from sid_keras import shipped_configs

    path = pathlib.Path(name_or_path)
    if path.is_file():
        return path
    folder = shipped_configs(kind)
    shipped = folder / f"{path.name}.toml"
    if path.parent == pathlib.Path(".") and shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in folder.glob("*.toml")))
    raise SidError(f"{name_or_path}: no such {SHIPPED_CONFIGS[kind]} (shipped: {names})")
