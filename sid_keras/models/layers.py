"""Building blocks shared by every architecture (one place for each idea)."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

# SID's activation: LeakyReLU with slope 0.2 (Chen et al. 2018, `lrelu`).
LEAKY_SLOPE = 0.2


@keras.saving.register_keras_serializable(package="sid_keras")
class PadToMultiple(layers.Layer):
    """Symmetric-pad height and width at the bottom/right up to a multiple of ``multiple``.

    Lets a U-Net with ``n`` poolings take any input size; :class:`CropLike` cuts the output
    back. With a static input size (TFLite export) the padding folds to constants.
    """

    def __init__(self, multiple: int, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, x):
        static = [x.shape[1], x.shape[2]]
        if self.multiple == 1 or all(d is not None and d % self.multiple == 0 for d in static):
            return x  # nothing to pad: keep the exported graph free of a no-op pad
        import tensorflow as tf

        shape = ops.shape(x)
        pad_h = (-shape[1]) % self.multiple
        pad_w = (-shape[2]) % self.multiple
        padded = tf.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="SYMMETRIC")
        # Dynamic paddings lose the static channel count, which TFLite's CONV_2D needs: a
        # reshape to a shape whose channel entry is a constant gives it back to the converter.
        return tf.reshape(padded, tf.stack([-1, shape[1] + pad_h, shape[2] + pad_w, x.shape[-1]]))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None, None, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package="sid_keras")
class CropLike(layers.Layer):
    """Crop ``x`` to ``scale`` times the height and width of ``reference`` (undoes padding)."""

    def __init__(self, scale: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.scale = int(scale)

    def call(self, inputs):
        x, reference = inputs
        if None not in (x.shape[1], reference.shape[1], x.shape[2], reference.shape[2]) and (
            x.shape[1] == reference.shape[1] * self.scale and x.shape[2] == reference.shape[2] * self.scale
        ):
            return x  # static shapes that already match: no slice in the exported graph
        shape = ops.shape(reference)
        return x[:, : shape[1] * self.scale, : shape[2] * self.scale, :]

    def compute_output_shape(self, input_shapes):
        x, ref = input_shapes
        dims = [None if d is None else d * self.scale for d in ref[1:3]]
        return (x[0], *dims, x[3])

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="sid_keras")
class DepthToSpace(layers.Layer):
    """Sub-pixel rearrangement (``tf.nn.depth_to_space``): a builtin TFLite op, GPU friendly."""

    def __init__(self, block_size: int, **kwargs):
        super().__init__(**kwargs)
        self.block_size = int(block_size)

    def call(self, x):
        import tensorflow as tf

        return tf.nn.depth_to_space(x, self.block_size)

    def compute_output_shape(self, s):
        b = self.block_size
        return (s[0], None if s[1] is None else s[1] * b, None if s[2] is None else s[2] * b, s[3] // (b * b))

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}


@keras.saving.register_keras_serializable(package="sid_keras")
class SpaceToDepth(layers.Layer):
    """Inverse of :class:`DepthToSpace` (``tf.nn.space_to_depth``)."""

    def __init__(self, block_size: int, **kwargs):
        super().__init__(**kwargs)
        self.block_size = int(block_size)

    def call(self, x):
        import tensorflow as tf

        return tf.nn.space_to_depth(x, self.block_size)

    def compute_output_shape(self, s):
        b = self.block_size
        return (s[0], None if s[1] is None else s[1] // b, None if s[2] is None else s[2] // b, s[3] * b * b)

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}


@keras.saving.register_keras_serializable(package="sid_keras")
class Channels(layers.Layer):
    """``count`` channels from ``start`` (a noise-aware model's packed frame, or its noise map)."""

    def __init__(self, count: int, start: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.count, self.start = int(count), int(start)

    def call(self, x):
        return x[..., self.start : self.start + self.count]

    def compute_output_shape(self, s):
        return (*s[:-1], self.count)

    def get_config(self):
        return {**super().get_config(), "count": self.count, "start": self.start}


@keras.saving.register_keras_serializable(package="sid_keras")
class NoiseTrust(layers.Layer):
    """``base + w (refined - base)`` with ``w = s2 / (s2 + tau^2)`` per output pixel, ``s2`` the
    mean noise variance of its packed pixel: where a frame is cleaner than ``tau`` (in units of
    white) the classical demosaic ``base`` is kept, whatever the network learned from noisy frames.

    Inputs ``[base, refined, noise]``: (2h, 2w, 3), (2h, 2w, 3) and the packed noise map (h, w, c).
    Builtin TFLite ops only (mean, concatenation, depth_to_space, arithmetic)."""

    def __init__(self, tau: float, **kwargs):
        super().__init__(**kwargs)
        self.tau = float(tau)

    def call(self, inputs):
        import tensorflow as tf

        base, refined, noise = inputs
        variance = ops.mean(ops.square(noise), axis=-1, keepdims=True)
        weight = variance / (variance + self.tau**2)
        weight = tf.nn.depth_to_space(ops.concatenate([weight] * 4, axis=-1), 2)  # each packed pixel's 2x2
        return base + weight * (refined - base)

    def compute_output_shape(self, shapes):
        return shapes[0]

    def get_config(self):
        return {**super().get_config(), "tau": self.tau}


def _packed_demosaic_kernel(weights) -> np.ndarray:
    """A demosaic written per mosaic pixel as the 3x3 convolution over SID's packed Bayer channels
    (R, G red row, B, G blue row) whose 12 outputs, put through depth_to_space(2), are that demosaic.

    ``weights(colour_at, colour)`` gives, for the output ``colour`` at a pixel, ``{(oy, ox): w}`` over
    the mosaic around it (offsets up to 2 pixels: one packed cell); ``colour_at(oy, ox)`` is the CFA
    colour at an offset."""
    from sid_keras.runtime.cfa import BAYER

    site_channel = {tuple(int(v) for v in BAYER.layout[c, 0, 0]): c for c in range(4)}
    colour_of_channel = BAYER.channel_colours
    kernel = np.zeros((3, 3, 4, 12), np.float32)
    for dy in (0, 1):
        for dx in (0, 1):
            def colour_at(oy, ox, dy=dy, dx=dx):
                return int(colour_of_channel[site_channel[((dy + oy) % 2, (dx + ox) % 2)]])

            for colour in range(3):
                out = (dy * 2 + dx) * 3 + colour  # depth_to_space's channel order
                for (oy, ox), w in weights(colour_at, colour).items():
                    channel = site_channel[((dy + oy) % 2, (dx + ox) % 2)]
                    kernel[(dy + oy) // 2 + 1, (dx + ox) // 2 + 1, channel, out] += w
    return kernel


def _bilinear_weights(colour_at, colour) -> dict:
    """Each colour averages its nearest samples (itself where the pixel has one)."""
    samples = [(oy, ox) for oy in (-1, 0, 1) for ox in (-1, 0, 1) if colour_at(oy, ox) == colour]
    nearest = min(oy * oy + ox * ox for oy, ox in samples)
    samples = [(oy, ox) for oy, ox in samples if oy * oy + ox * ox == nearest]
    return {offset: 1.0 / len(samples) for offset in samples}


# Malvar, He, Cutler (ICASSP 2004), in eighths: the bilinear estimate corrected by the Laplacian
# of the colour the pixel has. Rows are oy = -2..2, columns ox = -2..2.
_MALVAR_GREEN_AT_RED_OR_BLUE = ((0, 0, -1, 0, 0), (0, 0, 2, 0, 0), (-1, 2, 4, 2, -1), (0, 0, 2, 0, 0),
                                (0, 0, -1, 0, 0))
_MALVAR_AT_GREEN_FROM_ROW = ((0, 0, 0.5, 0, 0), (0, -1, 0, -1, 0), (-1, 4, 5, 4, -1), (0, -1, 0, -1, 0),
                             (0, 0, 0.5, 0, 0))
_MALVAR_AT_GREEN_FROM_COLUMN = tuple(zip(*_MALVAR_AT_GREEN_FROM_ROW))
_MALVAR_RED_BLUE_ACROSS = ((0, 0, -1.5, 0, 0), (0, 2, 0, 2, 0), (-1.5, 0, 6, 0, -1.5), (0, 2, 0, 2, 0),
                           (0, 0, -1.5, 0, 0))


def _malvar_weights(colour_at, colour) -> dict:
    """Malvar-He-Cutler's gradient-corrected linear demosaic: 5x5 filters, sharper than bilinear
    at no cost in the network (still one 3x3 packed convolution)."""
    from sid_keras.runtime.cfa import GREEN

    if colour_at(0, 0) == colour:
        return {(0, 0): 1.0}
    if colour == GREEN:
        table = _MALVAR_GREEN_AT_RED_OR_BLUE
    elif colour_at(0, 0) == GREEN:
        table = _MALVAR_AT_GREEN_FROM_ROW if colour_at(0, 1) == colour else _MALVAR_AT_GREEN_FROM_COLUMN
    else:
        table = _MALVAR_RED_BLUE_ACROSS
    return {(oy - 2, ox - 2): w / 8.0 for oy, row in enumerate(table) for ox, w in enumerate(row) if w}


DEMOSAICS = {"bilinear": _bilinear_weights, "malvar": _malvar_weights}


def demosaic_kernel(method: str = "bilinear") -> np.ndarray:
    """The packed 3x3 kernel of a classical demosaic (``DEMOSAICS``)."""
    if method not in DEMOSAICS:
        raise ValueError(f"demosaic {method!r}: choose one of {', '.join(DEMOSAICS)}")
    return _packed_demosaic_kernel(DEMOSAICS[method])


def classical_demosaic(x, name: str, method: str = "bilinear"):
    """Packed Bayer (h, w, 4) -> its classical demosaic (2h, 2w, 3): a fixed convolution and a
    depth_to_space, builtin TFLite ops."""
    demosaic = layers.Conv2D(12, 3, padding="same", use_bias=False, trainable=False, name=f"{name}_conv",
                             kernel_initializer=keras.initializers.Constant(demosaic_kernel(method)))
    return DepthToSpace(2, name=f"{name}_d2s")(demosaic(x))


def conv(x, filters: int, name: str, kernel: int = 3, activation: bool = True):
    x = layers.Conv2D(filters, kernel, padding="same", name=name)(x)
    return layers.LeakyReLU(LEAKY_SLOPE, name=f"{name}_lrelu")(x) if activation else x


def double_conv(x, filters: int, name: str):
    """SID's level block: two 3x3 convolutions, each followed by LeakyReLU(0.2)."""
    return conv(conv(x, filters, f"{name}_conv1"), filters, f"{name}_conv2")


def residual_block(x, filters: int, name: str, groups: int = 8):
    """Pre-activation residual block with GroupNorm: what lets a deeper U-Net converge."""
    if x.shape[-1] != filters:
        x = layers.Conv2D(filters, 3, padding="same", name=f"{name}_proj")(x)
    shortcut = x
    groups = min(groups, filters)
    for i in (1, 2):
        x = layers.GroupNormalization(groups, name=f"{name}_norm{i}")(x)
        x = layers.LeakyReLU(LEAKY_SLOPE, name=f"{name}_lrelu{i}")(x)
        x = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv{i}")(x)
    return layers.Add(name=f"{name}_add")([shortcut, x])


@keras.saving.register_keras_serializable(package="sid_keras")
class Conv2DTranspose(layers.Conv2DTranspose):
    """Keras' transposed convolution, computed where its kernel equals its stride (SID's 2x2, stride 2)
    as what it is then: a 1x1 convolution to every output position's channels and a depth_to_space.

    Why: TFLite's TRANSPOSE_CONV needs its output shape as a tensor, which a dynamic-size file computes
    at run time, so XNNPACK leaves it (and the graph after it) to slower kernels; CONV_2D and
    DEPTH_TO_SPACE it runs at any size. Same weights and result; the class keeps Keras' name, under
    which ``.keras`` files store the layer's weights, so files saved before load unchanged.
    """

    def call(self, x):
        kernel_is_stride = tuple(self.kernel_size) == tuple(self.strides) and self.padding == "same"
        if not kernel_is_stride or self.dilation_rate != (1, 1) or self.data_format != "channels_last":
            return super().call(x)
        import tensorflow as tf

        s = self.strides[0]
        kernel = ops.convert_to_tensor(self.kernel)  # (s, s, filters, in): output (dy, dx, c) from input
        in_channels = kernel.shape[-1]
        per_position = ops.reshape(ops.transpose(kernel, (3, 0, 1, 2)), (1, 1, in_channels, s * s * self.filters))
        y = tf.nn.depth_to_space(ops.conv(x, per_position), s)
        if self.use_bias:
            y = y + self.bias
        return self.activation(y) if self.activation is not None else y


def upsample(x, filters: int, name: str):
    """2x2 transposed convolution with stride 2 (SID's ``upsample_and_concat``)."""
    return Conv2DTranspose(filters, 2, strides=2, padding="same", name=name)(x)


def attention_gate(skip, gate, filters: int, name: str):
    """Additive attention gate (Oktay et al. 2018): weight skip features by relevance to ``gate``."""
    theta = layers.Conv2D(filters, 1, name=f"{name}_theta")(skip)
    phi = layers.Conv2D(filters, 1, name=f"{name}_phi")(gate)
    f = layers.Activation("relu", name=f"{name}_relu")(layers.Add(name=f"{name}_add")([theta, phi]))
    alpha = layers.Conv2D(1, 1, activation="sigmoid", name=f"{name}_psi")(f)
    return layers.Multiply(name=f"{name}_gate")([skip, alpha])
