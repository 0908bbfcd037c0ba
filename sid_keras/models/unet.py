"""The U-Net family: SID's baseline, a deeper residual U-Net, an attention U-Net, a fast U-Net.

All share one body (:func:`unet_body`) and one head (1x1 conv to ``3 * scale**2`` channels and
depth_to_space), so they differ only in the arguments that make them what they are.
"""

from __future__ import annotations

import contextlib
import functools
import inspect

import keras
from keras import layers

from sid_keras.models.layers import (
    Channels,
    CropLike,
    DepthToSpace,
    NoiseTrust,
    PadToMultiple,
    SpaceToDepth,
    attention_gate,
    classical_demosaic,
    double_conv,
    residual_block,
    upsample,
)
from sid_keras.runtime.convention import Convention
from sid_keras.runtime.render import LINEAR, OUTPUT_KINDS, SRGB

RGB = 3


def unet_body(x, *, width: int, depth: int, block=double_conv, gated: bool = False, prefix: str = "",
              encoder_extras=None):
    """Encoder-decoder with skip concatenation.

    Returns ``(features, decoder, bottleneck)``: the last decoder level, every decoder level
    (fine->coarse) and the bottleneck.

    Args:
        width: filters of the first level; level ``i`` has ``width * 2**i``.
        depth: number of levels (SID: 5, i.e. four poolings).
        block: the per-level block (``double_conv`` for SID, ``residual_block`` for the deep net).
        gated: attention gates on the skip connections.
        encoder_extras: per level (fine->coarse), tensors concatenated into the encoder after the
            level's block (the double U-Net's cross-network skips).
    """
    skips = []
    for level in range(depth - 1):
        x = block(x, width * 2**level, f"{prefix}enc{level + 1}")
        if encoder_extras is not None:
            x = layers.Concatenate(name=f"{prefix}enc{level + 1}_cross")([x, encoder_extras[level]])
        skips.append(x)
        x = layers.MaxPool2D(2, name=f"{prefix}pool{level + 1}")(x)
    x = bottleneck = block(x, width * 2 ** (depth - 1), f"{prefix}enc{depth}")
    decoder = []
    for level in reversed(range(depth - 1)):
        filters = width * 2**level
        up = upsample(x, filters, f"{prefix}up{level + 1}")
        skip = skips[level]
        if gated:
            skip = attention_gate(skip, up, max(filters // 2, 1), f"{prefix}att{level + 1}")
        x = layers.Concatenate(name=f"{prefix}cat{level + 1}")([up, skip])
        x = block(x, filters, f"{prefix}dec{level + 1}")
        decoder.append(x)
    return x, decoder[::-1], bottleneck


def rgb_head(x, scale: int, name: str, initializer: str = "glorot_uniform"):
    """1x1 conv to ``3 * scale**2`` channels, then depth_to_space to full resolution RGB."""
    x = layers.Conv2D(RGB * scale * scale, 1, kernel_initializer=initializer, name=f"{name}_conv")(x)
    return DepthToSpace(scale, name=f"{name}_d2s")(x)


# Keyword arguments a model passes on to keras.Model; anything else is a typo worth reporting.
MODEL_KWARGS = ("name", "trainable", "dtype")


def packed_input(in_channels: int, noise_input: bool = False):
    """Every model's input: ``in_channels`` packed raw channels, followed for a noise-aware model
    (``noise_input``) by as many channels of their noise level (:func:`sid_keras.runtime.model_input.noise_sigma`)."""
    return keras.Input((None, None, in_channels * (2 if noise_input else 1)), name="packed")


def network_convention(net: keras.Model) -> Convention:
    """What a network (not a GAN: its generator) is fed and returns, from its own config; a file
    saved before ``output`` was recorded predicts sRGB."""
    config = net.get_config()
    noise = bool(config.get("noise_input", False))
    return Convention(config.get("output", SRGB), noise, int(net.inputs[0].shape[-1]) // (2 if noise else 1))


def check_model_kwargs(cls: type, kwargs: dict, output: str | None = None) -> None:
    unknown = sorted(set(kwargs) - set(MODEL_KWARGS))
    if unknown:
        raise TypeError(f"{cls.__name__} got unknown arguments {unknown}")
    if output is not None and output not in OUTPUT_KINDS:
        raise TypeError(f"{cls.__name__}: output={output!r}; use 'linear' (camera RGB, colour from the "
                        "file's metadata) or 'srgb' (SID's learned colour)")


@contextlib.contextmanager
def layer_dtype(dtype):
    """Layers created inside take ``dtype`` (e.g. ``"mixed_float16"``); the process-wide policy
    is the same afterwards as before. How a model holds its own precision (keras-hub's way)."""
    if dtype is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


class SidModel(keras.Model):
    """A functional model whose config is its constructor arguments (keras-hub style).

    Subclasses check their extra kwargs with :func:`check_model_kwargs`, build their graph in
    ``__init__`` and pass their arguments to :meth:`_finish`. A ``dtype`` argument (a precision
    policy such as ``"mixed_float16"``) applies to every layer the constructor builds and is
    saved in the config, so a ``.keras`` file reloads in its own precision.
    """

    stride: int = 1  # input sizes are padded to a multiple of this, by the model itself

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def build_in_precision(self, *args, **kw):
            with layer_dtype(kw.get("dtype")):
                init(self, *args, **kw)
            self._sid_dtype = kw.get("dtype")

        build_in_precision.__signature__ = inspect.signature(init)  # Keras reads the arguments from it
        cls.__init__ = build_in_precision

    def _finish(self, config: dict) -> None:
        self._sid_config = dict(config)

    def train_step(self, data):
        """Keras's step, with the validation-only metrics (:data:`sid_keras.models.metrics.VALIDATION_ONLY`)
        left out of the traced graph and of the training logs."""
        from sid_keras.models import metrics

        with metrics.training_step():
            return super().train_step(data)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        from sid_keras.models import metrics

        return metrics.step_results(super().compute_metrics(x, y, y_pred, sample_weight=sample_weight))

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, **self._sid_config}
        dtype = getattr(self, "_sid_dtype", None)
        if dtype is not None:
            config["dtype"] = dtype if isinstance(dtype, str) else keras.dtype_policies.serialize(dtype)
        return config

    @classmethod
    def from_config(cls, config):
        if "output" in inspect.signature(cls.__init__).parameters:
            config = {"output": SRGB, **config}  # saved before the field existed: all were sRGB
        return cls(**config)


def _wrap(inputs, body_fn, scale: int, multiple: int):
    """Pad the input to the body's multiple, run it, crop the output to the input's size."""
    padded = PadToMultiple(multiple, name="pad")(inputs)
    outputs = body_fn(padded)
    return CropLike(scale, name="crop")([outputs, inputs])


@keras.saving.register_keras_serializable(package="sid_keras")
class UNet(SidModel):
    """SID's U-Net: packed raw in, RGB out at ``scale`` times the resolution.

    Args:
        in_channels: 4 (Bayer) or 9 (X-Trans).
        scale: output pixels per packed pixel (2 Bayer, 3 X-Trans).
        width: filters of the first level (SID: 32).
        depth: levels (SID: 5).
        attention: attention gates on the skips (Oktay et al. 2018).
        residual: GroupNorm residual blocks instead of plain double convs.
        output: ``"linear"`` (white-balanced input, linear camera RGB out, rendered with the
            file's colour matrix) or ``"srgb"`` (SID's original: sRGB with learned colour).
        demosaic_residual: the network adds a correction to a classical demosaic of its input
            (Bayer, linear output), its last convolution starting at zero: a clean frame needs
            little correction, so the model starts from doing no harm and learns what to undo.
        demosaic: that classical demosaic, ``"bilinear"`` or ``"malvar"`` (Malvar-He-Cutler:
            sharper on a clean frame, the same single packed convolution).
        demosaic_gate: with ``demosaic_residual``, the network also scales the demosaic per pixel
            and colour (a gate ``2 sigmoid(z)``, 1 at the start): it can keep a clean frame's
            demosaic and drop a noisy one's, which an additive correction alone could not cancel
            (measured: the darkest stress frames at 14-16 dB instead of 21).
        noise_input: the input's packed channels are followed by as many channels of their noise
            level (:func:`sid_keras.runtime.model_input.noise_sigma`), so the model knows a clean frame from a
            noisy one of the same brightness.
        demosaic_trust: with ``demosaic_residual`` and ``noise_input``, a noise level ``tau`` (units
            of white; 0: off) below which the classical demosaic is kept: the network's change to
            it is scaled by ``s2 / (s2 + tau^2)`` per pixel (:class:`~sid_keras.models.layers.NoiseTrust`),
            so a clean frame's saturated colours pass through whatever the network learned from
            noisy ones (colour wheel at ratio 1: 30.3 dB without, 43.0 with 0.004, Malvar 47.1).

    Example:
        >>> model = UNet(width=8, depth=3)
        >>> model(np.zeros((1, 20, 20, 4), "float32")).shape
        TensorShape([1, 40, 40, 3])

    Reference:
        Chen, Chen, Xu, Koltun. "Learning to See in the Dark", CVPR 2018.
    """

    def __init__(self, in_channels: int = 4, scale: int = 2, width: int = 32, depth: int = 5,
                 attention: bool = False, residual: bool = False, output: str = LINEAR,
                 demosaic_residual: bool = False, demosaic_gate: bool = False, noise_input: bool = False,
                 demosaic: str = "bilinear", demosaic_trust: float = 0.0, **kwargs):
        check_model_kwargs(type(self), kwargs, output)
        if demosaic_residual and (in_channels, scale, output) != (4, 2, LINEAR):
            raise ValueError("demosaic_residual needs a Bayer input (in_channels=4, scale=2) and linear output")
        if demosaic_gate and not demosaic_residual:
            raise ValueError("demosaic_gate gates the demosaic of demosaic_residual: set both")
        if demosaic_trust and not (demosaic_residual and noise_input):
            raise ValueError("demosaic_trust keeps the demosaic of demosaic_residual by the noise_input: set all three")
        if not 0 <= demosaic_trust < 1:
            raise ValueError(f"demosaic_trust = {demosaic_trust}: a noise level in units of white, 0 (off) to below 1")
        block = residual_block if residual else double_conv
        inputs = packed_input(in_channels, noise_input)

        def body(x):
            features, _, _ = unet_body(x, width=width, depth=depth, block=block, gated=attention)
            if not demosaic_residual:
                return rgb_head(features, scale, "head")
            correction = rgb_head(features, scale, "head", initializer="zeros")
            packed = Channels(in_channels, name="packed_only")(x) if noise_input else x
            classical = base = classical_demosaic(packed, "demosaic", demosaic)
            if demosaic_gate:
                gate = layers.Activation("sigmoid", name="gate_sigmoid")(rgb_head(features, scale, "gate", "zeros"))
                base = layers.Multiply(name="gated")([base, layers.Rescaling(2.0, name="gate")(gate)])
            refined = layers.Add(name="refined")([base, correction])
            if not demosaic_trust:
                return refined
            noise = Channels(in_channels, start=in_channels, name="noise_only")(x)
            return NoiseTrust(demosaic_trust, name="trust")([classical, refined, noise])

        outputs = _wrap(inputs, body, scale, 2 ** (depth - 1))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.stride = 2 ** (depth - 1)
        self._finish(dict(in_channels=in_channels, scale=scale, width=width, depth=depth,
                          attention=attention, residual=residual, output=output,
                          demosaic_residual=demosaic_residual, demosaic_gate=demosaic_gate,
                          noise_input=noise_input, demosaic=demosaic, demosaic_trust=demosaic_trust))


@keras.saving.register_keras_serializable(package="sid_keras")
class FastUNet(SidModel):
    """A small U-Net on a further packed input, for phones and real time (after LLPackNet).

    The packed raw is rearranged again by ``pack`` (space_to_depth), so the U-Net runs at
    ``1 / (scale * pack)`` of the output resolution; one depth_to_space brings it back. Only
    CONV_2D, MAX_POOL_2D, TRANSPOSE_CONV, CONCATENATION, SPACE/DEPTH rearrangements: builtin
    TFLite ops that the GPU delegate accepts.

    Args:
        in_channels, scale: as :class:`UNet`.
        pack: extra space_to_depth factor (LLPackNet packs by 8 overall; 4 here on top of 2).
        width, depth: of the inner U-Net.
        output, noise_input: as :class:`UNet`.

    Reference:
        Lamba, Balaji, Mitra. "Towards Fast and Light-Weight Restoration of Dark Images"
        (LLPackNet), BMVC 2020.
    """

    def __init__(self, in_channels: int = 4, scale: int = 2, pack: int = 4, width: int = 48,
                 depth: int = 3, output: str = LINEAR, noise_input: bool = False, **kwargs):
        check_model_kwargs(type(self), kwargs, output)
        inputs = packed_input(in_channels, noise_input)

        def body(x):
            x = SpaceToDepth(pack, name="pack")(x)
            features, _, _ = unet_body(x, width=width, depth=depth)
            return rgb_head(features, scale * pack, "head")

        outputs = _wrap(inputs, body, scale, pack * 2 ** (depth - 1))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.stride = pack * 2 ** (depth - 1)
        self._finish(dict(in_channels=in_channels, scale=scale, pack=pack, width=width, depth=depth,
                          output=output, noise_input=noise_input))
