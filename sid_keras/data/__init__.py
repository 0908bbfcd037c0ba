"""Datasets: SID list files, the packed decode cache and tf.data pipelines.

``import sid_keras.data`` stays light; TensorFlow is imported by the pipeline functions.
"""

from sid_keras.data.cache import (
    CachedPair,
    PackedCache,
    build_cache,
    cache_photos,
    default_cache_dir,
)
from sid_keras.data.lists import MISALIGNED_SCENES, SidPair, read_sid_list
from sid_keras.data.pipeline import (
    distributed_dataset_fn,
    frame_dataset,
    synthetic_dataset,
    training_dataset,
)

__all__ = [
    "MISALIGNED_SCENES",
    "CachedPair",
    "PackedCache",
    "SidPair",
    "build_cache",
    "cache_photos",
    "default_cache_dir",
    "distributed_dataset_fn",
    "frame_dataset",
    "read_sid_list",
    "synthetic_dataset",
    "training_dataset",
]
