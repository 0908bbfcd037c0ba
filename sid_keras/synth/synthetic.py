"""Synthetic raw data from clean sRGB photos: unprocessing, virtual cameras, SID-layout datasets.

Each photo is "unprocessed" to linear light (Brooks et al., "Unprocessing Images for Learned Raw
Denoising", CVPR 2019): inverse tone curve, inverse sRGB gamma. A camera then sees it through its
colour response (a real camera's matrix) and an illuminant (white-balance gains), and the short
exposure gets the calibrated noise of :mod:`sid_keras.runtime.noise`.

Three uses:

- on the fly, in :func:`sid_keras.data.pipeline.synthetic_source` (training): the photos are
  linearised once (:func:`linear_photo`, cached) and every step draws a new camera, illuminant,
  exposure, ratio and noise;
- as files, by :func:`synthesize` (`sid-keras synth`): DNG pairs with SID-style names and list
  files that the SID loader reads unchanged, including the stress validation
  (:func:`synthesize_stress`, `sid-keras synth --stress`) on a grid of ISO bands x ratios with
  cameras and illuminants that training does not use;
- as frames in memory, by :func:`short_frames` (export's int8 calibration).

:func:`dead_leaves` draws scenes no photo holds (saturated colours, sharp edges, thin bars) that
training can add to its photos (``data.dead_leaves``).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from typing import Iterable, Sequence

import numpy as np

from sid_keras.errors import SidError
from sid_keras.runtime import noise
from sid_keras.runtime.cfa import BAYER, BLUE, GREEN, GREEN2, RED, unpack_mosaic
from sid_keras.runtime.raw import RawFrame, libraw_normalised
from sid_keras.runtime.render import SRGB_TO_XYZ

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
SID_RATIOS = (100, 250, 300)
# SID's long exposures are 10 s or 30 s; its short ones 1/10, 1/25 and 1/30 s for 10 s.
LONG_EXPOSURE_S = 10.0
SHORT_EXPOSURE_S = {100: 0.1, 250: 0.04, 300: 0.033}
# Sony A7S II: 14-bit, black 512, white 16383 (the levels SID hard-codes).
SONY_BLACK, SONY_WHITE = 512, 16383


def _xyz_to_cam(*values: int) -> np.ndarray:
    return np.array(values, np.float64).reshape(3, 3) / 10000.0


# XYZ(D65) -> camera matrices of real cameras, from dcraw / LibRaw's adobe_coeff table.
SONY_A7S2_XYZ_TO_CAM = _xyz_to_cam(5838, -1430, -246, -3497, 11477, 2297, -748, 1885, 5778)
# The colour responses training draws from: Sony bodies of several generations, and a camera
# without a matrix (LibRaw then shows camera RGB as it is, so its "response" is sRGB itself).
TRAINING_CAMERAS = {
    "Sony ILCE-7SM2": SONY_A7S2_XYZ_TO_CAM,
    "Sony ILCE-7RM2": _xyz_to_cam(6629, -1900, -483, -4618, 12349, 2550, -622, 1381, 6514),
    "Sony ILCE-7M2": _xyz_to_cam(5271, -712, -347, -6153, 13653, 2763, -1601, 2366, 7242),
    "Sony ILCA-77M2": _xyz_to_cam(5991, -1732, -443, -4100, 11989, 2381, -704, 1467, 5992),
    "Sony DSLR-A900": _xyz_to_cam(5209, -1072, -397, -8845, 16120, 2919, -1618, 1803, 8654),
    "no matrix": None,
}
# Held out for the stress validation: other makers' colour responses (as used in public
# raw-processing code for a Nikon body, a Canon body and the Fujifilm X-T2).
STRESS_CAMERAS = {
    "Nikon": _xyz_to_cam(9020, -2890, -715, -4535, 12436, 2348, -934, 1919, 7086),
    "Canon": _xyz_to_cam(6970, -512, -968, -4425, 12161, 2553, -739, 1982, 5601),
    "Fujifilm X-T2": _xyz_to_cam(11434, -4948, -1210, -3746, 12042, 1903, -666, 1479, 5235),
}

# Illuminants as white-balance gains (R, B with G = 1) that real cameras report.
ILLUMINANTS = {
    "daylight": ((1.9, 2.9), (1.25, 1.7)),
    "tungsten": ((1.15, 1.6), (2.2, 3.3)),
    "fluorescent": ((1.5, 2.0), (1.7, 2.4)),
}
# Training covers all of them and beyond: gains drawn log-uniformly in these ranges.
RED_GAIN_RANGE = (1.0, 3.2)
BLUE_GAIN_RANGE = (1.0, 3.5)
# ISO range of `sid-keras synth` scenes (SID's Sony pairs span ISO 50-25600, mostly 100-3200).
ISO_RANGE = (100.0, 3200.0)
# Long exposures are scaled so the photo's white lands this far below saturation, with jitter.
EXPOSURE_SCALE_RANGE = (0.7, 1.0)
LIST_EXTRA = "F8"  # SID lists carry the aperture; ours is nominal

# The stress validation grid: ISO bands (on the Sony A7S II gain scale, noise.iso_to_gain) x ratios.
STRESS_ISO_BANDS = ((400, 800), (1600, 3200), (6400, 12800), (25600, 51200))
STRESS_RATIOS = (30, 100, 300)
STRESS_CELLS_PER_PHOTO = 3


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """Inverse of the sRGB transfer curve (IEC 61966-2-1)."""
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def inverse_smoothstep(y: np.ndarray) -> np.ndarray:
    """Inverse of the global tone curve ``3x^2 - 2x^3`` Brooks et al. fit to camera pipelines."""
    y = np.clip(y, 0.0, 1.0)
    return 0.5 - np.sin(np.arcsin(1.0 - 2.0 * y) / 3.0)


def rgb_to_camera_matrix(xyz_to_cam: np.ndarray | None = SONY_A7S2_XYZ_TO_CAM) -> np.ndarray:
    """Linear sRGB -> white-balanced camera RGB, rows normalised so white stays white (as LibRaw).

    ``None`` (a camera without a matrix) is the identity.
    """
    if xyz_to_cam is None:
        return np.eye(3)
    m = xyz_to_cam @ SRGB_TO_XYZ
    return m / m.sum(axis=1, keepdims=True)


def file_colour_response(color_matrix: np.ndarray | None) -> np.ndarray:
    """Linear sRGB -> white-balanced camera RGB of a file's camera: the inverse of the matrix
    LibRaw develops the file with (rawpy's ``color_matrix``), so synthetic pairs get its colours."""
    from sid_keras.runtime.render import camera_to_srgb

    m = np.linalg.inv(camera_to_srgb(color_matrix).astype(np.float64))
    return m / m.sum(axis=1, keepdims=True)


# Dead-leaves scenes: occluding discs with radii on a power law (scale invariant, as natural images
# are), and thin bars, in flat colours drawn anywhere in the sRGB cube, so many of them saturated.
DEAD_LEAVES_RADII = (2.0, 0.25)  # smallest radius in pixels; largest as a share of the side
DEAD_LEAVES_BAR_SHARE = 0.15  # shapes that are bars 1-3 pixels wide: thin lines between colours
DEAD_LEAVES_SUPERSAMPLING = 2  # edges are drawn at this many times the resolution and averaged
DEAD_LEAVES_GAPS = 0.005  # share of the frame left to the leaf behind all others (covering the last
# specks one by one would take most of the time)
DEAD_LEAVES_SIDE = 512  # pixels a side of the scenes data.dead_leaves adds to the training photos


def dead_leaves(side: int, seed: int) -> np.ndarray:
    """A dead-leaves scene (Lee, Mumford and Huang, IJCV 2001; a training prior for denoising and
    demosaicking, Achddou et al. 2021): linear sRGB float64 (side, side, 3) in [0, 1].

    Shapes are drawn front to back, each filling only what the ones before left free, until all
    but :data:`DEAD_LEAVES_GAPS` of the frame is covered; a last leaf behind them all fills the
    gaps. Edges are anti-aliased, as a lens band-limits them; colours are uniform in
    sRGB, where photos hold few saturated ones.
    """
    rng = np.random.default_rng(seed)
    s = DEAD_LEAVES_SUPERSAMPLING
    big = side * s
    canvas = np.empty((big, big, 3))
    canvas[:] = rng.random(3)  # the leaf behind all others
    free = np.ones((big, big), bool)
    r_min, r_max = DEAD_LEAVES_RADII[0] * s, DEAD_LEAVES_RADII[1] * big
    left_free = big * big
    while left_free > DEAD_LEAVES_GAPS * big * big:
        # p(r) ~ r^-3 on [r_min, r_max], by its inverse CDF
        radius = (r_min**-2 - rng.random() * (r_min**-2 - r_max**-2)) ** -0.5
        cy, cx = rng.random(2) * big
        colour = rng.random(3)
        bar = rng.random() < DEAD_LEAVES_BAR_SHARE
        reach = 2 * radius if bar else radius  # a bar is 4 r long
        top, bottom = int(max(cy - reach, 0)), int(min(cy + reach + 1, big))
        left, right = int(max(cx - reach, 0)), int(min(cx + reach + 1, big))
        if top >= bottom or left >= right:
            continue
        dy = np.arange(top, bottom)[:, None] + 0.5 - cy
        dx = np.arange(left, right)[None, :] + 0.5 - cx
        if bar:
            angle = rng.random() * np.pi
            half_width = rng.uniform(0.5, 1.5) * s
            along = dx * np.cos(angle) + dy * np.sin(angle)
            across = dy * np.cos(angle) - dx * np.sin(angle)
            inside = (np.abs(across) <= half_width) & (np.abs(along) <= reach)
        else:
            inside = dy * dy + dx * dx <= radius * radius
        window = free[top:bottom, left:right]
        paint = inside & window
        count = int(paint.sum())
        if count:
            canvas[top:bottom, left:right][paint] = colour
            window[paint] = False
            left_free -= count
    srgb = canvas.reshape(side, s, side, s, 3).mean(axis=(1, 3))
    return srgb_to_linear(srgb)


def load_photo(path: str | os.PathLike) -> np.ndarray:
    """An sRGB photo as float64 in [0, 1], cropped to even height and width."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"), np.float64) / 255.0
    except (OSError, ValueError) as err:
        raise SidError(f"{path}: not a readable photo ({err})") from None
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    return rgb[:h, :w]


def linear_photo(path: str | os.PathLike) -> np.ndarray:
    """A photo in linear light (linear sRGB primaries), float64 (H, W, 3), even H and W."""
    return srgb_to_linear(inverse_smoothstep(load_photo(path)))


@dataclasses.dataclass(frozen=True)
class ScenePlan:
    """Everything random about one synthetic scene, drawn up front from the seed."""

    scene_id: int
    photo: str
    iso: float
    red_gain: float
    blue_gain: float
    exposure_scale: float
    seed: int
    ratios: tuple[int, ...] = SID_RATIOS
    noise_profile: str = noise.SONY_A7S2.name
    camera: str = "Sony ILCE-7SM2"
    noisy_long: bool = True  # SID's long exposures carry (little) noise; the stress set's do not
    blur_sigma: float = 0.0  # a lens's band limit: Gaussian sigma in sensor pixels, before the mosaic

    @property
    def xyz_to_cam(self) -> np.ndarray | None:
        """The camera's XYZ -> camera matrix (what its DNG files carry as ColorMatrix1)."""
        return {**TRAINING_CAMERAS, **STRESS_CAMERAS}[self.camera]


def plan_scenes(photos: Sequence[str], seed: int, first_id: int, ratios: Sequence[int] = SID_RATIOS,
                noise_profile: str | None = None) -> list[ScenePlan]:
    """`sid-keras synth` scenes: ISO 100-3200 under random illuminants, with the Sony A7S II's
    noise (or ``noise_profile``: a `sid-keras calibrate` TOML or a built-in name)."""
    rng = np.random.default_rng(seed)
    plans = []
    for i, photo in enumerate(photos):
        iso = float(np.exp(rng.uniform(*np.log(ISO_RANGE))))
        plans.append(ScenePlan(
            scene_id=first_id + i + 1,
            photo=str(photo),
            iso=round(iso / 100) * 100.0,
            red_gain=float(rng.uniform(1.9, 2.4)),
            blue_gain=float(rng.uniform(1.5, 1.9)),
            exposure_scale=float(rng.uniform(*EXPOSURE_SCALE_RANGE)),
            seed=int(rng.integers(2**31)),
            ratios=tuple(int(r) for r in ratios),
            noise_profile=noise_profile or noise.SONY_A7S2.name,
        ))
    return plans


def plan_stress_scenes(photos: Sequence[str], seed: int, first_id: int,
                       cells_per_photo: int = STRESS_CELLS_PER_PHOTO,
                       noise_profile: str | None = None) -> list[ScenePlan]:
    """The stress grid: every (ISO band x ratio) cell gets the same number of photos, each scene
    a held-out camera (colour response and calibrated noise, or ``noise_profile`` for every
    scene) under one of three illuminants."""
    rng = np.random.default_rng(seed)
    cells = [(band, ratio) for band in STRESS_ISO_BANDS for ratio in STRESS_RATIOS]
    cameras, lights = list(STRESS_CAMERAS), list(ILLUMINANTS)
    profiles = [noise_profile] if noise_profile else list(noise.CALIBRATED)
    plans = []
    for i, photo in enumerate(photos):
        for j in range(cells_per_photo):
            n = i * cells_per_photo + j
            (low, high), ratio = cells[n % len(cells)]
            red_range, blue_range = ILLUMINANTS[lights[n % len(lights)]]
            plans.append(ScenePlan(
                scene_id=first_id + n + 1,
                photo=str(photo),
                iso=float(round(np.exp(rng.uniform(np.log(low), np.log(high))) / 100) * 100),
                red_gain=float(rng.uniform(*red_range)),
                blue_gain=float(rng.uniform(*blue_range)),
                exposure_scale=float(rng.uniform(*EXPOSURE_SCALE_RANGE)),
                seed=int(rng.integers(2**31)),
                ratios=(ratio,),
                noise_profile=profiles[n % len(profiles)],
                camera=cameras[(n // len(profiles)) % len(cameras)],
                noisy_long=False,
            ))
    return plans


def stress_cell(iso: float | None) -> str | None:
    """The ISO band label of the stress grid an ISO falls in (None outside it)."""
    for low, high in STRESS_ISO_BANDS:
        if iso is not None and low <= iso <= high:
            return f"ISO {low}-{high}"
    return None


def sid_name(scene_id: int, exposure: float, suffix: str = ".dng", burst: int = 0) -> str:
    return f"{scene_id:05d}_{burst:02d}_{exposure:g}s{suffix}"


def clean_scene(plan: ScenePlan) -> np.ndarray:
    """The scene a plan's files record, before the sensor: white-balanced linear camera RGB
    (H, W, 3), band-limited by the lens and exposed (not clipped)."""
    linear = linear_photo(plan.photo)
    if plan.blur_sigma > 0:
        from scipy.ndimage import gaussian_filter

        linear = gaussian_filter(linear, (plan.blur_sigma, plan.blur_sigma, 0))
    return np.clip(linear @ rgb_to_camera_matrix(plan.xyz_to_cam).T, 0.0, None) * plan.exposure_scale


def scene_exposures(plan: ScenePlan, *, long: bool = True) -> Iterable[tuple[float, int | None, np.ndarray]]:
    """A plan's exposures as the sensor records them: ``(exposure time, ratio, uint16 mosaic)``,
    the long one first (ratio None; left out with ``long=False``), then one per ratio."""
    profile = noise.load_profile(plan.noise_profile)
    gain = noise.iso_to_gain(plan.iso, profile)
    camera = {k: float(v) for k, v in _sample_camera(profile, gain, plan.seed).items()}
    raw_long = clean_scene(plan) / np.array([plan.red_gain, 1.0, plan.blue_gain])
    packed_long = BAYER.pack_rgb(raw_long)

    def to_sensor(normalised: np.ndarray) -> np.ndarray:
        dn = np.rint(_unpack_rggb(normalised) * (SONY_WHITE - SONY_BLACK) + SONY_BLACK)
        return np.clip(dn, 0, SONY_WHITE).astype(np.uint16)

    if long:
        long_values = (noise.numpy_noisy_short_exposure(packed_long, 1.0, camera, (plan.seed, 0))
                       if plan.noisy_long else np.clip(packed_long, 0.0, 1.0))
        yield LONG_EXPOSURE_S, None, to_sensor(long_values)
    for i, ratio in enumerate(plan.ratios, 1):
        short_exposure = SHORT_EXPOSURE_S.get(ratio, LONG_EXPOSURE_S / ratio)
        short = noise.numpy_noisy_short_exposure(packed_long, LONG_EXPOSURE_S / short_exposure, camera,
                                                 (plan.seed, i))
        yield short_exposure, ratio, to_sensor(short)


def make_scene(plan: ScenePlan, out_dir: pathlib.Path, camera_dir: str) -> list[str]:
    """Write one scene's long and short DNGs; return its SID list lines."""
    from sid_keras.runtime.dng import write_cfa_dng

    common = dict(
        cfa_pattern=np.array([[0, 1], [1, 2]]),
        black_level=SONY_BLACK,
        white_level=SONY_WHITE,
        color_matrix=plan.xyz_to_cam,
        as_shot_neutral=(1.0 / plan.red_gain, 1.0, 1.0 / plan.blue_gain),
        iso=plan.iso,
        make="sid_keras",
        model=f"virtual {plan.camera}",
    )
    long_name = sid_name(plan.scene_id, LONG_EXPOSURE_S)
    lines = []
    for exposure, ratio, mosaic in scene_exposures(plan):
        name = long_name if ratio is None else sid_name(plan.scene_id, exposure)
        write_cfa_dng(out_dir / camera_dir / ("long" if ratio is None else "short") / name, mosaic,
                      exposure_time=exposure, **common)
        if ratio is not None:
            lines.append(f"./{camera_dir}/short/{name} ./{camera_dir}/long/{long_name} "
                         f"ISO{int(plan.iso)} {LIST_EXTRA}")
    return lines


def short_frames(plan: ScenePlan) -> Iterable[tuple[RawFrame, int]]:
    """A plan's short exposures with their ratios, as the :class:`RawFrame` that reading
    :func:`make_scene`'s files gives (the same mosaic, white balance and LibRaw's colour matrix),
    made in memory: export's int8 calibration needs frames, not files."""
    matrix = plan.xyz_to_cam
    # LibRaw's camera -> sRGB matrix; rawpy reports zeros for a file without one
    camera_to_rgb = np.zeros((3, 3)) if matrix is None else np.linalg.inv(rgb_to_camera_matrix(matrix))
    metadata = dict(
        cfa_pattern=np.array([[RED, GREEN], [GREEN2, BLUE]]),
        black_level=np.full(4, SONY_BLACK, np.float32),
        white_level=float(SONY_WHITE),
        white_balance=libraw_normalised([plan.red_gain, 1.0, plan.blue_gain, 1.0]),
        color_matrix=np.pad(camera_to_rgb, ((0, 0), (0, 1))).astype(np.float32),
        iso=float(plan.iso),
    )
    for exposure, ratio, mosaic in scene_exposures(plan, long=False):
        path = f"<synthetic scene {plan.scene_id} of {pathlib.Path(plan.photo).name}, x{ratio}>"
        yield RawFrame(mosaic=mosaic, exposure_time=exposure, path=path, **metadata), ratio


def _sample_camera(profile: noise.NoiseProfile, gain: float, seed: int) -> dict:
    import tensorflow as tf

    return noise.sample_camera(profile, tf.constant([seed, 7], tf.int64), gain=(gain, gain))


def _unpack_rggb(packed: np.ndarray) -> np.ndarray:
    return unpack_mosaic(packed, BAYER)


def find_photos(folder: str | os.PathLike) -> list[str]:
    """The photos in a folder and its subfolders, sorted."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise SidError(f"{folder}: no such folder of photos")
    photos = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
    if not photos:
        raise SidError(f"{folder}: holds no photos ({', '.join(PHOTO_SUFFIXES)})")
    return photos


def synthesize(photos_dir: str | os.PathLike, out_dir: str | os.PathLike, *, split: str = "train",
               seed: int = 0, ratios: Iterable[int] = SID_RATIOS, limit: int | None = None,
               camera_dir: str = "Sony", first_id: int | None = None, workers: int = 1,
               stress: bool = False, noise_profile: str | None = None, progress: bool = False,
               overwrite: bool = False) -> pathlib.Path:
    """Build a SID-layout dataset from a folder of photos; return the list file written.

    Same photos, seed and arguments give the same files. Scene ids start after ``first_id``
    (by default 0 for train, 10000 for test, 20000 for val, as SID numbers its splits).
    ``stress=True`` writes the stress validation grid instead (``ratios`` unused).
    ``noise_profile``: a `sid-keras calibrate` TOML (or a built-in profile's name) for the noise.
    The dataset appears whole or not at all: scenes are written to a staging folder and moved
    into ``out_dir`` at the end, the list last; files already there (the same scene ids, the same
    list) are refused unless ``overwrite``.
    """
    if limit is not None and limit < 1:  # photos[:-3] would quietly drop the last three
        raise SidError(f"limit {limit}: give the number of photos to use, 1 or more (or no limit)")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", split):  # it names the list file: no folders, no spaces
        raise SidError(f"split {split!r}: give a simple name of letters, digits, - or _ (train, val, test)")
    photos = find_photos(photos_dir)[:limit]
    ratios = [int(r) for r in ratios]
    if not ratios or min(ratios) <= 0:
        raise SidError(f"ratios {ratios} must be positive integers such as 100 250 300")
    if first_id is None:
        first_id = {"train": 0, "test": 10000, "val": 20000}.get(split, 30000)
    out = pathlib.Path(out_dir)
    if noise_profile:
        noise.load_profile(noise_profile)  # a bad profile fails now, not in a worker
    plans = (plan_stress_scenes(photos, seed, first_id, noise_profile=noise_profile) if stress
             else plan_scenes(photos, seed, first_id, ratios, noise_profile))
    list_path = out / f"{camera_dir}_{split}_list.txt"
    ids = {f"{plan.scene_id:05d}_" for plan in plans}
    taken = [p for kind in ("short", "long") if (out / camera_dir / kind).is_dir()
             for p in sorted((out / camera_dir / kind).iterdir()) if p.name[:6] in ids]
    taken += [list_path] if list_path.exists() else []
    if taken and not overwrite:
        raise SidError(f"{out}: already holds {len(taken)} of this dataset's files (e.g. {taken[0]}); pass "
                       "--overwrite to replace them, or write to another --out")
    from sid_keras.runtime.io import atomic_path, staged_folder
    from sid_keras.runtime.progress import tracked

    with staged_folder(out, merge=True) as stage:
        args = [(plan, stage, camera_dir) for plan in plans]
        if workers > 1:
            import multiprocessing

            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                results = list(tracked(pool.imap(_make_scene_of, args, chunksize=4), len(args), "synth", "scene",
                                       enabled=progress))
        else:
            results = [make_scene(*a) for a in tracked(args, len(args), "synth", "scene", enabled=progress)]
    with atomic_path(list_path) as tmp:  # last: a dataset with a list is a whole dataset
        with open(tmp, "w") as f:
            f.writelines(line + "\n" for lines in results for line in lines)
    return list_path


def _make_scene_of(args: tuple) -> list[str]:
    """:func:`make_scene` of a tuple of its arguments, for ``Pool.imap``."""
    return make_scene(*args)
