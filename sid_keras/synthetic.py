"""Synthetic SID-layout datasets from clean sRGB photos.

Each photo is "unprocessed" to a linear camera-space Bayer mosaic (Brooks et al., "Unprocessing
Images for Learned Raw Denoising", CVPR 2019): inverse tone curve, inverse sRGB gamma, inverse
colour matrix of a real camera, inverse white balance, RGGB mosaic. The mosaic is written as the
long exposure, and short exposures at x100 / x250 / x300 get a calibrated sensor noise model
(shot noise with system gain K, Tukey-lambda read noise, row noise, quantisation; Wei et al.,
"A Physics-based Noise Formation Model for Extreme Low-light Raw Denoising", CVPR 2020), all
as DNGs with SID-style names and list files, so the SID loader reads the result unchanged.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Iterable, Sequence

import numpy as np

from sid_keras.errors import SidError

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
SID_RATIOS = (100, 250, 300)
# SID's long exposures are 10 s or 30 s; its short ones 1/10, 1/25 and 1/30 s for 10 s.
LONG_EXPOSURE_S = 10.0
SHORT_EXPOSURE_S = {100: 0.1, 250: 0.04, 300: 0.033}
# Sony A7S II: 14-bit, black 512, white 16383 (the levels SID hard-codes).
SONY_BLACK, SONY_WHITE = 512, 16383
# XYZ(D65) -> camera matrix of the Sony ILCE-7SM2 (Adobe DNG Converter / LibRaw colour data).
SONY_A7S2_XYZ_TO_CAM = np.array(
    [[5838, -1430, -246], [-3497, 11477, 2297], [-748, 1885, 5778]], np.float64
) / 10000.0
# Linear sRGB -> XYZ (D65), IEC 61966-2-1.
SRGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
     [0.0193339, 0.1191920, 0.9503041]]
)
# Camera white-balance gains seen on real cameras (Brooks et al. 2019 sample these ranges).
RED_GAIN_RANGE = (1.9, 2.4)
BLUE_GAIN_RANGE = (1.5, 1.9)
# ISO range of the synthetic scenes: SID's Sony pairs span ISO 50-25600, mostly 100-3200.
ISO_RANGE = (100.0, 3200.0)
# Long exposures are scaled so the photo's white lands this far below saturation, with jitter.
EXPOSURE_SCALE_RANGE = (0.7, 1.0)
LIST_EXTRA = "F8"  # SID lists carry the aperture; ours is nominal


@dataclasses.dataclass(frozen=True)
class NoiseProfile:
    """ELD-style noise calibration: log-linear in the system gain K (DN per electron).

    ``K = k_per_iso * ISO + k_offset``; ``log(sigma) = slope * log(K) + bias (+ N(0, spread))``
    for the Tukey-lambda read noise (shape ``tl_lambda``) and the row noise.
    """

    name: str
    iso_range: tuple[float, float]
    k_per_iso: float
    k_offset: float
    tl_lambda: float
    tl_slope: float
    tl_bias: float
    tl_spread: float
    row_slope: float
    row_bias: float
    row_spread: float


# Sony A7S II calibration (Wei et al. 2020's method; values as published with the PMN / LRD
# noise-synthesis code for SonyA7S2 low and high ISO).
SONY_A7S2_PROFILES = (
    NoiseProfile("SonyA7S2_lowISO", (50, 1600), 0.0009546, -0.00193, -0.026,
                 0.74043, 0.86182, 0.00712, 0.78782, -0.34227, 0.02832),
    NoiseProfile("SonyA7S2_highISO", (1600, 25600), 0.0009546, -0.00193, -0.025,
                 0.74901, -0.12348, 0.00638, 0.62945, -1.51040, 0.02609),
)


def profile_for_iso(iso: float, profiles: Sequence[NoiseProfile] = SONY_A7S2_PROFILES) -> NoiseProfile:
    for profile in profiles:
        if profile.iso_range[0] <= iso <= profile.iso_range[1]:
            return profile
    raise SidError(f"ISO {iso} is outside the calibrated range of the noise model")


def system_gain(iso: float, profile: NoiseProfile) -> float:
    """DN per photo-electron at this ISO (the ELD fit is ``K = a * ISO - b``)."""
    return profile.k_per_iso * iso - profile.k_offset


def tukey_lambda(rng: np.random.Generator, lam: float, size) -> np.ndarray:
    """Tukey-lambda samples through the quantile function ``(u^l - (1-u)^l) / l``."""
    u = rng.uniform(1e-12, 1 - 1e-12, size)
    if abs(lam) < 1e-8:
        return np.log(u / (1 - u))
    return (u**lam - (1 - u) ** lam) / lam


def add_sensor_noise(signal_dn: np.ndarray, iso: float, rng: np.random.Generator,
                     profiles: Sequence[NoiseProfile] = SONY_A7S2_PROFILES) -> np.ndarray:
    """Noisy sensor values (DN above black, float) for a clean mosaic ``signal_dn``.

    Shot noise ``Poisson(signal / K) * K``, Tukey-lambda read noise, one Gaussian offset per row;
    quantisation happens when the caller rounds to integers.
    """
    profile = profile_for_iso(iso, profiles)
    k = system_gain(iso, profile)
    log_k = np.log(k)
    sigma_tl = np.exp(rng.normal(profile.tl_slope * log_k + profile.tl_bias, profile.tl_spread))
    sigma_row = np.exp(rng.normal(profile.row_slope * log_k + profile.row_bias, profile.row_spread))
    shot = rng.poisson(np.maximum(signal_dn, 0) / k) * k
    read = tukey_lambda(rng, profile.tl_lambda, signal_dn.shape) * sigma_tl
    rows = rng.normal(0.0, sigma_row, (signal_dn.shape[0], 1))
    return shot + read + rows


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """Inverse of the sRGB transfer curve (IEC 61966-2-1)."""
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def inverse_smoothstep(y: np.ndarray) -> np.ndarray:
    """Inverse of the global tone curve ``3x^2 - 2x^3`` Brooks et al. fit to camera pipelines."""
    y = np.clip(y, 0.0, 1.0)
    return 0.5 - np.sin(np.arcsin(1.0 - 2.0 * y) / 3.0)


def rgb_to_camera_matrix(xyz_to_cam: np.ndarray = SONY_A7S2_XYZ_TO_CAM) -> np.ndarray:
    """Linear sRGB -> camera RGB, rows normalised so white stays white (as dcraw/LibRaw do)."""
    m = xyz_to_cam @ SRGB_TO_XYZ
    return m / m.sum(axis=1, keepdims=True)


def unprocess(srgb: np.ndarray, red_gain: float, blue_gain: float,
              xyz_to_cam: np.ndarray = SONY_A7S2_XYZ_TO_CAM) -> np.ndarray:
    """sRGB in [0, 1] (H, W, 3) -> linear camera RGB before white balance, in [0, 1]."""
    linear = srgb_to_linear(inverse_smoothstep(srgb))
    camera = np.einsum("ij,hwj->hwi", rgb_to_camera_matrix(xyz_to_cam), linear)
    camera = camera / np.array([red_gain, 1.0, blue_gain])
    return np.clip(camera, 0.0, 1.0)


def mosaic_rggb(rgb: np.ndarray) -> np.ndarray:
    """RGGB Bayer mosaic of an (H, W, 3) image with even H and W."""
    out = np.empty(rgb.shape[:2], rgb.dtype)
    out[0::2, 0::2] = rgb[0::2, 0::2, 0]
    out[0::2, 1::2] = rgb[0::2, 1::2, 1]
    out[1::2, 0::2] = rgb[1::2, 0::2, 1]
    out[1::2, 1::2] = rgb[1::2, 1::2, 2]
    return out


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


def plan_scenes(photos: Sequence[str], seed: int, first_id: int) -> list[ScenePlan]:
    rng = np.random.default_rng(seed)
    plans = []
    for i, photo in enumerate(photos):
        iso = float(np.exp(rng.uniform(*np.log(ISO_RANGE))))
        plans.append(ScenePlan(
            scene_id=first_id + i + 1,
            photo=str(photo),
            iso=round(iso / 100) * 100.0,
            red_gain=float(rng.uniform(*RED_GAIN_RANGE)),
            blue_gain=float(rng.uniform(*BLUE_GAIN_RANGE)),
            exposure_scale=float(rng.uniform(*EXPOSURE_SCALE_RANGE)),
            seed=int(rng.integers(2**31)),
        ))
    return plans


def sid_name(scene_id: int, exposure: float, suffix: str = ".dng", burst: int = 0) -> str:
    return f"{scene_id:05d}_{burst:02d}_{exposure:g}s{suffix}"


def make_scene(plan: ScenePlan, out_dir: pathlib.Path, camera_dir: str,
               ratios: Sequence[int]) -> list[str]:
    """Write one scene's long and short DNGs; return its SID list lines."""
    from sid_keras.dng import write_cfa_dng

    rng = np.random.default_rng(plan.seed)
    camera = unprocess(load_photo(plan.photo), plan.red_gain, plan.blue_gain)
    signal = mosaic_rggb(camera) * (SONY_WHITE - SONY_BLACK) * plan.exposure_scale
    common = dict(
        cfa_pattern=np.array([[0, 1], [1, 2]]),
        black_level=SONY_BLACK,
        white_level=SONY_WHITE,
        color_matrix=SONY_A7S2_XYZ_TO_CAM,
        as_shot_neutral=(1.0 / plan.red_gain, 1.0, 1.0 / plan.blue_gain),
        iso=plan.iso,
        make="Sony",
        model="ILCE-7SM2 (synthetic)",
    )

    def to_sensor(dn: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(dn + SONY_BLACK), 0, SONY_WHITE).astype(np.uint16)

    long_name = sid_name(plan.scene_id, LONG_EXPOSURE_S)
    long_dn = add_sensor_noise(signal, plan.iso, rng)
    write_cfa_dng(out_dir / camera_dir / "long" / long_name, to_sensor(long_dn),
                  exposure_time=LONG_EXPOSURE_S, **common)
    lines = []
    for ratio in ratios:
        short_exposure = SHORT_EXPOSURE_S.get(ratio, LONG_EXPOSURE_S / ratio)
        short_dn = add_sensor_noise(signal * short_exposure / LONG_EXPOSURE_S, plan.iso, rng)
        short_name = sid_name(plan.scene_id, short_exposure)
        write_cfa_dng(out_dir / camera_dir / "short" / short_name, to_sensor(short_dn),
                      exposure_time=short_exposure, **common)
        lines.append(f"./{camera_dir}/short/{short_name} ./{camera_dir}/long/{long_name} "
                     f"ISO{int(plan.iso)} {LIST_EXTRA}")
    return lines


def find_photos(folder: str | os.PathLike) -> list[str]:
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise SidError(f"{folder}: no such folder of photos")
    photos = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not photos:
        raise SidError(f"{folder}: holds no photos ({', '.join(PHOTO_SUFFIXES)})")
    return photos


def synthesize(photos_dir: str | os.PathLike, out_dir: str | os.PathLike, *, split: str = "train",
               seed: int = 0, ratios: Iterable[int] = SID_RATIOS, limit: int | None = None,
               camera_dir: str = "Sony", first_id: int | None = None, workers: int = 1,
               progress: bool = False) -> pathlib.Path:
    """Build a SID-layout dataset from a folder of photos; return the list file written.

    Same photos, seed and arguments give the same files. Scene ids start after ``first_id``
    (by default 0 for train, 10000 for test, 20000 for val, as SID numbers its splits).
    """
    photos = find_photos(photos_dir)[:limit]
    ratios = [int(r) for r in ratios]
    if not ratios or min(ratios) <= 0:
        raise SidError(f"ratios {ratios} must be positive integers such as 100 250 300")
    if first_id is None:
        first_id = {"train": 0, "test": 10000, "val": 20000}.get(split, 30000)
    out = pathlib.Path(out_dir)
    plans = plan_scenes(photos, seed, first_id)
    args = [(plan, out, camera_dir, ratios) for plan in plans]
    if workers > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = pool.starmap(make_scene, args, chunksize=4)
    else:
        results = [make_scene(*a) for a in _progress(args, progress, "synth")]
    list_path = out / f"{camera_dir}_{split}_list.txt"
    from sid_keras.io import atomic_path

    with atomic_path(list_path) as tmp:
        with open(tmp, "w") as f:
            f.writelines(line + "\n" for lines in results for line in lines)
    return list_path


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="photo")
