"""Up-front checks of every stage's options, so that ``--dry-run`` (and a real run, before its
first stage) reports a misspelt loss, an unknown ``[train]`` or recipe key with
the config file and section, instead of the stage failing hours later.

Backend-specific ``backend_options`` are the backends' own business and are not checked here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from synthrank.data.config_files import format_location
from synthrank.experiments.config import ExperimentConfig, ExperimentConfigError

# TrainConfig fields the runner fills in when a train stage runs (placeholders here), and where
# a config gives them instead.
_RUNNER_FILLS = {"data": "<recipe.json>", "output": "<stage folder>", "resume": False}
_SET_ELSEWHERE = {"data": "the setting's recipe", "output": "the run folder", "resume": "the runner (it resumes by itself)",
                  "loss": "the setting's loss", "model": "[base] model"}


def _problems_of(error: ValidationError, section_of) -> list[tuple[str, str]]:
    return [(section_of(e["loc"]), e["msg"]) for e in error.errors()]


def stage_option_problems(config: ExperimentConfig) -> list[tuple[str, str]]:
    """``(field, problem)`` for every stage option that would fail when its stage runs."""
    from synthrank.data.recipes import Recipe
    from synthrank.train.config import TrainConfig, make_loss

    problems: list[tuple[str, str]] = []
    # [[generate]] jobs are GenerateOptions: their keys and values were checked when the config was read.
    for index, setting in enumerate(config.settings):
        where = f"settings[{index}]"
        try:
            Recipe.model_validate(setting.recipe)
        except ValidationError as error:
            problems += _problems_of(error, lambda loc: f"{where}.recipe.{format_location(loc)}")
        options: dict[str, Any] = {**config.train, **setting.train, "loss": setting.loss,
                                   "model": config.base.model, **_RUNNER_FILLS}
        if isinstance(options.get("deepspeed"), str) and config.base_dir is not None:
            # named relative to the experiment config, as plan() resolves it
            path = Path(options["deepspeed"]).expanduser()
            options["deepspeed"] = str(path if path.is_absolute() else config.base_dir / path)

        def section(loc, setting=setting, where=where) -> str:
            key = loc[0] if loc else None
            if key == "loss":
                return f"{where}.loss"
            table = f"{where}.train" if key in setting.train else "train"
            return f"{table}.{format_location(loc)}"

        for key in sorted(set(_SET_ELSEWHERE) & (set(config.train) | set(setting.train))):
            problems.append((section((key,)), f"not a [train] option in an experiment: set by {_SET_ELSEWHERE[key]}"))
        try:
            TrainConfig.model_validate(options)
        except ValidationError as error:
            problems += _problems_of(error, section)
        params = options.get("loss_params") or {}
        if not isinstance(params, dict):
            continue  # reported by the validation above
        # the loss is checked even when other options are wrong, so that one run lists both
        loss_options = TrainConfig.model_construct(loss=setting.loss, loss_params=params,
                                                   temperature=options.get("temperature", 1.0))
        try:
            make_loss(loss_options)
        except (ValueError, TypeError) as error:
            bad_params = bool(params) and "parameters" in str(error)
            problems.append((section(("loss_params",)) if bad_params else f"{where}.loss", str(error)))
    return problems


def check_stage_options(config: ExperimentConfig) -> None:
    """Raise :class:`ExperimentConfigError` naming the config file and the first bad field, and
    listing every problem found."""
    problems = list(dict.fromkeys(stage_option_problems(config)))  # a [train] problem shows once, not per setting
    if problems:
        field, problem = problems[0]
        if len(problems) > 1:
            problem += "; also " + "; ".join(f"{where}: {text}" for where, text in problems[1:])
        raise ExperimentConfigError(config.origin, None, field, problem)
