"""Model runners: a Keras model or a file (.keras, or .tflite through :mod:`sid_keras.runtime.lite`)
as a function from a batch of packed tiles to RGB, and the shipped model's files.
"""

from __future__ import annotations

import os
import pathlib
from typing import Callable

import numpy as np

from sid_keras import ASSETS_DIR
from sid_keras.errors import SidError

# The shipped model: training, fine-tuning and export start from the .keras file; enhancing uses
# the same weights as TFLite (no TensorFlow import; the model card says which variant).
DEFAULT_MODEL_FILE = ASSETS_DIR / "default.keras"

DEFAULT_TFLITE_FILE = ASSETS_DIR / "default.tflite"


def keras_predictor(model) -> Callable[[np.ndarray], np.ndarray]:
    """A tile predictor from a Keras model (the generator of a GAN), compiled once per shape, with
    the model's :class:`~sid_keras.runtime.convention.Convention` as ``.convention``."""
    import tensorflow as tf

    from sid_keras.models import convention_of, inference_model, with_precision

    net = with_precision(inference_model(model), None)  # float32, whatever it was trained in
    fn = tf.function(lambda x: net(x, training=False), reduce_retracing=True)
    fixed = tuple(net.inputs[0].shape[1:3])
    if None in fixed:
        predict = lambda x: fn(tf.convert_to_tensor(x, tf.float32)).numpy()  # noqa: E731
        predict.fixed_tile, predict.convention = None, convention_of(model)
        return predict

    def padded(x: np.ndarray) -> np.ndarray:  # a fixed-size model: tiles padded to its size, as TFLite's
        h, w = x.shape[1:3]
        if h > fixed[0] or w > fixed[1]:
            raise SidError(f"the model takes a fixed {fixed[0]}x{fixed[1]} input, smaller than the tile {h}x{w}; "
                           f"use --tile {min(fixed)} or less")
        y = fn(tf.convert_to_tensor(np.pad(x, ((0, 0), (0, fixed[0] - h), (0, fixed[1] - w), (0, 0)),
                                           mode="symmetric"), tf.float32)).numpy()
        scale = y.shape[1] // fixed[0]
        return y[:, : h * scale, : w * scale]

    padded.fixed_tile, padded.convention = min(fixed), convention_of(model)
    return padded


def load_model(path: str | os.PathLike | None = None):
    """A Keras model from a ``.keras`` file (default: the model shipped with the package)."""
    import keras

    import sid_keras.models  # noqa: F401  (registers the custom classes)

    path = pathlib.Path(path) if path else DEFAULT_MODEL_FILE
    if not path.is_file():
        from sid_keras.runtime.lite import missing_model_message

        raise SidError(missing_model_message(path))
    import zipfile

    if not zipfile.is_zipfile(path):
        raise SidError(f"{path}: not a .keras model (not a zip archive: truncated, or another format)")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as err:  # Keras raises many types for a bad file
        reason = str(err).splitlines()[0] if str(err) else ""
        raise SidError(f"{path}: not a loadable .keras model ({type(err).__name__}: {reason})") from None
