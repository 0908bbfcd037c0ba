"""benchmarks/study.py: the seven variants under one recipe, resumable, the U-UNet from the U-Net."""

import importlib.util
import pathlib

import numpy as np
import pytest

from sid_keras.apps.cli import main

keras = pytest.importorskip("keras")
REPO = pathlib.Path(__file__).resolve().parents[1]


def _study():
    spec = importlib.util.spec_from_file_location("study", REPO / "benchmarks" / "study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_study_trains_each_variant_once_and_the_u_unet_keeps_the_trained_unet(photo_folder, tmp_path, capsys):
    study = _study()
    assert set(study.VARIANTS) == {"unet", "attention_unet", "unet_gan", "double_unet", "unet_deep", "vae_gan",
                                   "fast_unet"}
    root, out = tmp_path / "data", tmp_path / "study"
    assert main(["synth", "--photos", str(photo_folder), "--out", str(root), "--split", "val", "--limit", "1",
                 "--workers", "1"]) == 0
    recipe = [f"data.root='{root}'", f"data.photos=['{photo_folder}']", "data.patch_size=32", "data.batch_size=2",
              "data.val_max_side=64", "train.epochs=1", "train.steps_per_epoch=2", "train.val_every=1",
              "model.args.width=4", "model.args.depth=3"]
    argv = ["train", "--out", str(out), "--only", "unet", "double_unet", *(f"--set={s}" for s in recipe)]
    assert study.main(argv) == 0
    unet = keras.models.load_model(out / "unet" / "best.keras", compile=False)
    double = keras.models.load_model(out / "double_unet" / "final.keras", compile=False)
    np.testing.assert_array_equal(double.get_layer("first_enc1_conv1").get_weights()[0],
                                  unet.get_layer("enc1_conv1").get_weights()[0])  # loaded, then kept frozen
    capsys.readouterr()
    assert study.main(argv) == 0  # the same command again: nothing left to train
    assert capsys.readouterr().out.splitlines() == [f"unet: done ({out / 'unet' / 'final.keras'})",
                                                    f"double_unet: done ({out / 'double_unet' / 'final.keras'})"]
