"""Training configs: every key in a config file is used or an error; loss construction."""

from __future__ import annotations

import logging

import pytest

from synthrank.train.config import ConfigError, load_train_config, make_loss


def test_top_level_keys_beside_a_train_table_are_used(tmp_path):
    config = tmp_path / "train.toml"
    config.write_text('lr = 5.0\nepochs = 99\n\n[train]\ndata = "recipe.json"\noutput = "out"\nbatch_size = 3\n')
    settings = load_train_config(config)
    assert (settings.lr, settings.epochs, settings.batch_size) == (5.0, 99, 3)
    assert settings.data == str(tmp_path / "recipe.json")


def test_a_key_given_twice_or_unknown_is_an_error_naming_the_file(tmp_path):
    twice = tmp_path / "twice.toml"
    twice.write_text('lr = 5.0\n[train]\ndata = "r.json"\noutput = "o"\nlr = 1e-4\n')
    with pytest.raises(ConfigError, match=r"twice\.toml: field 'train\.lr': given both"):
        load_train_config(twice)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('epoks = 3\n[train]\ndata = "r.json"\noutput = "o"\n')
    with pytest.raises(ConfigError, match=r"unknown\.toml: field 'epoks': epoks: Extra inputs are not permitted"):
        load_train_config(unknown)


def test_errors_name_the_origin_given():
    with pytest.raises(ConfigError, match=r"^exp\.toml \[settings 'a'\]: field 'lrr'"):
        load_train_config(None, {"data": "r", "output": "o", "lrr": 1}, origin="exp.toml [settings 'a']")


def test_a_bad_loss_param_gets_its_own_message_not_a_temperature_warning(caplog):
    config = load_train_config(None, {"data": "r", "output": "o", "loss": "ws2", "loss_params": {"nonsense": 1}})
    with caplog.at_level(logging.WARNING), pytest.raises(ValueError, match="invalid parameters for loss 'ws2'.*nonsense"):
        make_loss(config)
    assert "temperature" not in caplog.text
    margin = load_train_config(None, {"data": "r", "output": "o", "loss": "margin_mse"})
    with caplog.at_level(logging.WARNING):
        make_loss(margin)  # takes no temperature, none asked for: nothing to warn about
    assert "temperature" not in caplog.text
    with caplog.at_level(logging.WARNING):
        make_loss(margin.model_copy(update={"temperature": 0.05}))
    assert "takes no temperature" in caplog.text


def test_attention_dropout_is_a_probability_or_model(tmp_path):
    from synthrank.train.config import ConfigError, load_train_config

    base = {"data": "recipe.toml", "output": "out"}
    assert load_train_config(None, base).attention_dropout == 0.0
    assert load_train_config(None, {**base, "attention_dropout": "model"}).attention_dropout == "model"
    for bad in (1.0, -0.1, "half"):
        with pytest.raises(ConfigError, match="attention_dropout"):
            load_train_config(None, {**base, "attention_dropout": bad})


def test_dropout_masks_are_fast_or_torch():
    from synthrank.train.config import ConfigError, load_train_config

    base = {"data": "recipe.toml", "output": "out"}
    assert load_train_config(None, base).dropout_masks == "fast"
    assert load_train_config(None, {**base, "dropout_masks": "torch"}).dropout_masks == "torch"
    with pytest.raises(ConfigError, match="dropout_masks"):
        load_train_config(None, {**base, "dropout_masks": "bernoulli"})
