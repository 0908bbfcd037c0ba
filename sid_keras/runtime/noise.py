"""Sensor noise: calibrated profiles, virtual cameras, and the synthesis of a dark raw frame.

The physics-based model of ELD (Wei et al., "A Physics-based Noise Formation Model for Extreme
Low-light Raw Denoising", CVPR 2020), with the colour bias and the virtual cameras of LED (Jin et
al., "Lighting Every Darkness in Two Pairs", ICCV 2023). A raw value, in DN above black, is::

    D = K * Poisson(S / K) + sigma_read * TukeyLambda(lambda) + N(0, sigma_row) per row
        + bias per CFA channel, rounded to the ADC step, clipped to [0, white]

with ``K`` the system gain (DN per electron: ISO), and the read and row noise scales on
log-linear laws in K, ``log sigma = slope * log K + bias + N(0, spread)``. A
:class:`NoiseProfile` holds one camera's laws (a calibration) or ranges of them (a family of
virtual cameras); every training sample draws its own camera, gain and noise, so the network
sees a new noise realisation at every step.

All values are in DN of a 14-bit sensor (:data:`FULL_SCALE_DN` between black and white), the
scale the published calibrations use. Only numpy is imported here; the synthesis functions
import TensorFlow when called.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from typing import Sequence

import numpy as np

from sid_keras.errors import SidError

# White minus black of the calibrated 14-bit sensors (Sony A7S II: 16383 - 512).
FULL_SCALE_DN = 15871.0
# How far below black a synthesised file's values reach, in units of white minus black: its whole
# black pedestal (the Sony A7S II's 512 DN), so the files keep the dark noise's negative half as
# Sony, Canon and most raw files do, instead of the network input's clip at black.
FILE_FLOOR = -512.0 / FULL_SCALE_DN
# ADC steps in 14-bit DN: a 14-bit converter, and a 12-bit one (4 DN of a 14-bit scale).
ADC_STEPS = (1.0, 4.0)
# System gain of the Sony A7S II per ISO (ELD's fit K = 0.0009546 * ISO - 0.00193): the scale on
# which this package states ISO bands, whatever the camera.
SONY_K_PER_ISO = 0.0009546
SONY_K_OFFSET = -0.00193

Range = tuple[float, float]


def iso_to_gain(iso: float, profile: "NoiseProfile | None" = None) -> float:
    """System gain (DN/e-) at ``iso``: the profile's own law, else the Sony A7S II's (the
    reference scale of ISO bands)."""
    slope, offset = profile.gain_per_iso if profile is not None else (SONY_K_PER_ISO, SONY_K_OFFSET)
    return max(slope * float(iso) + offset, 1e-6)


@dataclasses.dataclass(frozen=True)
class NoiseProfile:
    """One camera's noise (zero-width ranges) or a family of virtual cameras (ranges).

    Each ``(low, high)`` range is drawn uniformly per sample (the gain log-uniformly).

    Attributes:
        gain: system gain K in DN per electron over the usable ISO range.
        read_lambda: Tukey-lambda shape of the read noise (0.14 is close to Gaussian; < 0 has
            heavier tails).
        read_slope, read_bias, read_spread: log-linear law of the read-noise scale in K.
        row_slope, row_bias, row_spread: the same for the per-row offset.
        bias_sigma: spread (DN) of the black-level error of a frame (colour bias).
        gain_per_iso: (slope, offset) of the camera's ``K = slope * ISO + offset``; the Sony
            A7S II's by default, the scale on which ISO bands are stated.
    """

    name: str
    gain: Range
    read_lambda: Range
    read_slope: Range
    read_bias: Range
    read_spread: float
    row_slope: Range
    row_bias: Range
    row_spread: float
    bias_sigma: Range = (0.0, 0.0)
    gain_per_iso: tuple[float, float] = (SONY_K_PER_ISO, SONY_K_OFFSET)

    def law(self, kind: str, gain: float) -> float:
        """Median noise scale (DN) of ``kind`` ('read' or 'row') at ``gain``, mid-range laws."""
        slope = np.mean(getattr(self, f"{kind}_slope"))
        bias = np.mean(getattr(self, f"{kind}_bias"))
        return float(np.exp(slope * math.log(gain) + bias))

    def check(self) -> "NoiseProfile":
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name != "gain_per_iso" and isinstance(value, tuple) and (len(value) != 2 or value[0] > value[1]):
                raise SidError(f"noise profile {self.name!r}: {field.name} = {value} is not a (low, high) range")
        if self.gain[0] <= 0:
            raise SidError(f"noise profile {self.name!r}: gain must be > 0 DN per electron")
        return self


def _fixed(value: float) -> Range:
    return (float(value), float(value))


# Calibrations of real cameras, as published with LED (Jin et al. 2023, options/base/noise_g):
# Tukey-lambda law, row law, and the spread of their colour-bias tables.
SONY_A7S2 = NoiseProfile("SonyA7S2", (0.0939, 6.0106), (-0.143, 0.129), _fixed(0.4621), _fixed(0.5657),
                         0.2634, _fixed(0.5275), _fixed(-0.5917), 0.2943, (0.5, 2.0))
NIKON_D850 = NoiseProfile("NikonD850", (0.4150, 26.5625), (-0.243, -0.100), _fixed(0.4774), _fixed(-0.0904),
                          0.2392, _fixed(0.4483), _fixed(-1.7977), 0.2322, (0.2, 1.5))
SONY_A7M4 = NoiseProfile("SonyA7M4", (0.5177, 37.4834), (-0.282, -0.097), _fixed(0.8741), _fixed(-0.7834),
                         0.2436, _fixed(0.8499), _fixed(-2.5081), 0.2540, (0.1, 0.8))
CALIBRATED = {p.name: p for p in (SONY_A7S2, NIKON_D850, SONY_A7M4)}

# Virtual cameras for training: LED's ranges (the hull of its calibrated cameras), with the gain
# extended past them on both sides (ISO ~50 to ~60000 on the Sony scale) and heavier and
# lighter read-noise tails, so real cameras fall inside the training distribution.
VIRTUAL = NoiseProfile(
    "virtual",
    gain=(0.05, 60.0),
    read_lambda=(-0.3, 0.2),
    read_slope=(0.45, 0.90),
    read_bias=(-0.9, 0.9),
    read_spread=0.3,
    row_slope=(0.44, 0.86),
    row_bias=(-2.6, -0.5),
    row_spread=0.3,
    bias_sigma=(0.0, 3.0),
).check()


def tukey_variance(lam, xp=np):
    """Variance of the standard Tukey-lambda distribution (the read-noise shape): pi^2/3 at 0
    (logistic), ``2/l^2 (1/(1+2l) - G(l+1)^2 / G(2l+2))`` else (l > -1/2). ``xp``: numpy or
    ``tensorflow.math``."""
    lgamma = getattr(xp, "lgamma", None) or _lgamma
    safe = xp.where(abs(lam) < 1e-3, 1e-3, lam)
    general = 2.0 / safe**2 * (1.0 / (1.0 + 2.0 * safe) - xp.exp(2.0 * lgamma(safe + 1.0) - lgamma(2.0 * safe + 2.0)))
    return xp.where(abs(lam) < 1e-3, math.pi**2 / 3.0, general)


def _lgamma(x):
    return np.vectorize(math.lgamma, otypes=[np.float64])(x)


def variance_law(gain, read_sigma, read_lambda, row_sigma, adc_step=1.0, xp=np):
    """``(S, O)`` of the variance ``S * y + O`` of a raw signal ``y`` in units of white minus
    black (the DNG NoiseProfile's units), for a camera of this noise model: shot noise (S), read
    noise with its Tukey shape, row noise and quantisation (O)."""
    s = gain / FULL_SCALE_DN
    o = (read_sigma**2 * tukey_variance(read_lambda, xp) + row_sigma**2 + adc_step**2 / 12.0) / FULL_SCALE_DN**2
    return s, o


def camera_variance(camera: dict):
    """:func:`variance_law` of a :func:`sample_camera` camera (TensorFlow)."""
    import tensorflow as tf

    return variance_law(camera["gain"], camera["read_sigma"], camera["read_lambda"], camera["row_sigma"],
                        camera["adc_step"], xp=_TfMath(tf))


def iso_variance(iso: float, profile: NoiseProfile) -> tuple[float, float]:
    """:func:`variance_law` of ``profile``'s median camera at ``iso`` (on its own ISO scale)."""
    gain = iso_to_gain(iso, profile)
    return tuple(float(v) for v in variance_law(gain, profile.law("read", gain), float(np.mean(profile.read_lambda)),
                                                profile.law("row", gain)))


class _TfMath:
    """The few numpy functions :func:`tukey_variance` uses, from TensorFlow."""

    def __init__(self, tf):
        self.where, self.exp, self.lgamma = tf.where, tf.exp, tf.math.lgamma


def dark_shading_file(profile_path: str | os.PathLike) -> pathlib.Path:
    """Where `sid-keras calibrate -o mycamera.toml` writes the camera's dark shading."""
    path = pathlib.Path(profile_path)
    return path.with_name(f"{path.stem}.dark_shading.npz")


def load_dark_shading(profile_path: str | os.PathLike | None) -> dict[float, np.ndarray]:
    """The calibrated dark-shading maps (mean dark frame minus black, DN) by ISO, beside a
    profile TOML; empty when there are none (a built-in profile, too few dark frames)."""
    if not profile_path:
        return {}
    path = dark_shading_file(profile_path)
    if not path.is_file():
        return {}
    try:
        with np.load(path) as maps:
            return {float(key[3:]): maps[key].astype(np.float32) for key in maps.files if key.startswith("iso")}
    except (OSError, ValueError) as err:
        raise SidError(f"{path}: not a readable dark-shading file ({err}); calibrate again") from None


def load_profile(spec: str | None) -> NoiseProfile:
    """``"virtual"`` (default), a calibrated camera's name, or a TOML file from `sid-keras calibrate`."""
    if not spec or spec == VIRTUAL.name:
        return VIRTUAL
    if spec in CALIBRATED:
        return CALIBRATED[spec]
    path = pathlib.Path(spec)
    if not path.is_file():
        names = ", ".join([VIRTUAL.name, *CALIBRATED])
        raise SidError(f"noise profile {spec!r}: no such file or built-in profile ({names})")
    from sid_keras.runtime.io import read_toml

    raw = read_toml(path).get("profile")
    if not isinstance(raw, dict):
        raise SidError(f"{path}: no [profile] table (write one with `sid-keras calibrate`)")
    fields = {f.name for f in dataclasses.fields(NoiseProfile)}
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise SidError(f"{path}: unknown keys in [profile]: {', '.join(unknown)}")
    try:
        values = {k: tuple(float(x) for x in v) if isinstance(v, list) else v for k, v in raw.items()}
        return NoiseProfile(**values).check()
    except TypeError as err:
        raise SidError(f"{path}: incomplete [profile] ({err})") from None


# ---------------------------------------------------------------------------------------------
# Synthesis (TensorFlow, stateless: the same seed gives the same noise)
# ---------------------------------------------------------------------------------------------

def _uniform(seed, bounds: Range, log: bool = False):
    import tensorflow as tf

    low, high = (math.log(bounds[0]), math.log(bounds[1])) if log else bounds
    value = tf.random.stateless_uniform([], seed, low, high) if high > low else tf.constant(low, tf.float32)
    return tf.exp(value) if log else value


def sample_camera(profile: NoiseProfile, seed, gain: Range | None = None) -> dict:
    """One virtual camera and exposure: gain, Tukey shape, read/row scales, bias and ADC step.

    ``gain`` narrows the gain range (an ISO band of the stress validation).
    """
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(seed, 10)
    k = _uniform(seeds[0], gain or profile.gain, log=True)
    log_k = tf.math.log(k)

    def scale(kind: str, i: int):
        slope = _uniform(seeds[i], getattr(profile, f"{kind}_slope"))
        bias = _uniform(seeds[i + 1], getattr(profile, f"{kind}_bias"))
        spread = getattr(profile, f"{kind}_spread")
        return tf.exp(slope * log_k + bias + spread * tf.random.stateless_normal([], seeds[i + 2]))

    step_index = tf.random.stateless_uniform([], seeds[8], 0, len(ADC_STEPS), dtype=tf.int32)
    return {
        "gain": k,
        "read_lambda": _uniform(seeds[1], profile.read_lambda),
        "read_sigma": scale("read", 2),
        "row_sigma": scale("row", 5),
        "bias_sigma": _uniform(seeds[9], profile.bias_sigma),
        "adc_step": tf.gather(tf.constant(ADC_STEPS, tf.float32), step_index),
    }


def tukey_lambda(seed, shape, lam):
    """Tukey-lambda samples by the quantile function ``(u^l - (1-u)^l) / l`` (logistic at 0)."""
    import tensorflow as tf

    u = tf.random.stateless_uniform(shape, seed, 1e-6, 1 - 1e-6)
    log_u, log_v = tf.math.log(u), tf.math.log(1 - u)
    safe = tf.where(tf.abs(lam) < 1e-4, 1e-4, lam)
    # u ** l as exp(l * log u): equal within a float's last bit, four times faster than Pow.
    quantile = (tf.exp(safe * log_u) - tf.exp(safe * log_v)) / safe
    return tf.where(tf.abs(lam) < 1e-4, log_u - log_v, quantile)


def add_noise(clean, camera: dict, seed, floor: float = 0.0):
    """A noisy packed Bayer frame from a clean one (h, w, 4), both normalised to [0, 1].

    ``clean`` is the signal the sensor integrates (before white balance); the result is what
    :func:`sid_keras.runtime.model_input.pack` gives for a real file: black-subtracted, clipped to [0, 1]
    (to ``[floor, 1]``: a file keeps the values below its black level, :data:`FILE_FLOOR`).
    Packed channels are SID's R, G (red row), B, G (blue row): rows of channels 0-1 and 2-3 are
    different sensor rows, so each gets its own row offset.
    """
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(seed, 5)
    shape = tf.shape(clean)
    k = camera["gain"]
    electrons = tf.maximum(clean, 0.0) * (FULL_SCALE_DN / k)
    shot = tf.random.stateless_poisson(shape, seeds[0], electrons, dtype=tf.float32) * k
    read = tukey_lambda(seeds[1], shape, camera["read_lambda"]) * camera["read_sigma"]
    rows = tf.random.stateless_normal([shape[0], 2], seeds[2]) * camera["row_sigma"]
    row = tf.gather(rows, [0, 0, 1, 1], axis=1)[:, None, :]
    bias = (tf.random.stateless_normal([], seeds[3]) + 0.25 * tf.random.stateless_normal([4], seeds[4])) \
        * camera["bias_sigma"]
    step = camera["adc_step"]
    dn = tf.round((shot + read + row + bias) / step) * step
    return tf.clip_by_value(dn / FULL_SCALE_DN, floor, 1.0)


def noisy_short_exposure(clean_long, ratio, camera: dict, seed, floor: float = 0.0):
    """The short exposure of a scene ``ratio`` times darker than ``clean_long`` (packed, [0, 1]).

    The sensor clips the short exposure at white, as it would a bright highlight at ratio 1.
    """
    import tensorflow as tf

    return add_noise(tf.minimum(clean_long / ratio, 1.0), camera, seed, floor)


def numpy_noisy_short_exposure(clean_long: np.ndarray, ratio: float, camera: dict, seed: Sequence[int]) -> np.ndarray:
    """:func:`noisy_short_exposure` on numpy arrays, for writing files (eager TensorFlow): the values
    below black are kept down to :data:`FILE_FLOOR`, as a camera writes them."""
    import tensorflow as tf

    seed = tf.constant(seed, tf.int64)
    out = noisy_short_exposure(tf.constant(clean_long, tf.float32), tf.constant(ratio, tf.float32), camera, seed,
                               FILE_FLOOR)
    return out.numpy()
