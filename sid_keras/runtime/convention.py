"""What a model is fed and what it returns: its input/output convention, decided in one place.

A ``linear`` model is fed the packed raw amplified and white-balanced, and returns white-balanced
linear camera RGB that the file's colour matrix and LibRaw's curve render (colour from each file's
metadata). An ``srgb`` model (SID's original) is fed the packed raw amplified and returns sRGB. A
noise-aware model's input is followed by the noise level of each packed channel
(:func:`sid_keras.runtime.model_input.noise_sigma`).

The convention travels with the model: a Keras model's config holds ``output`` and
``noise_input`` (:func:`sid_keras.models.convention_of`), an exported file names its input after
it (``packed_wb_noise``; ``packed_wb_noise_x16`` where its sides must be multiples of 16:
:meth:`Convention.from_input`), ``model_info.json`` describes it. Enhance, evaluation, training,
export and the TensorFlow-free runtime ask this class instead of re-deriving it. TensorFlow-free.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from sid_keras.errors import SidError
from sid_keras.runtime.render import (
    LINEAR,
    OUTPUT_KINDS,
    SRGB,
    quantize,
    render,
    render_quantized,
)


@dataclasses.dataclass(frozen=True)
class Convention:
    """Attributes:
        output: ``"linear"`` (white-balanced input, linear camera RGB out) or ``"srgb"``.
        noise: whether the input is followed by each packed channel's noise level.
        channels: packed raw channels (4 Bayer, 9 X-Trans); None where the model does not say
            (a plain callable).
        multiple: the input's height and width must be multiples of it (a dynamic-size TFLite file,
            whose graph leaves padding to its caller); 1: any size (the model pads itself).
    """

    output: str = LINEAR
    noise: bool = False
    channels: int | None = 4
    multiple: int = 1

    def __post_init__(self):
        if self.output not in OUTPUT_KINDS:
            raise SidError(f"model output {self.output!r}: use 'linear' or 'srgb'")

    @property
    def white_balanced(self) -> bool:
        """Whether the input carries the file's white balance (and the output is camera RGB)."""
        return self.output == LINEAR

    @property
    def input_channels(self) -> int | None:
        return None if self.channels is None else self.channels * (2 if self.noise else 1)

    @property
    def input_name(self) -> str:
        """The exported input tensor's name: it tells an app (and :mod:`sid_keras.runtime.lite`) what to feed."""
        return (("packed_wb" if self.white_balanced else "packed") + ("_noise" if self.noise else "")
                + (f"_x{self.multiple}" if self.multiple > 1 else ""))

    @classmethod
    def from_input(cls, name: str, depth: int, path: str = "<model>") -> Convention:
        """The convention of an exported file, from its input tensor's name and depth."""
        if "packed" not in name:
            raise SidError(f"{path}: input {name!r} is not a sid-keras export (expected 'packed_wb' or 'packed'); "
                           "export the model with `sid-keras export`")
        noise = "_noise" in name
        multiple = re.search(r"_x(\d+)", name)
        return cls(LINEAR if "packed_wb" in name else SRGB, noise, int(depth) // (2 if noise else 1),
                   int(multiple.group(1)) if multiple else 1)

    def padded_side(self, side: int) -> int:
        """The least size of at least ``side`` that the model takes (a multiple of :attr:`multiple`)."""
        return -(-side // self.multiple) * self.multiple

    def network_input(self, frame, ratio: float, noise=None, rows=None) -> np.ndarray:
        """What the model is fed of ``frame`` (:func:`sid_keras.runtime.model_input.network_input`);
        ``noise``, the frame's law (:func:`sid_keras.runtime.noise_law.noise_law`), only for a
        noise-aware model."""
        from sid_keras.runtime import model_input

        return model_input.network_input(frame, ratio, white_balance=self.white_balanced, rows=rows,
                                         noise=noise if self.noise else None)

    def to_srgb(self, output: np.ndarray, color_matrix) -> np.ndarray:
        """The model's output as sRGB in [0, 1] (rendered with the file's colour for linear models)."""
        return render(output, color_matrix) if self.white_balanced else output

    def to_pixels(self, output: np.ndarray, color_matrix, dtype) -> np.ndarray:
        """The model's output (clipped to [0, 1]) as sRGB pixels of ``dtype`` (uint8 or uint16)."""
        return render_quantized(output, color_matrix, dtype) if self.white_balanced else quantize(output, dtype)
