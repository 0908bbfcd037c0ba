"""The model that ships with the package, and `sid-keras demo` out of the box."""

import dataclasses

import numpy as np

from sid_keras.apps.cli import main
from sid_keras.runtime.runners import DEFAULT_MODEL_FILE, DEFAULT_TFLITE_FILE


def test_the_shipped_model_is_small_and_loads():
    from sid_keras.models import convention_of
    from sid_keras.runtime.runners import load_model

    assert DEFAULT_MODEL_FILE.is_file() and DEFAULT_MODEL_FILE.stat().st_size < 10_000_000
    model = load_model()
    assert model.count_params() == 1_093_548 and convention_of(model).output == "linear"
    assert model.get_config()["demosaic"] == "malvar"  # it refines Malvar's demosaic


def test_the_shipped_tflite_file_is_the_same_model(write_dng):
    """`enhance` runs the TFLite twin of default.keras: same input and output convention,
    near-identical output."""
    from sid_keras.runtime.inference import Enhancer
    from sid_keras.runtime.runners import load_model

    lite, keras_model = Enhancer(), Enhancer(load_model())
    assert DEFAULT_TFLITE_FILE.stat().st_size < 2_000_000
    assert lite.output == keras_model.output == "linear" and (lite.tile, lite.overlap) == (512, 16)
    # the same convention, but the file leaves padding to its caller: sides multiples of 16
    assert dataclasses.replace(lite.convention, multiple=1) == keras_model.convention
    assert lite.convention.channels == 4 and lite.convention.multiple == lite.multiple == 16
    dng, _ = write_dng(name="dark.dng", shape=(190, 318), black=512, white=16383, iso=3200)  # padded to 96 x 160
    a, b = lite.enhance(dng, ratio=1), keras_model.enhance(dng, ratio=1)  # a busy, unclipped input
    assert 10 * np.log10(1 / np.mean((a - b) ** 2)) > 60  # dB: the same weights (int8 inside) and padding


def test_demo_enhances_a_dark_raw_better_than_the_classical_pipeline(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    for name in ("dark.dng", "reference.dng", "input.png", "output.png", "classical.png", "truth.png",
                 "comparison.png"):
        assert (out / name).exists(), name
    printed = capsys.readouterr().out
    scores = {line.split()[0]: float(line.split()[-2]) for line in printed.splitlines()
              if line.startswith(("classical", "sid-keras"))}
    assert scores["sid-keras"] > scores["classical:"] + 1.0  # dB, on the seeded demo frame
    from PIL import Image

    comparison = np.asarray(Image.open(out / "comparison.png").convert("L"))
    panels = np.split(comparison[:28], 4, axis=1)  # a caption bar: white text on black over each panel
    assert all(np.median(p) == 0 and (p > 200).sum() > 30 for p in panels)
    # the README's first command continues with enhancing the dark raw
    assert main(["enhance", str(out / "dark.dng"), "-o", str(out / "enhanced.png")]) == 0
    assert "auto" in capsys.readouterr().out


def test_experiment_that_reproduces_the_shipped_model_matches_it():
    from sid_keras.runtime.runners import load_model
    from sid_keras.training.config import load_config

    config = load_config("shipped")
    shipped = load_model().get_config()
    assert config.model.name == "unet" and config.model.output == shipped["output"] == "linear"
    assert all(shipped[k] == v for k, v in config.model.args.items())


def test_a_batch_runs_two_files_at_once_with_the_same_output(tmp_path, write_dng, monkeypatch):
    """On 2 cores a batch gives each of two lanes its own one-thread interpreter; the images and
    the order of the messages are those of enhancing the files one by one."""
    from PIL import Image

    from sid_keras.apps.batch import enhance_files
    from sid_keras.runtime.inference import Enhancer

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    sources = [write_dng(name=f"f{i}.dng", shape=(300, 560 - 40 * i), seed=i)[0] for i in range(3)]
    enhancer = Enhancer()
    assert len(enhancer.lanes(3)) == 2 and len(enhancer.lanes(1)) == 1
    lines: list[str] = []
    batch = [(s, tmp_path / "batch" / f"{s.stem}.png") for s in sources]
    assert not enhance_files(enhancer, batch, ratio=20, log=lines.append)
    assert [line.split(" -> ")[0] for line in lines if " -> " in line] == [str(s) for s in sources]
    for source, target in batch:
        alone = tmp_path / "alone" / target.name
        assert not enhance_files(enhancer, [(source, alone)], ratio=20, log=lambda _: None)
        a, b = np.asarray(Image.open(target)), np.asarray(Image.open(alone))
        assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_denoise_sets_how_much_the_shipped_model_smooths(tmp_path):
    """`--denoise K` tells the network K times the file's noise: the output of a noisy flat frame
    grows smoother with K, and at 0 it is the classical (Malvar) demosaic the network refines."""
    from sid_keras.apps.batch import enhance_files
    from sid_keras.models import UNet
    from sid_keras.runtime.dng import write_cfa_dng
    from sid_keras.runtime.inference import Enhancer
    from sid_keras.runtime.runners import load_model

    rng = np.random.default_rng(0)
    mosaic = np.clip(1500 + rng.normal(0, 40, (96, 160)), 0, 16383).astype(np.uint16)
    dng = tmp_path / "noisy.dng"
    write_cfa_dng(dng, mosaic, np.array([[0, 1], [1, 2]]), black_level=512, white_level=16383, iso=6400)
    model = load_model()
    grain = [float(np.std(Enhancer(model, denoise=k).enhance(dng, ratio=8)[8:-8, 8:-8])) for k in (0, 0.5, 1, 2)]
    assert grain == sorted(grain, reverse=True) and grain[3] < 0.6 * grain[0], grain  # 0.014 ... 0.0037
    classical = Enhancer(UNet(width=4, depth=3, demosaic_residual=True, demosaic_gate=True, demosaic="malvar"))
    np.testing.assert_allclose(Enhancer(model, denoise=0).enhance(dng, ratio=8), classical.enhance(dng, ratio=8),
                               atol=2e-3)
    lines: list[str] = []  # --verbose says what the network was told
    assert not enhance_files(Enhancer(model, denoise=2), [(dng, tmp_path / "o.png")], ratio=8, log=lines.append,
                             verbose=True)
    assert "noise level: estimated from the frame (dark and noisy" in lines[-1] and "x2 (denoise)" in lines[-1]


def test_denoise_out_of_range_or_for_a_blind_model_is_one_line(tmp_path, write_dng, capsys, tiny_model_file):
    from conftest import one_line_failure

    dng, _ = write_dng()
    out = tmp_path / "out.png"
    one_line_failure(capsys, ["enhance", str(dng), "-o", str(out), "--denoise", "20"], "--denoise 20", "0 to 10")
    one_line_failure(capsys, ["enhance", str(dng), "-o", str(out), "--denoise", "2", "--model", str(tiny_model_file)],
                     "--denoise 2", "blind to noise")
    assert not out.exists()
