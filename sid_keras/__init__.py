"""sid_keras: Learning to See in the Dark with Keras 3.

Importing the package is cheap on purpose: TensorFlow, rawpy and the optional extras are
imported by the modules that use them, so `sid-keras --help` answers at once.
"""

__version__ = "0.1.0"

import pathlib

from sid_keras.errors import SidError

__all__ = ["Enhancer", "SidError", "__version__"]

# Installed package data: the shipped model and demo photo.
ASSETS_DIR = pathlib.Path(__file__).parent / "assets"
# The TOML files `--config`, `--job` and `--profile` name: kept at the repository's top level
# (tuning/ and export/, beside what they belong with) and mapped into sid_keras/configs/KIND
# when the package is built (setup.cfg's package_dir), so an installed copy has them too.
CONFIGS_DIR = pathlib.Path(__file__).parent / "configs"
CONFIG_SOURCES = {"experiments": "tuning/experiments", "tuning": "tuning/jobs", "export": "export/profiles"}


def shipped_configs(kind: str) -> pathlib.Path:
    """The folder of the shipped TOML files of ``kind`` (a key of :data:`CONFIG_SOURCES`): the
    installed copy, else (a checkout, an editable install) the repository's own folder."""
    installed = CONFIGS_DIR / kind
    return installed if installed.is_dir() else pathlib.Path(__file__).resolve().parents[1] / CONFIG_SOURCES[kind]


def __getattr__(name: str):
    """``from sid_keras import Enhancer`` without importing it (and numpy, rawpy) up front."""
    if name == "Enhancer":
        from sid_keras.runtime.inference import Enhancer

        return Enhancer
    raise AttributeError(f"module 'sid_keras' has no attribute {name!r}")
