"""What an app does around an exported model, in numpy and LiteRT alone: the phone-side reference.

Port this file, not the package. It takes what Camera2 gives (a RAW_SENSOR mosaic, its black
level per CFA position, white level, CFA arrangement, neutral colour point, noise profile and
colour transform) and turns it into the enhanced sRGB picture, step by step as
[`README.md`](README.md) numbers them. `tests/test_app_reference.py` holds it to the package's
own convention: on the same frame and model file it gives `sid-keras enhance`'s picture.

    python export/app_reference.py MODEL.tflite FRAME.npz OUT.png

(FRAME.npz: the arrays of :func:`enhance`'s arguments, by name.) It runs the whole frame at once,
as the dynamic-size files allow; an app short of memory runs tiles overlapping by 32 packed
pixels and blends them with linear ramps (the package's `sid_keras.runtime.tiling`).
"""

from __future__ import annotations

import sys

import numpy as np

# Step 2: the first row and/or column to drop so the mosaic starts on a red pixel (RGGB).
RGGB_OFFSET = {"RGGB": (0, 0), "GRBG": (0, 1), "GBRG": (1, 0), "BGGR": (1, 1)}
# Step 3: SID's channel order inside an RGGB tile: R, G (red row), B, G (blue row).
PACKED_ORDER = ((0, 0), (0, 1), (1, 1), (1, 0))
PACKED_COLOUR = (0, 1, 2, 1)  # R, G, B, G: which of the capture's (R, G, B) each channel is
AUTO_TARGET_MEAN = 0.16  # step 5: a linear model's mean input (0.13 for an srgb model)
AUTO_RATIO_RANGE = (1.0, 1000.0)
NOISE_LEVEL_CEILING = 1.0  # step 7: the largest noise level a model is told
# Step 9: LibRaw's default output curve (BT.709: power 0.45, toe slope 4.5), where its toe meets
# its power segment smoothly and that segment's offset (dcraw's gamma_curve solves for them).
LIBRAW_POWER, LIBRAW_TOE_SLOPE = 0.45, 4.5
CURVE_KNEE, CURVE_OFFSET = 0.018053968510807452, 0.09929682680944099


def pack(mosaic: np.ndarray, arrangement: str, black: np.ndarray, white: float) -> np.ndarray:
    """Steps 1-4: the raw signal of each packed channel, ``(v - black) / (white - black)``, not
    yet clipped (the noise level needs it). ``black``: 2x2, per CFA position of the sensor's
    first tile (Camera2's ``SENSOR_DYNAMIC_BLACK_LEVEL``, else ``SENSOR_BLACK_LEVEL_PATTERN``)."""
    dy, dx = RGGB_OFFSET[arrangement]
    h, w = (mosaic.shape[0] - dy) // 2 * 2, (mosaic.shape[1] - dx) // 2 * 2
    rggb = mosaic[dy : dy + h, dx : dx + w].astype(np.float32)
    black = np.asarray(black, np.float32)
    return np.stack([(rggb[r::2, c::2] - black[(dy + r) % 2, (dx + c) % 2])
                     / (np.float32(white) - black[(dy + r) % 2, (dx + c) % 2]) for r, c in PACKED_ORDER], axis=-1)


def white_balance_gains(neutral: np.ndarray) -> np.ndarray:
    """Step 6: each packed channel's gain, ``1 / neutral`` (``SENSOR_NEUTRAL_COLOR_POINT``, a DNG's
    AsShotNeutral) scaled so the smallest of R, G, B is 1, as LibRaw scales it."""
    gains = 1 / np.asarray(neutral, np.float64)
    gains = gains / gains.min()
    return np.array([gains[c] for c in PACKED_COLOUR], np.float32)


def auto_ratio(signal: np.ndarray, gains: np.ndarray, target: float = AUTO_TARGET_MEAN) -> float:
    """Step 5 without a reference exposure: the amplification that brings the frame's mean
    white-balanced signal (before any clipping, so read noise averages out) to ``target``."""
    mean = float(np.mean(signal * gains, dtype=np.float64))
    if not mean > 0:
        return AUTO_RATIO_RANGE[1]
    return float(np.clip(target / mean, *AUTO_RATIO_RANGE))


def network_input(signal: np.ndarray, ratio: float, gains: np.ndarray, noise_profile=None) -> np.ndarray:
    """Steps 5-7: amplified, white-balanced, clipped at 0 and 1; for a noise-aware model (input
    named ``packed_wb_noise``) followed by each value's noise level ``ratio x gain x sqrt(S y + O)``,
    at most 1. ``noise_profile``: (S, O) per colour R, G, B (``SENSOR_NOISE_PROFILE``, a DNG's
    NoiseProfile), in units of white minus black."""
    factor = np.float32(ratio) * gains
    x = np.clip(signal * factor, 0, 1)
    if noise_profile is None:
        return x
    law = np.asarray(noise_profile, np.float32)[list(PACKED_COLOUR)]  # (S, O) per packed channel
    level = np.minimum(factor * np.sqrt(law[:, 0] * np.maximum(signal, 0) + law[:, 1]), NOISE_LEVEL_CEILING)
    return np.concatenate([x, level], axis=-1).astype(np.float32)


def run(model_path: str, x: np.ndarray) -> np.ndarray:
    """Step 8: the dynamic-size model on the whole frame, its sides padded (mirrored at the bottom
    and right) to the multiple its input's name ends with (``..._x16``), the output cropped back
    and clipped to [0, 1]. LiteRT only (``pip install ai-edge-litert``)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=model_path)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    multiple = int(inp["name"].rsplit("_x", 1)[1]) if "_x" in inp["name"] else 1
    h, w = x.shape[:2]
    ph, pw = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    padded = np.pad(x, ((0, ph - h), (0, pw - w), (0, 0)), mode="symmetric")[None]
    interpreter.resize_tensor_input(inp["index"], list(padded.shape), strict=False)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], np.ascontiguousarray(padded, np.float32))
    interpreter.invoke()
    y = interpreter.get_tensor(out["index"])[0]
    scale = y.shape[0] // ph
    return np.clip(y[: h * scale, : w * scale], 0, 1)


def render(camera_rgb: np.ndarray, camera_to_srgb: np.ndarray | None) -> np.ndarray:
    """Step 9, a linear model's output: the 3x3 camera -> linear sRGB matrix (LibRaw's
    ``rgb_cam``; on Android ``SENSOR_FORWARD_MATRIX1`` then XYZ D50 -> linear sRGB; the identity
    without one), clipped, then LibRaw's curve: ``4.5 x`` below the knee, else ``(1 + a) x^0.45 - a``."""
    matrix = np.eye(3, dtype=np.float32) if camera_to_srgb is None else np.asarray(camera_to_srgb, np.float32)
    rgb = np.clip(camera_rgb @ matrix.T, 0, 1)
    curved = np.power(rgb, np.float32(LIBRAW_POWER)) * np.float32(1 + CURVE_OFFSET) - np.float32(CURVE_OFFSET)
    return np.where(rgb < CURVE_KNEE, rgb * np.float32(LIBRAW_TOE_SLOPE), curved)


def enhance(model_path: str, mosaic, arrangement, black, white, neutral, noise_profile=None,
            camera_to_srgb=None, ratio: float | None = None) -> np.ndarray:
    """Every step: the enhanced sRGB picture in [0, 1] (float32, the RGGB-cropped frame's size)."""
    signal = pack(np.asarray(mosaic), str(arrangement), black, float(white))
    gains = white_balance_gains(neutral)
    ratio = auto_ratio(signal, gains) if ratio is None else float(ratio)
    return render(run(model_path, network_input(signal, ratio, gains, noise_profile)), camera_to_srgb)


if __name__ == "__main__":
    model, frame, out = sys.argv[1:4]
    arrays = dict(np.load(frame, allow_pickle=False))
    picture = enhance(model, **{k: (v.item() if v.ndim == 0 else v) for k, v in arrays.items()})
    from PIL import Image

    Image.fromarray(np.rint(picture * 255).astype(np.uint8)).save(out)
