"""U-Net GAN: any generator judged by a U-Net discriminator, trained by a custom train_step.

The discriminator (Schönfeld et al., "A U-Net Based Discriminator for Generative Adversarial
Networks", CVPR 2020) has an encoder ending in a global real/fake logit and a decoder giving a
per-pixel logit, all spectrally normalised. The generator's loss is L1 (after the display curve
for a ``linear`` generator, as :mod:`sid_keras.models.losses` explains) plus a weighted
adversarial term; the discriminator's is binary cross-entropy on both outputs, with optional
CutMix consistency. ``call()`` runs the generator only, so predict, evaluation and export see a
plain generator.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from sid_keras.models.layers import LEAKY_SLOPE, CropLike, PadToMultiple
from sid_keras.models.losses import display_curve
from sid_keras.models.unet import SidModel, check_model_kwargs, network_convention

# CutMix box side as a fraction of the image side, drawn uniformly (Schönfeld et al. 2020).
CUTMIX_MIN_SIDE, CUTMIX_MAX_SIDE = 0.25, 0.75


def _sn(layer, name):
    return layers.SpectralNormalization(layer, name=name)


@keras.saving.register_keras_serializable(package="sid_keras")
class UNetDiscriminator(SidModel):
    """U-Net discriminator: outputs ``[global_logit (B, 1), pixel_logits (B, H, W, 1)]``.

    Args:
        in_channels: channels of the judged image (3 for sRGB).
        width: filters of the first level.
        depth: stride-2 levels of the encoder.

    Reference:
        Schönfeld, Schiele, Khoreva. "A U-Net Based Discriminator for Generative Adversarial
        Networks", CVPR 2020.
    """

    def __init__(self, in_channels: int = 3, width: int = 32, depth: int = 4, **kwargs):
        check_model_kwargs(type(self), kwargs)
        inputs = keras.Input((None, None, in_channels), name="image")
        x = PadToMultiple(2**depth, name="pad")(inputs)
        skips = []
        for i in range(depth):
            x = _sn(layers.Conv2D(width * 2**i, 4, strides=2, padding="same"), f"enc{i + 1}")(x)
            x = layers.LeakyReLU(LEAKY_SLOPE, name=f"enc{i + 1}_lrelu")(x)
            skips.append(x)
        pooled = layers.GlobalAveragePooling2D(name="pool")(x)
        global_logit = _sn(layers.Dense(1), "global_logit")(pooled)
        for i in reversed(range(depth - 1)):
            x = _sn(layers.Conv2DTranspose(width * 2**i, 2, strides=2), f"up{i + 1}")(x)
            x = layers.LeakyReLU(LEAKY_SLOPE, name=f"up{i + 1}_lrelu")(x)
            x = layers.Concatenate(name=f"cat{i + 1}")([x, skips[i]])
            x = _sn(layers.Conv2D(width * 2**i, 3, padding="same"), f"dec{i + 1}")(x)
            x = layers.LeakyReLU(LEAKY_SLOPE, name=f"dec{i + 1}_lrelu")(x)
        x = _sn(layers.Conv2DTranspose(width, 2, strides=2), "up0")(x)
        x = layers.LeakyReLU(LEAKY_SLOPE, name="up0_lrelu")(x)
        pixel = _sn(layers.Conv2D(1, 1), "pixel_logits")(x)
        pixel = CropLike(1, name="crop")([pixel, inputs])
        super().__init__(inputs=inputs, outputs=[global_logit, pixel], **kwargs)
        self._finish(dict(in_channels=in_channels, width=width, depth=depth))


def _bce(target: float, logits):
    """Mean binary cross-entropy of logits against a constant target."""
    labels = ops.full_like(logits, target)
    return ops.mean(ops.binary_crossentropy(labels, logits, from_logits=True))


def _cutmix_mask(shape, seed):
    """(B, H, W, 1) float mask: 1 inside one random box per image (real), 0 outside (fake)."""
    import tensorflow as tf

    b, h, w = shape[0], shape[1], shape[2]
    u = keras.random.uniform((b, 4), seed=seed)
    hf, wf = tf.cast(h, "float32"), tf.cast(w, "float32")
    size = CUTMIX_MIN_SIDE + (CUTMIX_MAX_SIDE - CUTMIX_MIN_SIDE) * u[:, 0:1]
    box_h, box_w = size * hf, size * wf
    top, left = u[:, 1:2] * (hf - box_h), u[:, 2:3] * (wf - box_w)
    rows = tf.cast(tf.range(h), "float32")[None, :]
    cols = tf.cast(tf.range(w), "float32")[None, :]
    in_rows = tf.cast((rows >= top) & (rows < top + box_h), "float32")
    in_cols = tf.cast((cols >= left) & (cols < left + box_w), "float32")
    return (in_rows[:, :, None] * in_cols[:, None, :])[..., None]


@keras.saving.register_keras_serializable(package="sid_keras")
class UNetGAN(keras.Model):
    """A generator trained against a :class:`UNetDiscriminator`.

    Args:
        generator: any image-to-image model of this package (or its serialized config).
        discriminator: a :class:`UNetDiscriminator` (default: width 32, depth 4).
        adversarial_weight: weight of the adversarial term beside L1.
        cutmix_probability: probability per step of the CutMix consistency term (0: off).
        seed: of the CutMix boxes (``train.seed`` in the training recipe).

    Compile with two optimizers: ``model.compile(optimizer=g_opt, d_optimizer=d_opt)``.

    Example:
        >>> gan = UNetGAN(UNet(width=8, depth=3), UNetDiscriminator(width=8, depth=2))
        >>> gan.compile(optimizer="adam", d_optimizer="adam", metrics=[PSNR()])
        >>> gan.fit(dataset, epochs=1)  # doctest: +SKIP

    Reference:
        Schönfeld et al., CVPR 2020; Goodfellow et al., "Generative Adversarial Nets", 2014.
    """

    def __init__(self, generator, discriminator=None, adversarial_weight: float = 0.01,
                 cutmix_probability: float = 0.0, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(generator, dict):
            generator = keras.saving.deserialize_keras_object(generator)
        if isinstance(discriminator, dict):
            discriminator = keras.saving.deserialize_keras_object(discriminator)
        self.generator = generator
        self.discriminator = discriminator or UNetDiscriminator()
        self.adversarial_weight = float(adversarial_weight)
        self.cutmix_probability = float(cutmix_probability)
        self.d_optimizer = None
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.l1_tracker = keras.metrics.Mean(name="l1")
        self.seed = int(seed)
        self._seed = keras.random.SeedGenerator(self.seed)
        self.built = True

    @property
    def stride(self) -> int:
        return getattr(self.generator, "stride", 1)

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    # -- compile / save both optimizers ------------------------------------------------------
    def compile(self, optimizer="adam", d_optimizer=None, **kwargs):
        super().compile(optimizer=optimizer, **kwargs)
        if d_optimizer is None:
            d_optimizer = keras.optimizers.deserialize(keras.optimizers.serialize(self.optimizer))
        self.d_optimizer = keras.optimizers.get(d_optimizer)
        # Build both now (inside any distribution scope), not lazily inside a replica step.
        self.optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self._gan_compile_config = {
            "optimizer": keras.optimizers.serialize(self.optimizer),
            "d_optimizer": keras.optimizers.serialize(self.d_optimizer),
            "metrics": [keras.saving.serialize_keras_object(m) for m in kwargs.get("metrics") or []],
        }

    def get_compile_config(self):
        return getattr(self, "_gan_compile_config", None)

    def compile_from_config(self, config):
        self.compile(
            optimizer=keras.optimizers.deserialize(config["optimizer"]),
            d_optimizer=keras.optimizers.deserialize(config["d_optimizer"]),
            metrics=[keras.saving.deserialize_keras_object(m) for m in config.get("metrics", [])],
        )

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "adversarial_weight": self.adversarial_weight,
            "cutmix_probability": self.cutmix_probability,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # -- training ------------------------------------------------------------------------------
    def _as_seen(self, image):
        """A linear generator's images are judged and compared as they will be seen."""
        if network_convention(self.generator).white_balanced:
            return display_curve(image)
        return image

    def _compute_gan_losses(self, x, y, training=True):
        fake = self.generator(x, training=training)
        seen_fake, seen_y = self._as_seen(fake), self._as_seen(y)
        real_global, real_pixel = self._judge(seen_y, training)
        fake_global, fake_pixel = self._judge(seen_fake, training)
        d_loss = _bce(1.0, real_global) + _bce(0.0, fake_global) + _bce(1.0, real_pixel) + _bce(0.0, fake_pixel)
        if self.cutmix_probability > 0:
            d_loss = d_loss + self._cutmix_loss(seen_y, seen_fake, real_pixel, fake_pixel)
        adversarial = _bce(1.0, fake_global) + _bce(1.0, fake_pixel)
        l1 = ops.mean(ops.abs(seen_fake - seen_y))
        regularisers = ops.sum(self.generator.losses) if self.generator.losses else 0.0
        g_loss = l1 + self.adversarial_weight * adversarial + regularisers
        return fake, l1, g_loss, d_loss

    def _judge(self, image, training):
        """The discriminator's (global, per-pixel) logits, in float32 whatever it computes in."""
        return tuple(ops.cast(logits, "float32") for logits in self.discriminator(image, training=training))

    def _cutmix_loss(self, y, fake, real_pixel, fake_pixel):
        """CutMix: the decoder must find the pasted real box, consistently with its own outputs."""
        mask = _cutmix_mask(ops.shape(y), self._seed)
        mixed = mask * y + (1.0 - mask) * ops.stop_gradient(fake)
        _, mixed_pixel = self._judge(mixed, True)
        target = ops.mean(ops.binary_crossentropy(mask, mixed_pixel, from_logits=True))
        consistency = ops.mean(ops.square(mixed_pixel - (mask * real_pixel + (1 - mask) * fake_pixel)))
        gate = ops.cast(keras.random.uniform((), seed=self._seed) < self.cutmix_probability, "float32")
        return gate * (target + consistency)

    def train_step(self, data):
        """One simultaneous update of both networks from one forward pass.

        The generator and discriminator losses come from the same fake batch and both gradients
        are taken on one tape, so each network steps against the other's state before the
        step (the simultaneous gradient play of Goodfellow et al. and Schönfeld et al.); the
        keras-io alternation would run the generator twice per step for the same signal.
        Losses are divided by the replica count because each replica's gradients are summed.
        """
        import tensorflow as tf

        from sid_keras.models import metrics

        x, y = data[0], data[1]
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape(persistent=True) as tape:
            fake, l1, g_loss, d_loss = self._compute_gan_losses(x, y)
            g_scaled, d_scaled = g_loss / replicas, d_loss / replicas
        d_vars = self.discriminator.trainable_variables
        g_vars = self.generator.trainable_variables
        self.d_optimizer.apply(tape.gradient(d_scaled, d_vars), d_vars)
        self.optimizer.apply(tape.gradient(g_scaled, g_vars), g_vars)
        del tape
        with metrics.training_step():  # validation-only metrics (SSIM) stay out of the step, as for SidModel
            return self._update_metrics(y, fake, l1, g_loss, d_loss)

    def test_step(self, data):
        x, y = data[0], data[1]
        fake, l1, g_loss, d_loss = self._compute_gan_losses(x, y, training=False)
        return self._update_metrics(y, fake, l1, g_loss, d_loss)

    def _update_metrics(self, y, fake, l1, g_loss, d_loss):
        # `loss` (what fit, its callbacks and the run log report) is the generator's objective;
        # Keras's own loss tracker sees no compiled loss here and would say 0.0.
        self._loss_tracker.update_state(g_loss)
        self.d_loss_tracker.update_state(d_loss)
        self.l1_tracker.update_state(l1)
        return self.compute_metrics(None, y, fake)  # the compiled metrics, then every tracker

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        from sid_keras.models import metrics

        return metrics.step_results(super().compute_metrics(x, y, y_pred, sample_weight=sample_weight))
