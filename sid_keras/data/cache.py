"""Decode each raw file once into a memory-mapped packed cache.

Decoding an ARW (and rendering the long exposure) takes longer than a training step, so every
file is decoded once into ``.npy`` arrays keyed by the file's path, size and mtime; a changed
source gets a new key and is decoded again. Arrays are written to a temporary name and renamed,
so two processes filling the same cache never leave a torn file.

- short exposures: packed, black-subtracted, normalised, stored as uint16 (x 65535);
- long exposures: LibRaw's rendering (SID's ground truth settings; in linear camera RGB for
  ``linear`` models), uint16 (H, W, 3), cropped to the window the packing uses so input and
  target stay aligned;
- clean photos for on-the-fly pairs: linearised once, uint16 (H, W, 3).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import re
from typing import Sequence

import numpy as np

from sid_keras.data.lists import SidPair
from sid_keras.errors import SidError
from sid_keras.runtime import model_input, noise_law, raw
from sid_keras.runtime.io import save_npy_atomic, write_json
from sid_keras.runtime.render import UINT16_SCALE

CACHE_VERSION = 3  # bump when what is stored changes (2: white-balance gains in the metadata;
                   # 3: truths rendered without LibRaw's maximum adjustment)


@dataclasses.dataclass(frozen=True)
class CachedPair:
    """Paths of one pair's cached arrays and its exposure ratio."""

    short: str
    long: str
    ratio: float
    channels: int
    scale: int
    source: str = ""
    gains: tuple[float, ...] | None = None  # white balance per packed channel, for linear models
    noise: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # (s, o) per packed channel (noise_law.noise_law)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """Memory-mapped (packed uint16, reference uint16)."""
        return np.load(self.short, mmap_mode="r"), np.load(self.long, mmap_mode="r")


def source_key(path: str | os.PathLike, kind: str) -> str:
    """Cache key of a source file: path, size and mtime (and the cache layout version)."""
    stat = os.stat(path)
    text = f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}|{kind}|{CACHE_VERSION}"
    return hashlib.sha1(text.encode()).hexdigest()[:20]


class PackedCache:
    """A folder of decoded frames; safe to share between processes."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = pathlib.Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SidError(f"{self.folder}: cannot create the decode cache there ({err.strerror}); "
                           "set data.cache_dir (or SID_KERAS_CACHE) to a writable folder") from None

    def _paths(self, source, kind: str) -> tuple[pathlib.Path, pathlib.Path]:
        key = source_key(source, kind)
        return self.folder / f"{key}.{kind}.npy", self.folder / f"{key}.{kind}.json"

    def short(self, source: str | os.PathLike) -> tuple[pathlib.Path, dict]:
        """Cached packed short exposure; decodes it on the first call.

        Its metadata keeps the file's white-balance gain per packed channel, which ``linear``
        models get multiplied into their input, and its noise law (:func:`sid_keras.runtime.noise_law.noise_law`),
        which noise-aware models are told; an entry cached before the noise law was kept gets it
        added on first use.
        """
        array_path, meta_path = self._paths(source, "short")
        if not (array_path.exists() and meta_path.exists()):
            frame = raw.read_raw(source)
            packed = model_input.pack(frame)
            save_npy_atomic(array_path, np.rint(packed * UINT16_SCALE).astype(np.uint16))
            meta = {"source": str(source), "exposure_time": frame.exposure_time,
                    "channels": frame.cfa.channels, "scale": frame.cfa.scale,
                    "shape": list(frame.mosaic.shape), "gains": raw.channel_gains(frame).tolist(),
                    "noise": _noise_of(frame)}
            write_json(meta_path, meta)
        meta = json.loads(meta_path.read_text())
        if "noise" not in meta:
            meta["noise"] = _noise_of(raw.read_raw(source))
            write_json(meta_path, meta)
        return array_path, meta

    def long(self, source: str | os.PathLike, *, linear: bool = False) -> tuple[pathlib.Path, dict]:
        """Cached ground truth of a long exposure (:func:`sid_keras.runtime.raw.render_reference`, sRGB,
        or linear camera RGB for ``linear`` models); rendered on the first call."""
        kind = "long_linear" if linear else "long"
        array_path, meta_path = self._paths(source, kind)
        if not (array_path.exists() and meta_path.exists()):
            frame = raw.read_raw(source)
            reference = raw.crop_reference(raw.render_reference(source, linear=linear), frame)
            save_npy_atomic(array_path, np.ascontiguousarray(reference))
            write_json(meta_path, {"source": str(source), "exposure_time": frame.exposure_time,
                                    "shape": list(frame.mosaic.shape)})
        return array_path, json.loads(meta_path.read_text())

    def pair(self, pair: SidPair, ratio_cap: float | None = raw.DEFAULT_RATIO_CAP, *,
             linear: bool = False) -> CachedPair:
        short_path, short_meta = self.short(pair.short)
        long_path, long_meta = self.long(pair.long, linear=linear)
        if short_meta["shape"] != long_meta["shape"]:
            raise SidError(f"{pair.short} and {pair.long} have different sizes "
                           f"({short_meta['shape']} vs {long_meta['shape']}); not a pair")
        ratio = raw.exposure_ratio(str(pair.short), str(pair.long),
                                   short_exposure=short_meta["exposure_time"],
                                   long_exposure=long_meta["exposure_time"], cap=ratio_cap)
        gains = tuple(short_meta["gains"]) if linear else None
        noise = tuple(tuple(v) for v in short_meta["noise"])
        return CachedPair(str(short_path), str(long_path), ratio, short_meta["channels"],
                          short_meta["scale"], str(pair.short), gains, noise)


def _noise_of(frame: raw.RawFrame) -> list[list[float]]:
    law = noise_law.noise_law(frame)
    return [law.s.tolist(), law.o.tolist()]


def _cache_one(folder: str, pair: SidPair, ratio_cap, linear: bool) -> CachedPair:
    return PackedCache(folder).pair(pair, ratio_cap, linear=linear)


def build_cache(pairs: Sequence[SidPair], folder: str | os.PathLike, *,
                ratio_cap: float | None = raw.DEFAULT_RATIO_CAP, linear: bool = False, workers: int = 1,
                progress: bool = False) -> list[CachedPair]:
    """Decode every pair once (in ``workers`` processes) and return the cached entries.

    ``linear``: targets in linear camera RGB and the white-balance gains kept, for ``linear``
    models; else SID's sRGB targets.
    """
    args = [(str(folder), pair, ratio_cap, linear) for pair in pairs]
    return _map(_cache_one, args, workers=workers, chunksize=2, progress=progress, desc="decode", unit="pair")


def _map(function, args: list[tuple], *, workers: int, chunksize: int, progress: bool, desc: str, unit: str) -> list:
    """``function(*a)`` for every ``a``, in ``workers`` spawned processes (or here), results in
    order, counted on a progress bar when ``progress``."""
    from sid_keras.runtime.progress import tracked

    if workers > 1 and len(args) > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = pool.imap(_call, [(function, a) for a in args], chunksize=chunksize)
            return list(tracked(results, len(args), desc, unit, enabled=progress))
    return [function(*a) for a in tracked(args, len(args), desc, unit, enabled=progress)]


def _call(job: tuple):
    """``function(*args)`` of a ``(function, args)`` job, for ``Pool.imap``."""
    function, args = job
    return function(*args)


def default_cache_dir() -> pathlib.Path:
    """Where decoded data is cached unless ``data.cache_dir`` says otherwise.

    ``$SID_KERAS_CACHE``, else ``$XDG_CACHE_HOME/sid_keras``, else ``~/.cache/sid_keras``: a
    folder the user can write, so read-only datasets (a shared mount) need no setting. Keys hold
    each source's absolute path, size and mtime, so one cache serves every dataset.
    """
    if os.environ.get("SID_KERAS_CACHE"):
        return pathlib.Path(os.environ["SID_KERAS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "sid_keras"


# The names of the files a cache holds: "<20 hex digits of source_key>.<kind>.npy|json".
_CACHE_FILE = re.compile(r"^[0-9a-f]{20}\.[a-z_]+\.(npy|json)$")


def cache_files(folder: str | os.PathLike | None = None) -> list[pathlib.Path]:
    """The files the package cached in ``folder`` (default :func:`default_cache_dir`), and its
    own temporaries left by a killed run; nothing else a shared folder holds."""
    from sid_keras.runtime.io import TEMPORARY_PREFIX

    folder = pathlib.Path(folder) if folder else default_cache_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and (_CACHE_FILE.match(p.name) or p.name.startswith(TEMPORARY_PREFIX)))


def clear_cache(folder: str | os.PathLike | None = None) -> tuple[int, int]:
    """Delete :func:`cache_files`; returns (files, bytes) freed. Every key is made again on demand."""
    files = cache_files(folder)
    freed = 0
    for path in files:
        freed += path.stat().st_size
        path.unlink(missing_ok=True)
    return len(files), freed


def _cached_linear(path: pathlib.Path, make) -> str:
    """``make()`` (linear RGB in [0, 1]) saved once at ``path`` as uint16, the photo cache's format."""
    if not path.exists():
        save_npy_atomic(path, np.rint(make() * UINT16_SCALE).astype(np.uint16))
    return str(path)


def _linear_photo(folder: str, photo: str) -> str:
    from sid_keras.synth.synthetic import linear_photo

    path = pathlib.Path(folder) / f"{source_key(photo, 'linear_photo')}.linear_photo.npy"
    return _cached_linear(path, lambda: linear_photo(photo))


def cache_photos(photos: Sequence[str], folder: str | os.PathLike, *, workers: int = 1,
                 progress: bool = False) -> list[str]:
    """Linearise each clean photo once (:func:`sid_keras.synth.synthetic.linear_photo`) into a
    memory-mapped uint16 ``.npy``; returns their paths, in order. ``photos`` may hold folders
    (their photos, as ``sid-keras synth`` finds them) and already cached ``.npy`` files."""
    from sid_keras.synth.synthetic import find_photos

    photos = [str(q) for p in photos
              for q in (find_photos(p) if os.path.isdir(p) else [p])]
    PackedCache(folder)  # creates the folder, with the same error as the pair cache
    args = [(str(folder), str(photo)) for photo in photos if not photo.endswith(".npy")]
    made = iter(_map(_linear_photo, args, workers=workers, chunksize=8, progress=progress, desc="linearise photos",
                unit="photo"))
    return [photo if photo.endswith(".npy") else next(made) for photo in photos]


def _dead_leaves(folder: str, index: int) -> str:
    from sid_keras.synth.synthetic import DEAD_LEAVES_SIDE, dead_leaves

    # the name changes with the generator's version, so an old cache is not reused for new scenes
    path = pathlib.Path(folder) / f"dead_leaves_v1_{DEAD_LEAVES_SIDE}_{index}.linear_photo.npy"
    return _cached_linear(path, lambda: dead_leaves(DEAD_LEAVES_SIDE, seed=index))


def cache_dead_leaves(count: int, folder: str | os.PathLike, *, workers: int = 1, progress: bool = False) -> list[str]:
    """``count`` dead-leaves scenes (:func:`sid_keras.synth.synthetic.dead_leaves`, seeds 0 to
    count - 1), made once into the cache like linearised photos, which they then join."""
    PackedCache(folder)
    return _map(_dead_leaves, [(str(folder), i) for i in range(count)], workers=workers, chunksize=4,
                progress=progress, desc="dead-leaves scenes", unit="scene")
