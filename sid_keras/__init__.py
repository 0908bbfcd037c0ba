"""sid_keras: Learning to See in the Dark with Keras 3.

Importing the package is cheap on purpose: TensorFlow, rawpy and the optional extras are
imported by the modules that use them, so `sid-keras --help` answers at once.
"""

__version__ = "0.1.0"

import pathlib

from sid_keras.errors import SidError

# Installed package data: the shipped model and demo photo, and the TOML configs
# (experiments for `train`, search jobs for `tune`, profiles for `export`).
ASSETS_DIR = pathlib.Path(__file__).parent / "assets"
CONFIGS_DIR = pathlib.Path(__file__).parent / "configs"

__all__ = ["Enhancer", "SidError", "__version__"]


def __getattr__(name: str):
    """``from sid_keras import Enhancer`` without importing it (and numpy, rawpy) up front."""
    if name == "Enhancer":
        from sid_keras.runtime.inference import Enhancer

        return Enhancer
    raise AttributeError(f"module 'sid_keras' has no attribute {name!r}")
