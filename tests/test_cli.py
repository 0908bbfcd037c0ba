import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import BLACKMAGIC_DNG

from sid_keras.apps.cli import main

HEAVY_MODULES = ("rawpy", "keras_tuner", "matplotlib", "ai_edge_litert", "tensorflow", "keras")


def _imported_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint('MODULES:' + ','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    line = out.stdout.strip().splitlines()[-1]
    return [m for m in line.removeprefix("MODULES:").split(",") if m]


def test_import_and_help_stay_light():
    assert _imported_after("import sid_keras, sid_keras.runtime.raw, sid_keras.data") == []
    code = "from sid_keras.apps.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert _imported_after(code) == []


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("enhance", "demo", "evaluate", "synth", "train", "models"):
        assert command in out


def test_every_command_that_writes_takes_o_for_its_output():
    """`-o` works wherever `--out` does, as `enhance -o` taught the user."""
    import argparse

    from sid_keras.apps.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    takes_out = {name: [a.option_strings for a in sub._actions if "--out" in a.option_strings]
                 for name, sub in commands.items()}
    assert {name for name, found in takes_out.items() if found} >= {"enhance", "demo", "evaluate", "synth",
                                                                     "finetune", "calibrate", "export"}
    assert all(found == [["-o", "--out"]] for found in takes_out.values() if found), takes_out


def test_enhance_writes_once_and_refuses_to_overwrite(tmp_path, write_dng, tiny_model_file, capsys):
    dng, _ = write_dng(name="dark.dng")
    out = tmp_path / "out.png"
    args = ["enhance", str(dng), "-o", str(out), "--model", str(tiny_model_file), "--ratio", "100"]
    assert main(args) == 0 and out.exists()
    assert "ratio x100.0 given" in capsys.readouterr().out
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err
    assert main(args + ["--overwrite"]) == 0
    assert main(["enhance", str(dng), "-o", str(tmp_path / "x.tif"), "--model", str(tiny_model_file)]) == 0
    import tifffile

    assert tifffile.imread(tmp_path / "x.tif").dtype == np.uint16


def test_enhance_errors_are_one_line(tmp_path, tiny_model_file, capsys):
    assert main(["enhance", str(tmp_path / "none.ARW"), "-o", str(tmp_path / "o.png"),
                 "--model", str(tiny_model_file)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].endswith("none.ARW: no such file") and "1 of 1 files failed" in err[-1]
    assert main(["enhance", "x.dng", "-o", "o.png", "--model", str(tmp_path / "m.keras")]) == 1
    assert "no such model file" in capsys.readouterr().err
    for option, value, needle in (("--ratio", "-3", "between"), ("--tile", "8", "under 32 packed pixels"),
                                  ("--tile", "abc", "not a whole number")):
        with pytest.raises(SystemExit) as exit_info:
            main(["enhance", "x.dng", "-o", "o.png", option, value])
        assert exit_info.value.code == 1  # a usage error is one line, exit 1, like every other failure
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and option in err[0] and needle in err[0] and "sid-keras enhance --help" in err[0]


def test_enhance_real_blackmagic_dng(tmp_path, tiny_model_file):
    dng = BLACKMAGIC_DNG
    out = tmp_path / "bm.png"
    assert main(["enhance", str(dng), "-o", str(out), "--model", str(tiny_model_file)]) == 0
    from PIL import Image

    assert Image.open(out).size == (4128, 2176)


def test_enhance_backs_its_arrays_with_ordinary_pages_unless_told(tmp_path, write_dng, monkeypatch):
    """Huge-page advice made a fresh enhance stall in the kernel (console.without_huge_pages); a user's
    NUMPY_MADVISE_HUGEPAGE is kept."""
    from sid_keras.apps.console import huge_page_advice_setter

    _set_madvise_hugepage = huge_page_advice_setter()
    dng, _ = write_dng()
    previous = _set_madvise_hugepage(True)
    try:
        monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
        assert main(["enhance", str(dng), "-o", str(tmp_path / "a.png")]) == 0
        assert _set_madvise_hugepage(True) is False  # enhance had turned the advice off
        monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
        assert main(["enhance", str(dng), "-o", str(tmp_path / "b.png")]) == 0
        assert _set_madvise_hugepage(True) is True
    finally:
        _set_madvise_hugepage(previous)


def test_enhance_rejects_a_raw_without_a_colour_filter_array(tmp_path, tiny_model_file, capsys, film_scan_dng):
    assert main(["enhance", str(film_scan_dng), "-o", str(tmp_path / "n.png"), "--model", str(tiny_model_file)]) == 1
    assert "no colour filter array" in capsys.readouterr().err
    assert not (tmp_path / "n.png").exists()


def _train_args(root, out, *extra):
    return ["train", "--config", "synthetic", "--set", f"data.root='{root}'", "--set", f"train.out_dir='{out}'",
            "--set", "model.args={width=4, depth=3}", "--set", "data.patch_size=32",
            "--set", "data.batch_size=2", "--set", "train.val_every=1", "--set", "train.log_images=1",
            *extra]


@pytest.mark.slow
def test_train_on_pairs_synthesised_on_the_fly(mini_dataset, tmp_path, capsys, photo_folder):
    """The shipped recipe's data: clean photos, a new virtual camera and noise every step."""
    out = tmp_path / "onfly"
    photos = photo_folder
    assert main(["train", "--config", "shipped", "--set", f"data.root='{mini_dataset}'",
                 "--set", f"data.photos=['{photos}']", "--set", f"train.out_dir='{out}'",
                 "--set", "model.args={width=4, depth=3}", "--set", "data.patch_size=32", "--set", "data.batch_size=4",
                 "--set", "train.epochs=3", "--set", "train.steps_per_epoch=15", "--set", "train.val_every=3",
                 "--set", "train.learning_rate=2e-3", "--set", "train.log_images=0"]) == 0
    lines = (out / "log.csv").read_text().strip().splitlines()
    losses = [float(line.split(",")[lines[0].split(",").index("loss")]) for line in lines[1:]]
    assert losses[-1] < losses[0]
    header = lines[0].split(",")  # the first epoch does not validate: its columns still hold SSIM's
    assert "ssim" not in header and float(lines[-1].split(",")[header.index("val_ssim")]) > 0
    from sid_keras.models import convention_of
    from sid_keras.runtime.runners import load_model

    assert convention_of(load_model(out / "best.keras")).output == "linear"
    # an sRGB model cannot learn from pairs whose targets are camera RGB
    assert main(["train", "--config", "shipped", "--set", f"data.photos=['{photos}']",
                 "--set", "model.output='srgb'", "--set", f"train.out_dir='{tmp_path / 'x'}'"]) == 1
    assert "train 'linear' models" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_train_evaluate_and_bad_configs(mini_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(mini_dataset, out, "--set", "train.epochs=3", "--set", "train.learning_rate=2e-3",
                            "--set", "train.steps_per_epoch=20")) == 0
    for name in ("config.json", "best.keras", "final.keras", "log.csv", "best.json"):
        assert (out / name).exists(), name
    lines = (out / "log.csv").read_text().strip().splitlines()
    assert len(lines) == 4 and "val_psnr" in lines[0] and "val_ssim" in lines[0]
    losses = [float(line.split(",")[lines[0].split(",").index("loss")]) for line in lines[1:]]
    assert losses[-1] < losses[0]
    assert json.loads((out / "config.json").read_text())["model"]["name"] == "unet"
    assert main(_train_args(mini_dataset, out, "--set", "model.name='fast_unet'")) == 1
    assert "holds a run of model 'unet'" in capsys.readouterr().err
    assert main(_train_args(mini_dataset, tmp_path / "r2", "--set", "train.epochz=3")) == 1
    assert "unknown config keys in [train]: epochz" in capsys.readouterr().err
    assert main(_train_args(tmp_path / "nowhere", tmp_path / "r3")) == 1
    assert "no such dataset folder" in capsys.readouterr().err
    assert main(_train_args(mini_dataset, tmp_path / "r4", "--set", "data.patch_size=1024")) == 1
    assert "larger than" in capsys.readouterr().err
    ev = tmp_path / "eval"
    assert main(["evaluate", "--data", str(mini_dataset), "--list", "Sony_val_list.txt", "--model",
                 str(out / "best.keras"), "--out", str(ev), "--report"]) == 0
    table = capsys.readouterr().out
    assert "x100" in table and "x300" in table and "vs scaled_nlm" in table
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["count"] == 3 and set(metrics["overall"]) == {"model", "scaled", "scaled_nlm"}
    assert (ev / "report.html").exists() and len(list((ev / "figures").iterdir())) == 3


@pytest.mark.slow
def test_training_killed_mid_epoch_resumes_where_it_stopped(mini_dataset, tmp_path):
    out = tmp_path / "killed"
    epochs, steps = 6, 6
    args = _train_args(mini_dataset, out, "--set", f"train.epochs={epochs}",
                       "--set", f"train.steps_per_epoch={steps}", "--set", "train.val_every=100")
    command = [sys.executable, "-m", "sid_keras.apps.cli", *args]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    metadata = out / "checkpoint" / "latest.json"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if metadata.exists() and json.loads(metadata.read_text() or "{}").get("epoch", 0) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads(metadata.read_text())["epoch"]
    assert 2 <= done < epochs
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert f"Epoch {done + 1}/{epochs}" in second.stdout and "Epoch 1/" not in second.stdout
    import keras

    import sid_keras.models  # noqa: F401  (registers the classes of the saved model)

    final = keras.models.load_model(out / "final.keras")
    assert int(final.optimizer.iterations) == epochs * steps  # weights and optimizer state resumed
    # the same command never interrupted: the same weights, since the data stream resumed exactly
    whole = tmp_path / "whole"
    uninterrupted = [a.replace(str(out), str(whole)) for a in command]
    assert subprocess.run(uninterrupted, capture_output=True, env=env, timeout=300).returncode == 0
    reference = keras.models.load_model(whole / "final.keras")
    assert all(np.array_equal(a, b) for a, b in zip(reference.get_weights(), final.get_weights()))


def _free_ports(count: int) -> str:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = ",".join(str(s.getsockname()[1]) for s in sockets)
    for s in sockets:
        s.close()
    return ports


def _start_workers(root, out, epochs: int, steps: int, *overrides: str) -> list:
    import pathlib

    script = pathlib.Path(__file__).with_name("multiworker_job.py")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    ports = _free_ports(2)
    return [subprocess.Popen([sys.executable, str(script), str(i), ports, str(root), str(out), str(epochs), str(steps),
                              *overrides], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            for i in range(2)]


def _finish(procs) -> None:
    try:
        outputs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-2000:]


@pytest.mark.slow
def test_two_workers_on_loopback_hold_the_same_weights_and_resume_exactly(mini_dataset, tmp_path):
    epochs, steps = 4, 3
    whole = tmp_path / "whole"
    _finish(_start_workers(mini_dataset, whole, epochs, steps))
    a, b = np.load(whole / "weights0.npz"), np.load(whole / "weights1.npz")
    assert a.files and all(np.array_equal(a[k], b[k]) for k in a.files)
    assert int(np.load(whole / "steps0.npy")) == int(np.load(whole / "steps1.npy")) == epochs * steps  # trained
    assert (whole / "final.keras").exists() and (whole / "best.keras").exists()  # written by the chief
    rows = (whole / "log.csv").read_text().splitlines()  # the chief's log, as fit writes it
    assert rows[0].split(",")[:4] == ["epoch", "learning_rate", "loss", "psnr"] and len(rows) == 1 + epochs
    losses = [np.load(whole / f"loss{i}.npy") for i in (0, 1)]  # fit's step: the compiled loss, over both
    assert len(losses[0]) == epochs and np.all(np.isfinite(losses[0])) and np.allclose(losses[0], losses[1])
    # the same run killed with SIGKILL after its first checkpoint, then started again
    killed = tmp_path / "killed"
    procs = _start_workers(mini_dataset, killed, epochs, steps)
    record = killed / "checkpoint" / "latest.json"
    deadline = time.time() + 240
    while time.time() < deadline and not (record.exists() and json.loads(record.read_text() or "{}").get("epoch")):
        time.sleep(0.02)
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.wait()
    done = json.loads(record.read_text())["epoch"]
    assert 1 <= done < epochs, "the run ended before it could be killed"
    _finish(_start_workers(mini_dataset, killed, epochs, steps))
    resumed = np.load(killed / "weights0.npz")
    assert all(np.array_equal(a[k], resumed[k]) for k in a.files)  # identical to the uninterrupted run
    assert int(np.load(killed / "steps0.npy")) == epochs * steps
    assert len((killed / "log.csv").read_text().splitlines()) == 1 + epochs  # no row twice after the resume


@pytest.mark.slow
def test_two_workers_stop_at_a_diverging_loss_and_keep_the_last_good_checkpoint(mini_dataset, tmp_path):
    """The multi-worker loop has fit's guard: a loss that turns non-finite ends the run in one line,
    writes no final model and leaves the last good checkpoint."""
    out = tmp_path / "diverged"
    procs = _start_workers(mini_dataset, out, 2, 3, "train.learning_rate=1e30")
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode != 0 for p in procs)
    assert all("training diverged at epoch 1" in text for text in outputs), outputs[0][-1500:]
    assert not (out / "final.keras").exists() and not (out / "checkpoint" / "latest.json").exists()


@pytest.mark.slow
def test_mixed_precision_training_runs(mini_dataset, tmp_path, capsys):
    """In process: the mixed_float16 policy belongs to the model, not to the process."""
    import keras

    out = tmp_path / "mixed"
    args = _train_args(mini_dataset, out, "--set", "train.epochs=1", "--set", "train.steps_per_epoch=3",
                       "--set", "train.precision='mixed_float16'")
    assert main(args) == 0
    assert "training precision: mixed_float16 (train.precision)" in capsys.readouterr().out
    assert keras.config.dtype_policy().name == "float32"
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["precision"] == "mixed_float16"
    from sid_keras.runtime.runners import load_model

    assert load_model(out / "final.keras").get_config()["dtype"] == "mixed_float16"


def test_long_work_draws_a_bar_on_a_terminal_with_lines_above_it_and_nothing_in_a_log(tmp_path, write_dng,
                                                                                     tiny_model_file, capsys):
    from sid_keras.runtime.progress import Progress, tracked

    with Progress(3, "enhance", "file", enabled=True) as bar:
        write = bar.above(print)
        for i in range(3):
            write(f"file {i} done")
            bar.update()
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["file 0 done", "file 1 done", "file 2 done"]  # no bar among the lines
    assert "enhance:" in captured.err and "/3 [" in captured.err  # count, elapsed time and ETA
    assert list(tracked(range(4), 4, "synth", "scene", enabled=False)) == [0, 1, 2, 3]
    assert capsys.readouterr().err == ""
    (tmp_path / "in").mkdir()
    for name in ("a.dng", "b.dng"):  # not a terminal here: the lines only
        write_dng(name=f"in/{name}")
    assert main(["enhance", str(tmp_path / "in"), "-o", f"{tmp_path / 'out'}/", "--model", str(tiny_model_file)]) == 0
    captured = capsys.readouterr()
    assert "%|" not in captured.err and sum(" -> " in line for line in captured.out.splitlines()) == 2
