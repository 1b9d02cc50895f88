"""Training under a launcher: the command line torchrun / deepspeed receive."""

from __future__ import annotations

import subprocess
import sys

import pytest

from synthrank.experiments import parse_experiment
from synthrank.experiments.runner import Runner, Stage


@pytest.mark.parametrize("launcher, program", [
    (["torchrun", "--nproc_per_node", "4"], ["-m", "synthrank"]),
    (["deepspeed", "--num_gpus", "4"], ["--module", "synthrank"]),  # deepspeed runs `python -u SCRIPT` otherwise
    (["srun"], [sys.executable, "-m", "synthrank"]),
])
def test_launch_command(tmp_path, monkeypatch, launcher, program):
    config = parse_experiment({"name": "t", "launcher": launcher, "eval": {"datasets": [{"dataset": "scifact"}]}})
    commands = []
    monkeypatch.setattr(subprocess, "run", lambda command, check: commands.append(command))
    stage = Stage("train", "s", {}, output=tmp_path)

    class _Config:
        def model_dump_json(self, indent):
            return "{}"

    Runner(config, show_progress=False, echo=lambda line: None)._launch_train(stage, _Config(), tmp_path / "m", False)
    (command,) = commands
    assert command == launcher + program + ["train", "--config", str(tmp_path / "train_config.json")]
