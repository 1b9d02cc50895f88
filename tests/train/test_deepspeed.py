"""train.deepspeed: checked at load, handed to TrainingArguments, the shipped ZeRO-3 setting."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from synthrank.train.config import ConfigError, load_train_config

from train_helpers import write_recipe

REPO = Path(__file__).resolve().parents[2]
ZERO3 = REPO / "configs" / "deepspeed" / "zero3.json"
HAS_DEEPSPEED = importlib.util.find_spec("deepspeed") is not None


@pytest.fixture(autouse=True)
def forget_deepspeed_afterwards(monkeypatch):
    """TrainingArguments with a DeepSpeed file leaves it set process-wide: in transformers (a weak
    reference), in accelerate's shared state, and in ``ACCELERATE_USE_DEEPSPEED``. Left set, every
    later model load in this process goes through ``deepspeed.zero.Init`` and every later Trainer
    steps through a DeepSpeed engine; undone here so the other tests run as without DeepSpeed."""
    # setenv records the variable's absence, so teardown removes what TrainingArguments sets
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "false")
    yield
    if HAS_DEEPSPEED:
        from accelerate.state import AcceleratorState
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
        AcceleratorState._reset_state(reset_partial_state=True)


def config_for(tmp_path, model, beir, **overrides):
    recipe = write_recipe(tmp_path / "recipe.json", {"group_size": 3, "sources": [{"dataset": str(beir)}]})
    base = dict(data=str(recipe), output=str(tmp_path / "out"), model=str(model), batch_size=4,
                query_max_length=16, passage_max_length=16, lr=1e-3, logging_steps=1, quiet=True, loss="infonce")
    return load_train_config(None, {**base, **overrides})


def test_shipped_zero3_setting():
    settings = json.loads(ZERO3.read_text())
    assert settings["zero_optimization"]["stage"] == 3
    assert settings["scheduler"]["type"] == "WarmupDecayLR"
    assert set(settings["scheduler"]["params"].values()) == {"auto"}
    assert settings["bf16"]["enabled"] == "auto" and settings["fp16"]["enabled"] == "auto"


def test_paper_config_trains_with_zero3():
    import tomllib

    paper = tomllib.loads((REPO / "configs" / "paper.toml").read_text())
    assert (REPO / "configs" / paper["train"]["deepspeed"]).resolve() == ZERO3


def test_a_missing_or_broken_deepspeed_file_fails_at_load(tmp_path):
    with pytest.raises(ConfigError, match="deepspeed.*nope.json: file not found"):
        load_train_config(None, {"data": "r.json", "output": "o", "deepspeed": str(tmp_path / "nope.json")})
    broken = tmp_path / "ds.json"
    broken.write_text('{"zero_optimization": {"stage": 3,}}')
    with pytest.raises(ConfigError, match="ds.json:1: invalid JSON"):
        load_train_config(None, {"data": "r.json", "output": "o", "deepspeed": str(broken)})
    with pytest.raises(ConfigError, match="chunk_size"):
        load_train_config(None, {"data": "r.json", "output": "o", "deepspeed": str(ZERO3), "chunk_size": 4})


def test_relative_deepspeed_path_resolves_against_the_config_file(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "z.json").write_text("{}")
    (tmp_path / "train.toml").write_text('data = "r.json"\noutput = "o"\ndeepspeed = "ds/z.json"\n')
    assert load_train_config(tmp_path / "train.toml").deepspeed == str(tmp_path / "ds" / "z.json")


def test_deepspeed_setting_reaches_training_arguments(tmp_path, tiny_model, toy_beir, monkeypatch):
    """The path in the config is the ``deepspeed`` argument TrainingArguments is built with."""
    import synthrank.train.trainer as trainer_module
    from synthrank.train.arguments import RankingTrainingArguments

    received = {}

    class Stop(Exception):
        pass

    def capture(self, **kwargs):
        received.update(kwargs)
        raise Stop

    monkeypatch.setattr(trainer_module, "deepspeed_installed", lambda: True)
    monkeypatch.setattr(RankingTrainingArguments, "__init__", capture)
    with pytest.raises(Stop):
        trainer_module.build_training(config_for(tmp_path, tiny_model, toy_beir, deepspeed=str(ZERO3)))
    assert received["deepspeed"] == str(ZERO3)
    received.clear()
    with pytest.raises(Stop):
        trainer_module.build_training(config_for(tmp_path, tiny_model, toy_beir))
    assert "deepspeed" not in received


def test_without_the_package_the_error_says_how_to_install_it(tmp_path, tiny_model, toy_beir, monkeypatch):
    import synthrank.train.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "deepspeed_installed", lambda: False)
    with pytest.raises(ImportError, match="pip install deepspeed"):
        trainer_module.build_training(config_for(tmp_path, tiny_model, toy_beir, deepspeed=str(ZERO3)))


@pytest.mark.skipif(not HAS_DEEPSPEED, reason="deepspeed is not installed")
def test_real_trainer_holds_the_deepspeed_config(tmp_path, tiny_model, toy_beir):
    """With DeepSpeed installed, transformers reads the file and fills its "auto" values."""
    from synthrank.train.trainer import build_training

    trainer, *_ = build_training(config_for(tmp_path, tiny_model, toy_beir, deepspeed=str(ZERO3)))
    assert trainer.args.deepspeed == str(ZERO3)
    assert trainer.args.hf_deepspeed_config.config["zero_optimization"]["stage"] == 3


@pytest.mark.slow
@pytest.mark.skipif(not HAS_DEEPSPEED, reason="deepspeed is not installed")
def test_two_process_cpu_deepspeed_run_trains_a_few_steps(tmp_path, tiny_model, toy_beir):
    """ZeRO-3 on 2 CPU processes (DeepSpeed's CPU accelerator, gloo), 3 steps."""
    settings = json.loads(ZERO3.read_text())
    settings["optimizer"] = {"type": "AdamW", "params": {"lr": "auto", "weight_decay": "auto"}}
    ds_config = tmp_path / "zero3-cpu.json"
    ds_config.write_text(json.dumps(settings))
    config = config_for(tmp_path, tiny_model, toy_beir, deepspeed=str(ds_config), max_steps=3, save_steps=100)
    config_path = tmp_path / "config.json"
    config_path.write_text(config.model_dump_json())
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(Path(__file__).with_name("run_train.py")), str(config_path), str(tmp_path / "result.json")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["global_step"] == 3 and result["train_loss"] is not None
