"""PSNR and SSIM as Keras metrics (float images clipped to [0, 1]); SSIM on validation only.

The published SID protocol (8-bit quantisation, data range 255) lives in
:mod:`sid_keras.apps.evaluation`; these are the in-graph versions `fit` reports. For ``linear``
models (``display=True``) both images go through LibRaw's output curve first, so the numbers
describe the image a user sees, as for ``srgb`` models.
"""

from __future__ import annotations

import contextlib
import threading

import keras
from keras import ops

from sid_keras.models.losses import display_curve

# SSIM as Wang et al. 2004 and SID's evaluation: Gaussian window 11x11, sigma 1.5.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
# Metrics computed on validation only: SSIM of every training batch cost a sixth of a training
# step (benchmarks/train_speed.py) and nothing reads it; the loss and PSNR track training.
VALIDATION_ONLY = ("ssim",)
_step = threading.local()


@contextlib.contextmanager
def training_step():
    """Inside (a model's ``train_step``, as it is traced), validation-only metrics are skipped."""
    _step.training = True
    try:
        yield
    finally:
        _step.training = False


def in_training_step() -> bool:
    return getattr(_step, "training", False)


def step_results(results: dict) -> dict:
    """A model's ``compute_metrics`` results without the validation-only ones inside a training
    step (they were not updated there, and would be logged as 0)."""
    if in_training_step():
        return {k: v for k, v in results.items() if k not in VALIDATION_ONLY}
    return results


def _prepare(y_true, y_pred, display: bool):
    y_true, y_pred = ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")  # mixed precision
    if display:
        y_true, y_pred = display_curve(y_true), display_curve(y_pred)
    return ops.clip(y_true, 0.0, 1.0), ops.clip(y_pred, 0.0, 1.0)


def psnr(y_true, y_pred, display: bool = False):
    """Per-image PSNR in dB for images in [0, 1]."""
    y_true, y_pred = _prepare(y_true, y_pred, display)
    mse = ops.mean(ops.square(y_true - y_pred), axis=(1, 2, 3))
    return 10.0 * ops.log10(1.0 / ops.maximum(mse, 1e-10))


def ssim(y_true, y_pred, display: bool = False):
    """Per-image SSIM (Gaussian 11x11, sigma 1.5) for images in [0, 1].

    ``tf.image.ssim``'s definition (valid windows, K1 = 0.01, K2 = 0.03, mean over positions and
    channels), with the Gaussian window applied as two 1-D passes to the four local statistics at
    once: 22 instead of 121 multiply-adds a pixel, which made SSIM a fifth of a training step.
    """
    import tensorflow as tf

    y_true, y_pred = _prepare(y_true, y_pred, display)
    channels = y_true.shape[-1]
    coords = tf.range(SSIM_WINDOW, dtype=tf.float32) - (SSIM_WINDOW - 1) / 2
    gauss = tf.nn.softmax(-0.5 * tf.square(coords) / SSIM_SIGMA**2)
    columns = tf.tile(tf.reshape(gauss, [SSIM_WINDOW, 1, 1, 1]), [1, 1, 4 * channels, 1])
    rows = tf.reshape(columns, [1, SSIM_WINDOW, 4 * channels, 1])
    stats = tf.concat([y_true, y_pred, y_true * y_pred, tf.square(y_true) + tf.square(y_pred)], axis=-1)
    local = tf.nn.depthwise_conv2d(tf.nn.depthwise_conv2d(stats, columns, [1, 1, 1, 1], "VALID"), rows,
                                   [1, 1, 1, 1], "VALID")
    mean_true, mean_pred, cross, squares = tf.split(local, 4, axis=-1)
    c1, c2 = 0.01**2, 0.03**2
    num0 = 2.0 * mean_true * mean_pred
    den0 = tf.square(mean_true) + tf.square(mean_pred)
    luminance = (num0 + c1) / (den0 + c1)
    structure = (2.0 * cross - num0 + c2) / (squares - den0 + c2)
    return tf.reduce_mean(luminance * structure, axis=[-3, -2, -1])


@keras.saving.register_keras_serializable(package="sid_keras")
class PSNR(keras.metrics.MeanMetricWrapper):
    """Mean PSNR (dB) over images; logged as ``psnr`` / ``val_psnr``."""

    def __init__(self, name="psnr", dtype=None, display: bool = False):
        super().__init__(psnr, name=name, dtype=dtype, display=display)
        self.display = display

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "display": self.display}


@keras.saving.register_keras_serializable(package="sid_keras")
class SSIM(keras.metrics.MeanMetricWrapper):
    """Mean SSIM over images; logged as ``ssim`` / ``val_ssim``."""

    def __init__(self, name="ssim", dtype=None, display: bool = False):
        super().__init__(ssim, name=name, dtype=dtype, display=display)
        self.display = display

    def update_state(self, y_true, y_pred, sample_weight=None):
        if not in_training_step():  # validation only (VALIDATION_ONLY)
            super().update_state(y_true, y_pred, sample_weight=sample_weight)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "display": self.display}
