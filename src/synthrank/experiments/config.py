"""Experiment configs: which data to generate and mine, which settings to train, where to evaluate.

A config is a TOML (or JSON) file::

    name = "laptop"
    output = "runs/laptop"                 # relative to the current folder

    [base]                                 # the retriever every setting starts from
    model = "all-MiniLM-L6-v2"

    [[generate]]                           # zero or more `synthrank generate` jobs
    name = "scifact-train"
    queries = "scifact"
    split = "train"
    limit = 100

    [[mine]]                               # zero or more `synthrank mine` jobs
    name = "scifact-bm25"
    dataset = "scifact"
    split = "train"
    top_k = 30

    [train]                                # defaults for every setting (TrainConfig fields)
    batch_size = 16

    [[settings]]                           # one trained model each
    name = "ws2-synthetic"
    loss = "ws2"
    recipe = { mode = "graded", group_size = 4, sources = [
        { dataset = "{generate.scifact-train}", split = "train" } ] }

    [eval]                                 # and any option of `synthrank eval` but dataset/model/split
    datasets = [{ dataset = "scifact", split = "test" }]

    [[adapt]]                              # zero or more `synthrank adapt` jobs (a bare corpus)
    name = "scifact-docs"
    corpus = "scifact"
    documents = 500

Inside a setting's recipe, ``{generate.NAME}`` stands for the folder that generation job
writes, ``{adapt.NAME}`` for the training folder that adapt job writes and ``{mine.NAME}`` for
the qrels file that mining job writes. ``{holdout.NAME}`` (in recipes, generation queries and
references, adapt corpora, mining and evaluation datasets) stands for the
folder of a ``[[holdout]]`` job: a dataset whose ``dev`` qrels hold queries set aside for choosing
settings and whose ``train`` qrels hold the rest::

    [[holdout]]
    name = "scifact"
    dataset = "scifact"
    split = "train"
    size = 200                             # SciFact train claims kept for the dev split

A setting with ``seeds = [0, 1, 2]`` is trained (and evaluated) once per seed, as models
``NAME-seed0``, ``NAME-seed1``, ...; the report shows the mean and standard deviation over
seeds and tests the per-query scores averaged over seeds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from synthrank.data.config_files import read_config_file, validate_config
from synthrank.data.errors import DataFormatError
from synthrank.evaluate.options import EvalSettings
from synthrank.experiments.estimates import Estimates
from synthrank.generate.options import GenerateOptions
from synthrank.models.bundled import DEFAULT_ENCODER

PLACEHOLDER = re.compile(r"\{(holdout|generate|mine|adapt)\.([A-Za-z0-9_.\-]+)\}")
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.+\-]*$"


class ExperimentConfigError(DataFormatError):
    """A malformed experiment config; names the file and the field."""


class BaseModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = DEFAULT_ENCODER
    evaluate: bool = Field(True, description="Evaluate the untrained base model too (the table's first row)")


class GenerateJob(GenerateOptions):
    """A ``[[generate]]`` job: the options of ``synthrank generate`` (:class:`GenerateOptions`,
    their single declaration; an unknown key is an error naming it) and a ``name``."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    _given: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_given(cls, data: Any, handler) -> "GenerateJob":
        job = handler(data)
        if isinstance(data, dict):
            job._given = {key: value for key, value in data.items() if key != "name"}
        return job

    def _where(self) -> str:
        return f"[[generate]] {self.name!r}: "

    def arguments(self) -> dict[str, Any]:
        """The options as the config gives them (checked, not converted: a stage's fingerprint
        hashes what the config says, so ``temperature = 1`` stays ``1``), for ``generate()``."""
        return json.loads(json.dumps(self._given, default=str))


class HoldoutJob(BaseModel):
    """A dev split held out of a dataset's judged queries (see :mod:`synthrank.data.splits`)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    dataset: str
    split: str = "train"
    size: int = Field(ge=1)
    seed: int = 0


class AdaptJob(BaseModel):
    """Arguments of :func:`synthrank.generate.adapt.adapt` (``name`` and ``corpus`` required);
    a key that is not one of its arguments is an error naming the key."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=NAME)
    corpus: str

    @model_validator(mode="after")
    def _known_arguments(self) -> "AdaptJob":
        import inspect

        from synthrank.generate.adapt import adapt

        allowed = set(inspect.signature(adapt).parameters) - {"output", "progress", "backend_instance"}
        unknown = sorted(set(self.model_extra or {}) - allowed)
        if unknown:
            raise ValueError(f"unknown adapt option(s) {unknown}; known: {sorted(allowed - {'corpus'})}")
        return self

    def arguments(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if k != "name"}


class MineJob(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    dataset: str
    split: str = "train"
    top_k: int = Field(30, ge=1)
    skip_top: int = Field(0, ge=0)
    grade: int = 0


class Setting(BaseModel):
    """One trained model: a loss, a recipe and TrainConfig overrides."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    loss: str
    recipe: dict[str, Any]
    train: dict[str, Any] = Field(default_factory=dict)
    description: str = ""
    seeds: list[int] | None = Field(None, min_length=1, description="Train once per seed (models NAME-seedN)")
    compare_to: str | None = Field(None, description="Another setting this one is tested against in the report")

    def model_names(self) -> list[tuple[str, int | None]]:
        """(model name, seed) of each model this setting trains."""
        if self.seeds is None:
            return [(self.name, None)]
        return [(f"{self.name}-seed{seed}", seed) for seed in self.seeds]


class EvalSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: str
    split: str = "test"

    @property
    def label(self) -> str:
        return f"{Path(self.dataset).name}/{self.split}"


class EvalSpec(EvalSettings):
    """``[eval]``: the sets every model is evaluated on, and how (any option of ``synthrank eval``
    but dataset, model and split, e.g. ``dtype = "int8"``, ``max_length = 256``)."""

    datasets: list[EvalSet] = Field(min_length=1)


class ExperimentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    output: str | None = None
    description: str = ""
    base: BaseModelSpec = Field(default_factory=BaseModelSpec)
    holdout: list[HoldoutJob] = Field(default_factory=list)
    generate: list[GenerateJob] = Field(default_factory=list)
    adapt: list[AdaptJob] = Field(default_factory=list)
    mine: list[MineJob] = Field(default_factory=list)
    train: dict[str, Any] = Field(default_factory=dict)
    launcher: list[str] | None = Field(
        None, description="Run training in a subprocess under this launcher, e.g. "
        "['torchrun', '--nproc_per_node', '4'] (multi-GPU, DeepSpeed via train.deepspeed); default: in-process")
    settings: list[Setting] = Field(default_factory=list)
    eval: EvalSpec
    estimates: Estimates = Field(default_factory=Estimates)
    # Folder the config came from (relative dataset paths resolve against it); not a field.
    base_dir: Path | None = Field(None, exclude=True)
    origin: str = Field("<config>", exclude=True)

    @model_validator(mode="after")
    def _check_names(self) -> "ExperimentConfig":
        for kind, items in (("holdout", self.holdout), ("generate", self.generate), ("adapt", self.adapt),
                            ("mine", self.mine),
                            ("settings", self.settings)):
            names = [item.name for item in items]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{kind}: duplicate names {duplicates}")
        known = {"holdout": {h.name for h in self.holdout}, "generate": {g.name for g in self.generate},
                 "mine": {m.name for m in self.mine}, "adapt": {a.name for a in self.adapt}}
        # An adapt job may name an earlier one (merge_from: reuse its queries, e.g. to add grounded levels).
        allowed = {"generate": {"holdout"}, "adapt": {"holdout", "adapt"}, "mine": {"holdout"}, "eval": {"holdout"},
                   "settings": {"holdout", "generate", "mine", "adapt"}}
        places = ([("generate", f"generate '{g.name}'", g.arguments()) for g in self.generate]
                  + [("adapt", f"adapt '{a.name}'", a.model_dump()) for a in self.adapt]
                  + [("mine", f"mine '{m.name}'", m.model_dump()) for m in self.mine]
                  + [("settings", f"settings '{s.name}': recipe", s.recipe) for s in self.settings]
                  + [("eval", "eval", self.eval.model_dump())])
        for section, where, payload in places:
            for kind, name in PLACEHOLDER.findall(json.dumps(payload)):
                if kind not in allowed[section]:
                    raise ValueError(f"{where} names {{{kind}.{name}}}, which is not available there")
                if name not in known[kind]:
                    raise ValueError(f"{where} names {{{kind}.{name}}}, but no [[{kind}]] job is called {name!r}")
        for i, job in enumerate(self.adapt):
            earlier = {a.name for a in self.adapt[:i]}
            for kind, name in PLACEHOLDER.findall(json.dumps(job.model_dump())):
                if kind == "adapt" and name not in earlier:
                    raise ValueError(f"adapt '{job.name}' names {{adapt.{name}}}: only an earlier [[adapt]] job can be named")
        setting_names = {s.name for s in self.settings}
        for setting in self.settings:
            if setting.compare_to is not None and setting.compare_to not in setting_names | {"base"}:
                raise ValueError(f"settings '{setting.name}': compare_to {setting.compare_to!r} is no setting")
        return self

    def run_dir(self) -> Path:
        return Path(self.output) if self.output else Path("runs") / self.name

    def setting(self, name: str) -> Setting:
        for setting in self.settings:
            if setting.name == name:
                return setting
        raise ValueError(f"no setting named {name!r}; settings: {[s.name for s in self.settings]}")


def parse_experiment(data: dict, origin: str = "<config>", base_dir: Path | None = None) -> ExperimentConfig:
    config = validate_config(ExperimentConfig, data, origin, ExperimentConfigError)
    config.origin = origin
    config.base_dir = base_dir
    return config


def load_experiment(path: str | Path) -> ExperimentConfig:
    path = Path(path)
    data = read_config_file(path, ExperimentConfigError, "experiment config")
    return parse_experiment(data, str(path), path.parent)
