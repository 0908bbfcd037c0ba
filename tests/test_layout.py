"""The repository's top level (tuning/, export/) and the installed package agree, and a recipe's
stages are configs that build on each other."""

import configparser
import pathlib

import pytest

from sid_keras import CONFIG_SOURCES, SidError, shipped_configs
from sid_keras.runtime.io import SHIPPED_CONFIGS, shipped_or_path
from sid_keras.training.config import load_config

REPO = pathlib.Path(__file__).resolve().parents[1]


def _setup_options() -> configparser.ConfigParser:
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    return setup


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().splitlines() if line.strip()]


def test_every_shipped_config_folder_is_mapped_into_the_installed_package():
    setup = _setup_options()
    mapped = dict(line.split(" = ") for line in _lines(setup["options"]["package_dir"]))
    packages = _lines(setup["options"]["packages"])
    assert set(CONFIG_SOURCES) == set(SHIPPED_CONFIGS)
    for kind, folder in CONFIG_SOURCES.items():
        assert mapped[f"sid_keras.configs.{kind}"] == folder  # built into sid_keras/configs/KIND
        assert f"sid_keras.configs.{kind}" in packages
        assert setup["options.package_data"][f"sid_keras.configs.{kind}"].strip() == "*.toml"
        assert sorted((REPO / folder).glob("*.toml")), folder
        assert shipped_configs(kind) == REPO / folder  # a checkout finds its own folder
    # every code package is listed (a new one would otherwise be left out of the wheel)
    code = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "sid_keras").rglob("__init__.py")}
    assert code == {p for p in packages if not p.startswith("sid_keras.configs.")}
    assert not list((REPO / "sid_keras").rglob("*.toml"))  # no file twice


def test_a_config_extends_another_table_by_table(tmp_path):
    (tmp_path / "base.toml").write_text('extends = "synthetic"\n[train]\nepochs = 7\nlearning_rate = 1e-3\n'
                                        '[model]\nargs = { width = 8, depth = 3 }\n')
    (tmp_path / "stage.toml").write_text('extends = "base.toml"\n[train]\nepochs = 9\n[model]\nargs = { depth = 4 }\n')
    config = load_config(str(tmp_path / "stage.toml"))
    synthetic = load_config("synthetic")
    assert config.train.epochs == 9 and config.train.learning_rate == 1e-3  # its own, then its base's
    assert config.model.args == {**synthetic.model.args, "width": 8, "depth": 4}
    assert config.data == synthetic.data
    (tmp_path / "loop.toml").write_text('extends = "loop2.toml"\n')
    (tmp_path / "loop2.toml").write_text('extends = "loop.toml"\n')
    with pytest.raises(SidError, match="a loop"):
        load_config(str(tmp_path / "loop.toml"))
    (tmp_path / "bad.toml").write_text('extends = "no_such_experiment"\n')
    with pytest.raises(SidError, match="no_such_experiment: no such config file or experiment"):
        load_config(str(tmp_path / "bad.toml"))


def test_the_shipped_recipe_runs_as_four_stages_each_from_the_last():
    stages = [load_config(f"shipped_stage{n}") for n in (1, 2, 3, 4)]
    shipped = load_config("shipped")
    assert not stages[0].train.init_from
    for previous, stage in zip(stages, stages[1:]):
        assert stage.train.init_from == f"{previous.train.out_dir}/best.keras"
    assert [s.model.args["demosaic"] for s in stages] == ["bilinear", "malvar", "malvar", "malvar"]
    assert [s.model.args["demosaic_trust"] for s in stages] == [0.0, 0.0, 0.004, 0.004]
    assert stages[3].train.average_from == 96 and stages[3].train.epochs == 240
    assert all(s.data == shipped.data and s.model.name == shipped.model.name for s in stages)
    assert shipped_or_path("shipped", "export").name == "shipped.toml"  # its export profile
