"""Export a trained model for serving and phones: SavedModel + TFLite fp32 / fp16 / int8.

- SavedModel with a ``serving_default`` signature, input ``packed`` of dynamic height and width;
- ``model_fp32.tflite``: dynamic size (sides multiples of the model's stride, which its input's name
  ends with: ``packed_wb_noise_x16``; the caller pads), for CPU;
- ``model_fp16_<tile>.tflite``: fp16 weights, fixed tile size, for the mobile GPU delegate (which
  rejects dynamic tensors; on a CPU, the Keras model's output to about 80 dB);
- ``model_int8w.tflite``: int8 weights with float activations (dynamic-range quantisation) except
  in the full-resolution convolutions, which stay float; dynamic size like the fp32 file: on a CPU
  with AVX-512 VNNI its network runs in about half the fp32 file's time; the shipped ``default.tflite``;
- ``model_int8_<tile>.tflite``: full integer quantisation calibrated on packed crops of real
  training data, for CPU / NPU.

Conversion allows builtin ops only, so it fails loudly instead of pulling in Flex (TF Select) ops.
Every export writes ``export_report.json`` (sizes, op lists, PSNR of each file against the Keras
model on held-out crops, latency per megapixel) and ``model_info.json``, the sidecar an app needs
to feed the model.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import pathlib
import time
from typing import Sequence

import numpy as np

from sid_keras import __version__
from sid_keras.apps.evaluation import psnr
from sid_keras.errors import SidError
from sid_keras.runtime.convention import Convention
from sid_keras.runtime.render import CURVE_BREAK

# Ops the TFLite GPU delegate cannot run, or that signal a dynamic graph (delegate docs).
GPU_FORBIDDEN_OPS = {"SHAPE", "FLEX", "CUSTOM", "WHILE", "RANGE", "DYNAMIC_UPDATE_SLICE"}


@dataclasses.dataclass
class ExportProfile:
    """What to export: a TOML file, or one shipped in ``export/profiles/`` (``--profile default``)."""

    fp32: bool = True
    fp16: bool = True
    int8_weights: bool = True
    int8: bool = True
    tile: int = 256  # packed pixels of the fixed-size (GPU / int8) files
    overlap: int = 32  # packed pixels an app should overlap tiles by
    calibration_crops: int = 64  # representative packed crops for int8
    check_crops: int = 8  # held-out crops for the PSNR check
    calibration_dir: str = ""  # a folder of dark raw files (ratio auto) for int8 (`export --calibration`)
    calibration_list: str = ""  # or a SID list file of training data (else synthetic crops)
    calibration_root: str = ""
    seed: int = 0


def load_profile(path: str | None, overrides: dict | None = None) -> ExportProfile:
    """An export profile from TOML, every key and value type checked, before anything is written."""
    from sid_keras.runtime.io import read_toml, shipped_or_path
    from sid_keras.training.config import build_dataclass

    raw: dict = read_toml(shipped_or_path(path, "export"), "export profile") if path else {}
    raw.update(overrides or {})
    profile = build_dataclass(ExportProfile, raw, "export profile")
    for name in ("tile", "calibration_crops", "check_crops"):
        if getattr(profile, name) <= 0:
            raise SidError(f"[export profile] {name} = {getattr(profile, name)}: must be a positive integer")
    if profile.overlap < 0 or profile.tile <= 2 * profile.overlap:
        raise SidError(f"[export profile] tile = {profile.tile}, overlap = {profile.overlap}: need "
                       "overlap >= 0 and tile > 2 x overlap")
    if not (profile.fp32 or profile.fp16 or profile.int8_weights or profile.int8):
        raise SidError("[export profile] fp32, fp16, int8_weights and int8 are all false: nothing to export")
    if profile.calibration_dir:
        from sid_keras.apps.batch import expand_inputs

        folder = pathlib.Path(profile.calibration_dir)
        if not folder.is_dir() or not expand_inputs([str(folder)]):
            raise SidError(f"--calibration {folder}: no raw files there; give a folder of the camera's dark frames")
    return profile


def _convert(net, shape, *, fp16=False, int8_weights=False, dynamic_range=False, representative=None) -> bytes:
    if int8_weights:  # dynamic range, float again at full resolution
        return _float_at_full_resolution(_convert(net, shape, dynamic_range=True), _convert(net, shape))
    import tensorflow as tf

    from sid_keras.models import frozen_forward

    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen_forward(net, shape)])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.allow_custom_ops = False
    if fp16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    if dynamic_range:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # no representative data: dynamic range
    if representative is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([c[None]] for c in representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.float32  # quantize/dequantize inside the graph
        converter.inference_output_type = tf.float32
    try:
        return converter.convert()
    except Exception as err:  # the converter raises ConverterError and friends
        raise SidError(f"TFLite conversion failed with builtin ops only: {str(err).splitlines()[0]}") from None


def _float_at_full_resolution(quantized: bytes, full_float: bytes) -> bytes:
    """The dynamic-range file with float weights again in the convolutions that run at the input's
    full resolution (the first and last of a U-Net).

    Why: dynamic-range kernels quantise each layer's input activations to 8 bits over the whole
    tile, so where a tile holds sky and shadow the shadows get a few levels: at full resolution
    that shows as dark, tinted shadows (the shipped model at ``--ratio 1`` on the Blackmagic DNG:
    39.5 dB / SSIM 0.956 all int8, 40.8 / 0.970 with these layers float, Keras 40.9 / 0.971) for
    about 40% more network time; deeper layers see averaged features and lose nothing.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(quantized))
    reference = flatbuffer_utils.convert_bytearray_to_object(bytearray(full_float))
    graph, float_graph = model.subgraphs[0], reference.subgraphs[0]
    float_tensors = {t.name: t for t in float_graph.tensors}
    for op in _ops_at_input_resolution(model, ("CONV_2D", "DEPTHWISE_CONV_2D")):
        weights = graph.tensors[op.inputs[1]]
        if weights.name in float_tensors:
            original = float_tensors[weights.name]
            model.buffers[weights.buffer].data = reference.buffers[original.buffer].data
            weights.type, weights.quantization = original.type, original.quantization
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


# How an op scales its input's height and width, from its options (other ops keep them).
RESOLUTION_CHANGE = {"MAX_POOL_2D": lambda o: 1 / o.strideH, "AVERAGE_POOL_2D": lambda o: 1 / o.strideH,
                     "CONV_2D": lambda o: 1 / o.strideH, "SPACE_TO_DEPTH": lambda o: 1 / o.blockSize,
                     "DEPTH_TO_SPACE": lambda o: o.blockSize}


def _ops_at_input_resolution(model, names: Sequence[str]) -> list:
    """The ops named ``names`` whose input and output have the model input's height and width, found
    by following the resolution through the graph (pooling and space_to_depth divide it,
    depth_to_space multiplies it), which a dynamic-size file's shapes do not say."""
    from tensorflow.lite.tools import flatbuffer_utils

    graph = model.subgraphs[0]
    scale = {graph.inputs[0]: 1.0}  # tensor -> its resolution relative to the input
    found = []
    for op in graph.operators:  # in execution order
        name = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
        known = [scale[t] for t in op.inputs if t in scale]
        if not known:
            continue  # computed from constants only
        factor = RESOLUTION_CHANGE.get(name, lambda options: 1)(op.builtinOptions)
        for t in op.outputs:
            scale[t] = known[0] * factor
        if name in names and known[0] == scale[op.outputs[0]] == 1.0:
            found.append(op)
    return found


def op_names(tflite_path: str | os.PathLike) -> list[str]:
    """Sorted unique op names of a TFLite file, read through the interpreter."""
    from sid_keras.runtime.lite import interpreter_class

    interpreter = interpreter_class()(model_path=str(tflite_path))
    return sorted({op["op_name"] for op in interpreter._get_ops_details()})


def gpu_problems(ops: Sequence[str], input_signature: Sequence[int]) -> list[str]:
    """Why the GPU delegate would reject a file: forbidden ops or a dynamic input."""
    problems = [op for op in ops if op.upper() in GPU_FORBIDDEN_OPS or op.upper().startswith("FLEX")]
    if any(int(d) < 0 for d in input_signature):
        problems.append("dynamic input shape")
    return problems


def calibration_source(profile: ExportProfile) -> str:
    """What the int8 files were calibrated on, in words, for ``model_info.json`` and the report."""
    if profile.calibration_dir:
        return f"raw files in {profile.calibration_dir} (exposure ratio auto)"
    if profile.calibration_list:
        return f"the pairs of {profile.calibration_list} (their exposure ratios)"
    return ("synthetic: the package's demo photo made into dark Sony-layout raws at ratios 100-300 "
            "(give real frames of the target camera with `sid-keras export --calibration DIR`)")


def _random_crop(packed: np.ndarray, tile: int, rng: np.random.Generator) -> np.ndarray:
    """A tile x tile crop at a random place; a smaller frame is placed in a zero tile."""
    rows, cols = min(tile, packed.shape[0]), min(tile, packed.shape[1])
    top = rng.integers(0, packed.shape[0] - rows + 1)
    left = rng.integers(0, packed.shape[1] - cols + 1)
    crop = np.zeros((tile, tile, packed.shape[2]), np.float32)
    crop[:rows, :cols] = packed[top : top + rows, left : left + cols]
    return crop


def _calibration_frames(profile: ExportProfile, seed: int, convention: Convention):
    """The calibration set's frames with their exposure ratios, in a seeded order, and how many
    there are (None: as many as are asked for)."""
    from sid_keras.runtime import raw

    rng = np.random.default_rng(seed)
    if profile.calibration_dir:
        from sid_keras.apps.batch import expand_inputs
        from sid_keras.runtime.inference import AUTO_TARGET_MEAN, auto_ratio

        files = expand_inputs([profile.calibration_dir])  # load_profile checked there are some

        def from_files():
            for i in rng.permutation(len(files)):
                frame = raw.read_raw(files[i])
                yield frame, auto_ratio(frame, AUTO_TARGET_MEAN[convention.output],
                                        white_balance=convention.white_balanced)

        return from_files(), len(files)
    if profile.calibration_list:
        from sid_keras.data import read_sid_list

        pairs = read_sid_list(profile.calibration_list, profile.calibration_root or None)

        def from_pairs():
            for i in rng.permutation(len(pairs)):
                frame, _, ratio = pairs[i].read()
                yield frame, ratio

        return from_pairs(), len(pairs)
    from sid_keras.apps.demo import DEMO_PHOTO
    from sid_keras.synth.synthetic import plan_scenes, short_frames

    def synthesised():  # the demo's frames (`sid-keras demo --seed N`), made in memory
        for i in itertools.count():
            ratio = int(rng.choice([100, 250, 300]))
            yield from short_frames(plan_scenes([str(DEMO_PHOTO)], seed + i, first_id=0, ratios=[ratio])[0])

    return synthesised(), None


def calibration_crops(profile: ExportProfile, convention: Convention, count: int, seed: int) -> list[np.ndarray]:
    """``count`` network inputs of a model of this ``convention`` (packed, amplified,
    white-balanced for linear models, with their noise level for a noise-aware model) cropped to
    the tile from the calibration set
    (:func:`calibration_source`): four crops a frame, more from each when a set of files has too
    few frames, so every file is read once."""
    from sid_keras.runtime import noise_law

    frames, total = _calibration_frames(profile, seed, convention)
    per_frame = 4 if total is None else max(4, -(-count // max(total, 1)))
    rng = np.random.default_rng(seed + 1)
    crops: list[np.ndarray] = []
    for frame, ratio in frames:
        if frame.cfa.channels != convention.channels:
            raise SidError(f"the calibration frames pack into {frame.cfa.channels} channels but the model takes "
                           f"{convention.channels}: calibrate on the camera the model is for")
        packed = convention.network_input(frame, ratio, noise_law.noise_law(frame) if convention.noise else None)
        crops += [_random_crop(packed, profile.tile, rng) for _ in range(per_frame)]
        if len(crops) >= count:
            break
    if not crops:
        raise SidError(f"{calibration_source(profile)}: no frame to calibrate on")
    return crops[:count]


def _latency_per_mp(predict, crop: np.ndarray, scale: int, repeats: int = 3) -> float:
    predict(crop[None])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(crop[None])
        times.append(time.perf_counter() - start)
    megapixels = crop.shape[0] * crop.shape[1] * scale * scale / 1e6
    return float(np.median(times) / megapixels)


def output_names(profile: ExportProfile) -> list[str]:
    """The files and folders an export writes."""
    names = ["saved_model", "model_info.json", "export_report.json"]
    names += ["model_fp32.tflite"] if profile.fp32 else []
    names += [f"model_fp16_{profile.tile}.tflite"] if profile.fp16 else []
    names += ["model_int8w.tflite"] if profile.int8_weights else []
    names += [f"model_int8_{profile.tile}.tflite"] if profile.int8 else []
    return names


def export_model(model_path: str | os.PathLike, out_dir: str | os.PathLike, profile: ExportProfile,
                 *, overwrite: bool = False, log=print, progress: bool = False) -> dict:
    """Write the SavedModel, the TFLite files, the report and the sidecar; return the report.

    Everything is written to a staging folder and moved into ``out_dir`` at the end, so a
    failed export leaves nothing behind; existing outputs are kept unless ``overwrite``.
    """
    from sid_keras.runtime.io import check_outputs_free, staged_folder
    from sid_keras.runtime.runners import load_model

    check_outputs_free(out_dir, output_names(profile), overwrite)
    model = load_model(model_path)
    with staged_folder(out_dir) as stage:
        report = _export(model, stage, profile, log, progress)
    report["saved_model"] = str(pathlib.Path(out_dir) / "saved_model")
    return report


def _export(model, out: pathlib.Path, profile: ExportProfile, log, progress: bool) -> dict:
    import tensorflow as tf

    from sid_keras.models import convention_of, inference_model, with_precision
    from sid_keras.runtime.io import write_json
    from sid_keras.runtime.lite import tflite_predictor
    from sid_keras.runtime.runners import keras_predictor
    from sid_keras.runtime.tiling import checked_output

    net = with_precision(inference_model(model), None)  # phones get float32 graphs to quantise
    config = net.get_config()
    channels, scale = net.inputs[0].shape[-1], config.get("scale", 2)
    convention = convention_of(net)
    module = tf.Module()
    module.net = net
    spec = tf.TensorSpec([None, None, None, channels], tf.float32, convention.input_name)
    module.serve = tf.function(lambda x: {"rgb": net(x, training=False)}, input_signature=[spec])
    tf.saved_model.save(module, str(out / "saved_model"), signatures={"serving_default": module.serve})

    crops = calibration_crops(profile, convention, profile.calibration_crops + profile.check_crops, profile.seed)
    held_out, calibration = crops[: profile.check_crops], crops[profile.check_crops :] or crops
    keras_predict = keras_predictor(model)
    reference = [checked_output(keras_predict(c[None])[0]) for c in held_out]
    files: dict[str, dict] = {}
    targets = []
    if profile.fp32:
        targets.append(("model_fp32.tflite", dict(shape=[1, None, None, channels]), "CPU, any size"))
    if profile.fp16:
        targets.append((f"model_fp16_{profile.tile}.tflite",
                        dict(shape=[1, profile.tile, profile.tile, channels], fp16=True), "mobile GPU delegate"))
    if profile.int8_weights:
        targets.append(("model_int8w.tflite", dict(shape=[1, None, None, channels], int8_weights=True),
                        "CPU, any size, int8 weights (float at full resolution) + float activations"))
    if profile.int8:
        targets.append((f"model_int8_{profile.tile}.tflite",
                        dict(shape=[1, profile.tile, profile.tile, channels], representative=calibration),
                        "CPU / NPU, int8"))
    from sid_keras.runtime.progress import Progress

    bar = Progress(len(targets), "export", "file", enabled=progress)
    log = bar.above(log)
    for name, kwargs, use in targets:
        path = out / name
        path.write_bytes(_convert(net, **kwargs))
        ops = op_names(path)
        flex = [op for op in ops if op.upper().startswith("FLEX")]
        if flex:
            raise SidError(f"{name}: contains Flex ops {flex}; only builtin ops are allowed")
        predict = tflite_predictor(path)
        outputs = [predict(c[None])[0] for c in held_out]
        signature = [-1 if d is None else d for d in kwargs["shape"]]
        files[name] = {
            "use": use,
            "bytes": path.stat().st_size,
            "ops": ops,
            "gpu_problems": gpu_problems(ops, signature),
            "psnr_vs_keras": float(np.mean([psnr(np.clip(r, 0, 1), np.clip(o, 0, 1))
                                             for r, o in zip(reference, outputs)])),
            "seconds_per_mp": _latency_per_mp(predict, held_out[0], scale),
        }
        log(f"{name}: {files[name]['bytes'] / 1e6:.1f} MB, {files[name]['psnr_vs_keras']:.2f} dB vs Keras, "
            f"{files[name]['seconds_per_mp']:.2f} s/MP")
        bar.update()
    bar.close()
    keras_latency = _latency_per_mp(keras_predict, held_out[0], scale)
    write_json(out / "model_info.json", model_info(net, profile), indent=2)
    report = {"keras_seconds_per_mp": keras_latency, "files": files, "calibration": calibration_source(profile),
              "held_out_crops": len(held_out), "calibration_crops": len(calibration)}
    write_json(out / "export_report.json", report, indent=2)
    return report


# How an app computes a noise-aware model's noise channels (sid_keras.runtime.model_input.noise_sigma).
NOISE_LEVEL_RECIPE = (
    "sigma = min(ratio x gain x sqrt(S x y + O), 1) per channel, with y the channel's raw value after "
    "(raw - black) / (white - black), clipped at 0 (before the ratio), ratio x gain what the channel was "
    "multiplied by, and (S, O) the variance law of the frame: Camera2 SENSOR_NOISE_PROFILE (a DNG's "
    "NoiseProfile) gives one (S, O) pair per CFA channel in these units"
)


def model_info(net, profile: ExportProfile) -> dict:
    """``model_info.json``: what an app must do before and after the network."""
    from sid_keras.models import convention_of, without_padding

    config, convention = net.get_config(), convention_of(net)
    multiple = without_padding(net)[1]
    dynamic_name = dataclasses.replace(convention, multiple=multiple).input_name
    channels, scale, noise = convention.input_channels, config.get("scale", 2), convention.noise
    pre = ("(raw - black_level[channel]) / (white_level - black_level[channel]), clipped to [0, 1], "
           "x exposure ratio")
    if convention.white_balanced:
        pre += (" x the as-shot white-balance gain of the channel's colour (gains scaled so the smallest of "
                "R, G, B is 1; Camera2: 1 / SENSOR_NEUTRAL_COLOR_POINT), then clipped at 1")
        output = {"name": "rgb", "layout": "NHWC", "scale": scale, "space": "linear camera RGB, white-balanced",
                  "post": "clip to [0, 1]; rgb = camera_rgb @ M.T with M the camera -> linear sRGB matrix "
                          "(rawpy color_matrix[:, :3]; Camera2: from SENSOR_COLOR_TRANSFORM1 / "
                          "SENSOR_FORWARD_MATRIX1), clip to [0, 1], then LibRaw's curve: 4.5 x below "
                          f"{CURVE_BREAK:.6f}, else 1.099297 x^0.45 - 0.099297"}
    else:
        pre += ", clipped at 1"
        output = {"name": "rgb", "layout": "NHWC", "scale": scale, "space": "sRGB (colour learned by the model)",
                  "post": "clip to [0, 1]"}
    return {
        "model": type(net).__name__, "config": config, "sid_keras_version": __version__,
        "output_kind": convention.output,
        "input": {"name": convention.input_name, "layout": "NHWC", "channels": channels,
                  "channel_order": ("R, G (red row), B, G (blue row)" if convention.channels == 4
                                    else "SID Fuji X-Trans 9")
                                   + (", then the noise level of each, in the same order" if noise else ""),
                  "normalisation": pre,
                  **({"noise_level": NOISE_LEVEL_RECIPE} if noise else {}),
                  "cfa": "canonicalise to RGGB by cropping one row/column as needed before packing",
                  "size": (f"fixed-size files: {profile.tile} x {profile.tile}; dynamic-size files (model_fp32.tflite, "
                           f"model_int8w.tflite, input named {dynamic_name}): height and width multiples of "
                           f"{multiple}: pad the tile at the bottom and right (symmetric), crop the output back; "
                           "the SavedModel: any size (it pads itself)")},
        "output": output,
        "tiling": {"tile": profile.tile, "overlap": profile.overlap, "blend": "linear ramps over the overlap"},
        "int8_calibration": calibration_source(profile),
    }


def format_report(report: dict) -> str:
    lines = [f"{'file':<28}{'MB':>7}{'dB vs Keras':>13}{'s/MP':>8}{'vs Keras':>10}  GPU delegate"]
    lines.append(f"{'keras (fp32)':<28}{'':>7}{'':>13}{report['keras_seconds_per_mp']:>8.2f}{'1.00x':>10}")
    for name, f in report["files"].items():
        gpu = "ok" if not f["gpu_problems"] else "no: " + ", ".join(f["gpu_problems"])
        lines.append(f"{name:<28}{f['bytes'] / 1e6:>7.2f}{f['psnr_vs_keras']:>13.2f}{f['seconds_per_mp']:>8.2f}"
                     f"{report['keras_seconds_per_mp'] / f['seconds_per_mp']:>9.2f}x  {gpu}")
    return "\n".join(lines)
