"""Never lose a file, part two: what a hostile user's probe found (issue 47), one test per promise.

docs/failures.md lists what each bad input or fault gets; docs/guarantees.md names these tests.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile

import keras
import numpy as np
import pytest
from conftest import one_line_failure

from sid_keras.apps.cli import main
from sid_keras.errors import SidError


def _train(root, out, *extra):
    return ["train", "--config", "synthetic", "--set", f"data.root='{root}'", "--set", f"train.out_dir='{out}'",
            "--set", "model.args={width=4, depth=3}", "--set", "data.patch_size=32", "--set", "data.batch_size=2",
            "--set", "train.steps_per_epoch=2", "--set", "train.log_images=0", *extra]


@pytest.fixture(scope="module")
def broken_model_file(tmp_path_factory):
    """A model whose weights are NaN (a diverged training saved anyway)."""
    from sid_keras.models import UNet

    model = UNet(width=4, depth=3)
    model.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
    path = tmp_path_factory.mktemp("broken") / "nan.keras"
    model.save(path)
    return path


# -- A. files overwritten ------------------------------------------------------------------------
def test_finetune_never_replaces_its_input_model_even_with_overwrite(tmp_path, tiny_model_file, photo_folder,
                                                                     capsys):
    model = tmp_path / "t.keras"
    model.write_bytes(tiny_model_file.read_bytes())
    before = model.read_bytes()
    one_line_failure(capsys, ["finetune", "--model", str(model), "-o", str(model), "--overwrite",
                              "--photos", str(photo_folder), "--noise-profile", "SonyA7S2", "--data", str(tmp_path),
                              "--val-list", "v.txt"], "is the input", "never replaced")
    assert model.read_bytes() == before and not (tmp_path / "t.run").exists()


def test_a_symlink_planted_in_a_run_folder_is_never_written_through(mini_dataset, tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for planted in ("checkpoint/.tmp-latest.weights.h5", "checkpoint/latest.weights.h5", "log.csv", ".lock"):
        run = tmp_path / planted.replace("/", "_")
        (run / "checkpoint").mkdir(parents=True)
        (run / planted).symlink_to(victim)
        one_line_failure(capsys, _train(mini_dataset, run, "--set", "train.epochs=1"), "is a symbolic link")
        assert victim.read_text() == "precious" and (run / planted).is_symlink()


def test_a_run_killed_before_its_first_log_row_starts_again(mini_dataset, tmp_path):
    """A kill in the first epoch leaves an empty log.csv and no checkpoint: the next start trains."""
    from sid_keras.apps.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "log.csv").write_text("")
    assert main(_train(mini_dataset, run, "--set", "train.epochs=1", "--set", "train.val_every=100")) == 0
    rows = (run / "log.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,") and len(rows) == 2


def test_a_checkpoint_is_written_through_an_exclusive_temporary_of_its_process(tmp_path):
    """The checkpoint's temporary is created under a fresh name carrying the process's id, so
    nothing planted is written through and a killed run's leftover is removed by the next run."""
    from sid_keras.models import UNet
    from sid_keras.runtime.io import TEMPORARY_PREFIX
    from sid_keras.training.callbacks import Checkpoint

    folder = tmp_path / "checkpoint"
    folder.mkdir()
    stale = folder / f"{TEMPORARY_PREFIX}999999999-x.weights.h5"  # a process that no longer exists
    stale.write_bytes(b"left by a kill")
    (folder / ".tmp-latest.weights.h5").symlink_to(tmp_path / "victim")
    model = UNet(width=4, depth=2)
    model.compile(optimizer="adam", loss="mae")
    Checkpoint(folder).save(model, 1)
    assert sorted(p.name for p in folder.iterdir()) == [".tmp-latest.weights.h5", "latest.json", "latest.weights.h5"]
    assert not (tmp_path / "victim").exists() and not (folder / "latest.weights.h5").is_symlink()


# -- B. non-finite or undecodable data ----------------------------------------------------------------
@pytest.mark.slow
def test_a_model_that_outputs_nan_writes_nothing_scores_nothing_and_exports_nothing(
        tmp_path, write_dng, broken_model_file, mini_dataset, capsys):
    dng, _ = write_dng()
    for name in ("o.png", "o.tif", "o.dng"):
        one_line_failure(capsys, ["enhance", str(dng), "-o", str(tmp_path / name), "--model", str(broken_model_file)],
                         "NaN or infinite values")
        assert not (tmp_path / name).exists()
    assert main(["evaluate", "--data", str(mini_dataset), "--list", "Sony_val_list.txt", "--model",
                 str(broken_model_file), "-o", str(tmp_path / "eval"), "--no-denoiser", "--no-figures"]) == 1
    assert "NaN or infinite values" in capsys.readouterr().err
    one_line_failure(capsys, ["export", str(broken_model_file), "-o", str(tmp_path / "export")], "NaN or infinite")
    assert not (tmp_path / "export").exists()


def _damaged(path: pathlib.Path, compression: int | None = None, zero_share: float = 0.0):
    import tifffile

    if compression is not None:
        with tifffile.TiffFile(path, mode="r+") as tif:
            tif.pages[0].tags["Compression"].overwrite(compression)
    if zero_share:
        with tifffile.TiffFile(path) as tif:
            start, count = tif.pages[0].dataoffsets[0], tif.pages[0].databytecounts[0]
        data = bytearray(path.read_bytes())
        data[start + count // 2 : start + count // 2 + int(count * zero_share)] = bytes(int(count * zero_share))
        path.write_bytes(data)
    return path


def test_raw_data_libraw_cannot_decode_is_refused_not_filled_with_black(write_dng, tmp_path, capsys):
    from sid_keras.runtime import raw

    zeroed, _ = write_dng("zeroed.dng")
    wrong_compression, _ = write_dng("jpeg_tag.dng")
    _damaged(zeroed, zero_share=0.3)  # 30% of the data bytes zeroed: LibRaw reads them as black
    _damaged(wrong_compression, compression=7)  # lossless JPEG claimed for uncompressed data
    for path in (zeroed, wrong_compression):
        with pytest.raises(SidError, match="decode as 0, far below the black level 512: its image data is damaged"):
            raw.read_raw(path)
        one_line_failure(capsys, ["enhance", str(path), "-o", str(tmp_path / "out.png")], "damaged")
    assert not (tmp_path / "out.png").exists()


def test_a_raw_file_that_changes_while_it_is_read_is_refused(write_dng, monkeypatch):
    from sid_keras.runtime import raw

    path, _ = write_dng()
    opened = raw.open_raw

    def cut_while_reading(p):  # a copy still being written, or a file cut after the size check
        handle = opened(p)
        with open(p, "ab") as f:
            f.write(b"more")
        return handle

    monkeypatch.setattr(raw, "open_raw", cut_while_reading)
    with pytest.raises(SidError, match="changed while it was read"):
        raw.read_raw(path)


def test_reports_are_strict_json_even_where_a_psnr_is_infinite(tmp_path, mini_dataset, tiny_model_file):
    """Two identical images have an infinite PSNR; Python's json would write the bare token
    `Infinity`, which strict parsers reject: it is written as null."""
    from sid_keras.runtime.io import strict_json

    def strict(text):
        return json.loads(text, parse_constant=lambda token: pytest.fail(f"non-standard JSON token {token}"))

    assert strict(strict_json({"psnr": float("inf"), "x": [np.float32("nan"), 1.5]})) == {"psnr": None,
                                                                                           "x": [None, 1.5]}
    listed = (mini_dataset / "Sony_val_list.txt").read_text().split()
    same = tmp_path / "same.txt"
    same.write_text(f"{listed[0]} {listed[0]} ISO100 F8\n")  # the short frame as its own truth
    assert main(["evaluate", "--data", str(mini_dataset), "--list", str(same), "--model", str(tiny_model_file),
                 "-o", str(tmp_path / "eval"), "--no-figures"]) == 0
    strict((tmp_path / "eval" / "metrics.json").read_text())


# -- C. crashes -----------------------------------------------------------------------------------
def test_a_small_frame_is_enhanced_and_one_files_bug_does_not_stop_the_batch(write_dng, tmp_path, tiny_model_file,
                                                                             monkeypatch, capsys):
    """Frames of 24-56 pixels once crashed the noise estimate (one bin: np.argpartition(level, []))
    and stopped the batch there; any bug one file meets is now reported for that file alone."""
    from sid_keras.runtime.inference import Enhancer

    folder = tmp_path / "batch"
    folder.mkdir()
    for i, shape in enumerate([(24, 24), (40, 40), (48, 64), (56, 56), (64, 96)]):
        write_dng(f"batch/{i}.dng", shape=shape)
    assert main(["enhance", str(folder), "-o", str(tmp_path / "out"), "--model", str(tiny_model_file)]) == 0
    assert len(list((tmp_path / "out").iterdir())) == 5
    real = Enhancer.prepare

    def bug_for_one_file(self, frame):
        if frame.path.endswith("1.dng"):
            raise TypeError("a bug")
        return real(self, frame)

    monkeypatch.setattr(Enhancer, "prepare", bug_for_one_file)
    capsys.readouterr()
    assert main(["enhance", str(folder), "-o", str(tmp_path / "again"), "--model", str(tiny_model_file)]) == 2
    err = capsys.readouterr().err
    assert "1.dng: unexpected TypeError: a bug (a bug: rerun with --verbose" in err and "1 of 5 files failed" in err
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["0.png", "2.png", "3.png", "4.png"]


def test_odd_lists_configs_models_and_batch_sizes_are_one_line_or_work(mini_dataset, tmp_path, tiny_model_file,
                                                                      write_dng, capsys):
    from sid_keras.data import read_sid_list

    listed = tmp_path / "latin1.txt"  # names that are not UTF-8, as Linux allows
    listed.write_bytes(b"./Sony/short/caf\xe9_00_0.1s.dng ./Sony/long/caf\xe9_00_10s.dng ISO100 F8\n")
    (pair,) = read_sid_list(listed, mini_dataset, check_files=False)
    assert os.fsencode(pair.short).endswith(b"/Sony/short/caf\xe9_00_0.1s.dng")
    with pytest.raises(SidError, match="2 listed files are missing"):
        read_sid_list(listed, mini_dataset, check_files=True)
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    one_line_failure(capsys, ["train", "--config", str(deep)], "nests tables or lists too deeply")
    one_line_failure(capsys, ["train", "--config", "synthetic", "--set", "data.photos=" + "[" * 5000 + "]" * 5000],
                     "nests lists too deeply")
    run = tmp_path / "huge_batch"
    one_line_failure(capsys, _train(mini_dataset, run, "--set", "data.batch_size=100000000000"),
                     "batch_size = 100000000000", "give a smaller batch")
    assert not run.exists()

    from sid_keras.models import UNet

    inputs = keras.Input((32, 32, 4))
    fixed = keras.Model(inputs, UNet(width=4, depth=3)(inputs))  # a model built for one input size
    fixed.save(tmp_path / "fixed.keras")
    dng, _ = write_dng(shape=(100, 120))
    assert main(["enhance", str(dng), "-o", str(tmp_path / "fixed.png"), "--model", str(tmp_path / "fixed.keras")]) == 0
    one_line_failure(capsys, ["enhance", str(dng), "-o", str(tmp_path / "f2.png"), "--model",
                              str(tmp_path / "fixed.keras"), "--tile", "64"], "fixed 32x32 input", "--tile 32")


def test_a_run_that_fails_in_its_first_epoch_leaves_no_run_folder(mini_dataset, tmp_path, capsys, monkeypatch):
    from sid_keras.training import task

    monkeypatch.setattr(task.Task, "train_dataset", lambda *a, **k: (_ for _ in ()).throw(SidError("no data")))
    one_line_failure(capsys, _train(mini_dataset, tmp_path / "run", "--set", "train.epochs=1"), "no data")
    assert not (tmp_path / "run").exists()


# -- D. interruption and resume -------------------------------------------------------------------
@pytest.mark.slow
def test_sigterm_during_training_leaves_no_temporary_and_the_run_resumes(mini_dataset, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    command = [sys.executable, "-m", "sid_keras.apps.cli", *_train(mini_dataset, out, "--set", "train.epochs=500",
                                                                   "--set", "train.steps_per_epoch=5")]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:  # the first epoch's line: training runs
            if line.startswith("Epoch 2/"):
                break
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130 and err.strip() == "sid-keras train: interrupted"
    left = [p.name for p in (out / "checkpoint").iterdir() if p.name.startswith(".tmp")]
    assert not left and not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-sid-keras-")]
    assert json.loads((out / "checkpoint" / "latest.json").read_text())["epoch"] >= 1


@pytest.mark.parametrize("record", ['{"epoch": -5}', '{"epoch": "NaN"}', '{"epoch": 2.5}', "[1]", '{"epoch": NaN}'])
def test_a_checkpoint_record_that_is_not_an_epoch_count_is_named_and_not_resumed(tmp_path, record):
    from sid_keras.models import UNet
    from sid_keras.training.callbacks import Checkpoint

    model = UNet(width=4, depth=2)
    model.compile(optimizer="adam", loss="mae")
    model.optimizer.build(model.trainable_variables)
    notices = []
    checkpoint = Checkpoint(tmp_path, log=notices.append)
    checkpoint.save(model, 1)
    checkpoint.save(model, 2)
    (tmp_path / "latest.json").write_text(record)
    assert checkpoint.restore(model) == 1
    assert len(notices) == 1 and notices[0].startswith(f"{tmp_path}: latest.json (")
    (tmp_path / "previous.json").write_text(record)
    with pytest.raises(SidError, match="no readable checkpoint .latest.json .*previous.json"):
        checkpoint.restore(model)


# -- E. messages ----------------------------------------------------------------------------------
def test_a_pipe_or_a_device_is_not_a_regular_file(tmp_path, tiny_model_file, capsys):
    fifo = tmp_path / "fifo.dng"
    os.mkfifo(fifo)
    for source in (fifo, pathlib.Path("/dev/zero")):
        one_line_failure(capsys, ["enhance", str(source), "-o", str(tmp_path / "o.png"), "--model",
                                  str(tiny_model_file)], f"{source}: not a regular file")


def test_control_characters_in_a_file_name_are_escaped_in_every_line(write_dng, tmp_path, tiny_model_file, capsys):
    path, _ = write_dng("a\nsid-keras enhance: 0 of 1 files failed\x1b[2K.dng")
    assert main(["enhance", str(path), "-o", str(tmp_path / "out"), "--model", str(tiny_model_file)]) == 0
    out = capsys.readouterr().out
    assert "a\\nsid-keras enhance: 0 of 1 files failed\\x1b[2K.dng ->" in out and "\x1b" not in out
    assert all(line.startswith(str(tmp_path)) or line.startswith("/") for line in out.splitlines())
    one_line_failure(capsys, ["enhance", str(path), "-o", str(tmp_path / "out")], "\\n", "already exists")


def test_a_dng_header_that_lies_about_its_size_prints_only_our_line(write_dng, tmp_path, capsys):
    import tifffile

    path, _ = write_dng("huge.dng")
    with tifffile.TiffFile(path, mode="r+") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(100000)
        tif.pages[0].tags["ImageLength"].overwrite(100000)
    run = subprocess.run([sys.executable, "-m", "sid_keras.apps.cli", "enhance", str(path), "-o",
                          str(tmp_path / "o.png")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.splitlines() == [f"sid-keras enhance: failed: {path}: not a camera raw file rawpy can read "
                                       "(LibRaw does not support its format)", "sid-keras enhance: 1 of 1 files failed"]


def test_cache_refuses_a_folder_that_is_a_file_or_missing(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    one_line_failure(capsys, ["cache", "--folder", str(tmp_path / "file")], "is a file, not a cache folder")
    one_line_failure(capsys, ["cache", "--folder", str(tmp_path / "missing"), "--clear"], "no such folder")


def test_a_training_run_leaves_nothing_in_the_system_temporary_folder(mini_dataset, tmp_path, monkeypatch):
    """TensorFlow's autograph writes a module per traced function to the temporary folder and
    removes it only at a clean interpreter exit; a command keeps them in a folder of its own."""
    system = tmp_path / "system_tmp"
    system.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system))
    assert main(_train(mini_dataset, tmp_path / "run", "--set", "train.epochs=1", "--set",
                       "model.name='attention_unet'")) == 0  # a new architecture: new functions to trace
    assert list(system.iterdir()) == []


# -- found by this issue's own probe (50 cases) ---------------------------------------------------
def test_an_empty_output_or_run_folder_never_writes_into_the_current_folder(mini_dataset, tmp_path, write_dng,
                                                                             monkeypatch, capsys):
    dng, _ = write_dng()
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    for command in (["enhance", str(dng), "-o", ""], ["export", "m.keras", "-o", " "]):
        with pytest.raises(SystemExit) as exit_info:
            main(command)
        assert exit_info.value.code == 1 and "give an output file or folder name" in capsys.readouterr().err
    one_line_failure(capsys, _train(mini_dataset, "", "--set", "train.epochs=1"), "out_dir = ''")
    one_line_failure(capsys, _train(mini_dataset, tmp_path / "r", "--set", "data.val_list=''"), "val_list = ''")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_model_whose_output_is_not_rgb_at_full_resolution_is_refused(write_dng, tmp_path, capsys):
    dng, _ = write_dng()
    inputs = keras.Input((None, None, 4))
    keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs)).save(tmp_path / "half.keras")  # no upsampling
    keras.Model(inputs, keras.layers.Conv2D(1, 1)(keras.layers.UpSampling2D()(inputs))).save(tmp_path / "grey.keras")
    for name, found in (("half", "32x48x3"), ("grey", "64x96x1")):
        one_line_failure(capsys, ["enhance", str(dng), "-o", str(tmp_path / f"{name}.png"), "--model",
                                  str(tmp_path / f"{name}.keras")], f"output is {found} where this frame's tile needs "
                                                                    "64x96x3")
        assert not (tmp_path / f"{name}.png").exists()


def test_worker_counts_that_would_exhaust_memory_and_a_tflite_init_are_one_line(mini_dataset, tmp_path, capsys):
    one_line_failure(capsys, _train(mini_dataset, tmp_path / "w", "--set", "data.decode_workers=100000"),
                     "decode_workers = 100000: give at most 64")
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "--photos", str(tmp_path), "-o", str(tmp_path / "s"), "--workers", "100000"])
    assert exit_info.value.code == 1 and "give at most 64 worker processes" in capsys.readouterr().err
    from sid_keras.runtime.runners import DEFAULT_TFLITE_FILE

    one_line_failure(capsys, _train(mini_dataset, tmp_path / "i", "--set", f"train.init_from='{DEFAULT_TFLITE_FILE}'"),
                     "not a .keras model")
    assert not (tmp_path / "w").exists() and not (tmp_path / "i").exists()
