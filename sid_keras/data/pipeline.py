"""tf.data pipelines: real pairs from the packed cache, and pairs synthesised on the fly.

Training data is a stream of elements in which element ``i`` is a pure function of ``(seed, i)``:
which pair or photo (every pass over the items visits each once, in a fresh stateless shuffle),
the crop, the flips and, for synthetic pairs, the camera, light and noise. The same seed gives
the same batches; a resumed run starts the stream at the element it had reached and sees exactly
the batches an uninterrupted run would have; input pipelines of tf.distribute take interleaved
shares (:func:`distributed_dataset_fn`). A :class:`Source` draws one kind of pair: real pairs
(:func:`pair_source`: SID's aligned random crop, amplified, the same flips and transpose on
input and target) or synthetic ones (:func:`synthetic_source`); :func:`stream` mixes sources.
Validation reads whole frames (:func:`frame_dataset`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from sid_keras.data.cache import CachedPair, cache_photos, default_cache_dir
from sid_keras.errors import SidError
from sid_keras.runtime.cfa import BAYER
from sid_keras.runtime.model_input import amplified_input
from sid_keras.runtime.render import UINT16_SCALE

ENDLESS = 2**62  # training streams do not end; fit's steps_per_epoch cuts them into epochs
# Scene brightness of synthetic long exposures, relative to the linearised photo: log-uniform, so
# some long exposures are dim and some clip their highlights as a sensor does.
EXPOSURE_RANGE = (0.4, 1.6)
DEFAULT_RATIO_RANGE = (1.0, 300.0)
# Share of synthetic scenes whose colours are pushed away from grey (``saturation`` > 1): training
# photos hold few saturated colours, where after white balance one or two raw channels are near 0.
SATURATED_SHARE = 0.5


@dataclasses.dataclass(frozen=True)
class Source:
    """Training pairs by element index: ``sample(i) -> (input, target)`` in TensorFlow, drawn
    from ``items`` pairs or photos, packed with ``channels`` and upscaled by ``scale``."""

    sample: Callable
    items: int
    channels: int
    scale: int


def _check_entries(entries: Sequence[CachedPair]) -> None:
    if not entries:
        raise SidError("the dataset is empty: no pairs to train on")
    kinds = {(e.channels, e.scale) for e in entries}
    if len(kinds) > 1:
        raise SidError(f"the dataset mixes CFA layouts {sorted(kinds)}; train Bayer and X-Trans apart")


def _load(entries: Sequence[CachedPair]):
    arrays = [e.load() for e in entries]
    shapes = np.array([a[0].shape[:2] for a in arrays], np.int64)
    return arrays, shapes


def _item(i, items: int, seed: int):
    """The item of element ``i``: every pass over the items visits each once, in a new order."""
    import tensorflow as tf

    order_seed = tf.stack([tf.constant(seed, tf.int64), i // items])
    return tf.random.experimental.index_shuffle(i % items, order_seed, tf.constant(items - 1, tf.int64))


def _element_seeds(i, seed: int, count: int):
    import tensorflow as tf

    return tf.random.experimental.stateless_split(tf.stack([tf.constant(seed, tf.int64), i]), count)


def pair_source(entries: Sequence[CachedPair], *, patch_size: int, seed: int = 0, augment: bool = True,
                noise_input: bool = False) -> Source:
    """Aligned random crops of cached real pairs, amplified (and white-balanced for linear
    targets) and clipped at 1, with the same flips and transpose on input and target; with
    ``noise_input``, followed by their noise level from each file's noise law."""
    import tensorflow as tf

    _check_entries(entries)
    arrays, shapes = _load(entries)
    too_small = [e.source for e, s in zip(entries, shapes) if min(s) < patch_size]
    if too_small:
        raise SidError(f"patch size {patch_size} is larger than {len(too_small)} packed frames "
                       f"(e.g. {too_small[0]}, {tuple(shapes[0])}); lower data.patch_size")
    channels, scale = entries[0].channels, entries[0].scale
    factors = tf.constant(_input_factors(entries), tf.float32)
    laws = tf.constant(_noise_laws(entries), tf.float32)
    heights, widths = tf.constant(shapes[:, 0]), tf.constant(shapes[:, 1])

    def crop(index, top, left):
        short, long = arrays[int(index)]
        x = short[top : top + patch_size, left : left + patch_size]
        y = long[top * scale : (top + patch_size) * scale, left * scale : (left + patch_size) * scale]
        return np.ascontiguousarray(x), np.ascontiguousarray(y)

    def sample(i):
        index = _item(i, len(entries), seed)
        seeds = _element_seeds(i, seed, 2)
        u = tf.random.stateless_uniform([2], seeds[0], dtype=tf.float32)
        top = tf.cast(u[0] * tf.cast(heights[index] - patch_size + 1, tf.float32), tf.int64)
        left = tf.cast(u[1] * tf.cast(widths[index] - patch_size + 1, tf.float32), tf.int64)
        x, y = tf.numpy_function(crop, [index, top, left], [tf.uint16, tf.uint16], stateful=False)
        x.set_shape([patch_size, patch_size, channels])
        y.set_shape([patch_size * scale, patch_size * scale, 3])
        signal = tf.cast(x, tf.float32) / UINT16_SCALE
        law = (laws[index, 0], laws[index, 1]) if noise_input else None
        x = tf.concat(amplified_input(signal, factors[index], law, xp=tf.math), -1)
        y = tf.cast(y, tf.float32) / UINT16_SCALE
        if augment:
            x, y = _augment(x, y, tf.random.stateless_uniform([3], seeds[1]) < 0.5)
        return x, y

    return Source(sample, len(entries), channels, scale)


# How far the noise law a noise-aware model is told may be off in practice (a DNG's NoiseProfile
# from another unit of the camera, a law at the nominal ISO, an estimate): log-normal errors.
NOISE_LAW_ERROR = (0.15, 0.3)  # (s, o)


def synthetic_source(photos: Sequence[str], *, patch_size: int, seed: int = 0, profile=None,
                     ratio_range: tuple[float, float] = DEFAULT_RATIO_RANGE,
                     colour_responses: Sequence[np.ndarray] | None = None, noise_input: bool = False,
                     saturation: float = 1.0) -> Source:
    """Training pairs made on the fly from clean photos: new camera, light and noise every step.

    ``photos``: photo files, folders of them, or their linearised caches; photos are linearised
    once into the cache folder (:func:`sid_keras.data.cache.cache_photos`). Each element crops a
    ``2 * patch_size`` square of a linearised photo, flips it, and draws: a colour response
    (``colour_responses``, linear sRGB -> white-balanced camera RGB matrices; default those of
    :data:`sid_keras.synth.synthetic.TRAINING_CAMERAS`), an exposure, an illuminant (white-balance
    gains), an exposure ratio (log-uniform in ``ratio_range``) and a virtual camera of ``profile``
    (:mod:`sid_keras.runtime.noise`, default the virtual family). The target is the clean scene in
    white-balanced camera RGB, clipped at white as LibRaw clips it (before any mosaicking, so it
    carries no demosaicking error); the input is the noisy short exposure, packed, amplified,
    white-balanced and clipped, as :func:`sid_keras.runtime.model_input.network_input` makes it from a file.
    Inputs are (p, p, 4), targets (2p, 2p, 3), float32. With ``noise_input`` the inputs are
    followed by their noise level (p, p, 4) from the virtual camera's true law, off by
    :data:`NOISE_LAW_ERROR` as a file's law is in practice. With ``saturation`` > 1, a
    :data:`SATURATED_SHARE` of the scenes have their colours pushed away from grey in white-balanced
    camera RGB by a factor log-uniform in ``[1, saturation]`` (clipped at 0, as a sensor records a
    colour outside what the photo held): saturated reds and blues the photos rarely show.
    """
    import tensorflow as tf

    from sid_keras.runtime import noise
    from sid_keras.synth import synthetic

    profile = profile or noise.VIRTUAL
    if not photos:
        raise SidError("no photos to synthesise training pairs from (data.photos)")
    photos = cache_photos(photos, default_cache_dir())
    arrays = [np.load(p, mmap_mode="r") for p in photos]
    side = 2 * patch_size
    shapes = np.array([a.shape[:2] for a in arrays], np.int64)
    small = [p for p, s in zip(photos, shapes) if min(s) < side]
    if small:
        raise SidError(f"data.patch_size = {patch_size} needs photos of at least {side} pixels a side; "
                       f"{len(small)} are smaller (e.g. {small[0]}): lower data.patch_size")
    if colour_responses is None:
        colour_responses = [synthetic.rgb_to_camera_matrix(m) for m in synthetic.TRAINING_CAMERAS.values()]
    matrices = tf.constant(np.stack(colour_responses), tf.float32)
    heights, widths = tf.constant(shapes[:, 0]), tf.constant(shapes[:, 1])
    log_ratio = (float(np.log(ratio_range[0])), float(np.log(ratio_range[1])))

    def crop(index, top, left):
        return np.ascontiguousarray(arrays[int(index)][top : top + side, left : left + side])

    def log_uniform(seed_, bounds):
        return tf.exp(tf.random.stateless_uniform([], seed_, float(np.log(bounds[0])), float(np.log(bounds[1]))))

    def sample(i):
        index = _item(i, len(photos), seed)
        seeds = _element_seeds(i, seed, 9)
        u = tf.random.stateless_uniform([2], seeds[0])
        top = tf.cast(u[0] * tf.cast(heights[index] - side + 1, tf.float32), tf.int64)
        left = tf.cast(u[1] * tf.cast(widths[index] - side + 1, tf.float32), tf.int64)
        rgb = tf.numpy_function(crop, [index, top, left], tf.uint16, stateful=False)
        rgb = tf.reshape(tf.cast(rgb, tf.float32) / UINT16_SCALE, [side, side, 3])
        rgb, _ = _augment(rgb, rgb, tf.random.stateless_uniform([3], seeds[1]) < 0.5)
        which = tf.random.stateless_uniform([], seeds[2], 0, len(colour_responses), dtype=tf.int32)
        scene = tf.maximum(camera_rgb(rgb, matrices[which]), 0.0) * log_uniform(seeds[3], EXPOSURE_RANGE)
        if saturation > 1:
            boost_seeds = tf.random.experimental.stateless_split(seeds[2], 2)  # seeds[2] picks the camera
            boosted = tf.random.stateless_uniform([], boost_seeds[0]) < SATURATED_SHARE
            scene = tf.where(boosted, saturate(scene, log_uniform(boost_seeds[1], (1.0, saturation))), scene)
        gains = tf.stack([log_uniform(seeds[4], synthetic.RED_GAIN_RANGE), 1.0,
                          log_uniform(seeds[5], synthetic.BLUE_GAIN_RANGE), 1.0])
        ratio = tf.exp(tf.random.stateless_uniform([], seeds[6], *log_ratio))
        camera = noise.sample_camera(profile, seeds[7])
        packed = tf.gather(tf.nn.space_to_depth(scene[None], 2)[0], BAYER.rgb_block_indices(), axis=-1)
        short = noise.noisy_short_exposure(packed / gains, ratio, camera, seeds[8])
        law = None
        if noise_input:
            s, o = noise.camera_variance(camera)
            error = tf.exp(tf.random.stateless_normal([2], tf.random.experimental.stateless_fold_in(seeds[8], 1))
                           * NOISE_LAW_ERROR)
            law = (s * error[0], o * error[1])
        x = tf.concat(amplified_input(short, ratio * gains, law, xp=tf.math), -1)
        x.set_shape([patch_size, patch_size, 8 if noise_input else 4])
        return x, tf.minimum(scene, 1.0)

    return Source(sample, len(photos), 4, 2)


def camera_rgb(rgb, matrix):
    """Linear sRGB (h, w, 3) seen through a colour response (3, 3): one (pixels x 3) @ (3 x 3)
    product, where ``tf.linalg.matvec`` runs a tiny matmul per pixel (a fifth of the synthesis)."""
    import tensorflow as tf

    return tf.tensordot(rgb, tf.transpose(matrix), 1)


def saturate(rgb, factor):
    """Colours moved ``factor`` times further from their grey (the channels' mean in white-balanced
    camera RGB, where white is (1, 1, 1)), clipped at 0."""
    import tensorflow as tf

    grey = tf.reduce_mean(rgb, axis=-1, keepdims=True)
    return tf.maximum(grey + factor * (rgb - grey), 0.0)


def stream(sources: Sequence[Source], *, batch_size: int | None, weights: Sequence[float] | None = None,
           seed: int = 0, start: int = 0, input_context=None):
    """The training stream: element ``i`` comes from source ``k`` with probability ``weights[k]``.

    ``start``: the first element (a resumed run's position); ``input_context`` gives each input
    pipeline of tf.distribute the elements ``i`` with ``i % pipelines == its id``.
    ``batch_size=None`` leaves single elements.
    """
    import tensorflow as tf

    if len({(s.channels, s.scale) for s in sources}) > 1:
        raise SidError("the training data mixes CFA layouts (Bayer and X-Trans); train them apart")
    weights = list(weights) if weights is not None else [1.0] * len(sources)
    bounds = tf.constant(np.cumsum(weights)[:-1] / np.sum(weights), tf.float32)

    def element(i):
        if len(sources) == 1:
            return sources[0].sample(i)
        u = tf.random.stateless_uniform([], tf.stack([tf.constant(seed, tf.int64) + 7919, i]))
        which = tf.reduce_sum(tf.cast(u >= bounds, tf.int32))
        return tf.switch_case(which, [lambda s=s: s.sample(i) for s in sources])

    ds = tf.data.Dataset.range(start, ENDLESS)
    if input_context is not None:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    ds = ds.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if batch_size is None:
        return ds
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def training_dataset(entries: Sequence[CachedPair], *, patch_size: int, batch_size: int | None, seed: int = 0,
                     augment: bool = True, start: int = 0):
    """Batches of (amplified packed patch, reference patch) of real pairs, float32 in [0, 1]."""
    source = pair_source(entries, patch_size=patch_size, seed=seed, augment=augment)
    return stream([source], batch_size=batch_size, seed=seed, start=start)


def synthetic_dataset(photos: Sequence[str], *, patch_size: int, batch_size: int | None, seed: int = 0,
                      profile=None, ratio_range: tuple[float, float] = DEFAULT_RATIO_RANGE, start: int = 0):
    """Batches of pairs synthesised on the fly from clean photos (:func:`synthetic_source`)."""
    source = synthetic_source(photos, patch_size=patch_size, seed=seed, profile=profile, ratio_range=ratio_range)
    return stream([source], batch_size=batch_size, seed=seed, start=start)


def distributed_dataset_fn(sources: Sequence[Source], *, global_batch_size: int, weights=None, seed: int = 0,
                           start: int = 0) -> Callable:
    """A ``dataset_fn(input_context)`` for ``strategy.distribute_datasets_from_function``.

    Each input pipeline reads its own share of the stream with a per-replica batch of
    ``global_batch_size / num_replicas_in_sync``; ``start`` is the first global element.
    """

    def dataset_fn(input_context):
        per_replica = input_context.get_per_replica_batch_size(global_batch_size)
        return stream(sources, batch_size=per_replica, weights=weights, seed=seed, start=start,
                      input_context=input_context)

    return dataset_fn


def _noise_laws(entries: Sequence[CachedPair]) -> np.ndarray:
    """Per pair, the (s, o) rows of its noise law per packed channel (zeros when unknown)."""
    return np.array([e.noise if e.noise is not None else np.zeros((2, e.channels)) for e in entries], np.float32)


def _input_factors(entries: Sequence[CachedPair]) -> np.ndarray:
    """Per pair and packed channel, what the packed short is multiplied by before the clip at 1:
    the exposure ratio, times the white-balance gains for ``linear`` targets (model_input.amplify)."""
    return np.array([e.ratio * np.asarray(e.gains if e.gains is not None else [1.0] * e.channels)
                     for e in entries], np.float32)


def _augment(x, y, flips):
    """Vertical flip, horizontal flip and transpose, applied identically to input and target."""
    import tensorflow as tf

    def both(fn, cond, x, y):
        return tf.cond(cond, lambda: (fn(x), fn(y)), lambda: (x, y))

    x, y = both(lambda t: tf.reverse(t, [0]), flips[0], x, y)
    x, y = both(lambda t: tf.reverse(t, [1]), flips[1], x, y)
    x, y = both(lambda t: tf.transpose(t, [1, 0, 2]), flips[2], x, y)
    return x, y


def frame_dataset(entries: Sequence[CachedPair], *, multiple: int = 1, max_side: int | None = None,
                  noise_input: bool = False):
    """Whole frames for validation, batch 1: (amplified packed, reference), deterministic; with
    ``noise_input`` the packed channels are followed by their noise level.

    Frames are centre-cropped to a multiple of ``multiple`` packed pixels (the model's stride)
    and, with ``max_side``, to at most that many packed pixels a side to bound memory.
    """
    import tensorflow as tf

    _check_entries(entries)
    arrays, shapes = _load(entries)
    channels, scale = entries[0].channels, entries[0].scale

    factors, laws = _input_factors(entries), _noise_laws(entries)

    def frames():
        for (short, long), factor, law in zip(arrays, factors, laws):
            h, w = short.shape[:2]
            ch = min(h, max_side or h) // multiple * multiple
            cw = min(w, max_side or w) // multiple * multiple
            top, left = (h - ch) // 2, (w - cw) // 2
            x = short[top : top + ch, left : left + cw].astype(np.float32) / UINT16_SCALE
            y = long[top * scale : (top + ch) * scale, left * scale : (left + cw) * scale]
            yield (np.concatenate(amplified_input(x, factor, law if noise_input else None), axis=-1),
                   y.astype(np.float32) / UINT16_SCALE)

    inputs = channels * (2 if noise_input else 1)
    spec = (tf.TensorSpec([None, None, inputs], tf.float32), tf.TensorSpec([None, None, 3], tf.float32))
    ds = tf.data.Dataset.from_generator(frames, output_signature=spec)
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(entries)))  # Keras then knows its end
    return ds.batch(1).prefetch(2)
