"""The fit recipe: datasets, model, optimizers, schedule, checkpoints and resume, from a Config.

A run lives in ``train.out_dir``::

    config.json        the resolved config (a different model there is refused)
    checkpoint/        weights, optimizers and epoch of the last two epochs (resume)
    .lock              held while a process trains here
    best.keras         best model by validation PSNR (best.json says which epoch)
    final.keras        the model after the last epoch
    log.csv            one line per epoch
    tensorboard/       scalars and validation image triplets

Re-running the same command after a crash (even SIGKILL mid-epoch) continues from the last
completed epoch. Users can equally call ``model.fit`` on :func:`load_datasets` themselves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pathlib

import numpy as np

from sid_keras.config import Config, TrainConfig
from sid_keras.errors import SidError
from sid_keras.io import save_model_atomic
from sid_keras.render import LINEAR

SID_DECAY_FACTOR = 0.1  # SID: 1e-4, then 1e-5 after half the epochs


def learning_rate_at(epoch: int, train: TrainConfig) -> float:
    """Learning rate of a (0-based) epoch under the configured schedule."""
    if train.schedule == "sid":
        return train.learning_rate * (SID_DECAY_FACTOR if epoch >= train.epochs // 2 else 1.0)
    return train.learning_rate * train.gamma ** (epoch // train.step_epochs)


@dataclasses.dataclass
class Datasets:
    train: object  # tf.data.Dataset, repeated
    val: object  # tf.data.Dataset of whole frames, batch 1
    steps_per_epoch: int
    channels: int
    scale: int
    train_pairs: int  # real pairs, plus photos for synthetic pairs
    val_pairs: int


def _cache_dir(config: Config) -> pathlib.Path:
    from sid_keras.data.cache import default_cache_dir

    return pathlib.Path(config.data.cache_dir) if config.data.cache_dir else default_cache_dir()


def _cached_entries(config: Config, list_name: str, *, first_burst_only: bool, progress: bool):
    from sid_keras.data import build_cache, read_sid_list

    root = pathlib.Path(config.data.root)
    if not config.data.root or not root.is_dir():
        raise SidError(f"[data] root = {config.data.root!r}: no such dataset folder "
                       "(a SID download, or `sid-keras synth --out DIR`)")
    pairs = read_sid_list(list_name, root, first_burst_only=first_burst_only)
    return build_cache(pairs, _cache_dir(config), ratio_cap=config.data.ratio_cap,
                       linear=config.model.output == LINEAR, workers=config.data.decode_workers,
                       progress=progress)


def _cached_photos(config: Config, progress: bool) -> list[str]:
    from sid_keras.data.cache import cache_photos
    from sid_keras.synthetic import find_photos

    photos = [p for folder in config.data.photos for p in find_photos(folder)]
    return cache_photos(photos, _cache_dir(config), workers=config.data.decode_workers, progress=progress)


def load_datasets(config: Config, *, progress: bool = False) -> Datasets:
    """Decode (once, cached) and build the training and validation datasets of a config.

    Training draws from real pairs (``data.train_list``), from pairs synthesised on the fly
    from clean photos (``data.photos``), or from both in the ratio ``data.synthetic_share``.
    """
    import tensorflow as tf

    from sid_keras.data import frame_dataset, synthetic_dataset, training_dataset
    from sid_keras.noise import load_profile

    d = config.data
    sources, weights, count = [], [], 0
    channels, scale = 4, 2
    if d.train_list:
        entries = _cached_entries(config, d.train_list, first_burst_only=d.first_burst_only, progress=progress)
        sources.append(training_dataset(entries, patch_size=d.patch_size, batch_size=None, seed=config.train.seed))
        weights.append(1 - d.synthetic_share)
        channels, scale, count = entries[0].channels, entries[0].scale, count + len(entries)
    if d.photos:
        if channels != 4:
            raise SidError("[data] photos synthesise Bayer pairs; they cannot be mixed with X-Trans pairs")
        photos = _cached_photos(config, progress)
        sources.append(synthetic_dataset(photos, patch_size=d.patch_size, batch_size=None, seed=config.train.seed,
                                         profile=load_profile(d.noise_profile), ratio_range=tuple(d.ratio_range)))
        weights.append(d.synthetic_share if d.train_list else 1.0)
        count += len(photos)
    train = sources[0] if len(sources) == 1 else tf.data.Dataset.sample_from_datasets(
        sources, weights=weights, seed=config.train.seed)
    train = train.batch(d.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    val_entries = _cached_entries(config, d.val_list, first_burst_only=True, progress=progress)
    val = frame_dataset(val_entries, max_side=d.val_max_side)
    return Datasets(train, val, steps_per_epoch(config, count), channels, scale, count, len(val_entries))


def steps_per_epoch(config: Config, pairs: int) -> int:
    """Configured steps, or SID's epoch: one crop of every training pair."""
    return config.train.steps_per_epoch or max(1, math.ceil(pairs / config.data.batch_size))


def build_and_compile(config: Config, channels: int = 4, scale: int = 2):
    """The configured model, compiled with Adam, L1 and PSNR/SSIM (two optimizers for GANs)."""
    import keras

    from sid_keras.losses import loss_for
    from sid_keras.metrics import PSNR, SSIM
    from sid_keras.models import build_model

    output = config.model.output
    args = {"in_channels": channels, "scale": scale, "output": output, **config.model.args}
    model = build_model(config.model.name, **args)
    display = output == LINEAR  # score linear predictions as they will be seen
    metrics = [PSNR(display=display), SSIM(display=display)]
    optimizer = keras.optimizers.Adam(config.train.learning_rate)
    if hasattr(model, "d_optimizer"):
        model.compile(optimizer=optimizer, d_optimizer=keras.optimizers.Adam(config.train.d_learning_rate),
                      metrics=metrics)
    else:
        model.compile(optimizer=optimizer, loss=loss_for(output), metrics=metrics)
    return model


def _comparable(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in ("name", "trainable")}


def _check_run_dir(out: pathlib.Path, config: Config) -> None:
    """Refuse to resume a run of another architecture in the same folder."""
    saved = out / "config.json"
    if not saved.exists():
        return
    previous = json.loads(saved.read_text()).get("model", {})
    if previous != dataclasses.asdict(config.model):
        raise SidError(f"{out} holds a run of model {previous.get('name')!r} with args "
                       f"{previous.get('args')}; resume it with the same model or choose another "
                       "train.out_dir")


def _init_weights(model, path: str) -> None:
    import keras

    from sid_keras.models import inference_model

    if not os.path.isfile(path):
        raise SidError(f"[train] init_from = {path!r}: no such file")
    source = inference_model(keras.models.load_model(path))
    target = inference_model(model)
    if type(source) is not type(target) or _comparable(source.get_config()) != _comparable(target.get_config()):
        raise SidError(f"{path}: a {type(source).__name__} {_comparable(source.get_config())}, not the "
                       f"configured {type(target).__name__} {_comparable(target.get_config())}")
    target.set_weights(source.get_weights())


def pick_strategy():
    """MirroredStrategy over several local GPUs, else the default strategy."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def train(config: Config, *, verbose: int | str = "auto", progress: bool = False, log=print):
    """Run (or resume) the configured training; returns the Keras History.

    Everything that can fail on a bad config or dataset (the data, the model, ``init_from``, the
    checkpoint to resume) is checked before the run folder is written to, and the folder is
    locked against a second process, so a failed start never locks or corrupts a run.
    """
    import keras

    from sid_keras.callbacks import Checkpoint, KeepBest, StepSchedule, ValidationImages

    out = pathlib.Path(config.train.out_dir)
    with run_folder_lock(out):
        _check_run_dir(out, config)
        keras.utils.set_random_seed(config.train.seed)
        if config.train.mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16")
        strategy = pick_strategy()
        datasets = load_datasets(config, progress=progress)
        checkpoint = Checkpoint(out / "checkpoint", log=log)
        with strategy.scope():
            model = build_and_compile(config, datasets.channels, datasets.scale)
            if config.train.init_from:
                _init_weights(model, config.train.init_from)
            initial_epoch = checkpoint.restore(model)
        config.write(out / "config.json")
        callbacks = [
            StepSchedule(config.train),
            checkpoint,
            KeepBest(out / "best.keras", monitor="val_psnr"),
            keras.callbacks.CSVLogger(str(out / "log.csv"), append=True),
            keras.callbacks.TensorBoard(str(out / "tensorboard"), write_graph=False),
            ValidationImages(out / "tensorboard" / "images", datasets.val, config.train.val_every,
                             config.train.log_images),
        ]
        history = model.fit(datasets.train, epochs=config.train.epochs, initial_epoch=initial_epoch,
                            steps_per_epoch=datasets.steps_per_epoch, validation_data=datasets.val,
                            validation_freq=config.train.val_every, callbacks=callbacks, verbose=verbose)
        save_model_atomic(model, out / "final.keras")
    return history


@contextlib.contextmanager
def run_folder_lock(out: pathlib.Path):
    """Hold an exclusive lock on a run folder; a second process is refused with one line.

    A folder this call created is removed again if the run fails before writing anything in it.
    """
    import fcntl

    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise SidError(f"[train] out_dir = {str(out)!r} is a file, or lies under one; choose a folder") from None
    lock_path = out / ".lock"
    handle = open(lock_path, "a")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SidError(f"{out}: another sid-keras train is running in this folder; wait for it "
                           "or choose another train.out_dir") from None
        try:
            yield
        except BaseException:
            if created and [p.name for p in out.iterdir()] == [lock_path.name]:
                lock_path.unlink()
                out.rmdir()
            raise
    finally:
        handle.close()


def summarize_history(history) -> dict:
    """Last and best values of each logged metric, for printing."""
    return {k: {"last": float(v[-1]), "best": float(np.nanmax(v) if "psnr" in k or "ssim" in k else np.nanmin(v))}
            for k, v in history.history.items() if v}
