"""Training settings: one pydantic model, filled from ``--config FILE`` (TOML/JSON) and CLI options.

Precedence: options given on the command line > the config file > the recipe (group size,
mode, sampling) > the defaults below.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from synthrank.data.config_files import read_config_file, validate_config
from synthrank.data.errors import DataFormatError
from synthrank.models.bundled import DEFAULT_ENCODER

__all__ = ["TrainConfig", "ConfigError", "load_train_config", "make_loss"]


log = logging.getLogger(__name__)


class ConfigError(DataFormatError):
    """A training config file is malformed; names the file and the field."""


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # data
    data: str = Field(description="Recipe file (TOML or JSON)")
    group_size: int | None = Field(None, ge=2, description="Passages per query; overrides the recipe's")
    mode: Literal["graded", "binary"] | None = Field(None, description="Overrides the recipe's mode")
    sampling: Literal["random", "top"] | None = Field(None, description="Overrides the recipe's sampling")
    positive_threshold: int | None = Field(None, description="binary mode: overrides the recipe's threshold")
    # model
    model: str = Field(DEFAULT_ENCODER, description="Local HF / sentence-transformers folder or bundled alias")
    pooling: Literal["mean", "cls", "last"] | None = None
    normalize: bool | None = None
    query_max_length: int | None = Field(None, ge=1)
    passage_max_length: int | None = Field(None, ge=1)
    query_prefix: str = ""
    passage_prefix: str = ""
    trust_remote_code: bool = False
    # loss
    loss: str = "ws2"
    temperature: float = Field(1.0, gt=0)
    loss_params: dict[str, Any] = Field(default_factory=dict)
    # optimisation
    output: str
    batch_size: int = Field(16, ge=1, description="Queries per device and micro-batch")
    lr: float = Field(1e-5, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    warmup: float = Field(0.05, ge=0, description="Warm-up: a fraction of the steps (< 1) or a step count")
    weight_decay: float = Field(0.0, ge=0)
    lr_scheduler: str = "linear"
    optim: str = "adamw_torch"
    max_grad_norm: float = 1.0
    grad_accum: int = Field(1, ge=1)
    chunk_size: int | None = Field(None, ge=1, description="GradCache: texts per forward pass")
    forward_batch_size: int | None = Field(
        32, ge=1, description="Texts per forward pass (length-sorted, padding cut per pass); None: one pass")
    bf16: bool = False
    fp16: bool = False
    gradient_checkpointing: bool = False
    seed: int = 42
    drop_last: bool = True
    dataloader_workers: int = Field(0, ge=0)
    ddp_find_unused_parameters: bool = False
    # bookkeeping
    save_steps: int = Field(500, ge=1)
    save_total_limit: int | None = Field(None, ge=1)
    logging_steps: int = Field(10, ge=1)
    report_to: str | list[str] = "none"
    run_name: str | None = None
    resume: bool | str = False
    quiet: bool = False

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if self.bf16 and self.fp16:
            raise ValueError("choose bf16 or fp16, not both")
        return self


def _merge_train_table(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """A config may put its options at the top level, in a ``[train]`` table, or both; every key
    is used (unknown ones fail validation), and one given in both places is an error."""
    if not isinstance(data.get("train"), dict):
        return data
    table = data["train"]
    top = {key: value for key, value in data.items() if key != "train"}
    both = sorted(set(top) & set(table))
    if both:
        raise ConfigError(path, None, f"train.{both[0]}",
                          f"given both at the top level and in [train]: {', '.join(both)}; keep one")
    return {**top, **table}


def load_train_config(path: str | Path | None, overrides: dict[str, Any] | None = None,
                      origin: str | None = None) -> TrainConfig:
    """Read ``path`` (TOML or JSON; relative ``data``/``output`` resolve against its folder),
    apply ``overrides`` (entries that are ``None`` are ignored) and validate. Errors name
    ``origin`` (default: the file, else ``<command line>``)."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        origin = origin or str(path)
        data = _merge_train_table(read_config_file(path, ConfigError, "config"), path)
        for key in ("data", "output"):
            value = data.get(key)
            if isinstance(value, str) and not Path(value).expanduser().is_absolute():
                data[key] = str(path.parent / value)
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    return validate_config(TrainConfig, data, origin or "<command line>", ConfigError)


def make_loss(config: TrainConfig):
    """The registry loss with ``loss_params``; ``temperature`` is passed when the loss takes one.

    Unknown losses and parameters raise ValueError with the registry's message (which lists the
    accepted ones); a loss that takes no temperature is built without it, with a warning only
    when a temperature other than the default was asked for."""
    from synthrank.losses import get_loss

    params = dict(config.loss_params)
    if "temperature" in params:
        return get_loss(config.loss, **params)
    try:
        return get_loss(config.loss, temperature=config.temperature, **params)
    except ValueError as with_temperature:
        if "invalid parameters" not in str(with_temperature):
            raise
    loss = get_loss(config.loss, **params)  # a bad loss_param raises here, with its own message
    if config.temperature != TrainConfig.model_fields["temperature"].default:
        log.warning("loss %r takes no temperature; temperature %s ignored", config.loss, config.temperature)
    return loss
