"""Search space defaults and overrides without a search, and real searches on tiny data."""

import keras_tuner as kt
import pytest

from sid_keras import CONFIGS_DIR
from sid_keras.apps.cli import main
from sid_keras.errors import SidError
from sid_keras.training.config import load_config
from sid_keras.training.tuning import define_space, load_job, trial_config


def test_shipped_jobs_load_and_their_spaces_have_sane_defaults():
    for path in sorted((CONFIGS_DIR / "tuning").glob("*.toml")):  # installed with the package
        job = load_job(path)
        hp = kt.HyperParameters()
        values = define_space(hp, job.space)
        config = trial_config(job.base, values)  # the defaults build a valid training config
        assert 1e-5 <= config.train.learning_rate <= 3e-3
        assert "learning_rate" in hp.values
    hp = kt.HyperParameters()
    define_space(hp, load_job("sid_sony_lr_depth").space)  # a shipped job, by name
    assert hp.values["depth"] == 4 and hp.values["width"] == 32
    lr = hp._hps["learning_rate"][0]
    assert lr.sampling == "log" and (lr.min_value, lr.max_value) == (1e-5, 1e-3)


def test_fixed_overrides_and_gan_weight():
    job = load_job("synthetic_quick", ["space.model='unet_gan'", "job.max_trials=2",
                                                              "space.adversarial_weight={values=[0.01, 0.1]}"])
    hp = kt.HyperParameters()
    hp.Fixed("depth", 3)  # a fixed override wins over the job's choice, as in keras-tuner
    values = define_space(hp, job.space)
    assert values["depth"] == 3 and job.job.max_trials == 2
    config = trial_config(job.base, values)
    assert config.model.name == "unet_gan" and config.model.args["adversarial_weight"] == 0.01
    with pytest.raises(SidError, match="not a searchable"):
        trial_config(job.base, {"dropout": 0.1})
    with pytest.raises(SidError, match="unknown keys in \\[job\\]"):
        load_job("synthetic_quick", ["job.trials=3"])


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory, photo_folder):
    photos = photo_folder
    root = tmp_path_factory.mktemp("tune")
    main(["synth", "--photos", str(photos), "--out", str(root), "--split", "train", "--limit", "2", "--workers", "1"])
    main(["synth", "--photos", str(photos), "--out", str(root), "--split", "val", "--limit", "1", "--workers", "1"])
    return root


def _args(root, directory, trials):
    return ["tune", "--job", "synthetic_quick", "--set", f"data.root='{root}'",
            "--set", f"job.directory='{directory}'", "--set", f"job.max_trials={trials}", "--set", "job.epochs=1",
            "--set", "train.steps_per_epoch=2", "--set", "space.model='unet'", "--set", "space.depth=3",
            "--set", "space.width=4", "--set", "data.patch_size=32"]


@pytest.mark.slow
def test_one_trial_search_end_to_end_resumes_without_repeating(tiny_root, tmp_path, capsys):
    assert main(_args(tiny_root, tmp_path, 1)) == 0
    out = capsys.readouterr().out
    assert "val_psnr" in out and "best configuration" in out
    project = tmp_path / "synthetic_quick"
    best = project / "best_config.toml"
    config = load_config(str(best))  # the winner is a config `sid-keras train` accepts
    assert config.model.name == "unet" and config.model.args == {"width": 4, "depth": 3}
    assert config.train.epochs == 1 and config.train.steps_per_epoch == 2  # what the trial ran
    assert config.train.out_dir == str(project / "best_run")
    assert len((project / "trials.txt").read_text().strip().splitlines()) == 2
    assert main(_args(tiny_root, tmp_path, 1)) == 0  # same budget: nothing new runs
    assert len(list(project.glob("trial_*"))) == 1
    assert main(_args(tiny_root, tmp_path, 2)) == 0  # raised budget: one new trial
    assert len(list(project.glob("trial_*"))) == 2


@pytest.mark.slow
def test_distributed_search_chief_and_two_workers_on_loopback(tiny_root, tmp_path):
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = _args(tiny_root, tmp_path, 2)
    command = [sys.executable, "-m", "sid_keras.apps.cli", *args]
    base_env = {**os.environ, "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port),
                "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = {"chief": subprocess.Popen(command, env={**base_env, "KERASTUNER_TUNER_ID": "chief"},
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)}
    for worker in ("tuner0", "tuner1"):
        procs[worker] = subprocess.Popen(command, env={**base_env, "KERASTUNER_TUNER_ID": worker},
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outputs = {}
    try:
        for name, proc in procs.items():
            outputs[name] = proc.communicate(timeout=400)[0]
    finally:
        for proc in procs.values():
            proc.kill()
    for name, proc in procs.items():
        assert proc.returncode == 0, f"{name}:\n{outputs.get(name, '')[-2000:]}"
    assert "no trials left" in outputs["tuner0"] and "no trials left" in outputs["tuner1"]
    trials = (tmp_path / "synthetic_quick" / "trials.txt").read_text().strip().splitlines()
    assert len(trials) == 3  # header + the two trials the workers ran


@pytest.mark.slow
def test_gan_search_with_adversarial_weight(tiny_root, tmp_path):
    args = _args(tiny_root, tmp_path, 1) + ["--set", "space.model='unet_gan'",
                                            "--set", "space.adversarial_weight={values=[0.01, 0.1]}"]
    assert main(args) == 0
    config = load_config(str(tmp_path / "synthetic_quick" / "best_config.toml"))
    assert config.model.name == "unet_gan" and config.model.args["adversarial_weight"] in (0.01, 0.1)


@pytest.mark.slow
def test_a_trial_trains_with_the_recipe_schedule(tiny_root, tmp_path):
    """Each trial fits the training recipe's Task: its learning rate follows the step schedule."""
    import json

    args = _args(tiny_root, tmp_path, 1) + ["--set", "job.epochs=3", "--set", "space.learning_rate=0.001",
                                            "--set", "train.step_epochs=1", "--set", "train.gamma=0.5"]
    assert main(args) == 0
    trial = json.loads(next((tmp_path / "synthetic_quick").glob("trial_*/trial.json")).read_text())
    last = max(trial["metrics"]["metrics"]["learning_rate"]["observations"], key=lambda o: o["step"])
    assert last["value"][0] == pytest.approx(1e-3 * 0.5**2)  # the third epoch: halved twice


def test_a_program_sets_config_values_as_python_values_not_as_strings():
    """finetune passed its settings as `--set` strings built with repr: a Windows path's
    backslashes came back doubled."""
    config = load_config("shipped", ["train.epochs=3"], {"data.root": r"C:\data\sid", "train.epochs": 9,
                                                          "data.photos": [r"D:\photos"]})
    assert config.data.root == r"C:\data\sid" and config.data.photos == [r"D:\photos"]
    assert config.train.epochs == 3  # what the user typed wins over the program's default
