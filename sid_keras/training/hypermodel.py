"""The keras-tuner HyperModel: each trial builds and fits the training recipe's own Task.

A trial's hyperparameters become a training config (:func:`sid_keras.training.tuning.trial_config`);
:meth:`SidHyperModel.build` compiles that config's model and :meth:`SidHyperModel.fit` runs it
with the recipe's learning-rate schedule, so a search measures what `sid-keras train` runs. This
module imports keras-tuner (the ``tuning`` extra); :mod:`sid_keras.training.tuning` imports it when a
search starts.
"""

from __future__ import annotations

from typing import Callable

import keras_tuner as kt

from sid_keras.training.task import Task


class SidHyperModel(kt.HyperModel):
    """Hyperparameters -> a :class:`~sid_keras.training.task.Task`, built and fitted as `sid-keras train` would.

    Args:
        config_for: a trial's hyperparameters -> its training config
            (:func:`sid_keras.training.tuning.trial_config` over the job's search space).
        channels, scale: of the training data (4, 2 for Bayer; 9, 3 for X-Trans).
    """

    def __init__(self, config_for: Callable, channels: int, scale: int):
        super().__init__(name="sid_keras")
        self.config_for, self.channels, self.scale = config_for, channels, scale

    def task(self, hp) -> Task:
        return Task(self.config_for(hp))

    def build(self, hp):
        return self.task(hp).build_model(self.channels, self.scale)

    def fit(self, hp, model, *args, callbacks=None, **kwargs):
        """``model.fit`` with the trial's schedule before keras-tuner's own callbacks."""
        return model.fit(*args, callbacks=[self.task(hp).schedule(), *(callbacks or [])], **kwargs)
