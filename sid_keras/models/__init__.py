"""Every architecture behind one registry: name -> builder.

>>> from sid_keras.models import build_model
>>> model = build_model("unet", width=8, depth=3)

Importing this module imports Keras; ``import sid_keras`` does not.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Callable

import keras

from sid_keras import ASSETS_DIR
from sid_keras.errors import SidError
from sid_keras.models import losses, metrics  # noqa: F401  (registers every class a compiled .keras file holds)
from sid_keras.models.double_unet import DoubleUNet
from sid_keras.models.gan import UNetDiscriminator, UNetGAN
from sid_keras.models.layers import CropLike, DepthToSpace, PadToMultiple, SpaceToDepth
from sid_keras.models.unet import FastUNet, UNet, network_convention
from sid_keras.models.vae import LatentSample, VAEUNet


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., keras.Model]
    summary: str
    adversarial: bool = False  # a generator and a discriminator: two optimizers, a GAN's step


MODELS: dict[str, ModelSpec] = {}
# Size arguments of the builders; zero or negative ones are refused with one clear line.
POSITIVE_ARGS = ("width", "depth", "pack", "in_channels", "scale", "latent_channels", "discriminator_width",
                 "discriminator_depth")


def register(name: str, summary: str, adversarial: bool = False):
    def decorate(builder):
        if name in MODELS:
            raise ValueError(f"model name {name!r} is registered twice")
        MODELS[name] = ModelSpec(name, builder, summary, adversarial)
        return builder

    return decorate


def is_adversarial(name: str) -> bool:
    """Whether the registered model ``name`` is a GAN (False for unknown names)."""
    return name in MODELS and MODELS[name].adversarial


def build_model(name: str, **kwargs) -> keras.Model:
    """Build a registered model; unknown names and arguments are a clear :class:`SidError`."""
    if name not in MODELS:
        raise SidError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    bad = {k: v for k, v in kwargs.items() if k in POSITIVE_ARGS and not (isinstance(v, int) and v > 0)}
    if bad:
        raise SidError(f"model {name!r}: {', '.join(f'{k}={v!r}' for k, v in bad.items())}: must be positive integers")
    try:
        return MODELS[name].builder(**kwargs)
    except (TypeError, ValueError) as err:
        raise SidError(f"model {name!r}: {str(err).splitlines()[0]}") from None


@register("unet", "SID's U-Net (Chen et al. 2018): 5 levels, 32-512 filters")
def _unet(**kwargs):
    return UNet(**kwargs)


@register("unet_deep", "deeper U-Net (6 levels) with GroupNorm residual blocks, so it converges")
def _unet_deep(depth: int = 6, width: int = 16, **kwargs):
    return UNet(depth=depth, width=width, residual=True, **kwargs)


@register("attention_unet", "SID U-Net with attention gates on the skips (Oktay et al. 2018)")
def _attention_unet(**kwargs):
    return UNet(attention=True, **kwargs)


@register("double_unet", "U-UNet: a second U-Net refines the first, with cross-network skips")
def _double_unet(**kwargs):
    return DoubleUNet(**kwargs)


@register("fast_unet", "small U-Net on an 8x packed input (after LLPackNet), for phones")
def _fast_unet(**kwargs):
    return FastUNet(**kwargs)


def _gan(generator: keras.Model, discriminator_width: int, discriminator_depth: int, adversarial_weight: float,
         cutmix_probability: float, seed: int, dtype: str | None) -> UNetGAN:
    discriminator = UNetDiscriminator(width=discriminator_width, depth=discriminator_depth, dtype=dtype)
    return UNetGAN(generator, discriminator, adversarial_weight=adversarial_weight,
                   cutmix_probability=cutmix_probability, seed=seed)


@register("unet_gan", "a generator (default unet) against a U-Net discriminator (Schönfeld 2020)", adversarial=True)
def _unet_gan(generator: str = "unet", discriminator_width: int = 32, discriminator_depth: int = 4,
              adversarial_weight: float = 0.01, cutmix_probability: float = 0.0, seed: int = 0,
              **generator_args):
    if is_adversarial(generator):
        raise SidError(f"generator {generator!r} is itself a GAN; use a plain model name")
    return _gan(build_model(generator, **generator_args), discriminator_width, discriminator_depth,
                adversarial_weight, cutmix_probability, seed, generator_args.get("dtype"))


@register("vae_gan", "U-Net with a VAE branch, judged by a U-Net discriminator", adversarial=True)
def _vae_gan(discriminator_width: int = 32, discriminator_depth: int = 4, adversarial_weight: float = 0.01,
             cutmix_probability: float = 0.0, seed: int = 0, **generator_args):
    return _gan(VAEUNet(seed=seed, **generator_args), discriminator_width, discriminator_depth, adversarial_weight,
                cutmix_probability, seed, generator_args.get("dtype"))


def inference_model(model: keras.Model) -> keras.Model:
    """The plain image-to-image network of ``model`` (the generator of a GAN)."""
    return model.generator if isinstance(model, UNetGAN) else model


def with_precision(net: keras.Model, policy: str | None) -> keras.Model:
    """The same network and weights computing in ``policy`` (None: float32); ``net`` itself if it
    already does. A run trains in its own precision (``train.precision``); inference and export
    use float32 whatever the file was trained in."""
    policy = policy or "float32"
    if net.dtype_policy.name == policy:
        return net
    twin = type(net).from_config({**net.get_config(), "dtype": None if policy == "float32" else policy})
    twin.set_weights(net.get_weights())
    return twin


def convention_of(model: keras.Model):
    """What the model is fed and returns (:class:`sid_keras.runtime.convention.Convention`), from its own
    config; a file saved before ``output`` was recorded predicts sRGB."""
    return network_convention(inference_model(model))


def without_padding(net: keras.Model) -> tuple[keras.Model, int]:
    """The network between its ``pad`` and ``crop`` layers, for inputs whose sides are already
    multiples of its stride, and that multiple (``net`` and 1 for a network without them).

    Why: at a dynamic size the padding is computed from the input's shape at run time, and XNNPACK
    leaves such a graph to TFLite's slower kernels (the shipped model on 2 cores: 0.127 s per output
    megapixel with the padding, 0.100 without); a caller that tiles pads its tiles anyway
    (:mod:`sid_keras.runtime.lite`)."""
    if not {"pad", "crop"} <= {layer.name for layer in net.layers}:
        return net, 1
    pad = net.get_layer("pad")
    return keras.Model(pad.output, net.get_layer("crop").input[0], name=f"{net.name}_unpadded"), pad.multiple


def frozen_forward(net: keras.Model, shape):
    """The inference forward pass as a TF concrete function with the weights frozen to constants.

    Input named after the model's convention (:attr:`Convention.input_name`), of ``shape`` (None
    for dynamic dims), output ``{"rgb": ...}``; shared by the MAC count and the TFLite export
    (Keras 3 variables are not found through a trackable). With a dynamic height or width the
    graph is the network between its padding to a multiple of its stride and the crop back
    (:func:`without_padding`), and the input's name says the multiple its sides must be.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    convention = convention_of(net)
    if None in tuple(shape)[1:3]:
        net, multiple = without_padding(net)
        convention = dataclasses.replace(convention, multiple=multiple)
    spec = tf.TensorSpec(shape, tf.float32, name=convention.input_name)
    forward = tf.function(lambda packed: {"rgb": net(packed, training=False)})
    return convert_variables_to_constants_v2(forward.get_concrete_function(spec))


def count_macs(model: keras.Model, packed_size: tuple[int, int] = (256, 256)) -> int:
    """Multiply-accumulates of one forward pass, counted from the TF graph by the profiler.

    ``packed_size`` is the packed input's height and width; divide by the output megapixels for
    MACs per output megapixel.
    """
    import tensorflow as tf

    net = inference_model(model)
    channels = net.inputs[0].shape[-1]
    frozen = frozen_forward(net, (1, *packed_size, channels))
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=frozen.graph, options=options)
    return profile.total_float_ops // 2


# What `sid-keras models` prints without importing TensorFlow (a test keeps it equal to
# describe_models(); after changing a model:
#   python -c "from sid_keras.models import write_catalogue; write_catalogue()"
CATALOGUE = ASSETS_DIR / "models.json"


def write_catalogue(path: pathlib.Path = CATALOGUE) -> None:
    path.write_text(json.dumps(describe_models(), indent=1) + "\n")


def describe_models(packed_size: tuple[int, int] = (256, 256)) -> list[dict]:
    """Name, parameters and GMACs per output megapixel of every registered model at defaults."""
    rows = []
    for name, spec in MODELS.items():
        model = spec.builder()
        net = inference_model(model)
        scale = net.get_config().get("scale", 2)
        megapixels = packed_size[0] * packed_size[1] * scale * scale / 1e6
        rows.append({
            "name": name,
            "parameters": int(model.count_params()),
            "generator_parameters": int(net.count_params()),
            "gmacs_per_mp": count_macs(net, packed_size) / 1e9 / megapixels,
            "summary": spec.summary,
        })
    return rows


__all__ = [
    "MODELS",
    "CropLike",
    "DepthToSpace",
    "DoubleUNet",
    "FastUNet",
    "LatentSample",
    "PadToMultiple",
    "SpaceToDepth",
    "UNet",
    "UNetDiscriminator",
    "UNetGAN",
    "VAEUNet",
    "build_model",
    "convention_of",
    "count_macs",
    "frozen_forward",
    "without_padding",
    "describe_models",
    "inference_model",
    "with_precision",
]
