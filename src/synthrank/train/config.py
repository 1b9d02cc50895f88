"""Training options: one pydantic model, the single declaration of each option of ``synthrank
train``, filled from ``--config FILE`` (TOML/JSON), command-line options and experiment configs.

Precedence: options given on the command line > the config file > the recipe (group size,
mode, sampling) > the defaults below.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from synthrank.data.config_files import parse_assignments, read_config_file, validate_config
from synthrank.data.errors import DataFormatError
from synthrank.models.bundled import DEFAULT_ENCODER
from synthrank.utils.options import HF, Cli

__all__ = ["TrainConfig", "ConfigError", "load_train_config", "make_loss"]


log = logging.getLogger(__name__)


class ConfigError(DataFormatError):
    """A training config file is malformed; names the file and the field."""


def _report_to(value: str | list[str]) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    return [item.strip() for item in value if item.strip()] or ["none"]


def _loss_params(items: list[str]) -> dict[str, Any]:
    return parse_assignments(items, "--loss-param")


def _probability_or_model(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value  # validation names what is accepted


class TrainConfig(BaseModel):
    """Every option of ``synthrank train``, declared once: the command line
    (:mod:`synthrank.train.cli` builds its options from these fields), ``--config`` files,
    experiment ``[train]`` tables and the Python API read it; ``HF(...)`` says which
    ``TrainingArguments`` argument a field sets (:mod:`synthrank.train.arguments`)."""

    model_config = ConfigDict(extra="forbid")

    # data
    data: Annotated[str, Field(description="Recipe file (TOML or JSON) naming the training sources, or a BEIR "
                               "folder trained on as it is (its graded train qrels, e.g. a generate output)")]
    group_size: Annotated[int | None, Field(None, ge=2, description="Passages per query (default: the recipe's, 4)")]
    mode: Annotated[Literal["graded", "binary"] | None, Field(None, description="Overrides the recipe's mode")]
    sampling: Annotated[Literal["random", "top"] | None, Field(
        None, description="graded mode: which passages of a query make its group (default: the recipe's)")]
    positive_threshold: Annotated[int | None, Field(
        None, description="binary mode: grades >= this are positives (default: the recipe's)")]
    # model
    model: Annotated[str, Field(DEFAULT_ENCODER, description="Local HF / sentence-transformers folder or bundled alias")]
    pooling: Annotated[Literal["mean", "cls", "last"] | None, Field(
        None, description="Pooling (default: the model folder's, else mean)")]
    normalize: Annotated[bool | None, Field(None, description="L2-normalise embeddings (default: the model folder's)")]
    query_max_length: Annotated[int | None, Field(None, ge=1, description="Max query tokens (default: the model's)")]
    passage_max_length: Annotated[int | None, Field(None, ge=1, description="Max passage tokens (default: the model's)")]
    query_prefix: Annotated[str, Field("", description="Text put before every query")]
    passage_prefix: Annotated[str, Field("", description="Text put before every passage")]
    trust_remote_code: Annotated[bool, Field(False, description="Allow code shipped with the model to run")]
    # loss
    loss: Annotated[str, Field("ws2", description="ws2 | infonce | kl | emd | ranknet | lambdaloss | margin_mse")]
    temperature: Annotated[float, Field(1.0, gt=0, description="Score temperature of the loss")]
    loss_params: Annotated[dict[str, Any], Field(
        default_factory=dict, description="Extra loss parameter KEY=VALUE (repeatable; VALUE read as JSON when it "
        "parses)"), Cli(flag="--loss-param", type=list[str], parse=_loss_params)]
    # optimisation (HF: the TrainingArguments argument each one sets)
    output: Annotated[str, Field(
        description="Output folder: the trained model (sentence-transformers format) and checkpoints"),
        HF("output_dir")]
    batch_size: Annotated[int, Field(16, ge=1, description="Queries per device and micro-batch"),
                          HF("per_device_train_batch_size")]
    lr: Annotated[float, Field(1e-5, gt=0, description="Peak learning rate"), HF("learning_rate")]
    epochs: Annotated[float, Field(1.0, gt=0, description="Epochs"), HF("num_train_epochs")]
    max_steps: Annotated[int | None, Field(
        None, ge=1, description="Stop after N optimizer steps (overrides --epochs)"),
        HF("max_steps", convert=lambda steps: steps or -1, keep_none=True)]
    warmup: Annotated[float, Field(0.05, ge=0, description="Warm-up: a fraction of the steps (< 1) or a step count"),
                      HF("warmup_steps")]
    weight_decay: Annotated[float, Field(0.0, ge=0, description="AdamW weight decay"), HF("weight_decay")]
    lr_scheduler: Annotated[str, Field("linear", description="Learning-rate schedule (transformers' "
                                       "lr_scheduler_type: linear, cosine, constant_with_warmup, ...)"),
                            HF("lr_scheduler_type")]
    optim: Annotated[str, Field("adamw_torch", description="Optimizer (transformers' optim names)"), HF("optim")]
    max_grad_norm: Annotated[float, Field(1.0, description="Gradient clipping norm"), HF("max_grad_norm")]
    grad_accum: Annotated[int, Field(1, ge=1, description="Gradient accumulation steps"),
                          HF("gradient_accumulation_steps")]
    chunk_size: Annotated[int | None, Field(
        None, ge=1, description="GradCache: texts per forward pass (large batches in bounded memory)")]
    forward_batch_size: Annotated[int | None, Field(
        32, ge=1, description="Texts per forward pass (length-sorted, padding cut per pass); None: one pass")]
    bf16: Annotated[bool, Field(False, description="bfloat16 mixed precision"), HF("bf16")]
    fp16: Annotated[bool, Field(False, description="float16 mixed precision (GPU)"), HF("fp16")]
    attention_dropout: Annotated[float | Literal["model"], Field(
        0.0, description="Dropout on attention probabilities while training, in [0, 1), or 'model' for the "
        "model's own (0.1 for MiniLM/BERT). 0 lets torch's fused attention kernel run: faster CPU steps (README, "
        "Training speed); hidden-state dropout stays the model's"), Cli(type=str, parse=_probability_or_model, show_default="0.0")]
    dropout_masks: Annotated[Literal["fast", "torch"], Field(
        "fast", description="How dropout masks are drawn on CPU: 'fast' cuts each 64-bit random word into four "
        "16-bit draws (probability rounded to 1/65536; faster CPU steps: README, Training speed), 'torch' uses "
        "torch's own dropout. GPUs always use torch's")]
    gradient_checkpointing: Annotated[bool, Field(
        False, description="Recompute activations in the backward pass (less memory, slower)"),
        HF("gradient_checkpointing", convert=lambda on: on or None)]
    deepspeed: Annotated[str | None, Field(
        None, description="DeepSpeed JSON config (e.g. configs/deepspeed/zero3.json); run under the "
        "torchrun or deepspeed launcher"), HF("deepspeed")]
    seed: Annotated[int, Field(42, description="Seed for data order, group draws and dropout"),
                    HF("seed", "data_seed")]
    drop_last: Annotated[bool, Field(True, description="Drop the last incomplete batch of an epoch"),
                         HF("dataloader_drop_last")]
    dataloader_workers: Annotated[int, Field(0, ge=0, description="Data-loading worker processes"),
                                  HF("dataloader_num_workers")]
    ddp_find_unused_parameters: Annotated[bool, Field(
        False, description="DDP: look for parameters without gradients every step (slower)"),
        HF("ddp_find_unused_parameters")]
    # bookkeeping
    save_steps: Annotated[int, Field(500, ge=1, description="Checkpoint every N steps"), HF("save_steps")]
    save_total_limit: Annotated[int | None, Field(None, ge=1, description="Keep at most N checkpoints"),
                                HF("save_total_limit")]
    logging_steps: Annotated[int, Field(10, ge=1, description="Log loss and examples/s every N steps"),
                             HF("logging_steps")]
    report_to: Annotated[str | list[str], Field(
        "none", description="none | tensorboard | wandb | mlflow (comma-separated)"),
        Cli(type=str), HF("report_to", convert=_report_to)]
    run_name: Annotated[str | None, Field(None, description="Run name shown by the --report-to services"),
                        HF("run_name")]
    resume: Annotated[bool | str, Field(
        False, description="Resume from the newest checkpoint-N in --output (a config may name a checkpoint "
        "folder instead)"), Cli(type=bool)]
    quiet: Annotated[bool, Field(False, description="No progress bar"), HF("disable_tqdm")]

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if self.bf16 and self.fp16:
            raise ValueError("choose bf16 or fp16, not both")
        if self.attention_dropout != "model" and not 0 <= self.attention_dropout < 1:
            raise ValueError(f"attention_dropout {self.attention_dropout}: must be in [0, 1), or 'model'")
        if self.deepspeed is not None:
            _check_deepspeed_file(Path(self.deepspeed))
            if self.chunk_size:
                # GradCache runs one backward pass per chunk; DeepSpeed's engine takes one per micro-step
                raise ValueError("chunk_size (GradCache) cannot be combined with deepspeed; use grad_accum")
        return self


# Options that may differ between a run and its resume: they change logging, saving, memory use or
# progress display, not what a training step computes.
RESUME_FREE_OPTIONS = frozenset({
    "resume", "quiet", "report_to", "run_name", "logging_steps", "save_steps", "save_total_limit",
    "dataloader_workers", "forward_batch_size", "chunk_size", "gradient_checkpointing",
    "ddp_find_unused_parameters", "output"})
# What a run written before an option existed was trained with (its record lacks the option).
VALUES_BEFORE_OPTION = {"attention_dropout": "model", "dropout_masks": "torch"}
_UNRECORDED = object()


def resume_differences(recorded: dict[str, Any], config: TrainConfig) -> list[str]:
    """The training options of ``config`` that differ from ``recorded`` (the options of the run
    that wrote the checkpoint, as ``synthrank_train.json`` keeps them), as ``name: then -> now``
    lines. Resuming across such a change would continue one run with another's settings."""
    current = config.model_dump(mode="json")
    differences = []
    for name, now in current.items():
        if name in RESUME_FREE_OPTIONS:
            continue
        then = recorded.get(name, VALUES_BEFORE_OPTION.get(name, _UNRECORDED))
        if then is _UNRECORDED:
            log.warning("resume: the checkpoint's run did not record %r (an older synthrank); assuming it matches", name)
            continue
        if name in ("data", "model", "deepspeed") and isinstance(then, str) and isinstance(now, str):
            then, now = _same_path_spelling(then, now)
        if then != now:
            differences.append(f"{name}: {then!r} -> {now!r}")
    return differences


def _same_path_spelling(then: str, now: str) -> tuple[str, str]:
    """Two spellings of one existing path compare equal (relative vs absolute)."""
    try:
        if Path(then).expanduser().resolve() == Path(now).expanduser().resolve():
            return now, now
    except OSError:
        pass
    return then, now


def _check_deepspeed_file(path: Path) -> None:
    """A missing or broken DeepSpeed config fails at load, not inside DeepSpeed after the model loaded."""
    import json

    if not path.is_file():
        raise ValueError(f"deepspeed: {path}: file not found")
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"deepspeed: {path}:{error.lineno}: invalid JSON ({error.msg})") from None
    if not isinstance(settings, dict):
        raise ValueError(f"deepspeed: {path}: expected a JSON object")


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
        for key in ("data", "output", "deepspeed"):
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
