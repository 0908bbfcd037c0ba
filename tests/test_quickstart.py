"""docs/quickstart.md, run as a newcomer runs it: every command of its bash blocks, in order."""

import os
import pathlib
import re
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "docs" / "quickstart.md"


def quickstart_commands() -> list[str]:
    """The commands of the page's bash blocks (continuation lines joined), install excluded:
    CI has installed the package (`.ci/run`) before the tests run."""
    blocks = re.findall(r"```bash\n(.*?)```", QUICKSTART.read_text(), flags=re.S)
    commands = [c.strip() for block in blocks for c in block.replace("\\\n", " ").splitlines() if c.strip()]
    return [c for c in commands if not c.startswith("pip install")]


@pytest.mark.slow
def test_every_quickstart_command_runs(tmp_path):
    commands = quickstart_commands()
    assert len(commands) >= 15 and all(c.startswith(("sid-keras", "mkdir")) for c in commands)
    if shutil.which("sid-keras") is None:
        pytest.fail("the sid-keras command is not installed: pip install . first (the README's test command does)")
    (tmp_path / "tests").symlink_to(REPO / "tests")  # the page runs from the clone's root
    env = {**os.environ, "SID_KERAS_CACHE": str(tmp_path / "cache")}
    for command in commands:
        run = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0, f"{command}\n{run.stdout}\n{run.stderr}"
        assert "Traceback" not in run.stderr and "I0000" not in run.stderr, command
    assert (tmp_path / "runs" / "first" / "best.keras").exists()
    assert (tmp_path / "export_first" / "model_info.json").exists()
    assert "my_dark_frames" in (tmp_path / "export_first" / "model_info.json").read_text()
    assert not list((tmp_path / "cache").glob("*.npy"))  # the last command cleared the cache
