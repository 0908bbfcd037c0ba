"""The training recipe: one :class:`Task` that ``fit``, the multi-worker loop and the tuner all run.

After TF Model Garden's ``Task``: a :class:`~sid_keras.training.config.Config` goes in, and the task
builds everything a run needs from it, in one place: the data (real pairs, pairs synthesised on
the fly, validation frames), the model and its loss and metrics, the learning-rate schedule, the
callbacks and the checkpoints. :func:`train` runs it through ``fit``;
:func:`sid_keras.training.distributed.train_multi_worker` runs the same pieces in a custom
``MultiWorkerMirroredStrategy`` loop; :class:`sid_keras.training.hypermodel.SidHyperModel` builds and fits
one task per keras-tuner trial.

A run lives in ``train.out_dir``::

    config.json        the resolved config (a different model there is refused)
    checkpoint/        weights, optimizers and epoch of the last two epochs (resume)
    .lock              held while a process trains here
    best.keras         best model by validation PSNR (best.json says which epoch)
    average.keras      with train.average_from: the mean of the later epochs' weights (average.json:
                       which epochs, and its validation PSNR)
    final.keras        the model after the last epoch
    log.csv            one line per epoch
    tensorboard/       scalars and validation image triplets

Re-running the same command after a crash (even SIGKILL mid-epoch) continues from the last
completed epoch with the very batches an uninterrupted run would have seen (the data stream is
indexed by element, :mod:`sid_keras.data.pipeline`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import pathlib

import numpy as np

from sid_keras.errors import SidError
from sid_keras.runtime.convention import Convention
from sid_keras.runtime.io import save_model_atomic
from sid_keras.training.config import Config

SID_DECAY_FACTOR = 0.1  # SID: 1e-4, then 1e-5 after half the epochs


@dataclasses.dataclass
class Data:
    """What a run trains and validates on."""

    sources: list  # sid_keras.data.pipeline.Source: real pairs and/or synthetic pairs
    weights: list  # share of each source in the stream
    items: int  # real pairs plus photos: one epoch is one crop of each, unless configured
    val: object  # tf.data.Dataset of whole frames, batch 1

    @property
    def channels(self) -> int:
        return self.sources[0].channels

    @property
    def scale(self) -> int:
        return self.sources[0].scale


class Task:
    """Everything a training run needs, built from one :class:`~sid_keras.training.config.Config`.

    Example:
        >>> task = Task(load_config("synthetic", ["data.root='data/synthetic'"]))
        >>> data = task.data()  # doctest: +SKIP
        >>> model = task.build_model(data.channels, data.scale)  # doctest: +SKIP
    """

    def __init__(self, config: Config):
        self.config = config

    @property
    def out(self) -> pathlib.Path:
        return pathlib.Path(self.config.train.out_dir)

    @property
    def is_gan(self) -> bool:
        from sid_keras.models import is_adversarial

        return is_adversarial(self.config.model.name)

    # -- data ----------------------------------------------------------------------------------
    def _cache_dir(self) -> pathlib.Path:
        from sid_keras.data.cache import default_cache_dir

        return pathlib.Path(self.config.data.cache_dir) if self.config.data.cache_dir else default_cache_dir()

    def cache_notice(self) -> str:
        """Where the decoded data went and how large it is, said once a run has decoded it."""
        from sid_keras.data.cache import cache_files

        folder = self._cache_dir()
        size = sum(p.stat().st_size for p in cache_files(folder))
        return f"decoded data cached in {folder} ({size / 1e6:,.0f} MB; `sid-keras cache --clear` frees it)"

    def cached_pairs(self, list_name: str, *, first_burst_only: bool, progress: bool = False):
        """The pairs of a list file under ``data.root``, decoded once into the cache."""
        from sid_keras.data import build_cache, read_sid_list

        d = self.config.data
        root = pathlib.Path(d.root)
        if not d.root or not root.is_dir():
            raise SidError(f"[data] root = {d.root!r}: no such dataset folder "
                           "(a SID download, or `sid-keras synth --out DIR`)")
        pairs = read_sid_list(list_name, root, first_burst_only=first_burst_only)
        return build_cache(pairs, self._cache_dir(), ratio_cap=d.ratio_cap, linear=self.convention.white_balanced,
                           workers=d.decode_workers, progress=progress)

    def data(self, *, progress: bool = False) -> Data:
        """Decode (once, cached) the pairs and photos, and make the sources and validation set."""
        from sid_keras.data import cache_photos, frame_dataset
        from sid_keras.data.cache import cache_dead_leaves
        from sid_keras.data.pipeline import pair_source, synthetic_source
        from sid_keras.runtime.noise import load_profile
        from sid_keras.synth.synthetic import find_photos

        d, seed = self.config.data, self.config.train.seed
        sources, weights, items = [], [], 0
        if d.train_list:
            entries = self.cached_pairs(d.train_list, first_burst_only=d.first_burst_only, progress=progress)
            sources.append(pair_source(entries, patch_size=d.patch_size, seed=seed, noise_input=self.convention.noise))
            weights.append(1 - d.synthetic_share if d.photos else 1.0)
            items += len(entries)
        if d.photos:
            photos = [p for folder in d.photos for p in find_photos(folder)]
            cached = cache_photos(photos, self._cache_dir(), workers=d.decode_workers, progress=progress)
            cached += cache_dead_leaves(d.dead_leaves, self._cache_dir(), workers=d.decode_workers, progress=progress)
            responses = self.colour_responses(d.train_list) if d.cameras == "pairs" else None
            sources.append(synthetic_source(cached, patch_size=d.patch_size, seed=seed,
                                            profile=load_profile(d.noise_profile), ratio_range=tuple(d.ratio_range),
                                            colour_responses=responses, noise_input=self.convention.noise,
                                            saturation=d.saturation))
            weights.append(d.synthetic_share if d.train_list else 1.0)
            items += len(cached)
        if not d.val_list:
            raise SidError("[data] val_list = '': give the list of pairs a run validates on (e.g. Sony_val_list.txt, "
                           "which `sid-keras synth --split val` writes)")
        val_entries = self.cached_pairs(d.val_list, first_burst_only=True, progress=progress)
        return Data(sources, weights, items, frame_dataset(val_entries, max_side=d.val_max_side,
                                                           noise_input=self.convention.noise))

    def colour_responses(self, list_name: str) -> list[np.ndarray]:
        """The distinct colour responses of the listed pairs' cameras (from each short file's matrix)."""
        from sid_keras.data import read_sid_list
        from sid_keras.runtime import raw
        from sid_keras.synth.synthetic import file_colour_response

        responses = {}
        for pair in read_sid_list(list_name, self.config.data.root):
            try:
                response = file_colour_response(raw.read_raw(pair.short).color_matrix)
            except np.linalg.LinAlgError:
                raise SidError(f"{pair.short}: its colour matrix cannot be inverted; synthesise with the "
                               "shipped model's colours instead (--set data.cameras='training')") from None
            responses.setdefault(response.round(4).tobytes(), response)
        return list(responses.values())

    def steps_per_epoch(self, data: Data) -> int:
        """Configured steps, or SID's epoch: one crop of every training pair (and photo)."""
        return self.config.train.steps_per_epoch or max(1, math.ceil(data.items / self.config.data.batch_size))

    def first_element(self, data: Data, epoch: int) -> int:
        """Where in the element stream an epoch starts (what a resumed run skips)."""
        return epoch * self.steps_per_epoch(data) * self.config.data.batch_size

    def train_dataset(self, data: Data, *, epoch: int = 0):
        """The batched training stream, starting at ``epoch``."""
        from sid_keras.data.pipeline import stream

        return stream(data.sources, batch_size=self.config.data.batch_size, weights=data.weights,
                      seed=self.config.train.seed, start=self.first_element(data, epoch))

    # -- model ---------------------------------------------------------------------------------
    @functools.cached_property
    def precision(self) -> Precision:
        """The precision this run computes in (``train.precision``, "auto" resolved once)."""
        return resolve_precision(self.config.train.precision)

    def model_args(self, channels: int, scale: int) -> dict:
        args = {"in_channels": channels, "scale": scale, "output": self.config.model.output, **self.config.model.args}
        args.pop("first", None)  # a file to load (load_first_network), not a constructor argument
        if self.precision.policy != FLOAT32:
            args["dtype"] = self.precision.policy  # held by the model, not set for the whole process
        if self.is_gan:
            args.setdefault("seed", self.config.train.seed)
        return args

    @property
    def convention(self) -> Convention:
        """What the model is fed and returns: ``model.output``, and the noise input
        (``model.args.noise_input``); its packed channels come from the data."""
        return Convention(self.config.model.output, bool(self.config.model.args.get("noise_input", False)), None)

    @property
    def display(self) -> bool:
        """Linear predictions are scored and compared as they will be seen (sid_keras.models.losses)."""
        return self.convention.white_balanced

    def loss(self):
        """The reconstruction loss (a Keras loss; ``.call`` gives one value per image)."""
        from sid_keras.models.losses import loss_for

        return loss_for(self.convention)

    def metrics(self) -> list:
        from sid_keras.models.metrics import PSNR, SSIM

        return [PSNR(display=self.display), SSIM(display=self.display)]

    def build_model(self, channels: int = 4, scale: int = 2):
        """The configured model, compiled with Adam, the loss and PSNR/SSIM (two optimizers for GANs)."""
        import keras

        from sid_keras.models import build_model

        t = self.config.train
        keras.utils.set_random_seed(t.seed)  # the same initial weights on every worker and every run
        model = build_model(self.config.model.name, **self.model_args(channels, scale))
        stride = getattr(model, "stride", 1)
        if self.config.data.patch_size < stride:  # the model pads a crop to its stride by mirroring it
            raise SidError(f"[data] patch_size = {self.config.data.patch_size}: this model halves its input down to "
                           f"1/{stride}, so give at least {stride} packed pixels (a multiple of {stride} wastes none)")
        self.load_first_network(model)
        optimizer = keras.optimizers.Adam(t.learning_rate)
        if self.is_gan:
            model.compile(optimizer=optimizer, d_optimizer=keras.optimizers.Adam(t.d_learning_rate),
                          metrics=self.metrics())
        else:
            model.compile(optimizer=optimizer, loss=self.loss(), metrics=self.metrics())
        return model

    def load_first_network(self, model) -> None:
        """``model.args.first``: the trained ``unet`` file a ``double_unet`` starts its first
        network from (and keeps, with ``freeze_first``: the U-UNet recipe)."""
        import keras

        from sid_keras.models import UNet, convention_of, inference_model

        args = self.config.model.args
        first = args.get("first")
        if not first:
            if args.get("freeze_first") and not self.config.train.init_from:
                raise SidError("[model] args.freeze_first = true would freeze a random first U-Net: set "
                               "model.args.first to a trained unet .keras file of the same width and depth")
            return
        if self.config.model.name != "double_unet":
            raise SidError(f"[model] args.first = {first!r}: only double_unet has a first network to load")
        if not os.path.isfile(first):
            raise SidError(f"[model] args.first = {first!r}: no such file")
        source = inference_model(keras.models.load_model(first, compile=False))
        wanted = {key: model.get_config()[key] for key in ("width", "depth", "scale")}
        found = {key: source.get_config().get(key) for key in wanted}
        wanted["input"], found["input"] = convention_of(model), convention_of(source)
        if type(source) is not UNet or found != wanted or source.get_config().get("demosaic_residual"):
            raise SidError(f"{first}: a {type(source).__name__} {found}, not the unet {wanted} the double_unet's "
                           "first network is")
        model.load_first(source)

    def learning_rate(self, epoch: int, base: float | None = None) -> float:
        """Learning rate of a (0-based) epoch: the paper's step decay or SID's halfway drop."""
        t = self.config.train
        base = t.learning_rate if base is None else base
        if t.schedule == "sid":
            return base * (SID_DECAY_FACTOR if epoch >= t.epochs // 2 else 1.0)
        return base * t.gamma ** (epoch // t.step_epochs)

    def init_weights(self, model) -> None:
        """Start from ``train.init_from`` (a .keras file of the same architecture), if set."""
        from sid_keras.models import inference_model
        from sid_keras.runtime.runners import load_model

        path = self.config.train.init_from
        if not path:
            return
        if not os.path.isfile(path):
            raise SidError(f"[train] init_from = {path!r}: no such file")
        source = inference_model(load_model(path))  # a file that is not a .keras model is one line
        target = inference_model(model)
        if type(source) is not type(target) or _comparable(source.get_config()) != _comparable(target.get_config()):
            raise SidError(f"{path}: a {type(source).__name__} {_comparable(source.get_config())}, not the "
                           f"configured {type(target).__name__} {_comparable(target.get_config())}")
        # Fixed weights come from the configuration, not from learning (the classical demosaic a
        # residual U-Net refines, which may differ from the source's): the configured ones stay.
        fixed = [weight.numpy() for weight in target.non_trainable_weights]
        target.set_weights(source.get_weights())
        for weight, value in zip(target.non_trainable_weights, fixed):
            weight.assign(value)

    # -- run -----------------------------------------------------------------------------------
    def checkpoint(self, log=print):
        from sid_keras.training.callbacks import Checkpoint

        return Checkpoint(self.out / "checkpoint", log=log)

    @functools.cached_property
    def average(self):
        """The run's weight average (:class:`~sid_keras.training.callbacks.WeightAverage`), or None
        without ``train.average_from``."""
        from sid_keras.training.callbacks import WeightAverage

        start = self.config.train.average_from
        return WeightAverage(self.out / "checkpoint", start) if start else None

    def save_average(self, model, validate, log=print) -> None:
        """Validate the weight average and write it as average.keras, and say how it compares with
        best.keras (a run that averaged nothing yet writes nothing)."""
        from sid_keras.runtime.io import write_json
        from sid_keras.training.callbacks import read_record

        average = self.average
        if average is None or not average.count:
            return
        with average.applied(model):
            value = validate()
            save_model_atomic(model, self.out / "average.keras")
        epochs = [average.first, average.last]
        write_json(self.out / "average.json", {"val_psnr": value, "epochs": epochs, "count": average.count})
        best = read_record(self.out / "best.json", "val_psnr")
        against = f" (best.keras: {best['val_psnr']:.2f} dB, epoch {best['epoch']})" if best else ""
        log(f"average of epochs {epochs[0]}-{epochs[1]}: validation PSNR {value:.2f} dB{against} -> "
            f"{self.out / 'average.keras'}")

    def schedule(self):
        """The callback that sets (and logs) each epoch's learning rate(s)."""
        from sid_keras.training.callbacks import StepSchedule

        t = self.config.train
        return StepSchedule(self.learning_rate, d_base=t.d_learning_rate)

    def callbacks(self, data: Data, checkpoint) -> list:
        """The callbacks of a ``fit`` run: schedule, checkpoint, best model, CSV, TensorBoard, images."""
        import keras

        from sid_keras.training.callbacks import KeepBest, RunLog, ValidationImages

        t = self.config.train
        return [  # the checkpoint last: an epoch it records has its log row and best model already
            self.divergence,
            self.schedule(),
            RunLog(str(self.out / "log.csv"), append=True),
            KeepBest(self.out / "best.keras", monitor="val_psnr"),
            keras.callbacks.TensorBoard(str(self.out / "tensorboard"), write_graph=False),
            ValidationImages(self.out / "tensorboard" / "images", data.val, t.val_every, t.log_images),
            *([self.average] if self.average else []),
            checkpoint,
        ]

    def trim_log(self, epochs_done: int) -> None:
        """Drop the log rows of epochs after the checkpoint (a kill between the row and the
        checkpoint): the resumed run writes them again, so log.csv matches the checkpoint."""
        from sid_keras.runtime.io import atomic_path

        log = self.out / "log.csv"
        lines = log.read_text().splitlines(keepends=True) if log.exists() else []
        if not lines:  # no log, or a run killed before its first epoch's row (its header comes with it)
            return
        header, *rows = lines
        epochs = [row.split(",", 1)[0].strip() for row in rows]
        kept = [row for row, epoch in zip(rows, epochs) if epoch.isdigit() and int(epoch) < epochs_done]
        if len(kept) != len(rows):
            with atomic_path(log) as tmp:
                pathlib.Path(tmp).write_text(header + "".join(kept))

    @functools.cached_property
    def divergence(self):
        """The run's guard against a non-finite loss (first among its callbacks)."""
        from sid_keras.training.callbacks import StopOnNonFiniteLoss

        return StopOnNonFiniteLoss()

    def raise_if_diverged(self) -> None:
        if self.divergence.diverged:
            raise SidError(f"training diverged at {self.divergence.diverged}; nothing of it was kept (the last "
                           f"good checkpoint in {self.out / 'checkpoint'} stays): lower train.learning_rate")

    def check_run_dir(self) -> None:
        """Refuse to resume a run of another architecture in the same folder."""
        from sid_keras.training.callbacks import read_record

        read_record(self.out / "best.json", "val_psnr")  # unreadable: one line now, not at every epoch
        saved = self.out / "config.json"
        if not saved.exists():
            return
        previous = read_record(saved, "model")["model"]
        if not isinstance(previous, dict):
            raise SidError(f"{saved}: not a sid-keras run config; delete it, or choose another train.out_dir")
        if previous != dataclasses.asdict(self.config.model):
            raise SidError(f"{self.out} holds a run of model {previous.get('name')!r} with args "
                           f"{previous.get('args')}; resume it with the same model or choose another "
                           "train.out_dir")


def _comparable(config: dict) -> dict:
    """An architecture's config without what may differ between runs of it: its precision, and
    the fixed classical demosaic a residual U-Net refines and how far it is trusted (weight-free
    choices: a run may start from another's)."""
    return {k: v for k, v in config.items() if k not in ("name", "trainable", "dtype", "demosaic", "demosaic_trust")}


FLOAT32 = "float32"


@dataclasses.dataclass(frozen=True)
class Precision:
    """The Keras dtype policy a run trains in, and why it was chosen (printed at start)."""

    policy: str
    reason: str

    def describe(self) -> str:
        return f"training precision: {self.policy} ({self.reason})"


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU computes bfloat16 natively (AVX-512 BF16 or AMX), from /proc/cpuinfo.

    Elsewhere oneDNN emulates bfloat16 and a step is several times slower than float32.
    """
    if cpuinfo is None:
        try:
            cpuinfo = pathlib.Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_precision(setting: str = "auto", *, gpus: int | None = None, cpuinfo: str | None = None) -> Precision:
    """``train.precision`` as a Keras policy: "auto" picks what measured fastest at equal quality
    (benchmarks/train_speed.py): mixed_float16 on a GPU, mixed_bfloat16 on a CPU with BF16,
    float32 elsewhere. Mixed policies keep float32 master weights, loss and metrics."""
    if setting != "auto":
        return Precision(setting, "train.precision")
    if gpus is None:
        import tensorflow as tf

        gpus = len(tf.config.list_physical_devices("GPU"))
    if gpus:
        return Precision("mixed_float16", f"auto: {gpus} GPU(s)")
    if cpu_has_bf16(cpuinfo):
        return Precision("mixed_bfloat16", "auto: this CPU computes bfloat16 natively")
    return Precision(FLOAT32, "auto: this CPU has no bfloat16 instructions")


def pick_strategy():
    """MirroredStrategy over several local GPUs, else the default strategy."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def train(config: Config, *, verbose: int | str = "auto", progress: bool = False, log=print):
    """Run (or resume) the configured training through ``fit``; returns the Keras History.

    Everything that can fail on a bad config or dataset (the data, the model, ``init_from``, the
    checkpoint to resume) is checked before the run folder is written to, and the folder is
    locked against a second process, so a failed start never locks or corrupts a run.
    """
    task = Task(config)
    with run_folder_lock(task.out):
        task.check_run_dir()
        data = task.data(progress=progress)
        log(task.cache_notice())
        log(task.precision.describe())
        checkpoint = task.checkpoint(log)
        with pick_strategy().scope():
            model = task.build_model(data.channels, data.scale)
            task.init_weights(model)
            initial_epoch = checkpoint.restore(model)
        if task.average:
            task.average.restore(initial_epoch, log)
        task.trim_log(initial_epoch)
        config.write(task.out / "config.json")
        history = model.fit(task.train_dataset(data, epoch=initial_epoch), epochs=config.train.epochs,
                            initial_epoch=initial_epoch, steps_per_epoch=task.steps_per_epoch(data),
                            validation_data=data.val, validation_freq=config.train.val_every,
                            callbacks=task.callbacks(data, checkpoint), verbose=verbose)
        task.raise_if_diverged()
        save_model_atomic(model, task.out / "final.keras")
        task.save_average(model, lambda: float(model.evaluate(data.val, verbose=0, return_dict=True)["psnr"]), log)
    return history


# The registry names the recipe builds a fine-tuned model by, from its class: a fine-tune is a
# training run of the loaded architecture that starts from the loaded weights.
_FINETUNABLE = {"UNet": "unet", "FastUNet": "fast_unet", "DoubleUNet": "double_unet"}


def finetune(model_path: str | os.PathLike | None, config: Config, out: str | os.PathLike, *,
             overwrite: bool = False, verbose: int | str = "auto", log=print):
    """Adapt a trained model (the shipped one by default) to a camera; write it to ``out``.

    The training recipe of ``config`` (its data: a handful of the camera's real pairs and/or
    pairs synthesised with its calibrated noise profile; its loss, schedule and metrics) runs on
    the loaded model's architecture from its weights (``train.init_from``), at a low learning
    rate, in the spirit of LED's few-shot adaptation (Jin et al., ICCV 2023). It is a
    :func:`train` run in a folder beside ``out`` (``mine.keras`` -> ``mine.run/``): locked,
    checkpointed every epoch and resumed exactly when the same command is run again. The
    result (the last epoch's model, in the precision the model came in) is a ``.keras`` file
    that ``enhance`` and ``export`` take like any other.
    """
    import shutil

    import keras

    from sid_keras.models import convention_of, inference_model, with_precision
    from sid_keras.runtime.io import check_outputs_free, refuse_writing_over_inputs
    from sid_keras.runtime.runners import DEFAULT_MODEL_FILE, load_model

    out = pathlib.Path(out)
    if out.suffix != ".keras" or not out.parent.is_dir():
        raise SidError(f"{out}: the fine-tuned model is written as a .keras file in an existing folder, "
                       "e.g. -o mine.keras")
    source = pathlib.Path(model_path) if model_path else DEFAULT_MODEL_FILE
    refuse_writing_over_inputs([source], [out])
    check_outputs_free(out.parent, [out.name], overwrite)
    net = inference_model(load_model(source))
    name = _FINETUNABLE.get(type(net).__name__)
    if name is None:
        raise SidError(f"{source}: a {type(net).__name__}; fine-tuning takes a {', '.join(_FINETUNABLE.values())} "
                       "model (a GAN's generator is one)")
    args = {k: v for k, v in net.get_config().items()
            if k not in ("name", "trainable", "dtype", "in_channels", "scale", "output")}
    run = out.with_suffix(".run")
    if run.resolve() in source.resolve().parents:  # the run folder is replaced, or trained in
        raise SidError(f"{source}: lies in {run}, the folder this fine-tune trains in; copy it elsewhere first")
    if overwrite and out.exists() and run.is_dir():
        shutil.rmtree(run)  # a new fine-tune, not the finished one resumed
    config = dataclasses.replace(
        config, model=dataclasses.replace(config.model, name=name, output=convention_of(net).output, args=args),
        train=dataclasses.replace(config.train, init_from=str(source), out_dir=str(run)))
    history = train(config, verbose=verbose, log=log)
    tuned = inference_model(keras.models.load_model(run / "final.keras", compile=False))
    save_model_atomic(with_precision(tuned, net.dtype_policy.name), out)
    return history


@contextlib.contextmanager
def run_folder_lock(out: pathlib.Path):
    """Hold an exclusive lock on a run folder; a second process is refused with one line.

    A folder this call created is removed again if the run fails before its first checkpoint
    (a batch that does not fit, a model that cannot train): a failed start leaves nothing.
    """
    import fcntl

    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise SidError(f"[train] out_dir = {str(out)!r} is a file, or lies under one; choose a folder") from None
    lock_path = out / ".lock"
    refuse_links(out)
    handle = os.fdopen(os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o666), "a")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SidError(f"{out}: another sid-keras train is running in this folder; wait for it "
                           "or choose another train.out_dir") from None
        try:
            yield
        except BaseException:
            if created and not any((out / name).exists() for name in ("checkpoint", "best.keras")):
                import shutil

                shutil.rmtree(out, ignore_errors=True)
            raise
    finally:
        handle.close()


# What a run writes in its folder by these names; checkpoint/ and tensorboard/ hold more.
RUN_FILES = (".lock", "config.json", "log.csv", "best.keras", "best.json", "final.keras", "average.keras",
             "average.json", "checkpoint", "tensorboard")


def refuse_links(out: pathlib.Path) -> None:
    """A symlink where a run writes (planted, or left by a copy) would send its writes into
    whatever file it names: refused in one line, before the run opens anything."""
    planted = [out / name for name in RUN_FILES if (out / name).is_symlink()]
    if (out / "checkpoint").is_dir() and not planted:
        planted = [p for p in (out / "checkpoint").iterdir() if p.is_symlink()]
    if planted:
        raise SidError(f"{planted[0]}: is a symbolic link; a run writes its own files, so remove it (or choose "
                       "another train.out_dir)")


def summarize_history(history) -> dict:
    """Last and best values of each logged metric, for printing."""
    return {k: {"last": float(v[-1]), "best": float(np.nanmax(v) if "psnr" in k or "ssim" in k else np.nanmin(v))}
            for k, v in history.history.items() if v}
