"""Run ``.tflite`` models without TensorFlow: LiteRT, then tflite_runtime, then tf.lite.

This module imports only numpy and the interpreter, so a phone-side or server-side pipeline
can enhance raw files with ``Enhancer("model.tflite")`` in an environment without TensorFlow;
the file's input name says what it predicts, and :mod:`sid_keras.runtime.render` (numpy) turns linear
camera RGB into sRGB with the raw file's own colour matrix.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from typing import Callable

import numpy as np

from sid_keras.errors import SidError, native_stderr_hidden
from sid_keras.runtime.convention import Convention


def interpreter_class():
    """The first TFLite interpreter available: ai_edge_litert, tflite_runtime, tf.lite."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        import tensorflow as tf

        return tf.lite.Interpreter
    except ImportError:
        raise SidError("running .tflite models needs LiteRT: pip install 'sid-keras[edge]' "
                       "(or ai-edge-litert)") from None


def missing_model_message(path: str | os.PathLike) -> str:
    """Why ``path`` is not a model file, in one line: an export's SavedModel folder is named as such,
    with the file of that export enhance can run."""
    path = pathlib.Path(path)
    if (path / "saved_model.pb").is_file():
        export = path.parent / "model_fp32.tflite"
        instead = f"give {export}" if export.is_file() else "give the .keras file it was exported from"
        return (f"{path}: a SavedModel folder (for TensorFlow Serving); enhance runs a .keras or .tflite file: "
                f"{instead}")
    if path.is_dir():
        return f"{path}: a folder, not a model file; give a .keras or .tflite file"
    return f"{path}: no such model file"


def tflite_predictor(path: str | os.PathLike, num_threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A tile predictor (batch of packed tiles -> RGB) running a TFLite file.

    Dynamic-size models are resized to each tile, padded up to the multiple their input's name
    asks for; fixed-size ones (the GPU fp16 export) get the tile padded to their size. Padding is
    symmetric at the bottom and right, as the Keras models pad themselves, and the output is
    cropped back. int8 inputs and outputs are quantised and dequantised with the file's own parameters.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SidError(missing_model_message(path))
    with _runtime_log_hidden():
        try:
            interpreter = interpreter_class()(model_path=path, num_threads=num_threads or os.cpu_count())
        except (ValueError, RuntimeError) as err:
            raise SidError(f"{path}: not a loadable TFLite model ({err})") from None
        inp = interpreter.get_input_details()[0]
        convention = Convention.from_input(inp["name"], inp["shape"][-1], path)
        signature = inp.get("shape_signature", inp["shape"])
        fixed = all(int(d) > 0 for d in signature[1:3])
        if not fixed:  # the smallest input it takes (its placeholder 1x1 may not be)
            side = convention.multiple
            interpreter.resize_tensor_input(inp["index"], [1, side, side, int(inp["shape"][-1])], strict=False)
        try:
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise SidError(f"{path}: cannot run with builtin TFLite ops ({str(err).splitlines()[0]}); "
                           "export it again with `sid-keras export`") from None
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    state = {"shape": tuple(int(d) for d in inp["shape"])}

    def predict(x: np.ndarray) -> np.ndarray:
        h, w = x.shape[1:3]
        if fixed:
            fh, fw = int(signature[1]), int(signature[2])
            if h > fh or w > fw:
                raise SidError(f"{path}: fixed input {fh}x{fw} is smaller than the tile {h}x{w}; "
                               "use a tile size no larger than the model's")
        else:
            fh, fw = convention.padded_side(h), convention.padded_side(w)
        if (h, w) != (fh, fw):
            x = np.pad(x, ((0, 0), (0, fh - h), (0, fw - w), (0, 0)), mode="symmetric")
        if not fixed and x.shape != state["shape"]:
            interpreter.resize_tensor_input(inp["index"], list(x.shape), strict=False)
            interpreter.allocate_tensors()
            state["shape"] = x.shape
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.rint(x / scale + zero), info.min, info.max).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], np.ascontiguousarray(x, dtype=inp["dtype"]))
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"])
        if out["dtype"] != np.float32:
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        scale_factor = y.shape[1] // x.shape[1]
        return y[:, : h * scale_factor, : w * scale_factor].astype(np.float32)

    predict.convention = convention
    predict.fixed_tile = int(signature[1]) if fixed and signature[1] == signature[2] else None
    predict.multiple = None if fixed else convention.multiple  # a dynamic size's: tiles may be fitted
    return predict


@contextlib.contextmanager
def _runtime_log_hidden():
    """LiteRT's C++ prints "INFO: Created TensorFlow Lite XNNPACK delegate" to file descriptor 2
    when a model loads; hide it from library users too (SID_KERAS_VERBOSE=1 shows it)."""
    if os.environ.get("SID_KERAS_VERBOSE", "") not in ("", "0"):
        yield
        return
    with native_stderr_hidden():
        yield
