"""Training losses: L1, taken where errors are seen.

A ``linear`` model predicts linear camera RGB, where an L1 error in the shadows weighs a
hundredth of the same error in the highlights, although the delivered image shows it as clearly.
So its loss is L1 after LibRaw's own output curve (:func:`display_curve`, the BT.709 form the
render applies): errors weigh as they will in the sRGB image, and the curve's linear toe (slope
4.5) keeps the gradient finite at black, where a pure power law (or a log) would explode. An
``srgb`` model is trained with plain L1, as SID did.
"""

from __future__ import annotations

import keras
from keras import ops

from sid_keras.runtime import render


def display_curve(x):
    """LibRaw's default output curve (:func:`sid_keras.runtime.render.tone_curve`) on tensors.

    Not clipped at 1, so over-bright predictions still get a gradient; the power branch sees
    values at or above the breakpoint only, so negative predictions stay finite.
    """
    x = ops.cast(x, "float32")
    # x ** p as exp(p * log x): equal within a float's last bit, and four times faster on
    # a CPU than the Pow kernel (which the loss and both metrics run on every training step).
    powered = ops.exp(render.LIBRAW_POWER * ops.log(ops.maximum(x, render.CURVE_BREAK)))
    curved = powered * (1 + render.CURVE_OFFSET) - render.CURVE_OFFSET
    return ops.where(x < render.CURVE_BREAK, x * render.LIBRAW_TOE_SLOPE, curved)


@keras.saving.register_keras_serializable(package="sid_keras")
class DisplayL1(keras.losses.Loss):
    """Mean absolute error after :func:`display_curve`: the loss of ``linear`` models."""

    def __init__(self, name="display_l1", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return ops.mean(ops.abs(display_curve(y_pred) - display_curve(y_true)), axis=(1, 2, 3))


def loss_for(convention):
    """The reconstruction loss of a model of this :class:`sid_keras.runtime.convention.Convention`: linear
    camera RGB is compared as it will be seen, sRGB as it is."""
    return DisplayL1() if convention.white_balanced else keras.losses.MeanAbsoluteError()
