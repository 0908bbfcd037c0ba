"""Typed training configuration: file / --set overrides -> validated dataclasses -> the recipe.

Config files are TOML with three tables, ``[data]``, ``[model]`` and ``[train]``; ``[model.args]``
holds the architecture's own arguments. Named experiments ship in ``sid_keras/experiments/``
(``sid_sony``, ``sid_fuji``, ``synthetic``); ``--config NAME`` finds them.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
from typing import Any

from sid_keras.errors import SidError

EXPERIMENTS_DIR = pathlib.Path(__file__).parent / "experiments"


@dataclasses.dataclass
class DataConfig:
    root: str = ""  # dataset root holding the list files and ./Sony/... (or ./Fuji/...)
    train_list: str = "Sony_train_list.txt"
    val_list: str = "Sony_val_list.txt"
    cache_dir: str = ""  # default: <root>/.sid_cache
    patch_size: int = 512  # packed pixels (SID: 512, i.e. 1024 output pixels)
    batch_size: int = 1  # global batch (SID: 1)
    first_burst_only: bool = True  # SID trains on the _00 shorts only
    ratio_cap: float = 300.0
    val_max_side: int = 512  # packed pixels; bounds validation memory on 4240x2832 frames
    decode_workers: int = 2


@dataclasses.dataclass
class ModelConfig:
    name: str = "unet"
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
    mixed_precision: bool = False
    out_dir: str = "runs/sid"
    init_from: str = ""  # a .keras file of the same architecture to start from
    log_images: int = 2  # validation triplets written to TensorBoard


@dataclasses.dataclass
class Config:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def write(self, path: str | pathlib.Path) -> None:
        from sid_keras.io import atomic_path

        with atomic_path(path) as tmp:
            pathlib.Path(tmp).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(raw: dict) -> str:
    """A config dict (tables of plain values; dicts inside become inline tables) as TOML text."""
    lines = []
    for table, values in raw.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
        lines.append("")
    return "\n".join(lines)


def _load_toml(path: pathlib.Path) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise SidError(f"{path}: not valid TOML ({err})") from None


def resolve_config_path(name_or_path: str) -> pathlib.Path:
    """A config file path, or the name of a shipped experiment (``sid_sony``...)."""
    path = pathlib.Path(name_or_path)
    if path.is_file():
        return path
    shipped = EXPERIMENTS_DIR / f"{name_or_path}.toml"
    if shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.toml")))
    raise SidError(f"{name_or_path}: no such config file or experiment (shipped: {names})")


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


def _build(cls, values: dict, where: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise SidError(f"unknown config keys in [{where}]: {', '.join(unknown)} "
                       f"(known: {', '.join(fields)})")
    kwargs = {}
    for name, value in values.items():
        default = fields[name].default
        if isinstance(default, bool) and not isinstance(value, bool):
            raise SidError(f"[{where}] {name} = {value!r}: expected true or false")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SidError(f"[{where}] {name} = {value!r}: expected a number")
            if isinstance(default, float):
                value = float(value)
        kwargs[name] = value
    return cls(**kwargs)


def config_from_dict(raw: dict) -> Config:
    unknown = sorted(set(raw) - {"data", "model", "train"})
    if unknown:
        raise SidError(f"unknown config sections: {', '.join(unknown)} (known: data, model, train)")
    config = Config(
        data=_build(DataConfig, raw.get("data", {}), "data"),
        model=_build(ModelConfig, raw.get("model", {}), "model"),
        train=_build(TrainConfig, raw.get("train", {}), "train"),
    )
    validate(config)
    return config


def load_config(name_or_path: str | None = None, overrides: list[str] = ()) -> Config:
    raw = _load_toml(resolve_config_path(name_or_path)) if name_or_path else {}
    for assignment in overrides:
        apply_override(raw, assignment)
    return config_from_dict(raw)


def validate(config: Config) -> None:
    """Checks that need no data: positive sizes, known schedule and model."""
    d, t = config.data, config.train
    for where, name, value in [("data", "patch_size", d.patch_size), ("data", "batch_size", d.batch_size),
                               ("train", "epochs", t.epochs), ("train", "val_every", t.val_every),
                               ("train", "step_epochs", t.step_epochs)]:
        if not isinstance(value, int) or value <= 0:
            raise SidError(f"[{where}] {name} = {value!r}: must be a positive integer")
    if t.schedule not in ("step", "sid"):
        raise SidError(f"[train] schedule = {t.schedule!r}: use 'step' (the paper's) or 'sid'")
    if not t.learning_rate > 0 or not 0 < t.gamma <= 1:
        raise SidError("[train] learning_rate must be > 0 and gamma in (0, 1]")
    from sid_keras.models import MODELS

    if config.model.name not in MODELS:
        raise SidError(f"[model] name = {config.model.name!r}: choose one of {', '.join(sorted(MODELS))}")
