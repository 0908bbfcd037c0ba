"""Every registered architecture: shapes, training lowers the loss, .keras round trips."""

import keras
import numpy as np
import pytest

from sid_keras.errors import SidError
from sid_keras.models import MODELS, UNet, build_model, count_macs, inference_model
from sid_keras.models.metrics import PSNR
from sid_keras.training.config import load_config

TINY = {
    "unet": dict(width=4, depth=3),
    "unet_deep": dict(width=4, depth=4),
    "attention_unet": dict(width=8, depth=3),
    "double_unet": dict(width=4, depth=3),
    "fast_unet": dict(width=4, depth=2, pack=2),
    "unet_gan": dict(width=4, depth=3, discriminator_width=4, discriminator_depth=2),
    "vae_gan": dict(width=4, depth=3, latent_channels=2, discriminator_width=4, discriminator_depth=2),
}
# Parameter counts at the registered defaults (Bayer). SID's U-Net is 7,760,748 (Chen et al.).
DEFAULT_PARAMETERS = {
    "unet": 7_760_748,
    "unet_deep": 11_714_076,
    "attention_unet": 7_848_512,
    "double_unet": 17_875_032,
    "fast_unet": 1_084_176,
    "unet_gan": 9_016_048,
    "vae_gan": 9_989_217,
}


def _data(n=8, size=16, channels=4, scale=2, seed=0):
    """A learnable toy mapping: the target is the packed input's first 3 channels upsampled."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, size, size, channels)).astype("float32")
    y = np.repeat(np.repeat(x[..., :3], scale, 1), scale, 2) * 0.8 + 0.1
    return x, y


def test_every_model_is_tested():
    assert set(TINY) == set(MODELS) == set(DEFAULT_PARAMETERS)


@pytest.mark.parametrize("name", sorted(DEFAULT_PARAMETERS))
def test_default_parameter_counts_are_pinned(name):
    assert build_model(name).count_params() == DEFAULT_PARAMETERS[name]


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("channels,scale", [(4, 2), (9, 3)])
def test_any_input_size_bayer_and_xtrans(name, channels, scale):
    model = build_model(name, in_channels=channels, scale=scale, **TINY[name])
    for h, w in [(16, 16), (13, 22)]:
        out = model(np.zeros((2, h, w, channels), "float32"))
        assert tuple(out.shape) == (2, h * scale, w * scale, 3)


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_variant_can_be_told_its_inputs_noise(name, tmp_path):
    """The study trains every variant with the shipped model's noise input."""
    from sid_keras.models import convention_of, inference_model
    from sid_keras.runtime.convention import Convention

    model = build_model(name, noise_input=True, **TINY[name])
    assert convention_of(model) == Convention("linear", noise=True, channels=4)
    assert tuple(model(np.zeros((1, 16, 16, 8), "float32")).shape) == (1, 32, 32, 3)
    inference_model(model).save(tmp_path / "m.keras")
    assert convention_of(keras.models.load_model(tmp_path / "m.keras")).noise


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_training_steps_lower_the_loss_and_keras_file_round_trips(name, tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model(name, **TINY[name])
    x, y = _data()
    if hasattr(model, "d_optimizer"):
        model.compile(optimizer=keras.optimizers.Adam(1e-3), d_optimizer=keras.optimizers.Adam(1e-4),
                      metrics=[PSNR()])
    else:
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mae", metrics=[PSNR()])
    net = inference_model(model)
    before = float(np.mean(np.abs(net.predict(x, verbose=0) - y)))
    history = model.fit(x, y, batch_size=4, epochs=30, verbose=0)
    after = float(np.mean(np.abs(net.predict(x, verbose=0) - y)))
    assert after < 0.7 * before, (before, after)
    assert "psnr" in history.history

    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert type(loaded) is type(model) and loaded.get_config() == model.get_config()


@pytest.mark.slow
def test_gan_keeps_both_optimizers_state_and_call_is_the_generator(tmp_path):
    model = build_model("unet_gan", **TINY["unet_gan"])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), d_optimizer=keras.optimizers.Adam(2e-4))
    x, y = _data()
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    np.testing.assert_allclose(model(x), model.generator(x), atol=1e-6)
    model.save(tmp_path / "gan.keras")
    loaded = keras.models.load_model(tmp_path / "gan.keras")
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 2
    assert int(loaded.d_optimizer.iterations) == 2
    assert float(loaded.d_optimizer.learning_rate) == pytest.approx(2e-4)
    for a, b in zip(loaded.d_optimizer.variables, model.d_optimizer.variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b))
    loaded.fit(x, y, batch_size=4, epochs=1, verbose=0)  # training resumes
    assert int(loaded.d_optimizer.iterations) == 4


@pytest.mark.slow
def test_gan_cutmix_trains():
    keras.utils.set_random_seed(1)
    model = build_model("unet_gan", cutmix_probability=1.0, **TINY["unet_gan"])
    model.compile(optimizer="adam", d_optimizer="adam")
    x, y = _data()
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert np.isfinite(history.history["d_loss"]).all()
    # the history's loss is the generator's: at least its L1 term (it read 0.0 before)
    assert all(loss >= l1 > 0 for loss, l1 in zip(history.history["loss"], history.history["l1"]))


def test_vae_branch_adds_a_kl_loss():
    model = build_model("vae_gan", **TINY["vae_gan"])
    x, _ = _data(n=2)
    model.generator(x, training=True)
    assert len(model.generator.losses) == 1 and float(model.generator.losses[0]) >= 0


def test_double_unet_loads_a_trained_first_network_and_freezes_it():
    first = UNet(width=4, depth=3)
    double = build_model("double_unet", width=4, depth=3, freeze_first=True)
    double.load_first(first)
    layer = double.get_layer("first_enc1_conv1")
    np.testing.assert_array_equal(layer.get_weights()[0], first.get_layer("enc1_conv1").get_weights()[0])
    trainable = {v.path for v in double.trainable_variables}
    assert not any(p.startswith("first_") for p in trainable) and trainable
    with pytest.raises(SidError, match="same width and depth"):
        double.load_first(UNet(width=4, depth=2))


def test_the_training_recipe_starts_a_double_unet_from_the_trained_unet_it_names(tmp_path):
    """`model.args.first` names the trained unet; `freeze_first` without it was a random net frozen."""
    from sid_keras.training.task import Task

    first = UNet(width=4, depth=3)
    first.save(tmp_path / "first.keras")
    UNet(width=4, depth=2).save(tmp_path / "shallow.keras")

    def task(*args):
        return Task(load_config("synthetic", ["model.name='double_unet'", "model.args={width=4, depth=3}",
                                              *(f"model.args.{a}" for a in args)]))

    double = task(f"first='{tmp_path / 'first.keras'}'", "freeze_first=true").build_model()
    np.testing.assert_array_equal(double.get_layer("first_enc1_conv1").get_weights()[0],
                                  first.get_layer("enc1_conv1").get_weights()[0])
    assert not any(v.path.startswith("first_") for v in double.trainable_variables)
    with pytest.raises(SidError, match="would freeze a random first U-Net"):
        task("freeze_first=true").build_model()
    with pytest.raises(SidError, match="no such file"):
        task(f"first='{tmp_path / 'missing.keras'}'").build_model()
    with pytest.raises(SidError, match="not the unet"):
        task(f"first='{tmp_path / 'shallow.keras'}'").build_model()


def test_fast_unet_needs_8x_fewer_macs_than_unet():
    assert count_macs(build_model("unet"), (64, 64)) >= 8 * count_macs(build_model("fast_unet"), (64, 64))


def test_unknown_model_and_argument_are_clear_errors():
    with pytest.raises(SidError, match="unknown model 'unetx'"):
        build_model("unetx")
    with pytest.raises(SidError, match="unet"):
        build_model("unet", widht=3)


MIRRORED_GAN = """
import numpy as np, tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from sid_keras.models import build_model
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    gan = build_model("unet_gan", width=4, depth=3, discriminator_width=4, discriminator_depth=2)
    gan.compile(optimizer=keras.optimizers.Adam(1e-3), d_optimizer=keras.optimizers.Adam(1e-3))
x = np.random.default_rng(0).uniform(0, 1, (8, 16, 16, 4)).astype("float32")
y = np.repeat(np.repeat(x[..., :3], 2, 1), 2, 2)
history = gan.fit(x, y, batch_size=4, epochs=2, verbose=0)
assert strategy.num_replicas_in_sync == 2
assert int(np.asarray(gan.d_optimizer.iterations.value)) == 4
assert np.isfinite(history.history["loss"]).all()
print("OK")
"""


@pytest.mark.slow
def test_gan_trains_under_mirrored_strategy():
    import os
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", MIRRORED_GAN], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert run.returncode == 0 and "OK" in run.stdout, run.stderr[-3000:]


@pytest.mark.slow
def test_gan_resume_restores_both_optimizers(tmp_path):
    """The training recipe's checkpoints bring back both of the GAN's optimizers."""

    def make():
        gan = build_model("unet_gan", **TINY["unet_gan"])
        gan.compile(optimizer=keras.optimizers.Adam(1e-3), d_optimizer=keras.optimizers.Adam(1e-3))
        return gan

    from sid_keras.training.callbacks import Checkpoint

    x, y = _data()
    checkpoint = Checkpoint(tmp_path / "checkpoint")
    make().fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[checkpoint])
    resumed = make()
    start = checkpoint.restore(resumed)
    assert start == 2
    resumed.fit(x, y, batch_size=4, epochs=3, initial_epoch=start, verbose=0, callbacks=[checkpoint])
    assert int(resumed.optimizer.iterations.numpy()) == int(resumed.d_optimizer.iterations.numpy()) == 6


def test_precision_is_held_by_the_model_and_saved_with_it(tmp_path):
    """keras-hub's way: the dtype policy is a constructor argument in the config, not process state."""
    from sid_keras.training.config import load_config
    from sid_keras.training.task import Task

    before = keras.config.dtype_policy().name
    config = load_config("synthetic", ["train.precision='mixed_float16'", "model.args={width=4, depth=2}"])
    model = Task(config).build_model()
    assert keras.config.dtype_policy().name == before == "float32"  # nothing process-wide changed
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert {layer.compute_dtype for layer in convs} == {"float16"}
    assert {v.dtype for v in model.trainable_variables} == {"float32"}  # master weights stay float32
    assert model.get_config()["dtype"] == "mixed_float16"
    model.save(tmp_path / "mixed.keras")
    loaded = keras.models.load_model(tmp_path / "mixed.keras")
    assert {layer.compute_dtype for layer in loaded.layers if isinstance(layer, keras.layers.Conv2D)} == {"float16"}
    x = np.random.default_rng(0).uniform(0, 1, (1, 16, 16, 4)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(x), np.float32), np.asarray(model(x), np.float32), atol=1e-3)
    plain = build_model("unet", width=4, depth=2)
    assert "dtype" not in plain.get_config() and plain.layers[2].compute_dtype == "float32"


def test_auto_precision_follows_the_hardware_and_inference_runs_in_float32():
    """bfloat16 only where the CPU computes it (emulated, a step is slower than float32)."""
    from sid_keras.models import with_precision
    from sid_keras.training.task import resolve_precision

    amx = "processor : 0\nflags : fpu sse avx2 avx512f amx_bf16 amx_tile\n"
    avx2 = "processor : 0\nflags : fpu sse avx2 fma\n"
    assert resolve_precision("auto", gpus=0, cpuinfo=amx).policy == "mixed_bfloat16"
    assert resolve_precision("auto", gpus=0, cpuinfo=avx2).policy == "float32"
    assert resolve_precision("auto", gpus=1, cpuinfo=avx2).policy == "mixed_float16"
    assert resolve_precision("float32", gpus=1, cpuinfo=amx).policy == "float32"
    with pytest.raises(SidError, match="precision = 'bf16'"):
        load_config("synthetic", ["train.precision='bf16'"])

    trained = build_model("unet", width=4, depth=2, dtype="mixed_bfloat16")
    net = with_precision(trained, None)
    assert "dtype" not in net.get_config() and net.layers[2].compute_dtype == "float32"
    assert all(np.array_equal(a, b) for a, b in zip(net.get_weights(), trained.get_weights()))
    assert with_precision(net, "float32") is net
    x = np.random.default_rng(0).uniform(0, 1, (1, 16, 16, 4)).astype("float32")
    np.testing.assert_allclose(np.asarray(trained(x), np.float32), np.asarray(net(x)), atol=0.02)


def test_gan_noise_is_seeded_by_the_training_config():
    from sid_keras.training.config import load_config
    from sid_keras.training.task import Task

    config = load_config("synthetic", ["model.name='vae_gan'", "train.seed=7", "model.args={width=4, depth=2, "
                                       "discriminator_width=4, discriminator_depth=2}"])
    gan = Task(config).build_model()
    assert gan.get_config()["seed"] == 7
    assert gan.generator.get_layer("latent_sample").get_config()["seed"] == 7


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_every_variant_trains_under_every_precision_policy(name, policy):
    """The training recipe's model in each mixed policy train.precision offers takes a finite
    step (vae_gan's latent sampling once mixed a bfloat16 tensor with a float32 one); float32
    trains in test_training_steps_lower_the_loss_and_keras_file_round_trips."""
    from sid_keras.training.task import Task

    args = ", ".join(f"{k}={v}" for k, v in TINY[name].items())
    task = Task(load_config("synthetic", [f"model.name='{name}'", f"train.precision='{policy}'",
                                          f"model.args={{{args}, noise_input=true}}"]))
    model = task.build_model()
    x, y = _data(n=2, size=16, channels=8)
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"]) and np.isfinite(logs["psnr"]), logs


@pytest.mark.slow
@pytest.mark.parametrize("name", ["unet", "unet_gan"])
def test_ssim_is_a_validation_metric_only(name):
    """SSIM of every training batch cost a sixth of a step and nothing reads it: fit reports it
    for validation only, the same value evaluate gives; the GANs' own step too."""
    from sid_keras.models.metrics import SSIM

    model = build_model(name, **TINY[name])
    optimizers = {"d_optimizer": keras.optimizers.Adam(1e-4)} if name == "unet_gan" else {"loss": "mae"}
    model.compile(keras.optimizers.Adam(1e-3), metrics=[PSNR(display=True), SSIM(display=True)], **optimizers)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (4, 16, 16, 4)).astype("float32")
    y = rng.uniform(0, 1, (4, 32, 32, 3)).astype("float32")
    history = model.fit(x, y, batch_size=2, epochs=1, validation_data=(x, y), verbose=0).history
    assert "ssim" not in history and "psnr" in history
    assert 0 < history["val_ssim"][0] < 1
    assert model.evaluate(x, y, batch_size=2, verbose=0, return_dict=True)["ssim"] == pytest.approx(
        history["val_ssim"][0], abs=1e-6)


def test_a_demosaic_residual_unet_starts_from_the_bilinear_demosaic_of_its_input():
    """Do no harm: before any training the model returns the bilinear demosaic, which is exact
    inside a linear gradient; training learns the correction."""
    from sid_keras.runtime.cfa import BAYER

    rows, cols = np.mgrid[0:32, 0:48].astype(np.float32)
    image = np.stack([0.01 * rows + 0.02 * cols, 0.3 + 0.005 * rows - 0.003 * cols,
                      0.5 - 0.004 * rows + 0.001 * cols], axis=-1)
    model = build_model("unet", width=4, depth=3, demosaic_residual=True)
    out = np.asarray(model(BAYER.pack_rgb(image)[None].astype("float32")))[0]
    np.testing.assert_allclose(out[2:-2, 2:-2], image[2:-2, 2:-2], atol=1e-5)
    assert build_model("unet", width=4, depth=3)(BAYER.pack_rgb(image)[None].astype("float32")).shape == (1, 32, 48, 3)
    gated = build_model("unet", width=4, depth=3, demosaic_residual=True, demosaic_gate=True, noise_input=True)
    packed = BAYER.pack_rgb(image)[None].astype("float32")
    out = np.asarray(gated(np.concatenate([packed, np.full_like(packed, 0.01)], axis=-1)))[0]
    np.testing.assert_allclose(out[2:-2, 2:-2], image[2:-2, 2:-2], atol=1e-5)  # the gate starts open: 1
    with pytest.raises(SidError, match="set both"):
        build_model("unet", width=4, depth=3, demosaic_gate=True)
    with pytest.raises(SidError, match="demosaic_residual needs a Bayer input"):
        build_model("unet", in_channels=9, scale=3, width=4, depth=3, demosaic_residual=True)
    with pytest.raises(SidError, match="linear output"):
        build_model("unet", width=4, depth=3, output="srgb", demosaic_residual=True)


def test_a_trusting_unet_keeps_the_classical_demosaic_of_a_clean_frame_and_refines_a_noisy_one(tmp_path):
    """demosaic_trust: where the noise channels are far below tau the output is the Malvar demosaic
    (exact in a linear gradient) whatever the weights; far above it, the plain model's output."""
    from sid_keras.runtime.cfa import BAYER

    rows, cols = np.mgrid[0:32, 0:48].astype(np.float32)
    image = np.stack([0.01 * rows + 0.02 * cols, 0.3 + 0.005 * rows - 0.003 * cols,
                      0.5 - 0.004 * rows + 0.001 * cols], axis=-1)
    packed = BAYER.pack_rgb(image)[None].astype("float32")
    args = dict(width=4, depth=3, demosaic_residual=True, demosaic_gate=True, noise_input=True, demosaic="malvar")
    plain, trusting = UNet(**args), UNet(**args, demosaic_trust=0.01)
    rng = np.random.default_rng(0)
    for weight in plain.trainable_weights:  # not the fixed demosaic kernel
        weight.assign(rng.normal(0, 0.3, weight.shape).astype("float32"))
    trusting.set_weights(plain.get_weights())
    clean = np.concatenate([packed, np.full_like(packed, 1e-5)], axis=-1)
    noisy = np.concatenate([packed, np.full_like(packed, 1.0)], axis=-1)
    assert np.abs(np.asarray(plain(clean))[0, 2:-2, 2:-2] - image[2:-2, 2:-2]).max() > 0.05  # the weights do change it
    np.testing.assert_allclose(np.asarray(trusting(clean))[0, 2:-2, 2:-2], image[2:-2, 2:-2], atol=1e-4)
    np.testing.assert_allclose(np.asarray(trusting(noisy)), np.asarray(plain(noisy)), rtol=1e-3, atol=1e-3)
    trusting.save(tmp_path / "trusting.keras")
    reloaded = keras.models.load_model(tmp_path / "trusting.keras")
    assert reloaded.get_config()["demosaic_trust"] == 0.01
    np.testing.assert_allclose(np.asarray(reloaded(noisy)), np.asarray(trusting(noisy)), atol=1e-6)
    with pytest.raises(SidError, match="set all three"):
        build_model("unet", width=4, depth=3, demosaic_residual=True, demosaic_trust=0.01)
    with pytest.raises(SidError, match="demosaic_trust = -0.1"):
        build_model("unet", **args, demosaic_trust=-0.1)


def test_finetune_names_the_architectures_it_takes(tmp_path):
    from sid_keras.models import VAEUNet
    from sid_keras.training.task import finetune

    VAEUNet(width=4, depth=3).save(tmp_path / "vae.keras")
    with pytest.raises(SidError, match="fine-tuning takes a unet, fast_unet, double_unet model"):
        finetune(tmp_path / "vae.keras", load_config("shipped"), tmp_path / "mine.keras")
    assert not (tmp_path / "mine.run").exists()


def test_the_malvar_demosaic_base_matches_the_published_filters_and_beats_bilinear():
    """The packed Malvar-He-Cutler kernel equals the paper's 5x5 filters applied to the mosaic
    (an independent full-resolution implementation below), and on a sharp scene whose colours
    share their edges, as a photo's do, it is closer to the scene than the bilinear base."""
    from scipy import ndimage

    from sid_keras.runtime.cfa import BAYER

    rng = np.random.default_rng(0)  # a scene like a photo's: sharp luminance, smooth colour
    luminance = ndimage.gaussian_filter(rng.random((40, 48)), 1.2)
    tint = ndimage.gaussian_filter(rng.random((40, 48, 3)), (6, 6, 0))
    image = luminance[..., None] * (0.5 + tint)
    image = (image / image.max()).astype(np.float32)
    green_at_rb = np.array([[0, 0, -1, 0, 0], [0, 0, 2, 0, 0], [-1, 2, 4, 2, -1], [0, 0, 2, 0, 0],
                            [0, 0, -1, 0, 0]]) / 8
    from_row = np.array([[0, 0, .5, 0, 0], [0, -1, 0, -1, 0], [-1, 4, 5, 4, -1], [0, -1, 0, -1, 0],
                         [0, 0, .5, 0, 0]]) / 8
    across = np.array([[0, 0, -1.5, 0, 0], [0, 2, 0, 2, 0], [-1.5, 0, 6, 0, -1.5], [0, 2, 0, 2, 0],
                       [0, 0, -1.5, 0, 0]]) / 8
    mosaic = np.choose(np.tile([[0, 1], [1, 2]], (20, 24)), np.moveaxis(image, -1, 0))  # RGGB
    red_site, blue_site = np.zeros((40, 48), bool), np.zeros((40, 48), bool)
    red_site[0::2, 0::2], blue_site[1::2, 1::2] = True, True
    green_site = ~(red_site | blue_site)
    red_row = np.zeros((40, 48), bool)
    red_row[0::2] = True

    def filtered(kernel):
        return ndimage.correlate(mosaic, kernel, mode="nearest")

    expected = np.stack([mosaic] * 3, axis=-1)
    expected[..., 1] = np.where(green_site, mosaic, filtered(green_at_rb))
    for colour, own_row, other_site in ((0, red_row, blue_site), (2, ~red_row, red_site)):
        at_green = np.where(own_row, filtered(from_row), filtered(from_row.T))
        expected[..., colour] = np.where(green_site, at_green, expected[..., colour])
        expected[..., colour] = np.where(other_site, filtered(across), expected[..., colour])
    packed = BAYER.pack_rgb(image)[None].astype("float32")
    malvar = build_model("unet", width=4, depth=3, demosaic_residual=True, demosaic="malvar")
    bilinear = build_model("unet", width=4, depth=3, demosaic_residual=True)
    out = np.asarray(malvar(packed))[0]
    inside = (slice(2, -2), slice(2, -2))
    np.testing.assert_allclose(out[inside], expected[inside], atol=1e-5)
    error = lambda model: float(np.mean((np.asarray(model(packed))[0][inside] - image[inside]) ** 2))  # noqa: E731
    assert error(malvar) < 0.5 * error(bilinear)
    with pytest.raises(SidError, match="choose one of bilinear, malvar"):
        build_model("unet", width=4, depth=3, demosaic_residual=True, demosaic="ahd")


def test_init_from_takes_the_learned_weights_and_keeps_the_configured_demosaic(tmp_path):
    """A run may start from a bilinear-base model and refine a Malvar base: every learned weight
    is copied, the fixed demosaic is the configured one; another architecture is refused."""
    from sid_keras.models.layers import demosaic_kernel
    from sid_keras.training.task import Task

    source = UNet(width=4, depth=3, demosaic_residual=True, demosaic_gate=True)
    source.set_weights([w + 0.01 for w in source.get_weights()])
    source.save(tmp_path / "bilinear.keras")
    UNet(width=4, depth=2).save(tmp_path / "shallow.keras")

    def task(path, demosaic="malvar"):
        return Task(load_config("synthetic", ["model.args={width=4, depth=3, demosaic_residual=true, "
                                              f"demosaic_gate=true, demosaic='{demosaic}'}}",
                                              f"train.init_from='{path}'"]))

    run = task(tmp_path / "bilinear.keras")
    model = run.build_model()
    run.init_weights(model)
    for copied, learned in zip(model.trainable_weights, source.trainable_weights):
        np.testing.assert_array_equal(copied.numpy(), learned.numpy())
    np.testing.assert_array_equal(model.get_layer("demosaic_conv").get_weights()[0], demosaic_kernel("malvar"))
    with pytest.raises(SidError, match="not the configured UNet"):
        run = task(tmp_path / "shallow.keras")
        run.init_weights(run.build_model())
