"""Simple renderings of packed raw for looking at it (previews), not for quality."""

from __future__ import annotations

import numpy as np

# Display gamma for previews only.
PREVIEW_GAMMA = 2.2

# Packed channels averaged into R, G and B (SID's channel order).
_BAYER_RGB = ([0], [1, 3], [2])
_XTRANS_RGB = ([0, 3], [1, 5, 6, 7, 8], [2, 4])


def packed_preview(packed: np.ndarray, scale: int = 2) -> np.ndarray:
    """(h, w, 4|9) packed in [0, 1] -> (h*scale, w*scale, 3) gray-world balanced, gamma'd preview."""
    groups = _BAYER_RGB if packed.shape[-1] == 4 else _XTRANS_RGB
    rgb = np.stack([packed[..., g].mean(axis=-1) for g in groups], axis=-1)
    means = rgb.reshape(-1, 3).mean(axis=0) + 1e-6
    rgb = rgb * (means[1] / means)
    rgb = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
    return np.clip(rgb, 0, 1) ** (1 / PREVIEW_GAMMA)
