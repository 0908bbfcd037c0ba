"""Datasets: SID list files, the packed decode cache and tf.data pipelines.

``import sid_keras.data`` stays light; TensorFlow is imported by the pipeline functions.
"""

from sid_keras.data.cache import CachedPair, PackedCache, build_cache
from sid_keras.data.lists import MISALIGNED_SCENES, SidPair, read_sid_list
from sid_keras.data.pipeline import distributed_dataset_fn, frame_dataset, training_dataset

__all__ = [
    "MISALIGNED_SCENES",
    "CachedPair",
    "PackedCache",
    "SidPair",
    "build_cache",
    "distributed_dataset_fn",
    "frame_dataset",
    "read_sid_list",
    "training_dataset",
]
