"""Training across machines: MultiWorkerMirroredStrategy with a custom loop.

Keras 3's ``fit`` breaks under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585), so
``sid-keras train`` switches to this loop when ``TF_CONFIG`` names more than one worker. Each
worker reads its own shard of the data (``distribute_datasets_from_function``), the per-replica
batch is the global batch divided by the replica count, losses are averaged over the global
batch and the optimizer all-reduces the gradients, so every worker holds the same weights.
The chief (worker 0) writes checkpoints and ``final.keras``; the others write to a scratch
folder, as ``tf.distribute`` expects every worker to save.
"""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np

from sid_keras.config import Config


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
    """Train with a custom ``strategy.run`` loop; returns the last epoch's mean loss per epoch."""
    import tensorflow as tf

    from sid_keras.data import distributed_dataset_fn
    from sid_keras.io import save_model_atomic
    from sid_keras.training import _cached_entries, build_and_compile, learning_rate_at, steps_per_epoch

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    entries = _cached_entries(config, config.data.train_list, first_burst_only=config.data.first_burst_only,
                              progress=False)
    global_batch = config.data.batch_size
    dataset = strategy.distribute_datasets_from_function(
        distributed_dataset_fn(entries, patch_size=config.data.patch_size, global_batch_size=global_batch,
                               seed=config.train.seed))
    with strategy.scope():
        model = build_and_compile(config, entries[0].channels, entries[0].scale)
        model.optimizer.build(model.trainable_variables)
    if hasattr(model, "d_optimizer"):
        raise NotImplementedError("multi-worker training covers the plain models; train GANs with fit")

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            prediction = model(x, training=True)
            per_example = tf.reduce_mean(tf.abs(prediction - y), axis=[1, 2, 3])
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses)) if model.losses else 0.0
        gradients = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply(gradients, model.trainable_variables)
        return loss

    @tf.function
    def step(iterator):
        x, y = next(iterator)
        losses = strategy.run(replica_step, args=(x, y))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    steps = steps_per_epoch(config, len(entries))
    iterator = iter(dataset)
    history = []
    for epoch in range(config.train.epochs):
        model.optimizer.learning_rate = learning_rate_at(epoch, config.train)
        losses = [float(step(iterator)) for _ in range(steps)]
        history.append(float(np.mean(losses)))
        log(f"worker {task_index()}: epoch {epoch + 1}/{config.train.epochs} loss {history[-1]:.4f}")
    out = pathlib.Path(config.train.out_dir)
    target = out if task_index() == 0 else out / f".worker{task_index()}"
    save_model_atomic(model, target / "final.keras")
    return {"loss": history, "model": model}
