"""Export: builtin-op TFLite files, parity with Keras, and a runner that needs no TensorFlow."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from sid_keras.apps.cli import main
from sid_keras.apps.export import gpu_problems
from sid_keras.runtime import model_input, raw
from sid_keras.runtime.convention import Convention

BLOCK_TF = """
import sys
class BlockTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'):
            raise ImportError('tensorflow is blocked in this test: ' + name)
sys.meta_path.insert(0, BlockTensorFlow())
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from sid_keras.models import UNet

    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("export")
    model = UNet(width=4, depth=3)
    model.save(folder / "tiny.keras")
    profile = folder / "profile.toml"
    profile.write_text("tile = 32\noverlap = 4\ncalibration_crops = 8\ncheck_crops = 2\n")
    assert main(["export", str(folder / "tiny.keras"), "--out", str(folder / "out"), "--profile", str(profile)]) == 0
    return folder


def test_export_writes_every_file_with_builtin_ops_only(exported):
    out = exported / "out"
    report = json.loads((out / "export_report.json").read_text())
    assert set(report["files"]) == {"model_fp32.tflite", "model_fp16_32.tflite", "model_int8w.tflite",
                                    "model_int8_32.tflite"}
    assert (out / "saved_model" / "saved_model.pb").exists()
    for name, info in report["files"].items():
        assert not [op for op in info["ops"] if op.upper().startswith("FLEX")], name
        assert "CONV_2D" in info["ops"]
    assert report["files"]["model_fp16_32.tflite"]["gpu_problems"] == []
    # the dynamic file computes no shapes (it leaves padding to its caller, and its 2x2 upsampling
    # is a 1x1 convolution and a depth_to_space), so XNNPACK runs all of it at any size
    assert not {"SHAPE", "MIRROR_PAD", "TRANSPOSE_CONV"} & set(report["files"]["model_fp32.tflite"]["ops"])
    assert report["files"]["model_fp32.tflite"]["psnr_vs_keras"] > 60
    assert report["files"]["model_fp16_32.tflite"]["psnr_vs_keras"] > 45
    assert report["files"]["model_int8w.tflite"]["psnr_vs_keras"] > 35
    assert report["files"]["model_int8_32.tflite"]["psnr_vs_keras"] > 25
    info = json.loads((out / "model_info.json").read_text())
    assert info["tiling"] == {"tile": 32, "overlap": 4, "blend": "linear ramps over the overlap"}
    assert info["input"]["channels"] == 4 and info["output"]["scale"] == 2
    assert info["output_kind"] == "linear" and info["input"]["name"] == "packed_wb"
    assert "white-balance gain" in info["input"]["normalisation"] and "LibRaw's curve" in info["output"]["post"]
    assert info["int8_calibration"].startswith("synthetic") and "--calibration" in info["int8_calibration"]


def test_int8_calibrates_on_the_users_own_raw_files(write_dng, tmp_path):
    from sid_keras.apps.export import (
        calibration_crops,
        calibration_source,
        load_profile,
    )
    from sid_keras.errors import SidError
    from sid_keras.runtime.inference import AUTO_TARGET_MEAN, auto_ratio

    (tmp_path / "dark").mkdir()
    path, _ = write_dng(name="dark/a.dng", shape=(40, 60), white=1023, black=64)
    profile = load_profile(None, {"calibration_dir": str(tmp_path / "dark"), "tile": 16, "overlap": 2})
    crops = calibration_crops(profile, Convention(), 10, 0)
    assert len(crops) == 10 and crops[0].shape == (16, 16, 4)
    frame = raw.read_raw(path)
    packed = model_input.network_input(frame, auto_ratio(frame, AUTO_TARGET_MEAN["linear"], white_balance=True),
                               white_balance=True)
    assert any(np.allclose(crops[0], packed[t:t + 16, c:c + 16]) for t in range(5) for c in range(15))
    assert calibration_source(profile) == f"raw files in {tmp_path / 'dark'} (exposure ratio auto)"
    (tmp_path / "empty").mkdir()
    with pytest.raises(SidError, match="no raw files there"):
        load_profile(None, {"calibration_dir": str(tmp_path / "empty")})


def test_saved_model_serves_any_size(exported):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(exported / "out" / "saved_model"))
    # a linear model: its input is the white-balanced packed frame, and its name says so
    out = loaded.signatures["serving_default"](packed_wb=tf.zeros([1, 20, 36, 4]))["rgb"]
    assert tuple(out.shape) == (1, 40, 72, 3)


def test_gpu_check_flags_dynamic_shapes_and_forbidden_ops():
    assert gpu_problems(["CONV_2D", "SHAPE"], [1, -1, -1, 4]) == ["SHAPE", "dynamic input shape"]
    assert gpu_problems(["CONV_2D", "FlexConv2D"], [1, 8, 8, 4]) == ["FlexConv2D"]


def test_tflite_runs_without_tensorflow_and_matches_keras(exported, write_dng, tmp_path):
    from sid_keras.runtime.inference import Enhancer

    dng, _ = write_dng(name="frame.dng", shape=(70, 90))
    expected = Enhancer(exported / "tiny.keras", tile=24, overlap=4).enhance(dng, ratio=50)
    result = tmp_path / "lite.npy"
    code = BLOCK_TF + f"""
import numpy as np
from sid_keras.runtime.inference import Enhancer
out = Enhancer({str(exported / 'out' / 'model_fp32.tflite')!r}, tile=24, overlap=4).enhance({str(dng)!r}, ratio=50)
np.save({str(result)!r}, out)
assert 'tensorflow' not in sys.modules
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    np.testing.assert_allclose(np.load(result), expected, atol=1e-4)


def test_dynamic_file_pads_a_tile_to_its_multiple_and_crops_back(exported, write_dng):
    from sid_keras.runtime.inference import Enhancer

    dng, _ = write_dng(name="odd.dng", shape=(70, 90))  # packed 35 x 45: one tile, padded to 36 x 48
    lite = Enhancer(exported / "out" / "model_fp32.tflite", tile=64)
    assert lite.convention.multiple == 4 and lite.multiple == 4
    expected = Enhancer(exported / "tiny.keras", tile=64).enhance(dng, ratio=50)
    np.testing.assert_allclose(lite.enhance(dng, ratio=50), expected, atol=1e-4)


def test_fixed_size_gpu_file_pads_small_tiles(exported, write_dng):
    from sid_keras.runtime.inference import Enhancer

    dng, _ = write_dng(name="small.dng", shape=(50, 70))
    frame = raw.read_raw(dng)
    keras_out = Enhancer(exported / "tiny.keras", tile=32, overlap=4).enhance_frame(frame, ratio=20).output
    fp16 = Enhancer(exported / "out" / "model_fp16_32.tflite", tile=32, overlap=4)
    assert fp16.output == "linear"  # read from the file's input name
    fp16_out = fp16.enhance_frame(frame, ratio=20).output
    assert fp16_out.shape == keras_out.shape == (50, 70, 3)
    assert np.abs(fp16_out - keras_out).max() < 0.02


@pytest.mark.parametrize("side", [32, None])
def test_int8_weight_file_keeps_full_resolution_convolutions_float(side):
    """Dynamic-range kernels quantise activations per tile, which costs shadow detail at full
    resolution: those convolutions keep float weights, the deeper ones get int8, in a fixed-size
    file and in a dynamic-size one, whose shapes do not say which layer runs at which resolution."""
    from sid_keras.apps.export import _convert
    from sid_keras.models import UNet
    from sid_keras.runtime.lite import interpreter_class

    keras.utils.set_random_seed(0)
    net = UNet(width=12, depth=2)
    content = _convert(net, [1, side, side, 4], int8_weights=True)
    interpreter = interpreter_class()(model_content=content)
    weights = {d["name"]: d["dtype"] for d in interpreter.get_tensor_details()
               if "conv" in d["name"] and len(d["shape"]) == 4 and d["shape"][1] == 3}
    full = {n: t for n, t in weights.items() if "enc1_" in n or "dec1_" in n}
    deeper = {n: t for n, t in weights.items() if "enc2_" in n}
    assert full and deeper
    assert all(t == np.float32 for t in full.values()), full
    assert all(t == np.int8 for t in deeper.values()), deeper


def test_a_noise_aware_model_exports_with_its_noise_input_named_and_described(tmp_path, write_dng):
    """The TFLite file's input is named packed_wb_noise, model_info says how an app computes the
    noise channels, and the runner without TensorFlow feeds them as the Keras model gets them."""
    from sid_keras.models import UNet
    from sid_keras.runtime.inference import Enhancer

    keras.utils.set_random_seed(0)
    model = UNet(width=4, depth=3, noise_input=True, demosaic_residual=True, demosaic_gate=True, demosaic="malvar",
                 demosaic_trust=0.004)
    model.save(tmp_path / "noisy.keras")
    (tmp_path / "p.toml").write_text("fp16 = false\nint8_weights = false\nint8 = false\ntile = 32\noverlap = 4\n"
                                     "calibration_crops = 4\ncheck_crops = 2\n")
    assert main(["export", str(tmp_path / "noisy.keras"), "--out", str(tmp_path / "out"), "--profile",
                 str(tmp_path / "p.toml")]) == 0
    info = json.loads((tmp_path / "out" / "model_info.json").read_text())
    assert info["input"]["name"] == "packed_wb_noise" and info["input"]["channels"] == 8
    assert "SENSOR_NOISE_PROFILE" in info["input"]["noise_level"]
    dng, _ = write_dng(name="frame.dng", shape=(70, 90), iso=1600)
    assert "packed_wb_noise_x4" in info["input"]["size"]  # the dynamic file's name: sides multiples of 4
    lite = Enhancer(tmp_path / "out" / "model_fp32.tflite", tile=24, overlap=4)
    assert lite.convention == Convention("linear", noise=True, channels=4, multiple=4)
    expected = Enhancer(tmp_path / "noisy.keras", tile=24, overlap=4).enhance(dng, ratio=50)
    np.testing.assert_allclose(lite.enhance(dng, ratio=50), expected, atol=2e-4)


def test_shipped_profiles_are_found_by_name_from_any_folder(tmp_path, monkeypatch):
    from sid_keras import shipped_configs
    from sid_keras.apps.export import load_profile
    from sid_keras.errors import SidError

    monkeypatch.chdir(tmp_path)  # an installed package, run from anywhere
    assert load_profile("default") == load_profile(str(shipped_configs("export") / "default.toml"))
    with pytest.raises(SidError, match=r"phone: no such export profile \(shipped: default, shipped\)"):
        load_profile("phone")
