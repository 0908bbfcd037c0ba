"""benchmarks/study.py: the runs of the study file trained once each, the U-UNet from the U-Net,
a record per run, and the report rebuilt from the records alone."""

import importlib.util
import json
import pathlib
import sys

import keras
import numpy as np
import pytest

from sid_keras.apps.cli import main

REPO = pathlib.Path(__file__).resolve().parents[1]


def _study():
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("study", REPO / "benchmarks" / "study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_study_file_lists_every_variant_and_two_second_seeds_under_one_budget():
    study = _study()
    assert set(study.VARIANTS) == {"unet", "attention_unet", "unet_gan", "double_unet", "unet_deep", "vae_gan",
                                   "fast_unet"}
    plan = study.load_study()
    assert {run["variant"] for run in plan["runs"].values()} == set(study.VARIANTS)
    assert sorted(n for n, run in plan["runs"].items() if run.get("set")) == ["attention_unet_seed2", "unet_seed2"]
    names = list(plan["runs"])
    assert names.index("unet") < names.index("double_unet")  # the U-UNet starts from the trained unet
    assert any(s.startswith("train.epochs=") for s in plan["budget"])


@pytest.mark.slow
def test_the_study_records_each_run_once_and_the_report_is_built_from_the_records(photo_folder, tmp_path, capsys,
                                                                                monkeypatch):
    study = _study()
    import fidelity

    monkeypatch.setattr(fidelity, "SKIMAGE_PHOTOS", ("chelsea",))  # the fidelity set, cut to one photo
    root, out, results = tmp_path / "data", tmp_path / "study", tmp_path / "results"
    for extra in ([], ["--stress"]):  # the validation pairs, and the stress grid the runs are scored on
        assert main(["synth", "--photos", str(photo_folder), "--out", str(root), "--split", "val", "--limit", "1",
                     "--workers", "1", *extra]) == 0
    recipe = [f"data.root='{root}'", f"data.photos=['{photo_folder}']", "data.patch_size=32", "data.batch_size=2",
              "data.val_max_side=64", "train.epochs=2", "train.steps_per_epoch=2", "train.val_every=2",
              "model.args.width=4", "model.args.depth=3"]
    argv = ["train", "--out", str(out), "--only", "unet", "double_unet", "--results", str(results),
            "--stress", str(root), *(f"--set={s}" for s in recipe)]
    assert study.main(argv) == 0
    unet = keras.models.load_model(out / "unet.keras", compile=False)  # kept for the U-UNet, not in the results
    assert not list(results.glob("*.keras"))
    double = keras.models.load_model(out / "double_unet" / "final.keras", compile=False)
    np.testing.assert_array_equal(double.get_layer("first_enc1_conv1").get_weights()[0],
                                  unet.get_layer("enc1_conv1").get_weights()[0])  # loaded, then kept frozen
    record = json.loads((results / "unet.json").read_text())
    assert record["variant"] == "unet" and record["precision"] in ("float32", "mixed_bfloat16")
    assert record["config"]["train"]["steps_per_epoch"] == 2 and record["machine"]["cores"] >= 1
    assert record["curve"][0] == [0, record["curve"][0][1], None]  # an epoch that did not validate
    assert record["curve"][1][0] == 1 and np.isfinite(record["curve"][1][2]) and record["wall_seconds"] > 0
    assert 5 < record["stress"]["all"][0] < 60 and set(record["nlm"]) == set(record["stress"]) - {"all"}
    assert record["fidelity"][0] <= record["ceiling"][0] + 5
    capsys.readouterr()
    assert study.main(argv) == 0  # the same command again: every listed run has its record
    assert capsys.readouterr().out.splitlines() == [f"unet: done ({results / 'unet.json'})",
                                                    f"double_unet: done ({results / 'double_unet.json'})"]

    assert study.main(["retime", "--out", str(out), "--results", str(results), "--rounds", "2"]) == 0
    retimed = json.loads((results / "unet.json").read_text())
    assert retimed["seconds_12mp"] > 0 and retimed["seconds_12mp_timed"]["how"].endswith("median of 2 rounds")
    assert retimed["stress"] == record["stress"]  # the rest of the record as it was
    for name in ("unet", "double_unet"):  # the report needs only the records
        (out / name / "best.keras").unlink()
    page, figures = tmp_path / "study.md", tmp_path / "figures"
    assert study.main(["report", "--results", str(results), "--page", str(page), "--figures", str(figures)]) == 0
    text = page.read_text()
    assert "| unet |" in text and "| double_unet |" in text and "Not trained yet: attention_unet" in text
    assert "U-UNet fixes the U-Net's washed-out colour" in text and "no second-seed run" in text
    assert "every run's timed side by side in one process, median of 2 rounds" in text
    assert (figures / "quality_vs_gmacs.png").is_file() and (figures / "crops.png").is_file()


def _record(psnr, ghd=0.3, sat=0.9, gmacs=6.7):
    return {"stress": {"all": [psnr, 0.7, ghd, sat]}, "best": {"val_psnr": psnr, "epoch": 40}, "gmacs": gmacs}


def test_a_verdict_needs_a_difference_beyond_the_run_to_run_spread():
    study = _study()
    records = {"unet": _record(25.0), "unet_seed2": _record(25.2), "attention_unet": _record(24.5, ghd=0.2),
               "unet_gan": _record(25.1), "unet_deep": _record(25.0), "vae_gan": _record(24.0, sat=1.1)}
    assert study.spread(records, study.stress(0)) == pytest.approx(0.2)
    lines = "\n".join(study.verdicts(records))  # each variant against the mean of the U-Net's two seeds
    assert "numerically slightly worse than the U-Net (paper: -1.80 dB): **holds** (-0.60 dB; spread 0.20 dB)" in lines
    assert "about equal to the U-Net (paper: -0.07 dB): **holds** (+0.00 dB" in lines
    assert "struggles to converge (best validation PSNR below the U-Net's): **cannot tell at this budget**" in lines
    assert "more saturated (\"artistic\") than the U-Net's: **holds** (saturation 0.900 -> 1.100" in lines
    records["attention_unet"] = _record(25.5)
    records["attention_unet_seed2"] = _record(25.9)  # the spread widens to 0.4, the variant's mean is 25.7
    lines = "\n".join(study.verdicts(records))
    assert "slightly worse than the U-Net (paper: -1.80 dB): **does not hold** (+0.60 dB; spread 0.40 dB)" in lines


def test_a_variant_replaces_the_shipped_network_only_beyond_the_spread_at_equal_cost():
    study = _study()
    records = {"unet": _record(25.0), "unet_seed2": _record(25.2), "double_unet": _record(26.0, gmacs=15.7),
               "fast_unet": _record(24.0, gmacs=1.4)}
    text = "\n".join(study.against_the_unet(records))
    assert "| double_unet (1) | +0.90 dB | +0.000 | 2.34 | better |" in text
    assert "| fast_unet (1) | -1.10 dB | +0.000 | 0.21 | worse |" in text
    assert "No variant beats the U-Net beyond the spread (0.20 dB) at about its cost" in text
    assert "only at a higher cost: double_unet (2.3x" in text
    records["attention_unet"] = _record(25.5, gmacs=6.9)
    assert "at about the U-Net's cost: attention_unet; a candidate" in "\n".join(study.against_the_unet(records))
