"""Typed training configuration: file / --set overrides -> validated dataclasses -> the recipe.

Config files are TOML with three tables, ``[data]``, ``[model]`` and ``[train]``; ``[model.args]``
holds the architecture's own arguments. Named experiments ship in ``tuning/experiments/``
(``sid_sony``, ``sid_fuji``, ``synthetic``); ``--config NAME`` finds them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import sys
from typing import Any

from sid_keras.errors import SidError
from sid_keras.runtime.io import read_toml, shipped_or_path

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


@dataclasses.dataclass
class DataConfig:
    root: str = ""  # dataset root holding the list files and ./Sony/... (or ./Fuji/...)
    train_list: str = "Sony_train_list.txt"  # real (or `sid-keras synth`) pairs; "" for none
    val_list: str = "Sony_val_list.txt"
    # Clean photo folders for pairs synthesised on the fly (sid_keras.data.pipeline.synthetic_source).
    photos: list = dataclasses.field(default_factory=list)
    noise_profile: str = "virtual"  # "virtual", a calibrated camera, or a `sid-keras calibrate` TOML
    ratio_range: list = dataclasses.field(default_factory=lambda: [1.0, 300.0])  # synthetic, log-uniform
    # Largest boost of synthetic scenes' colour saturation (pipeline.saturate, half the scenes); 1: none.
    saturation: float = 1.0
    # Dead-leaves scenes (synthetic.dead_leaves: saturated colours, sharp edges, thin bars) added to
    # the photos, made once into the cache; 0: none.
    dead_leaves: int = 0
    synthetic_share: float = 0.5  # share of synthetic samples when both pairs and photos are given
    # Colour responses of the synthetic pairs: "training" (the Sony bodies of
    # sid_keras.synth.synthetic.TRAINING_CAMERAS) or "pairs" (the colour matrices of train_list's files).
    cameras: str = "training"
    cache_dir: str = ""  # default: sid_keras.data.cache.default_cache_dir()
    patch_size: int = 512  # packed pixels (SID: 512, i.e. 1024 output pixels)
    batch_size: int = 1  # global batch (SID: 1)
    first_burst_only: bool = True  # SID trains on the _00 shorts only
    ratio_cap: float = 300.0
    val_max_side: int = 512  # packed pixels; bounds validation memory on 4240x2832 frames
    decode_workers: int = 2


@dataclasses.dataclass
class ModelConfig:
    name: str = "unet"
    # "linear": white-balanced input, camera RGB out, colour from the file's metadata (default);
    # "srgb": SID's original end-to-end sRGB, to reproduce the paper on real SID pairs.
    output: str = "linear"
    args: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 4000
    learning_rate: float = 1e-4
    schedule: str = "step"  # "step": x gamma every step_epochs (the paper); "sid": /10 at half
    step_epochs: int = 10
    gamma: float = 0.8
    d_learning_rate: float = 1e-4  # GAN discriminator
    val_every: int = 10  # epochs
    steps_per_epoch: int = 0  # 0: one crop per training pair (SID's epoch)
    seed: int = 0
    # "auto": mixed_float16 on a GPU, mixed_bfloat16 on a CPU with BF16 instructions (AVX-512 BF16
    # or AMX), float32 elsewhere (sid_keras.training.task.resolve_precision); or one of those names.
    precision: str = "auto"
    out_dir: str = "runs/sid"
    init_from: str = ""  # a .keras file of the same architecture to start from
    # > 0: also keep the mean of the weights after each epoch past this one (stochastic weight
    # averaging) as average.keras, validated at the end beside best.keras; 0: off
    average_from: int = 0
    log_images: int = 2  # validation triplets written to TensorBoard


@dataclasses.dataclass
class Config:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def write(self, path: str | pathlib.Path) -> None:
        from sid_keras.runtime.io import write_json

        write_json(path, self.to_dict(), indent=2)


def resolve_config_path(name_or_path: str) -> pathlib.Path:
    """A config file path, or the name of a shipped experiment (``sid_sony``...)."""
    return shipped_or_path(name_or_path, "experiments")


def read_experiment(name_or_path: str | os.PathLike, _seen: tuple[str, ...] = ()) -> dict:
    """A config file's tables, on top of those of the experiment it ``extends`` (a shipped name,
    or a path beside the file), table by table: a stage of a recipe says only what it changes."""
    path = resolve_config_path(os.fspath(name_or_path))
    table = read_toml(path, "config file")
    parent = table.pop("extends", None)
    if parent is None:
        return table
    if not isinstance(parent, str) or not parent.strip():
        raise SidError(f"{path}: extends = {parent!r}: give the name or path of the experiment it builds on")
    beside = path.parent / parent
    base_path = beside if beside.is_file() else resolve_config_path(parent)
    if str(base_path.resolve()) in (*_seen, str(path.resolve())):
        raise SidError(f"{path}: extends {parent!r}, which extends it back: a loop")
    return _merged(read_experiment(base_path, (*_seen, str(path.resolve()))), table)


def _merged(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` laid over it, tables (and a model's ``args``) key by key."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _parse_value(text: str) -> Any:
    """A --set value as TOML would read it (numbers, booleans, strings, lists)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    except RecursionError:
        raise SidError(f"--set value {text[:40]!r}...: nests lists too deeply") from None


def apply_override(raw: dict, assignment: str) -> None:
    """Apply ``section.key=value`` (``model.args.width=16``) to a raw config dict."""
    if "=" not in assignment:
        raise SidError(f"--set {assignment!r}: expected KEY=VALUE, e.g. train.epochs=100")
    key, value = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SidError(f"--set {key}: {part} is not a table")
    node[parts[-1]] = _parse_value(value.strip())


def build_dataclass(cls, values, where: str):
    """A config dataclass from a table, checking names and the type of every value."""
    if not isinstance(values, dict):
        raise SidError(f"[{where}] must be a table of keys, not {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise SidError(f"unknown config keys in [{where}]: {', '.join(unknown)} "
                       f"(known: {', '.join(fields)})")
    kwargs = {}
    for name, value in values.items():
        field = fields[name]
        if not _all_finite(value):
            raise SidError(f"[{where}] {name} = {value!r}: must be finite (no inf or nan)")
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise SidError(f"[{where}] {name} = {value!r}: expected true or false")
        elif isinstance(default, (int, float)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SidError(f"[{where}] {name} = {value!r}: expected a number")
            if isinstance(default, float):
                value = float(value)
            elif value != int(value):
                raise SidError(f"[{where}] {name} = {value!r}: expected a whole number")
            else:
                value = int(value)
        else:
            kind = type(default)
            if not isinstance(value, kind):
                raise SidError(f"[{where}] {name} = {value!r}: expected a {_TYPE_NAMES[kind]}")
        kwargs[name] = value
    return cls(**kwargs)


_TYPE_NAMES = {str: "string", list: "list", dict: "table"}


def _all_finite(value) -> bool:
    """No inf or nan anywhere in a config value (numbers, lists, inline tables)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_all_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    return True


def config_from_dict(raw: dict) -> Config:
    unknown = sorted(set(raw) - {"data", "model", "train"})
    if unknown:
        raise SidError(f"unknown config sections: {', '.join(unknown)} (known: data, model, train)")
    config = Config(
        data=build_dataclass(DataConfig, raw.get("data", {}), "data"),
        model=build_dataclass(ModelConfig, raw.get("model", {}), "model"),
        train=build_dataclass(TrainConfig, raw.get("train", {}), "train"),
    )
    validate(config)
    return config


def load_config(name_or_path: str | None = None, overrides: list[str] = (),
                settings: dict[str, Any] | None = None) -> Config:
    """A config file or shipped experiment, then ``settings`` (``{"train.epochs": 10}``: Python
    values, as a program sets them), then ``overrides`` (``KEY=VALUE`` strings, as a user types them)."""
    raw = read_experiment(name_or_path) if name_or_path else {}
    for key, value in (settings or {}).items():
        *sections, name = key.split(".")
        table = raw
        for section in sections:
            table = table.setdefault(section, {})
        table[name] = value
    for assignment in overrides:
        apply_override(raw, assignment)
    return config_from_dict(raw)


# Decoding processes a run (or `synth --workers`) may start: each is an interpreter with its
# libraries (about 200 MB), so 100,000 of them took all the memory of a 24 GB machine.
MAX_DECODE_WORKERS = 64
# Memory of one packed pixel of a training batch, before the network's activations: a 9-channel
# X-Trans input with its noise map and a 3x3-upsampled RGB target, float32.
BYTES_PER_PACKED_PIXEL = (9 + 9 + 3 * 3 * 3) * 4


def physical_memory() -> int:
    """Bytes of RAM of this machine (a large figure where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return 2**50


def validate(config: Config) -> None:
    """Checks that need no data: positive sizes, known schedule and model."""
    d, t = config.data, config.train
    for where, name, value in [("data", "patch_size", d.patch_size), ("data", "batch_size", d.batch_size),
                               ("train", "epochs", t.epochs), ("train", "val_every", t.val_every),
                               ("train", "step_epochs", t.step_epochs), ("data", "val_max_side", d.val_max_side),
                               ("data", "decode_workers", d.decode_workers)]:
        if not isinstance(value, int) or value <= 0:
            raise SidError(f"[{where}] {name} = {value!r}: must be a positive integer")
    if d.decode_workers > MAX_DECODE_WORKERS:
        raise SidError(f"[data] decode_workers = {d.decode_workers}: give at most {MAX_DECODE_WORKERS} (each is a "
                       "process of its own; this machine has {} cores)".format(os.cpu_count()))
    if not str(t.out_dir).strip():
        raise SidError("[train] out_dir = '': give the run folder (an empty one would write into the current folder)")
    batch_bytes = d.batch_size * d.patch_size**2 * BYTES_PER_PACKED_PIXEL
    if batch_bytes > physical_memory():
        raise SidError(f"[data] batch_size = {d.batch_size} patches of patch_size = {d.patch_size}: a batch needs "
                       f"about {batch_bytes / 1e9:,.0f} GB and this machine has {physical_memory() / 1e9:.0f} GB; "
                       "give a smaller batch or patch")
    if t.seed < 0:
        raise SidError(f"[train] seed = {t.seed}: must be >= 0")
    if isinstance(t.average_from, bool) or not isinstance(t.average_from, int) or not 0 <= t.average_from < t.epochs:
        raise SidError(f"[train] average_from = {t.average_from!r}: give the epoch after which weights are "
                       f"averaged, 1 to epochs - 1 ({t.epochs - 1}), or 0 for none")
    if t.steps_per_epoch < 0:
        raise SidError(f"[train] steps_per_epoch = {t.steps_per_epoch}: must be >= 0 (0: one crop per pair)")
    if not d.ratio_cap > 0:
        raise SidError(f"[data] ratio_cap = {d.ratio_cap}: must be > 0 (SID: 300)")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in d.ratio_range):
        raise SidError(f"[data] ratio_range = {d.ratio_range}: give two numbers, e.g. [1, 300]")
    if config.model.output not in ("linear", "srgb"):
        raise SidError(f"[model] output = {config.model.output!r}: use 'linear' (colour from the file's "
                       "metadata) or 'srgb' (SID's learned colour)")
    if len(d.ratio_range) != 2 or not 1 <= d.ratio_range[0] <= d.ratio_range[1]:
        raise SidError(f"[data] ratio_range = {d.ratio_range}: give [low, high] with 1 <= low <= high")
    if d.cameras not in ("training", "pairs"):
        raise SidError(f"[data] cameras = {d.cameras!r}: use 'training' (the shipped model's colour responses) "
                       "or 'pairs' (those of your pairs' files)")
    if d.cameras == "pairs" and not d.train_list:
        raise SidError("[data] cameras = 'pairs' takes the colour responses of train_list's files: give train_list")
    if isinstance(d.saturation, bool) or not isinstance(d.saturation, (int, float)) or not 1 <= d.saturation <= 10:
        raise SidError(f"[data] saturation = {d.saturation!r}: give the largest colour boost, 1 (none) to 10, e.g. 2.5")
    if isinstance(d.dead_leaves, bool) or not isinstance(d.dead_leaves, int) or not 0 <= d.dead_leaves <= 10000:
        raise SidError(f"[data] dead_leaves = {d.dead_leaves!r}: give a number of scenes, 0 (none) to 10000, e.g. 200")
    if d.dead_leaves and not d.photos:
        raise SidError("[data] dead_leaves joins the photos of synthesised pairs: give data.photos too")
    if not 0 <= d.synthetic_share <= 1:
        raise SidError(f"[data] synthetic_share = {d.synthetic_share}: must be between 0 and 1")
    if not d.train_list and not d.photos:
        raise SidError("[data] has neither train_list (pairs) nor photos (synthetic pairs): give one")
    if d.photos and config.model.output != "linear":
        raise SidError("[data] photos: pairs synthesised on the fly train 'linear' models; "
                       "the 'srgb' output reproduces SID on real pairs (train_list)")
    if t.precision not in PRECISIONS:
        raise SidError(f"[train] precision = {t.precision!r}: use one of {', '.join(PRECISIONS)}")
    if t.schedule not in ("step", "sid"):
        raise SidError(f"[train] schedule = {t.schedule!r}: use 'step' (the paper's) or 'sid'")
    if not t.learning_rate > 0 or not 0 < t.gamma <= 1:
        raise SidError("[train] learning_rate must be > 0 and gamma in (0, 1]")
    from sid_keras.models import MODELS

    if config.model.name not in MODELS:
        raise SidError(f"[model] name = {config.model.name!r}: choose one of {', '.join(sorted(MODELS))}")
