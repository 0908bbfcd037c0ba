"""sid_keras: Learning to See in the Dark with Keras 3.

Importing the package is cheap on purpose: TensorFlow, rawpy and the optional extras are
imported by the modules that use them, so `sid-keras --help` answers at once.
"""

__version__ = "0.1.0"

from sid_keras.errors import SidError

__all__ = ["SidError", "__version__"]
