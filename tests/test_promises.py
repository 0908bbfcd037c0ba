"""What sid-keras promises a user, one test per promise (docs/guarantees.md).

Each test runs the command as a user would, on files the test writes itself.
"""

import json
import os
import pathlib
import shutil
import sys

import keras
import numpy as np
import pytest
from conftest import one_line_failure

from sid_keras.apps.cli import main


@pytest.fixture(scope="module")
def photo_dataset(tmp_path_factory):
    """A 3-scene synthetic training set and a 1-scene validation set, from photos made here."""
    from PIL import Image

    photos = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(3):
        smooth = np.kron(rng.uniform(0, 255, (12, 12, 3)), np.ones((8, 8, 1)))
        Image.fromarray(smooth.astype(np.uint8)).save(photos / f"p{i}.png")
    root = tmp_path_factory.mktemp("dataset")
    for split, seed in (("train", 0), ("val", 1)):
        assert main(["synth", "--photos", str(photos), "--out", str(root), "--split", split, "--limit", "3",
                     "--workers", "1", "--seed", str(seed)]) == 0
    return root


def _train(root, out, *extra):
    return main(["train", "--config", "synthetic", "--set", f"data.root={json.dumps(str(root))}",
                 "--set", f"train.out_dir={json.dumps(str(out))}", "--set", "model.args={width=4, depth=3}",
                 "--set", "data.patch_size=16", "--set", "data.batch_size=2", "--set", "train.val_every=1",
                 "--set", "train.log_images=0", "--set", "train.steps_per_epoch=3", *extra])


def test_an_input_raw_file_is_never_replaced_by_an_output(tmp_path, write_dng, tiny_model_file, capsys):
    path, _ = write_dng("a.dng")
    before = path.read_bytes()
    one_line_failure(capsys, ["enhance", str(path), "-o", str(path), "--overwrite", "--model", str(tiny_model_file)],
             "is the input", "never replaced")
    link = tmp_path / "link.dng"
    os.link(path, link)
    one_line_failure(capsys, ["enhance", str(path), "-o", str(link), "--overwrite", "--model", str(tiny_model_file)],
             "is the input")
    (tmp_path / "sym.dng").symlink_to(path)
    one_line_failure(capsys, ["enhance", str(path), "-o", str(tmp_path / "sym.dng"), "--overwrite",
                      "--model", str(tiny_model_file)], "is the input")
    # a folder enhanced into itself as DNG
    one_line_failure(capsys, ["enhance", str(tmp_path), "-o", str(tmp_path), "--format", "dng", "--overwrite",
                      "--model", str(tiny_model_file)], "is the input")
    assert path.read_bytes() == before


def test_a_folder_or_pattern_without_raw_files_is_refused_before_any_work(tmp_path, write_dng, tiny_model_file,
                                                                          capsys):
    path, _ = write_dng("a.dng")
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    for barren in (str(tmp_path / "empty"), str(tmp_path / "*.DNG")):
        one_line_failure(capsys, ["enhance", str(path), barren, "-o", str(out), "--model", str(tiny_model_file)],
                         "no raw files found in", barren)
    assert not out.exists()  # the good file was not enhanced either: the command is corrected first


def test_a_truncated_raw_file_is_an_error_naming_it(tmp_path, write_dng, tiny_model_file, capsys):
    path, _ = write_dng("cut.dng", shape=(128, 192))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    one_line_failure(capsys, ["enhance", str(path), "-o", str(tmp_path / "out.png"), "--model", str(tiny_model_file)],
             str(path), "truncated")
    assert not (tmp_path / "out.png").exists()


def test_a_raw_cut_at_a_tile_boundary_is_not_developed_half_black(tmp_path, tiny_model_file, capsys):
    """The real Blackmagic DNG (lossless-JPEG tiles) cut at 1,700,000 bytes: LibRaw itself fills
    the missing tiles with black and reports nothing."""
    from conftest import BLACKMAGIC_DNG

    cut = tmp_path / "cut.dng"
    cut.write_bytes(BLACKMAGIC_DNG.read_bytes()[:1_700_000])
    one_line_failure(capsys, ["enhance", str(cut), "-o", str(tmp_path / "out.png"), "--model", str(tiny_model_file)],
             f"{cut}: truncated: its image data runs to byte 3,359,558 but the file has 1,700,000 bytes")
    assert not (tmp_path / "out.png").exists()


@pytest.mark.slow
def test_a_batch_processes_non_utf8_names_and_skips_symlink_loops(tmp_path, write_dng, tiny_model_file):
    folder = tmp_path / "shots"
    folder.mkdir()
    path, _ = write_dng("plain.dng")
    odd = os.path.join(os.fsencode(folder), b"caf\xe9.dng")
    shutil.copy(path, odd)
    shutil.copy(path, folder / "plain.dng")
    (folder / "loop1.dng").symlink_to(folder / "loop2.dng")
    (folder / "loop2.dng").symlink_to(folder / "loop1.dng")
    out = tmp_path / "out"
    import subprocess

    run = subprocess.run([sys.executable, "-m", "sid_keras.apps.cli", "enhance", str(folder), "-o", str(out),
                          "--model", str(tiny_model_file)], capture_output=True, timeout=300)
    assert run.returncode == 1
    assert b"2 of 4 files failed" in run.stderr and b"symlink" in run.stderr and b"Traceback" not in run.stderr
    assert b"caf\xe9.dng -> " in run.stdout  # the name printed as the bytes it is
    assert sorted(os.listdir(os.fsencode(out))) == [b"caf\xe9.png", b"plain.png"]


@pytest.mark.slow
def test_a_closed_stdout_does_not_turn_written_files_into_failures(tmp_path, write_dng, tiny_model_file):
    import subprocess

    for i in range(3):
        write_dng(f"f{i}.dng", seed=i)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "sid_keras.apps.cli", "enhance", *[str(tmp_path / f"f{i}.dng") for i in range(3)],
               "-o", str(out), "--model", str(tiny_model_file)]
    read, write = os.pipe()
    os.close(read)  # the reader went away before the first line, as `| head -0` does
    run = subprocess.run(command, stdout=write, stderr=subprocess.PIPE, text=True, timeout=300)
    os.close(write)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["f0.png", "f1.png", "f2.png"]


def test_calibrate_checks_every_output_before_reading_frames(tmp_path, capsys):
    figure = tmp_path / "mine.png"
    figure.write_bytes(b"my own picture")
    one_line_failure(capsys, ["calibrate", str(tmp_path), "-o", str(tmp_path / "cam.toml"), "--figure", str(figure)],
             "already holds mine.png", "--overwrite")
    (tmp_path / "cam.fits.png").write_bytes(b"an earlier figure")
    one_line_failure(capsys, ["calibrate", str(tmp_path), "-o", str(tmp_path / "cam.toml")], "cam.fits.png")
    one_line_failure(capsys, ["calibrate", str(tmp_path), "-o", str(tmp_path / "new.toml"), "--figure", str(tmp_path)],
             ".png file name")
    assert figure.read_bytes() == b"my own picture" and not (tmp_path / "cam.toml").exists()


@pytest.mark.parametrize("setting, needle", [
    ("train.learning_rate=inf", "learning_rate = inf"),
    ("data.ratio_range=[1, inf]", "ratio_range"),
    ("train.epochs=inf", "epochs = inf"),
    ("data.patch_size=nan", "patch_size = nan"),
    ("train.seed=-1", "seed = -1"),
    ("data.dead_leaves=-3", "dead_leaves = -3"),
    ("data.saturation=0.5", "saturation = 0.5"),
])
def test_a_non_finite_or_negative_setting_is_refused_up_front(tmp_path, capsys, setting, needle):
    out = tmp_path / "run"
    one_line_failure(capsys, ["train", "--config", "synthetic", "--set", f"data.root={json.dumps(str(tmp_path))}",
                      "--set", f"train.out_dir={json.dumps(str(out))}", "--set", setting], needle)
    assert not out.exists()


def test_a_patch_smaller_than_the_models_stride_is_refused_before_the_run_folder(photo_dataset, tmp_path, capsys):
    """It once reached the first training step: an InvalidArgumentError reported as a bug, a run folder left."""
    out = tmp_path / "run"
    command = ["train", "--config", "synthetic", "--set", f"data.root={json.dumps(str(photo_dataset))}",
               "--set", f"train.out_dir={json.dumps(str(out))}", "--set", "model.args={width=4, depth=3}",
               "--set", "data.patch_size=3", "--set", "data.batch_size=2"]
    one_line_failure(capsys, command, "patch_size = 3", "at least 4")
    assert not out.exists()


@pytest.mark.slow
def test_a_diverging_run_stops_keeps_its_last_good_checkpoint_and_writes_no_result(photo_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(photo_dataset, out, "--set", "train.epochs=1") == 0
    good = (out / "checkpoint" / "latest.weights.h5").read_bytes()
    (out / "final.keras").unlink()
    one_line_failure(capsys, ["train", "--config", "synthetic", "--set", f"data.root={json.dumps(str(photo_dataset))}",
                      "--set", f"train.out_dir={json.dumps(str(out))}", "--set", "model.args={width=4, depth=3}",
                      "--set", "data.patch_size=16", "--set", "data.batch_size=2", "--set", "train.val_every=1",
                      "--set", "train.log_images=0", "--set", "train.steps_per_epoch=3", "--set", "train.epochs=4",
                      "--set", "train.learning_rate=1e30"], "diverged", "checkpoint")
    assert (out / "checkpoint" / "latest.weights.h5").read_bytes() == good
    assert not (out / "final.keras").exists()


def test_finetune_checks_its_output_before_training(tmp_path, capsys):
    start = ["finetune", "--photos", str(tmp_path), "--noise-profile", "SonyA7S2", "--data", str(tmp_path),
             "--val-list", "x.txt"]
    one_line_failure(capsys, [*start, "-o", str(tmp_path / "m.txt")], "m.txt", ".keras")
    one_line_failure(capsys, [*start, "-o", str(tmp_path / "nowhere" / "m.keras")], "existing folder")


def test_unreadable_run_records_are_one_line_at_start(photo_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "best.json").write_text("{not json")
    one_line_failure(capsys, ["train", "--config", "synthetic", "--set", f"data.root={json.dumps(str(photo_dataset))}",
                      "--set", f"train.out_dir={json.dumps(str(out))}"], "best.json", "unreadable")
    (out / "best.json").unlink()
    (out / "config.json").write_text(json.dumps({"something": "else"}))
    one_line_failure(capsys, ["train", "--config", "synthetic", "--set", f"data.root={json.dumps(str(photo_dataset))}",
                      "--set", f"train.out_dir={json.dumps(str(out))}"], "config.json", "not a sid-keras run")


def test_an_output_folder_may_have_a_dot_and_a_huge_tile_is_clamped(tmp_path, write_dng, tiny_model_file):
    path, _ = write_dng("a.dng")
    out = tmp_path / "night.2024"
    assert main(["enhance", str(path), "-o", f"{out}/", "--tile", "100000", "--model", str(tiny_model_file)]) == 0
    assert [p.name for p in out.iterdir()] == ["a.png"]
    assert pathlib.Path(out / "a.png").stat().st_size > 0


@pytest.mark.slow
def test_temporaries_of_killed_runs_are_removed_and_sigterm_leaves_none(tmp_path, write_dng, tiny_model_file):
    import subprocess

    from sid_keras.runtime.io import TEMPORARY_PREFIX

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f"{TEMPORARY_PREFIX}{gone.stdout.strip()}-abc.png"  # a process killed with SIGKILL
    stale.write_bytes(b"half an image")
    stage = out / f"{TEMPORARY_PREFIX}{gone.stdout.strip()}-stage"
    stage.mkdir()
    running = out / f"{TEMPORARY_PREFIX}{os.getpid()}-abc.png"  # a process still at work: not ours to touch
    running.write_bytes(b"in progress")
    path, _ = write_dng("a.dng")
    assert main(["enhance", str(path), "-o", str(out), "--model", str(tiny_model_file)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(["a.png", running.name])

    # SIGTERM mid-batch: the command ends as Ctrl-C does and leaves no temporary file behind
    many = [str(write_dng(f"m{i}.dng", shape=(512, 768), seed=i)[0]) for i in range(20)]
    target = tmp_path / "many"
    proc = subprocess.Popen([sys.executable, "-m", "sid_keras.apps.cli", "enhance", *many, "-o", str(target),
                             "--model", str(tiny_model_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline()  # the first file is written
    proc.terminate()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err
    assert not [p for p in target.iterdir() if p.name.startswith(".tmp")]


def test_a_synthetic_dataset_is_written_whole_or_not_at_all(tmp_path, capsys):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(np.full((64, 64, 3), 60 * (i + 1), np.uint8)).save(photos / f"p{i}.png")
    (photos / "p2.png").write_text("not an image")  # a bad photo after two good ones
    out = tmp_path / "data"
    one_line_failure(capsys, ["synth", "--photos", str(photos), "--out", str(out), "--workers", "1"], "p2.png")
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]
    (photos / "p2.png").unlink()
    assert main(["synth", "--photos", str(photos), "--out", str(out), "--workers", "1", "--split", "val"]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    one_line_failure(capsys, ["synth", "--photos", str(photos), "--out", str(out), "--workers", "1", "--split", "val",
                      "--seed", "3"], "already holds", "--overwrite")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # another split beside it, and an explicit --overwrite, both work
    assert main(["synth", "--photos", str(photos), "--out", str(out), "--workers", "1", "--split", "train"]) == 0
    assert main(["synth", "--photos", str(photos), "--out", str(out), "--workers", "1", "--split", "val",
                 "--seed", "3", "--overwrite"]) == 0
    assert len((out / "Sony_val_list.txt").read_text().splitlines()) == 6
    assert len((out / "Sony_train_list.txt").read_text().splitlines()) == 6


def test_evaluate_without_figures_leaves_no_figures_folder(photo_dataset, tiny_model_file, tmp_path):
    out = tmp_path / "eval"
    assert main(["evaluate", "--data", str(photo_dataset), "--list", "Sony_val_list.txt", "--model",
                 str(tiny_model_file), "--out", str(out), "--no-figures"]) == 0
    assert (out / "metrics.json").exists() and not (out / "figures").exists()


def test_evaluate_scores_a_denoising_strength(photo_dataset, tmp_path, capsys):
    """`evaluate --denoise K` scores the shipped model told K times the noise (how K acts on the
    output: tests/test_demo.py); a strength out of range is one line before any pair is read."""
    psnr = {}
    for k in ("1", "2"):
        out = tmp_path / f"eval{k}"
        assert main(["evaluate", "--data", str(photo_dataset), "--list", "Sony_val_list.txt", "--out", str(out),
                     "--no-figures", "--no-denoiser", "--denoise", k]) == 0
        psnr[k] = json.loads((out / "metrics.json").read_text())["overall"]["model"]["psnr"]
    assert abs(psnr["1"] - psnr["2"]) > 0.5, psnr  # 17.5 and 16.2 dB on these blocky x100-x300 frames
    one_line_failure(capsys, ["evaluate", "--data", str(photo_dataset), "--list", "Sony_val_list.txt", "--out",
                              str(tmp_path / "bad"), "--denoise", "-1"], "--denoise -1", "0 to 10")
    assert not (tmp_path / "bad" / "metrics.json").exists()


@pytest.mark.slow
def test_the_log_matches_the_checkpoint_after_a_resume(photo_dataset, tmp_path):
    out = tmp_path / "run"
    every_other = ("--set", "train.val_every=2")  # epoch 0 trains only, the resumed epoch 1 validates
    assert _train(photo_dataset, out, "--set", "train.epochs=1", *every_other) == 0
    log = out / "log.csv"
    header, *rows = log.read_text().splitlines()
    # killed after writing the row of epoch 2 but before its checkpoint: the row goes, and comes back once
    log.write_text("\n".join([header, *rows, "1" + rows[-1][1:]]) + "\n")
    assert _train(photo_dataset, out, "--set", "train.epochs=3", *every_other) == 0
    header, *rows = [line.split(",") for line in log.read_text().splitlines()]
    assert [row[0] for row in rows] == ["0", "1", "2"]
    assert all(len(row) == len(header) for row in rows)  # the resumed rows line up with the header
    assert float(rows[1][header.index("val_psnr")]) > 0 and rows[2][header.index("val_psnr")] == "NA"


@pytest.mark.slow
def test_the_weight_average_is_the_mean_of_the_later_epochs_across_a_resume(photo_dataset, tmp_path, capsys):

    out = tmp_path / "run"
    averaged = ("--set", "train.average_from=1")
    assert _train(photo_dataset, out, "--set", "train.epochs=2", *averaged) == 0
    second = keras.models.load_model(out / "final.keras", compile=False).get_weights()
    assert _train(photo_dataset, out, "--set", "train.epochs=3", *averaged) == 0  # resumed: epoch 3 joins the mean
    third = keras.models.load_model(out / "final.keras", compile=False).get_weights()
    average = keras.models.load_model(out / "average.keras", compile=False).get_weights()
    assert any(np.abs(a - b).max() > 1e-4 for a, b in zip(second, third))
    for a, b, mean in zip(second, third, average):
        np.testing.assert_allclose(mean, (a + b) / 2, rtol=1e-5, atol=1e-6)
    record = json.loads((out / "average.json").read_text())
    assert record["epochs"] == [2, 3] and np.isfinite(record["val_psnr"])
    assert "average of epochs 2-3: validation PSNR" in capsys.readouterr().out
    for saved in (out / "checkpoint").glob("average*.npz"):  # lost: the mean starts again, said once
        saved.unlink()
    assert _train(photo_dataset, out, "--set", "train.epochs=4", *averaged) == 0
    assert "no weight average saved at epoch 3; averaging again from epoch 4" in capsys.readouterr().out
    fourth = keras.models.load_model(out / "final.keras", compile=False).get_weights()
    average = keras.models.load_model(out / "average.keras", compile=False).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(fourth, average))
    assert json.loads((out / "average.json").read_text())["epochs"] == [4, 4]
    one_line_failure(capsys, ["train", "--config", "synthetic", "--set", "train.epochs=3", "--set",
                              "train.average_from=3"], "average_from = 3", "1 to epochs - 1")


def test_a_read_only_output_folder_is_named_not_the_temporary_file(tmp_path, monkeypatch):
    import errno
    import tempfile

    from sid_keras.errors import describe
    from sid_keras.runtime.io import atomic_path

    def refuse(**kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".tmp-sid-keras-1-x.png"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OSError) as failure:
        with atomic_path(tmp_path / "out.png"):
            pass
    message = describe(failure.value)
    assert str(tmp_path / "out.png") in message and ".tmp" not in message


def test_out_of_memory_names_the_file(tmp_path, write_dng, tiny_model_file, monkeypatch, capsys):
    from sid_keras.runtime.inference import Enhancer

    def exhausted(self, *args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(Enhancer, "enhance_to_pixels", exhausted)
    path, _ = write_dng("big.dng")
    one_line_failure(capsys, ["enhance", str(path), "-o", str(tmp_path / "o.png"), "--model", str(tiny_model_file)],
             f"{path}: not enough memory")


def test_calibrate_refuses_frames_of_two_cameras(tmp_path, write_dng, capsys):
    write_dng("a.dng", make="Sony", model="ILCE-7SM2")
    write_dng("b.dng", make="Nikon", model="D850")
    one_line_failure(capsys, ["calibrate", str(tmp_path), "-o", str(tmp_path / "cam.toml")], "different cameras",
             "ILCE-7SM2", "D850")
    assert not (tmp_path / "cam.toml").exists()


def test_calibrate_names_dark_frames_without_noise(tmp_path, capsys):
    from sid_keras.runtime.dng import write_cfa_dng

    rng = np.random.default_rng(0)
    for iso in (100, 800):
        for i in range(4):  # darks that are one value: no sensor gives those
            write_cfa_dng(tmp_path / f"iso{iso}" / f"dark{i}.dng", np.full((64, 96), 512, np.uint16),
                          np.array([[0, 1], [1, 2]]), black_level=512, white_level=16383)
        for level in (3000, 6000):
            for j in range(2):
                flat = rng.poisson(level, (64, 96)) + 512
                write_cfa_dng(tmp_path / f"iso{iso}" / f"flat{level}_{j}.dng", flat.astype(np.uint16),
                              np.array([[0, 1], [1, 2]]), black_level=512, white_level=16383)
    one_line_failure(capsys, ["calibrate", str(tmp_path), "-o", str(tmp_path / "cam.toml")], "ISO 100", "no noise")


def test_a_full_disk_under_tiff_and_dng_output_says_so(tmp_path, write_dng, tiny_model_file, monkeypatch, capsys):
    """tifffile writes a TIFF's pixels through numpy's tofile, whose short write carries no errno
    (seen on a full tmpfs); the DNG's compressed tiles go through write(), which fails with ENOSPC."""
    import errno

    import tifffile

    def short_write(self, *args, **kwargs):
        raise OSError("1179648 requested and 102264 written")

    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    path, _ = write_dng("a.dng")
    for name, method, failure in (("out.tif", "write_array", short_write), ("out.dng", "write", no_space)):
        with monkeypatch.context() as patched:
            patched.setattr(tifffile.FileHandle, method, failure)
            one_line_failure(capsys, ["enhance", str(path), "-o", str(tmp_path / name), "--model",
                                      str(tiny_model_file)], f"{tmp_path / name}: the disk is full")
        assert not [p for p in tmp_path.iterdir() if p.name.startswith((".tmp", "out"))]  # nothing half-written


def test_permission_denied_and_library_log_lines_stay_one_clear_line(tmp_path, write_dng, tiny_model_file,
                                                                      monkeypatch, capsys):
    import errno
    import logging

    from sid_keras.runtime import raw, tags

    path, _ = write_dng("locked.dng")

    def denied(name, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(name))

    for reader in (raw, tags):  # root reads any file: deny it where the file is first opened
        monkeypatch.setattr(reader, "open", denied, raising=False)
    err = one_line_failure(capsys, ["enhance", str(path), "-o", str(tmp_path / "o.png"), "--model",
                                    str(tiny_model_file)], str(path))
    assert "corrupt" not in err and "permission" in err.lower()
    monkeypatch.undo()

    original = raw.check_complete

    def chatty(name):
        logging.getLogger("tifffile").warning("TiffTag 50740: coercing invalid ASCII")
        return original(name)

    monkeypatch.setattr(raw, "check_complete", chatty)
    assert main(["enhance", str(path), "-o", str(tmp_path / "o.png"), "--model", str(tiny_model_file)]) == 0
    assert "TiffTag" not in capsys.readouterr().err


def test_a_savedmodel_folder_given_as_the_model_names_what_to_give(tmp_path, write_dng, capsys):
    path, _ = write_dng("a.dng")
    export = tmp_path / "export"
    (export / "saved_model").mkdir(parents=True)
    (export / "saved_model" / "saved_model.pb").write_bytes(b"")
    (export / "model_fp32.tflite").write_bytes(b"")
    one_line_failure(capsys, ["enhance", str(path), "-o", str(tmp_path / "o.png"), "--model",
                              str(export / "saved_model")],
                     "a SavedModel folder", f"give {export / 'model_fp32.tflite'}")
    one_line_failure(capsys, ["enhance", str(path), "-o", str(tmp_path / "o.png"), "--model", str(tmp_path)],
                     "a folder, not a model file")
