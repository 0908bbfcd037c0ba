"""A user's own camera: its noise profile from dark and flat frames (`sid-keras calibrate`).

The method of ELD (Wei et al., CVPR 2020), per ISO:

- **black level** per CFA colour: the mean of the dark frames (shot with the lens capped);
- **dark shading**: the mean dark frame minus the black level, a fixed pattern (saved beside the
  profile when enough dark frames average its noise away);
- **row noise**: the spread of each sensor row's mean in the shading-corrected dark frames, less
  the part the read noise itself contributes to a row mean;
- **read noise**: the row-corrected dark residual fitted by a Tukey-lambda distribution, its
  shape by the probability-plot correlation maximum and its scale by the probability plot's slope;
- **colour bias**: the spread of a frame's mean black offset;
- **system gain** K (DN per electron) from the flats (an evenly lit surface, a few exposure
  levels, two frames or more at each): the photon-transfer line ``var = K * mean + var_dark``,
  with the variance of the difference of two frames so fixed patterns (PRNU) cancel.

Across ISO the read and row scales follow ``log sigma = slope * log K + bias`` and K follows a
line in ISO; the fits become a :class:`sid_keras.runtime.noise.NoiseProfile` that the synthesiser uses
(`sid-keras synth --noise-profile`, ``data.noise_profile``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import re
from typing import Iterable, Sequence

import numpy as np

from sid_keras.errors import SidError
from sid_keras.runtime import cfa, raw, tags
from sid_keras.runtime.noise import NoiseProfile

MIN_DARK_FRAMES = 4  # per ISO, to average the black level and measure row noise; 10+ is better
MIN_SHADING_FRAMES = 8  # below this the dark-shading map is mostly read noise: not saved
MIN_FLAT_LEVELS = 2  # exposure levels per ISO with at least two frames each: a photon-transfer line
MIN_ISOS = 2  # the noise laws across ISO need two points
# A frame whose median lies this far above black (as a share of white - black) is a flat.
FLAT_MIN_SIGNAL = 0.01
# Flats above this share of the range have clipped highlights and a bent photon-transfer line.
FLAT_MAX_SIGNAL = 0.85
# Samples of read noise for the Tukey-lambda fit (plenty for +-0.02 on lambda; the fit is O(n)).
TUKEY_SAMPLES = 200_000
TUKEY_LAMBDA_BRACKET = (-0.5, 0.5)
# Pairs of flats at one level: mean levels within this relative difference (when no exposure time).
SAME_LEVEL = 0.03
_ISO_FOLDER = re.compile(r"^iso[_-]?(\d+)$", re.IGNORECASE)


@dataclasses.dataclass
class IsoCalibration:
    """What the frames of one ISO say."""

    iso: float
    system_gain: float
    read_sigma: float
    read_lambda: float
    row_sigma: float
    black_level: list
    bias_sigma: float
    dark_frames: int
    flat_levels: int
    means: list = dataclasses.field(default_factory=list, repr=False)  # photon-transfer points
    variances: list = dataclasses.field(default_factory=list, repr=False)
    read_intercept: float = 0.0


@dataclasses.dataclass
class Calibration:
    camera: str
    isos: list  # IsoCalibration, by ISO
    profile: NoiseProfile
    laws: dict


def frame_iso(frame: raw.RawFrame) -> float:
    """The ISO of a frame: its metadata, else a parent folder named like ``iso3200``."""
    if frame.iso:
        return float(frame.iso)
    for parent in pathlib.Path(frame.path).parents:
        match = _ISO_FOLDER.match(parent.name)
        if match:
            return float(match.group(1))
    raise SidError(f"{frame.path}: no ISO in the file; put the frames of each ISO in a folder named like "
                   "iso3200/")


def find_frames(items: Iterable[str | os.PathLike]) -> list[pathlib.Path]:
    """Raw files given directly or inside folders (searched recursively), sorted."""

    files: list[pathlib.Path] = []
    for item in items:
        path = pathlib.Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in raw.RAW_SUFFIXES and p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise SidError(f"{path}: no such file or folder of frames")
    if not files:
        raise SidError("no raw frames found: give dark and flat frames (files or folders)")
    return files


def _signal_share(frame: raw.RawFrame) -> float:
    """Median of a frame above black, as a share of white - black."""
    black = float(np.median(frame.black_level))
    sample = frame.mosaic[::7, ::7].astype(np.float32)
    return float((np.median(sample) - black) / (frame.white_level - black))


def _camera_key(frame: raw.RawFrame) -> tuple:
    return frame.mosaic.shape, tuple(np.asarray(frame.cfa_pattern).ravel()), float(frame.white_level)


def _colour_planes(frame: raw.RawFrame) -> list[tuple[int, np.ndarray]]:
    """(colour index, float64 plane) of each position of the 2x2 tile (Bayer only)."""
    if frame.cfa.kind != "bayer":
        raise SidError(f"{frame.path}: calibration handles Bayer sensors; this one is {frame.cfa.kind}")
    pattern = np.asarray(frame.cfa_pattern)
    return [(int(pattern[r, c]), frame.mosaic[r::2, c::2].astype(np.float64)) for r in range(2) for c in range(2)]


def calibrate_iso(iso: float, darks: Sequence[raw.RawFrame], flats: Sequence[raw.RawFrame]) -> tuple:
    """Calibrate one ISO; returns (IsoCalibration, dark-shading map or None, read-noise sample)."""
    from scipy import stats

    if len(darks) < MIN_DARK_FRAMES:
        raise SidError(f"ISO {iso:g}: {len(darks)} dark frame(s); shoot at least {MIN_DARK_FRAMES} (10 or more is "
                       "better) with the lens capped, at the exposure time used in the dark")
    stack = np.stack([d.mosaic.astype(np.float64) for d in darks])
    pattern = np.asarray(darks[0].cfa_pattern)
    colours = cfa.tile_colours(pattern, stack.shape[1:])
    black = np.zeros(4)
    for colour in range(4):
        black[colour] = stack[:, colours == colour].mean() if np.any(colours == colour) else 0.0
    black[cfa.GREEN2] = black[cfa.GREEN2] if np.any(colours == cfa.GREEN2) else black[cfa.GREEN]
    black_map = black[colours]
    mean_dark = stack.mean(axis=0)
    shading = mean_dark - black_map if len(darks) >= MIN_SHADING_FRAMES else None
    residual = stack - (mean_dark if shading is not None else black_map)
    if shading is not None:  # the mean took 1/n of each frame's own noise with it: give it back
        residual *= math.sqrt(len(darks) / (len(darks) - 1))
    # colour bias: a frame's own black offset, per colour
    offsets = np.array([[frame[colours == c].mean() for c in (cfa.RED, cfa.GREEN, cfa.BLUE)] for frame in residual])
    bias_sigma = float(offsets.std())
    residual -= offsets.mean(axis=1)[:, None, None]
    row_means = residual.mean(axis=2, keepdims=True)
    row_free = residual - row_means
    width = residual.shape[2]
    read_var = float(row_free.var())
    if not read_var > 0:
        raise SidError(f"ISO {iso:g}: the dark frames have no noise (every pixel at one value): not a sensor's raw "
                       "data, or clipped at black; shoot real dark frames with the lens capped")
    row_sigma = math.sqrt(max(float(row_means.var()) - read_var / width, 0.0))
    rng = np.random.default_rng(0)
    sample = rng.choice(row_free.ravel(), size=min(TUKEY_SAMPLES, row_free.size), replace=False)
    lam = float(stats.ppcc_max(sample, brack=TUKEY_LAMBDA_BRACKET, dist="tukeylambda"))
    (_, _), (scale, _, _) = stats.probplot(sample, sparams=(lam,), dist="tukeylambda")
    means, variances, levels = _photon_transfer(iso, flats, black)
    slope, intercept = np.polyfit(means, variances, 1)
    if not slope > 0:
        raise SidError(f"ISO {iso:g}: the flats' variance does not grow with their level; shoot an evenly lit "
                       "surface at a few clearly different exposures")
    result = IsoCalibration(iso=iso, system_gain=float(slope), read_sigma=float(scale), read_lambda=lam,
                            row_sigma=row_sigma, black_level=[float(b) for b in black], bias_sigma=bias_sigma,
                            dark_frames=len(darks), flat_levels=levels,
                            means=[float(m) for m in means], variances=[float(v) for v in variances],
                            read_intercept=float(intercept))
    return result, shading, sample


def _photon_transfer(iso: float, flats: Sequence[raw.RawFrame], black: np.ndarray) -> tuple:
    """(means, variances, levels): points per colour and exposure level, from differences of flat
    pairs, and the number of levels."""
    levels = _flat_levels(flats)
    pairs = [group for group in levels if len(group) >= 2]
    if len(pairs) < MIN_FLAT_LEVELS:
        raise SidError(f"ISO {iso:g}: {len(pairs)} exposure level(s) with two flat frames; shoot an evenly lit "
                       f"surface at {MIN_FLAT_LEVELS} or more exposure levels, two frames or more at each")
    means, variances = [], []
    for group in pairs:
        for first, second in zip(group[0::2], group[1::2]):
            for (colour, a), (_, b) in zip(_colour_planes(first), _colour_planes(second)):
                means.append(0.5 * (a.mean() + b.mean()) - black[colour])
                variances.append(np.var(a - b) / 2)
    return np.array(means), np.array(variances), len(pairs)


def _flat_levels(flats: Sequence[raw.RawFrame]) -> list[list[raw.RawFrame]]:
    """Flats grouped by exposure level: the exposure time when the files say it, else the mean."""
    if all(f.exposure_time for f in flats):
        groups: dict[float, list] = {}
        for frame in flats:
            groups.setdefault(round(float(frame.exposure_time), 9), []).append(frame)
        return list(groups.values())
    ordered = sorted(flats, key=lambda f: float(f.mosaic.mean()))
    groups_list: list[list] = []
    for frame in ordered:
        level = float(frame.mosaic.mean())
        if groups_list and abs(level / float(groups_list[-1][0].mosaic.mean()) - 1) <= SAME_LEVEL:
            groups_list[-1].append(frame)
        else:
            groups_list.append([frame])
    return groups_list


def _law(gains: Sequence[float], sigmas: Sequence[float]) -> tuple[float, float, float]:
    """(slope, bias, spread) of ``log sigma = slope * log K + bias`` over the calibrated ISOs."""
    x, y = np.log(gains), np.log(np.maximum(sigmas, 1e-6))
    slope, bias = np.polyfit(x, y, 1)
    spread = float(np.std(y - (slope * x + bias))) if len(x) > 2 else 0.0
    return float(slope), float(bias), spread


def calibrate(items: Sequence[str | os.PathLike], *, name: str | None = None, progress: bool = False) -> tuple:
    """Read the frames, sort them into darks and flats per ISO, calibrate every ISO and fit the laws.

    Returns ``(Calibration, {iso: dark-shading map}, {iso: read-noise sample})``.
    """
    paths = find_frames(items)
    names = {}
    for path in paths:
        names.setdefault(tags.camera_name(path), path)
    names.pop(None, None)
    if len(names) > 1:
        (first, a), (second, b) = list(names.items())[:2]
        raise SidError(f"the frames come from different cameras ({a.name}: {first}; {b.name}: {second}); "
                       "calibrate one camera at a time")
    from sid_keras.runtime.progress import tracked

    frames = [raw.read_raw(path) for path in tracked(paths, len(paths), "read frames", "frame", enabled=progress)]
    keys = {_camera_key(f) for f in frames}
    if len(keys) > 1:
        sizes = sorted({f"{k[0][1]}x{k[0][0]}" for k in keys})
        raise SidError(f"the frames come from different cameras or modes ({', '.join(sizes)}; CFA or white level "
                       "differ); calibrate one camera at a time")
    by_iso: dict[float, dict[str, list]] = {}
    for frame in frames:
        share = _signal_share(frame)
        if share > FLAT_MAX_SIGNAL:
            raise SidError(f"{frame.path}: clipped flat ({100 * share:.0f}% of white); shoot it darker, its "
                           "highlights must stay below 85% of white")
        kind = "flat" if share >= FLAT_MIN_SIGNAL else "dark"
        by_iso.setdefault(frame_iso(frame), {"dark": [], "flat": []})[kind].append(frame)
    if len(by_iso) < MIN_ISOS:
        raise SidError(f"frames of {len(by_iso)} ISO; calibrate at least {MIN_ISOS} ISOs (3 or more spanning the "
                       "ones you shoot in the dark) so the noise laws can be fitted")
    results, shadings, samples = [], {}, {}
    for iso in sorted(by_iso):
        if not by_iso[iso]["flat"]:
            raise SidError(f"ISO {iso:g}: no flat frames (or they are too dark: below {100 * FLAT_MIN_SIGNAL:g}% "
                           "of white); shoot an evenly lit surface at a few exposure levels")
        result, shading, sample = calibrate_iso(iso, by_iso[iso]["dark"], by_iso[iso]["flat"])
        results.append(result)
        samples[iso] = sample
        if shading is not None:
            shadings[iso] = shading.astype(np.float32)
    gains = [r.system_gain for r in results]
    k_slope, k_offset = np.polyfit([r.iso for r in results], gains, 1)
    read = _law(gains, [r.read_sigma for r in results])
    row = _law(gains, [max(r.row_sigma, 1e-3) for r in results])
    lambdas = [r.read_lambda for r in results]
    biases = [r.bias_sigma for r in results]
    profile = NoiseProfile(
        name=name or "calibrated camera",
        gain=(min(gains), max(gains)),
        read_lambda=(min(lambdas), max(lambdas)),
        read_slope=(read[0], read[0]), read_bias=(read[1], read[1]), read_spread=read[2],
        row_slope=(row[0], row[0]), row_bias=(row[1], row[1]), row_spread=row[2],
        bias_sigma=(min(biases), max(biases)),
        gain_per_iso=(float(k_slope), float(k_offset)),
    ).check()
    laws = {"k_per_iso": float(k_slope), "k_offset": float(k_offset),
            "read": dict(zip(("slope", "bias", "spread"), read)), "row": dict(zip(("slope", "bias", "spread"), row))}
    return Calibration(profile.name, results, profile, laws), shadings, samples


def profile_toml(calibration: Calibration) -> str:
    """The TOML `sid-keras calibrate` writes: the profile the synthesiser reads, then the evidence."""
    from sid_keras.runtime.io import to_toml

    p = calibration.profile
    profile = {f.name: list(getattr(p, f.name)) if isinstance(getattr(p, f.name), tuple) else getattr(p, f.name)
               for f in dataclasses.fields(p)}
    text = ("# Noise profile written by `sid-keras calibrate`; use it with\n"
            "#   sid-keras synth --noise-profile THIS.toml ...   or   --set data.noise_profile='THIS.toml'\n"
            + to_toml({"profile": profile, "laws": {k: v for k, v in calibration.laws.items()}}))
    for r in calibration.isos:
        text += "[[iso]]\n" + "\n".join(
            f"{key} = {value!r}" if not isinstance(value, list) else f"{key} = [{', '.join(f'{v:.4f}' for v in value)}]"
            for key, value in [("iso", r.iso), ("system_gain", round(r.system_gain, 6)),
                               ("read_sigma", round(r.read_sigma, 4)), ("read_lambda", round(r.read_lambda, 4)),
                               ("row_sigma", round(r.row_sigma, 4)), ("black_level", r.black_level),
                               ("bias_sigma", round(r.bias_sigma, 4)), ("dark_frames", r.dark_frames),
                               ("flat_levels", r.flat_levels)]) + "\n\n"
    return text


def format_table(calibration: Calibration) -> str:
    lines = [f"{'ISO':>7}{'K (DN/e-)':>11}{'read sigma':>12}{'lambda':>8}{'row sigma':>11}{'bias':>7}"
             f"{'black (R G B G)':>30}{'darks':>7}"]
    for r in calibration.isos:
        black = " ".join(f"{b:.1f}" for b in r.black_level)
        lines.append(f"{r.iso:>7g}{r.system_gain:>11.4f}{r.read_sigma:>12.3f}{r.read_lambda:>8.3f}"
                     f"{r.row_sigma:>11.3f}{r.bias_sigma:>7.2f}{black:>30}{r.dark_frames:>7}")
    laws = calibration.laws
    lines.append(f"laws: K = {laws['k_per_iso']:.6g} x ISO + {laws['k_offset']:.4g}; "
                 f"log read = {laws['read']['slope']:.3f} log K + {laws['read']['bias']:.3f}; "
                 f"log row = {laws['row']['slope']:.3f} log K + {laws['row']['bias']:.3f}")
    return "\n".join(lines)


def write_figure(path: pathlib.Path, calibration: Calibration, samples: dict) -> bool:
    """Photon-transfer lines and Tukey-lambda probability plots, one column per ISO; False
    without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from scipy import stats

    from sid_keras.runtime.io import atomic_path

    count = len(calibration.isos)
    fig, axes = plt.subplots(2, count, figsize=(4 * count, 7), squeeze=False)
    for column, r in enumerate(calibration.isos):
        top, bottom = axes[0, column], axes[1, column]
        means = np.array(r.means)
        top.plot(means, r.variances, "o", ms=3)
        top.plot(means, r.system_gain * means + r.read_intercept, "-")
        top.set(title=f"ISO {r.iso:g}: K = {r.system_gain:.3g} DN/e-", xlabel="mean (DN)", ylabel="variance (DN²)")
        sample = samples[r.iso][:20000]
        (theory, ordered), (slope, intercept, corr) = stats.probplot(sample, sparams=(r.read_lambda,),
                                                                      dist="tukeylambda")
        bottom.plot(theory, ordered, ".", ms=1)
        bottom.plot(theory, slope * theory + intercept, "-")
        bottom.set(title=f"read noise: lambda {r.read_lambda:.3f}, r = {corr:.4f}", xlabel="Tukey-lambda quantile",
                   ylabel="dark residual (DN)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return True
