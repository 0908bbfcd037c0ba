"""Every failure is one clear line, batches go on, outputs are readable, run folders never lock.

One test per class of bad input or fault (docs/failures.md lists what each gets).
"""

import errno
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from conftest import one_line_failure

from sid_keras.apps.cli import main
from sid_keras.errors import SidError
from sid_keras.runtime import raw


@pytest.mark.slow
def test_a_user_sees_only_the_package_lines_unless_verbose(tmp_path, tiny_model_file):
    bad = tmp_path / "bad.dng"
    bad.write_text("not a raw file\n" * 50)
    command = [sys.executable, "-m", "sid_keras.apps.cli", "enhance", str(bad), "-o", str(tmp_path / "o.png"),
               "--model", str(tiny_model_file)]
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "SID_KERAS_VERBOSE")}
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("sid-keras enhance: ") for line in lines), run.stderr
    assert str(bad) in lines[0]
    verbose = subprocess.run(command[:3] + ["--verbose"] + command[3:], capture_output=True, text=True,
                             env=env, timeout=120)
    assert verbose.returncode == 1 and len(verbose.stderr.strip().splitlines()) > 2  # TensorFlow's own log


def test_a_full_disk_fails_that_file_only_and_leaves_no_partial_output(tmp_path, write_dng, tiny_model_file,
                                                                       monkeypatch, capsys):
    from sid_keras.runtime import io

    for name in ("a", "b", "c"):
        write_dng(name=f"{name}.dng", shape=(40, 48))
    real_write, calls = io.write_png, []

    def write_png(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            with open(path, "wb") as f:
                f.write(b"\x89PNG half")
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(io, "write_png", write_png)
    out = tmp_path / "out"
    assert main(["enhance", str(tmp_path / "*.dng"), "-o", str(out), "--model", str(tiny_model_file)]) == 1
    err = capsys.readouterr().err
    assert f"{out / 'b.png'}: the disk is full" in err and "1 of 3 files failed" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]  # no b.png, no .tmp- file


def test_outputs_honour_the_umask_and_overwrite_keeps_the_mode(tmp_path):
    from sid_keras.runtime.io import write_image

    image = np.zeros((4, 4, 3), np.float32)
    old = os.umask(0o022)
    try:
        write_image(tmp_path / "a.png", image)
        assert stat.S_IMODE((tmp_path / "a.png").stat().st_mode) == 0o644
        os.chmod(tmp_path / "a.png", 0o640)
        write_image(tmp_path / "a.png", image, overwrite=True)
        assert stat.S_IMODE((tmp_path / "a.png").stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_model_and_frame_mismatch_and_bad_tiling_are_refused(tmp_path, write_dng, capsys):
    from sid_keras.models import UNet

    xtrans = tmp_path / "xtrans.keras"
    UNet(in_channels=9, scale=3, width=4, depth=2).save(xtrans)
    dng, _ = write_dng(name="bayer.dng")
    err = one_line_failure(capsys, ["enhance", str(dng), "-o", str(tmp_path / "o.png"), "--model", str(xtrans)])
    assert "bayer frame" in err and "X-Trans" in err
    err = one_line_failure(capsys, ["enhance", str(dng), "-o", str(tmp_path / "o.png"), "--model", str(xtrans),
                                     "--overlap", "-8"])
    assert "--overlap -8" in err
    assert not (tmp_path / "o.png").exists()


def test_bad_output_paths_are_refused_before_any_work(tmp_path, write_dng, tiny_model_file, capsys):
    dng, _ = write_dng(name="frame.dng")
    base = ["--model", str(tiny_model_file)]
    (tmp_path / "afile").write_text("x")
    err = one_line_failure(capsys, ["enhance", str(dng), "-o", str(tmp_path / "afile" / "o.png"), *base])
    assert "is a file" in err
    err = one_line_failure(capsys, ["enhance", str(dng), "-o", str(tmp_path / "o.xyz"), *base])
    assert "unknown output extension '.xyz'" in err
    err = one_line_failure(capsys, ["enhance", str(dng), "-o", str(tmp_path / "o.png"), "--format", "tiff16", *base])
    assert "--format is tiff16" in err
    (tmp_path / "other").mkdir()
    twin, _ = write_dng(name="other/frame.dng")
    err = one_line_failure(capsys, ["enhance", str(dng), str(twin), "-o", str(tmp_path / "out"), *base])
    assert "would both write" in err
    assert not (tmp_path / "out").exists()
    # a file whose name looks like a glob is still the file
    bracket, _ = write_dng(name="shot[1].dng")
    assert main(["enhance", str(bracket), "-o", str(tmp_path / "b.png"), *base]) == 0


@pytest.mark.slow
def test_unvalidated_numbers_and_bad_config_values_are_one_line(tmp_path, capsys):
    run = ["train", "--config", "synthetic", "--set", f"train.out_dir='{tmp_path / 'run'}'"]
    for setting, expected in [("train.steps_per_epoch=-5", "steps_per_epoch = -5"),
                              ("data.val_max_side=0", "val_max_side = 0"),
                              ("data=5", "[data] must be a table"),
                              ("model.output='rgb'", "output = 'rgb'")]:
        assert expected in one_line_failure(capsys, run + ["--set", setting])
    with pytest.raises(SidError, match="must be positive integers"):
        from sid_keras.models import build_model

        build_model("unet", width=0)
    bad_toml = tmp_path / "latin1.toml"
    bad_toml.write_bytes("[train]\n# caf\xe9\nepochs = 3\n".encode("latin-1"))
    assert "not a UTF-8 text file" in one_line_failure(capsys, ["train", "--config", str(bad_toml)])
    for ratio in ("1e9", "1e-7", "nan"):
        with pytest.raises(SidError, match="must be between"):
            raw.check_ratio(ratio)
    assert not (tmp_path / "run").exists()


def test_counts_and_names_that_would_quietly_change_a_dataset_are_refused(tmp_path, capsys):
    """`--limit -3` sliced off the last three photos or pairs; `--split a/b` wrote its list into a new folder."""
    photos = tmp_path / "photos"
    photos.mkdir()
    out = tmp_path / "data"
    for setting, needle in ((["--limit", "-3"], "limit -3"), (["--limit", "0"], "limit 0"),
                            (["--split", "a/b"], "split 'a/b'")):
        one_line_failure(capsys, ["synth", "--photos", str(photos), "--out", str(out), *setting], needle)
    assert not out.exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--data", str(out), "--list", "x.txt", "--out", str(tmp_path / "eval"), "--limit", "-3"])
    assert exit_info.value.code == 1 and "--limit" in capsys.readouterr().err


def test_a_failed_start_leaves_the_run_folder_untouched_and_usable(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--config", "synthetic", "--set", f"train.out_dir='{out}'",
            "--set", f"data.root='{tmp_path / 'missing'}'"]
    assert "no such dataset folder" in one_line_failure(capsys, args)
    assert not out.exists()  # nothing written: the next, corrected command starts cleanly


def test_a_torn_checkpoint_falls_back_to_the_previous_one_with_a_notice(tmp_path):
    from sid_keras.models import UNet
    from sid_keras.training.callbacks import Checkpoint

    model = UNet(width=4, depth=2)
    model.compile(optimizer="adam", loss="mae")
    x = np.zeros((2, 16, 16, 4), np.float32)
    y = np.zeros((2, 32, 32, 3), np.float32)
    notices = []
    checkpoint = Checkpoint(tmp_path / "checkpoint", log=notices.append)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[checkpoint])
    latest = tmp_path / "checkpoint" / "latest.weights.h5"
    latest.write_bytes(latest.read_bytes()[:1000])  # torn by a full disk or a kill
    fresh = UNet(width=4, depth=2)
    fresh.compile(optimizer="adam", loss="mae")
    assert checkpoint.restore(fresh) == 1
    assert len(notices) == 1 and "resuming from the previous checkpoint (epoch 1)" in notices[0]
    (tmp_path / "checkpoint" / "previous.weights.h5").write_bytes(b"garbage")
    with pytest.raises(SidError, match="no readable checkpoint"):
        checkpoint.restore(fresh)


def test_a_second_training_process_on_one_folder_is_refused(tmp_path):
    from sid_keras.training.task import run_folder_lock

    out = tmp_path / "run"
    code = (f"import time\nfrom sid_keras.training.task import run_folder_lock\nimport pathlib\n"
            f"with run_folder_lock(pathlib.Path({str(out)!r})):\n    print('locked', flush=True)\n    time.sleep(30)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SidError, match="another sid-keras train is running"):
            with run_folder_lock(out):
                pass
    finally:
        holder.kill()
        holder.wait()
    with run_folder_lock(out):  # free again once the other process is gone
        pass


def test_a_frame_that_cannot_fit_is_refused_before_starting(write_dng, tiny_model_file, monkeypatch):
    from sid_keras.runtime import inference

    dng, _ = write_dng(name="big.dng")
    monkeypatch.setattr(inference, "available_memory", lambda: 10_000)
    enhancer = inference.Enhancer(tiny_model_file)
    with pytest.raises(SidError, match="GB is free; use a smaller --tile"):
        enhancer.enhance_to_pixels(raw.read_raw(dng), 10, "png")


def test_export_demo_and_evaluate_keep_existing_outputs(tmp_path, tiny_model_file, capsys):
    out = tmp_path / "exported"
    out.mkdir()
    (out / "model_info.json").write_text("{}")
    err = one_line_failure(capsys, ["export", str(tiny_model_file), "--out", str(out)])
    assert "already holds model_info.json" in err
    profile = tmp_path / "bad.toml"
    profile.write_text("tile = -4\n")
    assert "tile = -4" in one_line_failure(capsys, ["export", str(tiny_model_file), "--out", str(tmp_path / "e2"),
                                                     "--profile", str(profile)])
    profile.write_text("tiles = 4\n")
    assert "unknown config keys in [export profile]: tiles" in one_line_failure(
        capsys, ["export", str(tiny_model_file), "--out", str(tmp_path / "e2"), "--profile", str(profile)])
    assert not (tmp_path / "e2" / "saved_model").exists()
    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "output.png").write_bytes(b"mine")
    assert "already holds output.png" in one_line_failure(capsys, ["demo", "--out", str(demo)])
    assert (demo / "output.png").read_bytes() == b"mine"
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / "metrics.json").write_text("{}")
    err = one_line_failure(capsys, ["evaluate", "--data", str(tmp_path), "--list", "x.txt", "--out", str(ev)])
    assert "already holds metrics.json" in err


def test_messages_name_the_problem_without_python_reprs(tmp_path, write_dng):
    from sid_keras.runtime.dng import write_cfa_dng
    from sid_keras.runtime.runners import load_model

    full, _ = write_dng(name="full.dng")
    truncated = tmp_path / "truncated.dng"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(SidError) as err:
        raw.read_raw(truncated)
    assert "b'" not in str(err.value) and str(truncated) in str(err.value)
    tiny = tmp_path / "tiny.dng"
    write_cfa_dng(tiny, np.full((20, 20), 900, np.uint16), np.array([[0, 1], [1, 2]]), black_level=512)
    with pytest.raises(SidError, match="20x20 pixel image is too small for LibRaw"):
        raw.read_raw(tiny)
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(SidError, match="not a .keras model .not a zip archive"):
        load_model(broken)


def test_evaluate_goes_on_past_a_bad_pair(tmp_path, tiny_model_file, capsys, photo_folder):
    photos = photo_folder
    root = tmp_path / "data"
    assert main(["synth", "--photos", str(photos), "--out", str(root), "--split", "val", "--limit", "2",
                 "--ratios", "100", "--workers", "1"]) == 0
    first = sorted((root / "Sony" / "short").iterdir())[0]
    first.write_bytes(b"corrupt")
    assert main(["evaluate", "--data", str(root), "--list", "Sony_val_list.txt", "--model", str(tiny_model_file),
                 "--out", str(tmp_path / "ev"), "--no-figures", "--no-denoiser"]) == 1
    captured = capsys.readouterr()
    assert "1 of 2 pairs failed" in captured.err and str(first) in captured.err
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["count"] == 1 and metrics["failures"][0]["short"] == str(first)
