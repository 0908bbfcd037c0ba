"""The TensorFlow-free runtime: read a raw file, run a model (LiteRT, or Keras when asked), write the image.

Nothing here imports TensorFlow or Keras at import time (``tests/test_imports.py`` checks it); a
``.keras`` model imports :mod:`sid_keras.models` when it is loaded.
"""
