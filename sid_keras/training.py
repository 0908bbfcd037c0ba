"""The fit recipe: datasets, model, optimizers, schedule, checkpoints and resume, from a Config.

A run lives in ``train.out_dir``::

    config.json        the resolved config (a different model there is refused)
    backup/            Keras BackupAndRestore state: weights, optimizers, epoch (resume)
    best.keras         best model by validation PSNR (best.json says which epoch)
    final.keras        the model after the last epoch
    log.csv            one line per epoch
    tensorboard/       scalars and validation image triplets

Re-running the same command after a crash (even SIGKILL mid-epoch) continues from the last
completed epoch. Users can equally call ``model.fit`` on :func:`load_datasets` themselves.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib

import numpy as np

from sid_keras.config import Config, TrainConfig
from sid_keras.errors import SidError
from sid_keras.io import save_model_atomic

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
    train_pairs: int
    val_pairs: int


def _cached_entries(config: Config, list_name: str, *, first_burst_only: bool, progress: bool):
    from sid_keras.data import build_cache, read_sid_list

    root = pathlib.Path(config.data.root)
    if not config.data.root or not root.is_dir():
        raise SidError(f"[data] root = {config.data.root!r}: no such dataset folder "
                       "(a SID download, or `sid-keras synth --out DIR`)")
    pairs = read_sid_list(list_name, root, first_burst_only=first_burst_only)
    cache = config.data.cache_dir or str(root / ".sid_cache")
    return build_cache(pairs, cache, ratio_cap=config.data.ratio_cap,
                       workers=config.data.decode_workers, progress=progress)


def load_datasets(config: Config, *, progress: bool = False) -> Datasets:
    """Decode (once, cached) and build the training and validation datasets of a config."""
    from sid_keras.data import frame_dataset, training_dataset

    train_entries = _cached_entries(config, config.data.train_list,
                                    first_burst_only=config.data.first_burst_only, progress=progress)
    val_entries = _cached_entries(config, config.data.val_list, first_burst_only=True, progress=progress)
    batch = config.data.batch_size
    train = training_dataset(train_entries, patch_size=config.data.patch_size, batch_size=batch,
                             seed=config.train.seed)
    val = frame_dataset(val_entries, max_side=config.data.val_max_side)
    steps = steps_per_epoch(config, len(train_entries))
    return Datasets(train, val, steps, train_entries[0].channels, train_entries[0].scale,
                    len(train_entries), len(val_entries))


def steps_per_epoch(config: Config, pairs: int) -> int:
    """Configured steps, or SID's epoch: one crop of every training pair."""
    return config.train.steps_per_epoch or max(1, math.ceil(pairs / config.data.batch_size))


def build_and_compile(config: Config, channels: int = 4, scale: int = 2):
    """The configured model, compiled with Adam, L1 and PSNR/SSIM (two optimizers for GANs)."""
    import keras

    from sid_keras.metrics import PSNR, SSIM
    from sid_keras.models import build_model

    args = {"in_channels": channels, "scale": scale, **config.model.args}
    model = build_model(config.model.name, **args)
    metrics = [PSNR(), SSIM()]
    optimizer = keras.optimizers.Adam(config.train.learning_rate)
    if hasattr(model, "d_optimizer"):
        model.compile(optimizer=optimizer, d_optimizer=keras.optimizers.Adam(config.train.d_learning_rate),
                      metrics=metrics)
    else:
        model.compile(optimizer=optimizer, loss="mae", metrics=metrics)
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


def train(config: Config, *, verbose: int | str = "auto", progress: bool = False):
    """Run (or resume) the configured training; returns the Keras History."""
    import keras

    from sid_keras.callbacks import KeepBest, StepSchedule, ValidationImages

    out = pathlib.Path(config.train.out_dir)
    _check_run_dir(out, config)
    out.mkdir(parents=True, exist_ok=True)
    config.write(out / "config.json")
    keras.utils.set_random_seed(config.train.seed)
    if config.train.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = pick_strategy()
    datasets = load_datasets(config, progress=progress)
    with strategy.scope():
        model = build_and_compile(config, datasets.channels, datasets.scale)
        if config.train.init_from:
            _init_weights(model, config.train.init_from)
    callbacks = [
        StepSchedule(config.train),
        keras.callbacks.BackupAndRestore(str(out / "backup"), save_freq="epoch", double_checkpoint=True,
                                         delete_checkpoint=False),
        KeepBest(out / "best.keras", monitor="val_psnr"),
        keras.callbacks.CSVLogger(str(out / "log.csv"), append=True),
        keras.callbacks.TensorBoard(str(out / "tensorboard"), write_graph=False),
        ValidationImages(out / "tensorboard" / "images", datasets.val, config.train.val_every,
                         config.train.log_images),
    ]
    history = model.fit(datasets.train, epochs=config.train.epochs, steps_per_epoch=datasets.steps_per_epoch,
                        validation_data=datasets.val, validation_freq=config.train.val_every,
                        callbacks=callbacks, verbose=verbose)
    save_model_atomic(model, out / "final.keras")
    return history


def summarize_history(history) -> dict:
    """Last and best values of each logged metric, for printing."""
    return {k: {"last": float(v[-1]), "best": float(np.nanmax(v) if "psnr" in k or "ssim" in k else np.nanmin(v))}
            for k, v in history.history.items() if v}
