"""The double U-Net ("U-UNet"): a second U-Net refines the first one's output.

The first U-Net maps the packed raw to sRGB as SID does. The second sees that sRGB output
(rearranged back to the packed resolution) with the packed input, and each level of its encoder
also receives the first network's decoder features at the same resolution: the skip connections
between the two networks. The first network can start from a trained ``unet`` and be frozen.
"""

from __future__ import annotations

import keras
from keras import layers

from sid_keras.models.layers import SpaceToDepth
from sid_keras.models.unet import (
    SidModel,
    _wrap,
    check_model_kwargs,
    packed_input,
    rgb_head,
    unet_body,
)
from sid_keras.runtime.render import LINEAR

FIRST_PREFIX = "first_"
SECOND_PREFIX = "second_"


@keras.saving.register_keras_serializable(package="sid_keras")
class DoubleUNet(SidModel):
    """Two SID U-Nets in series with cross-network skips.

    Args:
        in_channels, scale, width, depth: as :class:`~sid_keras.models.unet.UNet`, for both nets.
        freeze_first: keep the first network's weights fixed (train only the second).
        residual_output: the second network predicts a correction added to the first's output.
        output, noise_input: as :class:`~sid_keras.models.unet.UNet` (the second network sees the
            input, its noise level included, beside the first's output).

    Example:
        >>> first = UNet(width=8, depth=3)  # ...trained...
        >>> model = DoubleUNet(width=8, depth=3, freeze_first=True)
        >>> model.load_first(first)

    Reference:
        Jha et al. "DoubleU-Net: A Deep Convolutional Neural Network for Medical Image
        Segmentation", 2020; applied to SID by this project's founding paper.
    """

    def __init__(self, in_channels: int = 4, scale: int = 2, width: int = 32, depth: int = 5,
                 freeze_first: bool = False, residual_output: bool = True, output: str = LINEAR,
                 noise_input: bool = False, **kwargs):
        check_model_kwargs(type(self), kwargs, output)
        inputs = packed_input(in_channels, noise_input)

        def body(x):
            features, decoder, _ = unet_body(x, width=width, depth=depth, prefix=FIRST_PREFIX)
            first_rgb = rgb_head(features, scale, f"{FIRST_PREFIX}head")
            repacked = SpaceToDepth(scale, name=f"{SECOND_PREFIX}repack")(first_rgb)
            second_in = layers.Concatenate(name=f"{SECOND_PREFIX}input")([x, repacked])
            features2, _, _ = unet_body(second_in, width=width, depth=depth, prefix=SECOND_PREFIX,
                                     encoder_extras=decoder)
            second_rgb = rgb_head(features2, scale, f"{SECOND_PREFIX}head")
            if residual_output:
                return layers.Add(name="refined")([first_rgb, second_rgb])
            return second_rgb

        outputs = _wrap(inputs, body, scale, 2 ** (depth - 1))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.stride = 2 ** (depth - 1)
        self._finish(dict(in_channels=in_channels, scale=scale, width=width, depth=depth,
                          freeze_first=freeze_first, residual_output=residual_output, output=output,
                          noise_input=noise_input))
        if freeze_first:
            self.set_first_trainable(False)

    def first_layers(self):
        return [layer for layer in self.layers if layer.name.startswith(FIRST_PREFIX)]

    def set_first_trainable(self, trainable: bool) -> None:
        for layer in self.first_layers():
            layer.trainable = trainable

    def load_first(self, unet: keras.Model) -> None:
        """Copy a trained :class:`UNet`'s weights (same width and depth) into the first network."""
        from sid_keras.errors import SidError

        source = {layer.name: layer for layer in unet.layers if layer.weights}
        for layer in self.first_layers():
            if not layer.weights:
                continue
            name = layer.name[len(FIRST_PREFIX):]
            if name not in source:
                raise SidError(f"the U-Net to load has no layer {name!r}: build it with the same "
                               "width and depth as the double U-Net")
            layer.set_weights(source[name].get_weights())
