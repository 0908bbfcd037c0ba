"""Training across machines: the recipe's :class:`~sid_keras.training.task.Task` in a custom loop.

Keras 3's ``fit`` breaks under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585), so
``sid-keras train`` switches to this loop when ``TF_CONFIG`` names more than one worker. It runs
the same recipe as ``fit``: the task's data stream (each worker reads its own share through
``distribute_datasets_from_function``, the per-replica batch is the global batch divided by the
replica count), the step ``fit`` runs (the compiled model's own ``train_step``: the task's loss,
scaled for the replicas by Keras, and its metrics), the task's learning-rate schedule, its
validation and best-model keeping by validation PSNR, and its checkpoints: a run killed even with
SIGKILL resumes from the last completed epoch with the very batches it would have seen, so its
final weights equal an uninterrupted run's. The chief (worker 0) writes the files; every worker
restores from them. GAN variants (two optimizers, a custom ``train_step``) are refused before
any work: train them with ``fit`` on one machine. As ``fit`` does, the chief holds the run
folder's lock, refuses a folder of another model, writes ``log.csv`` and stops at a loss that
turns non-finite, keeping the last good checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os

import numpy as np

from sid_keras.errors import SidError
from sid_keras.training.config import Config


def cluster_workers() -> int:
    """Number of workers TF_CONFIG declares (0 when unset)."""
    try:
        config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    except json.JSONDecodeError:
        return 0
    return len(config.get("cluster", {}).get("worker", []))


def task_index() -> int:
    return int(json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index", 0))


def train_multi_worker(config: Config, *, log=print) -> dict:
    """Train with a custom ``strategy.run`` loop; returns the mean loss per epoch and the model."""
    from sid_keras.training.task import Task, run_folder_lock

    task = Task(config)
    if task.is_gan:
        raise SidError(f"[model] name = {config.model.name!r}: several machines train the plain models; train "
                       "GANs on one machine (unset TF_CONFIG)")
    chief = task_index() == 0
    with run_folder_lock(task.out) if chief else contextlib.nullcontext():  # the chief writes the folder
        task.check_run_dir()
        return _train_loop(task, config, chief, log)


def _train_loop(task, config: Config, chief: bool, log) -> dict:
    """The loop of :func:`train_multi_worker`, inside the chief's lock on the run folder."""
    import tensorflow as tf

    from sid_keras.data.pipeline import distributed_dataset_fn
    from sid_keras.models.metrics import psnr
    from sid_keras.runtime.io import save_model_atomic
    from sid_keras.training.callbacks import KeepBest, RunLog

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    data = task.data()
    with strategy.scope():
        model = task.build_model(data.channels, data.scale)
        model.optimizer.build(model.trainable_variables)
    checkpoint = task.checkpoint(log)
    start_epoch = checkpoint.restore(model)
    if task.average:
        task.average.restore(start_epoch, log)
    if chief:
        task.trim_log(start_epoch)
        config.write(task.out / "config.json")
        run_log = RunLog(str(task.out / "log.csv"), append=True)
        run_log.set_model(model)
        run_log.on_train_begin()
    global_batch = config.data.batch_size
    dataset = strategy.distribute_datasets_from_function(
        distributed_dataset_fn(data.sources, global_batch_size=global_batch, weights=data.weights,
                               seed=config.train.seed, start=task.first_element(data, start_epoch)))

    @tf.function
    def step(iterator):
        strategy.run(model.train_step, args=(next(iterator),))

    def validate() -> float:
        scores = [float(np.mean(psnr(y, model(x, training=False), display=task.display))) for x, y in data.val]
        return float(np.mean(scores))

    best = KeepBest(task.out / "best.keras", monitor="val_psnr")
    steps = task.steps_per_epoch(data)
    iterator = iter(dataset)
    history = []
    for epoch in range(start_epoch, config.train.epochs):
        model.optimizer.learning_rate = task.learning_rate(epoch)
        model.reset_metrics()
        for _ in range(steps):
            step(iterator)
        logs = {k: float(v) for k, v in model.get_metrics_result().items()}
        history.append(logs["loss"])
        if not np.isfinite(logs["loss"]):  # nothing of this epoch is kept: the last good checkpoint stays
            task.divergence.diverged = f"epoch {epoch + 1} (loss {logs['loss']})"
            task.raise_if_diverged()
        logs["learning_rate"] = float(task.learning_rate(epoch))
        line = f"worker {task_index()}: epoch {epoch + 1}/{config.train.epochs} loss {history[-1]:.4f}"
        if (epoch + 1) % config.train.val_every == 0:
            logs["val_psnr"] = value = validate()
            line += f" val_psnr {value:.2f}"
            if chief:
                best.update(model, value, epoch + 1)
        if chief:
            run_log.on_epoch_end(epoch, logs)  # the row before the checkpoint, as fit's callbacks order them
            if task.average:
                task.average.add(model, epoch + 1)
            checkpoint.save(model, epoch + 1)
        log(line)
    if chief:
        run_log.on_train_end()
        save_model_atomic(model, task.out / "final.keras")
        task.save_average(model, validate, log)
    return {"loss": history, "model": model, "start_epoch": start_epoch}

