"""Keras callbacks of the training recipe: schedule, checkpoints, best-model keeping, images."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib

import keras
import numpy as np

from sid_keras.errors import SidError
from sid_keras.runtime.io import atomic_path, save_model_atomic, write_json


class StepSchedule(keras.callbacks.Callback):
    """Sets the learning rate(s) at each epoch from the epoch number alone, so resume is exact.

    ``rate_at(epoch, base=None)`` is the schedule (:meth:`sid_keras.training.task.Task.learning_rate`);
    a GAN's discriminator follows the same schedule from its own base rate ``d_base``. The rate
    is logged as ``learning_rate``.
    """

    def __init__(self, rate_at, d_base: float | None = None):
        super().__init__()
        self.rate_at, self.d_base = rate_at, d_base

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate = self.rate_at(epoch)
        if getattr(self.model, "d_optimizer", None) is not None and self.d_base is not None:
            self.model.d_optimizer.learning_rate = self.rate_at(epoch, base=self.d_base)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(np.asarray(self.model.optimizer.learning_rate))


def read_record(path: pathlib.Path, key: str) -> dict:
    """A run folder's JSON record holding ``key`` ({} if absent); a file that cannot be read, or
    is not such a record, is one line naming it."""
    if not path.exists():
        return {}
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as err:
        raise SidError(f"{path}: unreadable ({type(err).__name__}); delete it, or choose another "
                       "train.out_dir") from None
    if not isinstance(record, dict) or key not in record:
        raise SidError(f"{path}: not a sid-keras run record (no {key!r}); delete it, or choose another "
                       "train.out_dir")
    return record


class RunLog(keras.callbacks.CSVLogger):
    """log.csv: Keras's CSV log with one fixed set of columns: every training metric, its
    validation twin and the validation-only metrics (:data:`sid_keras.models.metrics.VALIDATION_ONLY`),
    whether or not the first epoch validates. A resumed run appends under the file's own header,
    so its rows line up with the rows before the resume."""

    def on_epoch_end(self, epoch, logs=None):
        if self.keys is None:
            self.keys = self._columns_of_existing_file() or self._columns(logs or {})
        super().on_epoch_end(epoch, logs)

    def _columns_of_existing_file(self) -> list[str]:
        path = pathlib.Path(self.filename)
        if not (self.append and path.exists()):
            return []
        with open(path) as log:
            header = log.readline().strip()
        return [name for name in header.split(self.sep) if name and name != "epoch"]

    @staticmethod
    def _columns(logs) -> list[str]:
        from sid_keras.models.metrics import VALIDATION_ONLY

        trained = sorted(k for k in logs if not k.startswith("val_"))
        return trained + [f"val_{k}" for k in sorted({*trained, *VALIDATION_ONLY})]


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop training at the first non-finite loss, remembering where (``diverged``), so that no
    weights computed from it become a checkpoint or a result."""

    def __init__(self):
        super().__init__()
        self.epoch, self.diverged = 0, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss) and self.diverged is None:
            self.diverged = f"epoch {self.epoch + 1}, step {batch + 1} (loss {float(loss)})"
            self.model.stop_training = True


def finite_weights(model) -> bool:
    return all(np.all(np.isfinite(w)) for w in model.get_weights())


class Checkpoint(keras.callbacks.Callback):
    """Weights, optimizer state and epoch after every epoch, written so no crash can tear them.

    Each save writes a new ``latest`` (weights to a temporary file renamed into place, then the
    epoch), after moving the last one to ``previous``. :meth:`restore` loads the newest readable
    pair and falls back to the previous one with a one-line notice when the latest is torn (a
    full disk, a kill mid-write): a run folder never locks itself.
    """

    NAMES = ("latest", "previous")

    def __init__(self, folder: str | pathlib.Path, log=print):
        super().__init__()
        self.folder = pathlib.Path(folder)
        self.log = log

    def _paths(self, name: str) -> tuple[pathlib.Path, pathlib.Path]:
        return self.folder / f"{name}.weights.h5", self.folder / f"{name}.json"

    def restore(self, model) -> int:
        """Load the newest readable checkpoint into ``model``; returns the epochs it completed."""
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        problems = []
        for name in self.NAMES:
            weights, record = self._paths(name)
            if not weights.exists():
                continue
            try:
                epoch = json.loads(record.read_text())["epoch"]
            except (OSError, ValueError, KeyError, TypeError, RecursionError) as err:
                problems.append(f"{record.name} ({type(err).__name__})")
                continue
            if type(epoch) is not int or epoch < 1:  # 5.0, "NaN", -5: not the count of epochs a save records
                problems.append(f"{record.name} (epoch {epoch!r} is not a count of finished epochs)")
                continue
            try:
                model.load_weights(weights)
            except Exception as err:  # noqa: BLE001 - h5py and Keras each fail their own way
                problems.append(f"{weights.name} ({type(err).__name__})")
                continue
            if problems:
                self.log(f"{self.folder}: {', '.join(problems)} unreadable; resuming from the previous "
                         f"checkpoint (epoch {epoch})")
            return epoch
        if problems:
            raise SidError(f"{self.folder}: no readable checkpoint ({', '.join(problems)}); delete the folder "
                           "to train from the start")
        return 0

    def on_epoch_end(self, epoch, logs=None):
        if finite_weights(self.model):  # a diverged epoch leaves the last good checkpoint in place
            self.save(self.model, epoch + 1)

    def save(self, model, epochs_done: int) -> None:
        """Save ``model`` (weights and optimizer state) after ``epochs_done`` epochs."""
        self.folder.mkdir(parents=True, exist_ok=True)
        latest, latest_record = self._paths("latest")
        previous, previous_record = self._paths("previous")
        with atomic_path(latest, suffix=".weights.h5") as fresh:  # renamed into place at the end of the block
            model.save_weights(fresh, overwrite=True)
            if latest.exists() and latest_record.exists():
                os.replace(latest, previous)
                os.replace(latest_record, previous_record)
        write_json(latest_record, {"epoch": epochs_done})


class WeightAverage(keras.callbacks.Callback):
    """The mean of the weights after each epoch past ``start`` (stochastic weight averaging,
    Izmailov et al., 2018): late in a run the weights wander around a minimum, and their mean
    usually validates better than any one epoch's, at no training cost.

    The running mean, with the first and last epoch it holds, is saved after each epoch in
    ``folder`` (the newest two, like :class:`Checkpoint`, and before it), so a resumed run
    continues the very mean its checkpoint belongs to.
    """

    NAMES = ("average", "average-previous")

    def __init__(self, folder: str | pathlib.Path, start: int):
        super().__init__()
        self.folder, self.start = pathlib.Path(folder), start
        self.mean: list[np.ndarray] | None = None
        self.count = 0  # epochs in the mean, from first to last
        self.first = self.last = 0

    def restore(self, epochs_done: int, log=print) -> None:
        """Load the mean saved after ``epochs_done`` epochs (the checkpoint's), if averaging had begun."""
        self.mean, self.count, self.first, self.last = None, 0, 0, 0
        if epochs_done <= self.start:
            return
        for name in self.NAMES:
            try:
                with np.load(self.folder / f"{name}.npz") as saved:
                    if int(saved["epoch"]) != epochs_done:
                        continue
                    self.mean = [saved[k] for k in sorted(k for k in saved.files if k.startswith("w"))]
                    self.count, self.first, self.last = int(saved["count"]), int(saved["first"]), epochs_done
                    return
            except Exception:  # noqa: BLE001 - a missing or torn file: try the previous one
                continue
        log(f"{self.folder}: no weight average saved at epoch {epochs_done}; averaging again from "
            f"epoch {epochs_done + 1}")

    def on_epoch_end(self, epoch, logs=None):
        self.add(self.model, epoch + 1)

    def add(self, model, epoch: int) -> None:
        """Fold the weights after ``epoch`` into the mean (a diverged epoch is left out)."""
        if epoch <= self.start or not finite_weights(model):
            return
        weights = model.get_weights()
        self.count, self.last = self.count + 1, epoch
        if self.mean is None:
            self.mean, self.first = [np.array(w) for w in weights], epoch
        else:  # floats averaged; anything else (a counter) follows the latest epoch
            self.mean = [m + (w - m) / self.count if np.issubdtype(w.dtype, np.floating) else w
                         for m, w in zip(self.mean, weights)]
        self.folder.mkdir(parents=True, exist_ok=True)
        latest, previous = (self.folder / f"{name}.npz" for name in self.NAMES)
        if latest.exists():
            os.replace(latest, previous)
        with atomic_path(latest) as tmp, open(tmp, "wb") as f:
            weights = {f"w{i:05d}": w for i, w in enumerate(self.mean)}
            np.savez(f, epoch=epoch, count=self.count, first=self.first, **weights)

    @contextlib.contextmanager
    def applied(self, model):
        """``model`` holds the mean weights inside the block, its own again after it."""
        kept = model.get_weights()
        model.set_weights(self.mean)
        try:
            yield model
        finally:
            model.set_weights(kept)


class KeepBest(keras.callbacks.Callback):
    """Save the model when ``monitor`` (maximised) beats the best so far, across resumes.

    The best value lives in ``<path>.json`` beside the model, so a resumed run does not replace
    a better model from before the crash.
    """

    def __init__(self, path: str | pathlib.Path, monitor: str = "val_psnr"):
        super().__init__()
        self.path = pathlib.Path(path)
        self.record = self.path.with_suffix(".json")
        self.monitor = monitor

    def _best(self) -> float:
        return float(read_record(self.record, self.monitor).get(self.monitor, -np.inf))

    def on_epoch_end(self, epoch, logs=None):
        self.update(self.model, (logs or {}).get(self.monitor), epoch + 1)

    def update(self, model, value: float | None, epoch: int) -> bool:
        """Save ``model`` if ``value`` beats the best so far; True if it did."""
        if value is None or not np.isfinite(value) or value <= self._best():
            return False
        save_model_atomic(model, self.path)
        write_json(self.record, {self.monitor: float(value), "epoch": epoch})
        return True


class ValidationImages(keras.callbacks.Callback):
    """Write (amplified input, output, ground truth) triplets to TensorBoard on validation epochs."""

    def __init__(self, log_dir, val_dataset, every: int, count: int = 2):
        super().__init__()
        self.log_dir, self.val, self.every, self.count = str(log_dir), val_dataset, every, count
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if self.count <= 0 or (epoch + 1) % self.every:
            return
        import tensorflow as tf

        from sid_keras.models import inference_model
        from sid_keras.runtime.cfa import BAYER, XTRANS
        from sid_keras.runtime.render import packed_preview

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        net = inference_model(self.model)
        with self._writer.as_default():
            for i, (x, y) in enumerate(self.val.take(self.count)):
                out = np.clip(net.predict(x, verbose=0), 0, 1)
                layout = BAYER if y.shape[1] // x.shape[1] == BAYER.scale else XTRANS
                preview = packed_preview(x.numpy()[0], layout)
                triplet = np.concatenate([preview, out[0], y.numpy()[0]], axis=1)
                tf.summary.image(f"val/{i}_input_output_truth", triplet[None], step=epoch + 1)
        self._writer.flush()
