"""The U-Net with a VAE branch: a latent code of the scene decoded to a second estimate.

The bottleneck of the U-Net feeds a variational encoder (mean and log-variance of a spatial
latent, sampled with the reparameterisation trick while training, the mean at inference). A
decoder without skips turns the latent into an sRGB estimate, and a 1x1 convolution fuses it with
the U-Net's output. The KL term is added with ``add_loss`` so plain ``fit`` and the GAN's
``train_step`` both minimise it; :func:`sid_keras.models.build_model("vae_gan")` puts the
discriminator on the fused result.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from sid_keras.models.layers import LEAKY_SLOPE, upsample
from sid_keras.models.unet import (
    RGB,
    SidModel,
    _wrap,
    check_model_kwargs,
    packed_input,
    rgb_head,
    unet_body,
)
from sid_keras.runtime.render import LINEAR


@keras.saving.register_keras_serializable(package="sid_keras")
class LatentSample(layers.Layer):
    """``z = mean + exp(logvar / 2) * eps`` while training, ``mean`` otherwise; adds the KL loss."""

    def __init__(self, kl_weight: float = 1e-3, seed: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.kl_weight = float(kl_weight)
        self.seed_value = int(seed)
        self.seed = keras.random.SeedGenerator(self.seed_value)

    def call(self, inputs, training=False):
        mean, logvar = inputs
        logvar = ops.clip(logvar, -10.0, 10.0)
        mean32, logvar32 = ops.cast(mean, "float32"), ops.cast(logvar, "float32")  # the loss in float32
        kl = -0.5 * ops.mean(1.0 + logvar32 - ops.square(mean32) - ops.exp(logvar32))
        self.add_loss(self.kl_weight * kl)
        if not training:
            return mean
        eps = keras.random.normal(ops.shape(mean), dtype=mean.dtype, seed=self.seed)  # mixed precision
        return mean + ops.exp(0.5 * logvar) * eps

    def get_config(self):
        return {**super().get_config(), "kl_weight": self.kl_weight, "seed": self.seed_value}


@keras.saving.register_keras_serializable(package="sid_keras")
class VAEUNet(SidModel):
    """SID U-Net plus a VAE branch whose decoded output is fused with the U-Net's.

    Args:
        in_channels, scale, width, depth: as :class:`~sid_keras.models.unet.UNet`.
        latent_channels: channels of the spatial latent at the bottleneck.
        kl_weight: weight of the KL divergence in the loss.
        output, noise_input: as :class:`~sid_keras.models.unet.UNet`.
        seed: of the latent sampling.
    """

    def __init__(self, in_channels: int = 4, scale: int = 2, width: int = 32, depth: int = 5,
                 latent_channels: int = 8, kl_weight: float = 1e-3, output: str = LINEAR, seed: int = 1,
                 noise_input: bool = False, **kwargs):
        check_model_kwargs(type(self), kwargs, output)
        inputs = packed_input(in_channels, noise_input)

        def body(x):
            features, _, bottleneck = unet_body(x, width=width, depth=depth)
            unet_rgb = rgb_head(features, scale, "head")
            mean = layers.Conv2D(latent_channels, 1, name="latent_mean")(bottleneck)
            logvar = layers.Conv2D(latent_channels, 1, name="latent_logvar")(bottleneck)
            z = LatentSample(kl_weight, seed=seed, name="latent_sample")([mean, logvar])
            for level in reversed(range(depth - 1)):
                z = upsample(z, width * 2**level, f"vae_up{level + 1}")
                z = layers.Conv2D(width * 2**level, 3, padding="same", name=f"vae_dec{level + 1}")(z)
                z = layers.LeakyReLU(LEAKY_SLOPE, name=f"vae_dec{level + 1}_lrelu")(z)
            vae_rgb = rgb_head(z, scale, "vae_head")
            both = layers.Concatenate(name="fuse_inputs")([unet_rgb, vae_rgb])
            return layers.Conv2D(RGB, 1, name="fuse")(both)

        outputs = _wrap(inputs, body, scale, 2 ** (depth - 1))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.stride = 2 ** (depth - 1)
        self._finish(dict(in_channels=in_channels, scale=scale, width=width, depth=depth,
                          latent_channels=latent_channels, kl_weight=kl_weight, output=output, seed=seed,
                          noise_input=noise_input))
