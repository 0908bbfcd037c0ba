"""Synthetic bursts: several dark raw frames of one scene, shaken by a hand and crossed by a
moving object, with the truth of the reference frame, for benchmarks/burst.py and the tests.

Each frame sees the clean scene through its own small rigid motion (a translation of a few
pixels and a rotation of a fraction of a degree about the centre, as hand shake gives over a
burst), then a coloured disc that moves along a line from frame to frame, then the sensor: the
colour filter (Sony layout), the white-balance gains and the noise of a short exposure at the
given ratio. The reference (frame 0) has no motion: its clean render is the truth.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from sid_keras.runtime.cfa import BAYER, REFERENCE_BAYER
from sid_keras.runtime.raw import RawFrame

BLACK, WHITE = 512, 16383  # the Sony A7S II's levels, as `sid-keras synth` writes them
OBJECT_COLOUR = (0.55, 0.08, 0.04)  # a saturated red disc, linear white-balanced camera RGB


@dataclasses.dataclass
class SyntheticBurst:
    """Frames (reference first), the reference's clean scene (white-balanced linear camera RGB),
    each frame's true motion and the moving object's disc in the reference and over the burst."""

    frames: list[RawFrame]
    truth: np.ndarray
    shifts: list[tuple[float, float]]  # (dy, dx) of each frame's centre, sensor pixels
    rotations: list[float]  # radians
    object_masks: list[np.ndarray]  # where the object is in each frame (H, W)

    @property
    def object_mask(self) -> np.ndarray:
        """Where the object is in the reference."""
        return self.object_masks[0]

    @property
    def trail_mask(self) -> np.ndarray:
        """Where it is in another frame but not in the reference: where a plain average ghosts."""
        return np.any(self.object_masks[1:], axis=0) & ~self.object_masks[0]

    @property
    def only_reference_mask(self) -> np.ndarray:
        """Where it is in the reference alone: what no other frame can add to."""
        return self.object_masks[0] & ~np.any(self.object_masks[1:], axis=0)


def render(scene: np.ndarray, size: tuple[int, int], shift: tuple[float, float], rotation: float) -> np.ndarray:
    """``scene`` (larger than ``size`` by a margin on every side) seen through a rigid motion,
    sampled at ``size`` about its centre (cubic interpolation)."""
    from scipy.ndimage import map_coordinates

    h, w = size
    margin_y, margin_x = (scene.shape[0] - h) / 2, (scene.shape[1] - w) / 2
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    cos, sin = np.cos(rotation), np.sin(rotation)
    sy = cy + (y - cy) * cos - (x - cx) * sin + shift[0] + margin_y
    sx = cx + (y - cy) * sin + (x - cx) * cos + shift[1] + margin_x
    return np.stack([map_coordinates(scene[..., c], [sy, sx], order=3, mode="reflect") for c in range(3)], axis=-1)


def make_burst(scene: np.ndarray, size: tuple[int, int], frames: int, *, ratio: float,
               noise: Callable[[np.ndarray, float, int], np.ndarray], seed: int = 0, shake: float = 4.0,
               rotation: float = 0.003, object_radius: float = 0.08, object_travel: float = 0.05,
               gains: tuple[float, float, float] = (2.0, 1.0, 1.6), iso: float = 3200.0,
               color_matrix: np.ndarray | None = None) -> SyntheticBurst:
    """A burst of ``frames`` frames of ``size`` (even sides) from a clean ``scene`` (white-balanced
    linear camera RGB, larger than ``size`` by at least ``shake`` + 2 pixels a side).

    ``noise(normalised_mosaic, ratio, seed)`` turns a clean long-exposure mosaic (units of white
    minus black) into a short exposure's noisy one at ``ratio`` (same units, below-black values
    allowed). ``shake``: the largest translation (sensor pixels); ``rotation``: the largest turn
    (radians); the object's radius and its travel per frame are fractions of the smaller side.
    ``color_matrix``: the frames' camera -> sRGB matrix (rawpy's 3x4 form; none: camera RGB shown as is).
    """
    rng = np.random.default_rng(seed)
    h, w = size
    radius, travel = object_radius * min(h, w), object_travel * min(h, w)
    start = np.array([h * 0.5, w * 0.3])
    y, x = np.mgrid[0:h, 0:w]
    gains = np.asarray(gains, np.float64)
    made, shifts, rotations, masks = [], [], [], []
    truth = None
    for i in range(frames):
        shift = (0.0, 0.0) if i == 0 else tuple(rng.uniform(-shake, shake, 2))
        turn = 0.0 if i == 0 else float(rng.uniform(-rotation, rotation))
        rgb = render(scene, size, shift, turn)
        centre = start + [0.0, travel * i]
        disc = (y - centre[0]) ** 2 + (x - centre[1]) ** 2 < radius**2
        rgb[disc] = OBJECT_COLOUR
        rgb = np.clip(rgb, 0, 1)
        if i == 0:
            truth = rgb.copy()
        clean = BAYER.mosaic_of(rgb / gains)  # camera RGB before white balance
        values = noise(clean, ratio, seed * 1000 + i)
        mosaic = np.clip(np.rint(values * (WHITE - BLACK) + BLACK), 0, WHITE).astype(np.uint16)
        matrix = {} if color_matrix is None else {"color_matrix": np.asarray(color_matrix, np.float32)}
        made.append(RawFrame(mosaic=mosaic, cfa_pattern=REFERENCE_BAYER, black_level=np.full(4, BLACK, np.float32),
                             white_level=float(WHITE), white_balance=np.array([*gains, gains[1]], np.float32),
                             exposure_time=0.1 / ratio, iso=iso, path=f"<burst frame {i}>", **matrix))
        shifts.append(shift)
        rotations.append(turn)
        masks.append(disc)
    return SyntheticBurst(made, truth, shifts, rotations, masks)


def poisson_gaussian(gain: float = 4.0, read: float = 3.0, seed_offset: int = 0):
    """A simple sensor noise for tests (no TensorFlow): photon noise of ``gain`` DN per electron
    and Gaussian read noise of ``read`` DN, in units of white minus black."""
    scale = WHITE - BLACK

    def noise(clean: np.ndarray, ratio: float, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed + seed_offset)
        electrons = np.maximum(clean, 0) * scale / ratio / gain
        return (rng.poisson(electrons) * gain + rng.normal(0, read, clean.shape)) / scale

    return noise


def camera_noise(profile_name: str, iso: float, seed: int = 0):
    """The package's calibrated noise (:func:`sid_keras.runtime.noise.numpy_noisy_short_exposure`:
    shot, Tukey-lambda read, row, bias and quantisation noise) of a camera at an ISO; TensorFlow."""
    from sid_keras.runtime import noise as noise_model
    from sid_keras.synth.synthetic import _sample_camera

    profile = noise_model.load_profile(profile_name)
    camera = {k: float(v) for k, v in _sample_camera(profile, noise_model.iso_to_gain(iso, profile), seed).items()}

    def noise(clean: np.ndarray, ratio: float, frame_seed: int) -> np.ndarray:
        from sid_keras.runtime.cfa import pack_mosaic, unpack_mosaic

        packed = pack_mosaic(clean.astype(np.float32), BAYER)
        short = noise_model.numpy_noisy_short_exposure(packed, ratio, camera, (seed, frame_seed))
        return unpack_mosaic(short, BAYER)

    return noise
