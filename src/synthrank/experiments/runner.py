"""Run an experiment as a graph of cached, resumable stages: generate/adapt -> mine -> train -> eval.

Every stage writes into its own folder under the run folder and keeps a ``stage.json`` there
with a fingerprint of its inputs (its spec, the fingerprints of the stages it reads from, and
the synthrank version). A stage whose fingerprint matches a ``done`` record is skipped; one
that was interrupted resumes (generation from its store, training from its last checkpoint);
one whose inputs changed is redone from scratch. A failing stage records why and the stages
that do not depend on it still run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthrank import __version__
from synthrank.utils import atomic_write
from synthrank.experiments.checks import check_stage_options
from synthrank.experiments.config import PLACEHOLDER, ExperimentConfig
from synthrank.experiments.provenance import code_version

log = logging.getLogger(__name__)

BASE = "base"
# The arguments of an [[adapt]] job that name files or folders (relative to the config's folder).
ADAPT_PATHS = ("corpus", "few_shot", "query_prompt", "system_prompt", "grounded_prompt", "merge_from")


@dataclass
class Stage:
    kind: str  # generate | adapt | mine | train | eval
    name: str
    spec: dict[str, Any]
    deps: list[str] = field(default_factory=list)
    output: Path = Path(".")
    fingerprint: str = ""
    estimate_s: float | None = None
    estimate_basis: str = ""  # how the estimate was worked out, or why it is unknown

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def record_path(self) -> Path:
        return self.output / "stage.json"

    def record(self) -> dict | None:
        try:
            return json.loads(self.record_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def status(self) -> str:
        """done | resume (interrupted, same inputs) | stale (inputs changed) | failed | pending."""
        record = self.record()
        if record is None:
            return "pending"
        if record.get("fingerprint") != self.fingerprint:
            return "stale"
        return {"done": "done", "running": "resume", "failed": "failed"}.get(record.get("status"), "pending")


def _fingerprinted_spec(stage: Stage) -> dict[str, Any]:
    """What a stage's fingerprint covers: its spec, with a train stage's options that came after
    runs were recorded spelled by behaviour. Such an option counts at its resolved value (the
    default when not given), and not at all when that value is what runs did before the option
    existed; so a run recorded before it stays done when a config pins the old behaviour, and is
    redone when the config relies on a new default."""
    if stage.kind != "train":
        return stage.spec
    from synthrank.train.config import VALUES_BEFORE_OPTION, TrainConfig

    options = dict(stage.spec["train"])
    for name, before in VALUES_BEFORE_OPTION.items():
        value = options.pop(name, TrainConfig.model_fields[name].default)
        if value != before:
            options[name] = value
    return {**stage.spec, "train": options}


def _hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _absolute(value: str, base_dir: Path | None) -> str:
    """Relative dataset paths in a config resolve against the config's folder, names stay names."""
    if base_dir is None or "/" not in value and not value.startswith("."):
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base_dir / path).resolve())


def _placeholder_deps(payload: Any) -> list[str]:
    """The stages whose outputs ``{kind.NAME}`` placeholders in ``payload`` name."""
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return sorted({f"{kind}/{name}" for kind, name in PLACEHOLDER.findall(text)})


def _eval_label(eval_set) -> str:
    """``scifact-test``; a placeholder dataset ``{holdout.scifact}`` gives ``scifact-dev`` too."""
    return eval_set.label.replace("/", "-").replace("{", "").replace("}", "").replace("holdout.", "")


def plan(config: ExperimentConfig, only: str | None = None) -> list[Stage]:
    """All stages in execution order, with outputs and fingerprints; ``only`` keeps one setting
    (or ``base``) and the stages it needs. Every stage's options are checked first (all stages,
    whatever ``only`` says), and the first problem raises an ExperimentConfigError."""
    check_stage_options(config)
    # absolute, so upstream outputs written into recipes resolve wherever the recipe file lives
    run_dir = config.run_dir().resolve()
    stages: dict[str, Stage] = {}

    def add(stage: Stage) -> Stage:
        stage.output = run_dir / stage.kind / stage.name
        upstream = [stages[d].fingerprint for d in stage.deps]
        stage.fingerprint = _hash({"kind": stage.kind, "spec": _fingerprinted_spec(stage), "deps": upstream,
                                   "version": __version__})
        stages[stage.key] = stage
        return stage

    for job in config.holdout:
        spec = job.model_dump()
        spec["dataset"] = _absolute(spec["dataset"], config.base_dir)
        add(Stage("holdout", job.name, spec))
    for job in config.generate:
        args = job.arguments()
        for key in ("queries", "references"):
            if isinstance(args.get(key), str):
                args[key] = _absolute(args[key], config.base_dir)
        # Fidelity of the generated levels under BM25 and the experiment's base encoder.
        args.setdefault("fidelity", ["bm25", "encoder"])
        args.setdefault("fidelity_encoder", config.base.model)
        add(Stage("generate", job.name, args, _placeholder_deps(args)))
    for job in config.adapt:
        args = job.arguments()
        for key in ADAPT_PATHS:  # files named in the config
            if isinstance(args.get(key), str):
                args[key] = _absolute(args[key], config.base_dir)
            elif isinstance(args.get(key), list):
                args[key] = [_absolute(v, config.base_dir) if isinstance(v, str) else v for v in args[key]]
        add(Stage("adapt", job.name, args, _placeholder_deps(args)))
    for job in config.mine:
        spec = job.model_dump()
        spec["dataset"] = _absolute(spec["dataset"], config.base_dir)
        add(Stage("mine", job.name, spec, _placeholder_deps(spec)))
    models: list[str] = [BASE] if config.base.evaluate else []
    for setting in config.settings:
        deps = _placeholder_deps(setting.recipe)
        for model, seed in setting.model_names():
            train_options = {**config.train, **setting.train}
            if isinstance(train_options.get("deepspeed"), str) and config.base_dir is not None:
                # a DeepSpeed config file is named relative to the experiment config, like its datasets
                path = Path(train_options["deepspeed"]).expanduser()
                train_options["deepspeed"] = str(path if path.is_absolute() else (config.base_dir / path).resolve())
            if seed is not None:
                train_options["seed"] = seed
            spec = {"loss": setting.loss, "recipe": setting.recipe, "train": train_options, "model": config.base.model,
                    "setting": setting.name, "seed": train_options.get("seed")}
            add(Stage("train", model, spec, deps))
            models.append(model)
    for model in models:
        for eval_set in config.eval.datasets:
            dataset = _absolute(eval_set.dataset, config.base_dir)
            # only the settings that differ from the defaults: stages recorded before a setting existed keep
            # their fingerprints
            spec = {"model": model, "dataset": dataset, "split": eval_set.split, "measures": config.eval.measures,
                    **config.eval.given()}
            if model == BASE:
                spec["base_model"] = config.base.model
            deps = ([] if model == BASE else [f"train/{model}"]) + _placeholder_deps(dataset)
            add(Stage("eval", f"{model}@{_eval_label(eval_set)}", spec, deps))
    ordered = list(stages.values())
    if only is not None:
        if only != BASE and only not in {s.name for s in config.settings}:
            raise ValueError(f"--only {only!r}: no such setting; settings: {[BASE] + [s.name for s in config.settings]}")
        wanted: set[str] = set()
        only_models = {BASE} if only == BASE else {m for m, _ in config.setting(only).model_names()}
        roots = [s.key for s in ordered if s.kind == "eval" and s.spec["model"] in only_models]
        roots += [f"train/{m}" for m in only_models if m != BASE]
        stack = list(roots)
        while stack:
            key = stack.pop()
            if key not in wanted:
                wanted.add(key)
                stack.extend(stages[key].deps)
        ordered = [s for s in ordered if s.key in wanted]
    _estimate(config, ordered, stages)
    return ordered


def _estimate(config: ExperimentConfig, ordered: list[Stage], stages: dict[str, Stage]) -> None:
    """Seconds per stage from the config's stated throughputs (for --dry-run); see estimates.py."""
    from synthrank.experiments.estimates import estimate_stages

    estimate_stages(config, ordered)


@dataclass
class StageOutcome:
    stage: Stage
    status: str  # done | cached | failed | skipped
    seconds: float = 0.0
    error: str | None = None


def _write_record(stage: Stage, **fields) -> None:
    stage.output.mkdir(parents=True, exist_ok=True)
    record = {"stage": stage.key, "fingerprint": stage.fingerprint, "spec": stage.spec, **fields}
    with atomic_write(stage.record_path) as handle:
        handle.write(json.dumps(record, indent=2, default=str) + "\n")


def shown_status(record: dict, now: float | None = None) -> str:
    """A stage record's status for people: a "running" record whose heartbeat stopped (three
    intervals and a minute without a beat) was killed, and says so; records written before
    heartbeats were timed say they may be either."""
    status = record.get("status", "?")
    if status == "failed":
        return f"failed: {record.get('error', '')}"
    if status != "running":
        return status
    beat_at, interval = record.get("beat_at"), record.get("beat_interval")
    if not isinstance(beat_at, (int, float)) or not isinstance(interval, (int, float)):
        return "running or interrupted"
    silent = (time.time() if now is None else now) - beat_at
    if silent > 3 * interval + 60:
        return f"interrupted (no heartbeat for {silent / 60:.0f} min; the next run resumes it)"
    return "running"


def fill_placeholders(value: str, outputs: dict[str, Path], base_dir: Path | None) -> str:
    """``{generate.X}`` / ``{holdout.X}`` -> that stage's folder, ``{mine.X}`` -> its qrels file;
    other relative paths made absolute against the config's folder."""
    def repl(match):
        kind, name = match.groups()
        target = outputs[f"{kind}/{name}"]
        return str(target / "qrels" / "train.tsv") if kind == "mine" else str(target)
    replaced = PLACEHOLDER.sub(repl, value)
    return replaced if replaced != value else _absolute(value, base_dir)


def substitute(recipe: dict, outputs: dict[str, Path], base_dir: Path | None) -> dict:
    """Fill the placeholders of a recipe's sources (see :func:`fill_placeholders`)."""
    def fill(value: str) -> str:
        return fill_placeholders(value, outputs, base_dir)

    recipe = json.loads(json.dumps(recipe))
    for source in recipe.get("sources", []):
        for key in ("dataset", "qrels", "queries"):
            if isinstance(source.get(key), str):
                source[key] = fill(source[key])
    return recipe


class _Heartbeat:
    """Rewrites a running stage's record every ``interval`` seconds with the time spent so far,
    so that a stage killed mid-way still counts that time when it resumes."""

    def __init__(self, stage: Stage, previous: float, started: str, interval: float = 30.0):
        self.stage, self.previous, self.started, self.interval = stage, previous, started, interval
        self.start = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat:{stage.key}", daemon=True)

    def elapsed(self) -> float:
        return self.previous + time.perf_counter() - self.start

    def _write(self, seconds: float) -> None:
        # beat_at (epoch seconds) and the interval let a reader tell a live stage from a killed one
        _write_record(self.stage, status="running", started=self.started, seconds=seconds, beat_at=time.time(),
                      beat_interval=self.interval)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            self._write(round(self.elapsed(), 2))

    def __enter__(self) -> "_Heartbeat":
        self._write(self.previous)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class Runner:
    heartbeat_interval = 30.0

    def __init__(self, config: ExperimentConfig, show_progress: bool = True,
                 echo: Callable[[str], None] = print):
        self.config = config
        self.show_progress = show_progress
        self.echo = echo

    def run(self, only: str | None = None) -> list[StageOutcome]:
        stages = plan(self.config, only)
        run_dir = self.config.run_dir()
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(run_dir / "experiment.json") as handle:
            handle.write(json.dumps(self.config.model_dump(mode="json"), indent=2) + "\n")
        outputs = {s.key: s.output for s in stages}
        outcomes: dict[str, StageOutcome] = {}
        for stage in stages:
            blocked = [d for d in stage.deps if outcomes.get(d) and outcomes[d].status in ("failed", "skipped")]
            if blocked:
                outcomes[stage.key] = StageOutcome(stage, "skipped", error=f"needs {', '.join(blocked)}, which did not finish")
                self.echo(f"[skip] {stage.key}: {outcomes[stage.key].error}")
                continue
            status = stage.status()
            if status == "done":
                outcomes[stage.key] = StageOutcome(stage, "cached", stage.record().get("seconds", 0.0))
                self.echo(f"[done] {stage.key} (cached)")
                continue
            if status == "stale" and stage.output.exists():
                shutil.rmtree(stage.output)  # inputs changed: nothing in there may be reused
            verb = "resume" if status == "resume" else "run"
            self.echo(f"[{verb}] {stage.key}")
            previous = (stage.record() or {}).get("seconds", 0.0) if status == "resume" else 0.0
            heartbeat = _Heartbeat(stage, previous, time.strftime("%Y-%m-%dT%H:%M:%S"), self.heartbeat_interval)
            try:
                with heartbeat:
                    details = getattr(self, f"_run_{stage.kind}")(stage, outputs)
            except Exception as error:  # a failed stage is recorded; independent stages go on
                seconds = heartbeat.elapsed()
                reason = f"{type(error).__name__}: {error}"
                (stage.output / "error.log").write_text(traceback.format_exc())
                _write_record(stage, status="failed", error=reason, seconds=round(seconds, 2))
                outcomes[stage.key] = StageOutcome(stage, "failed", seconds, reason)
                self.echo(f"[fail] {stage.key}: {reason} (details in {stage.output / 'error.log'})")
                continue
            seconds = heartbeat.elapsed()
            _write_record(stage, status="done", finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
                          seconds=round(seconds, 2), details=details, code=code_version())
            outcomes[stage.key] = StageOutcome(stage, "done", seconds)
        return list(outcomes.values())

    # -- stages -------------------------------------------------------------------------------

    def _fill(self, value, outputs):
        return fill_placeholders(value, outputs, self.config.base_dir) if isinstance(value, str) else value

    def _run_holdout(self, stage: Stage, outputs) -> dict:
        from synthrank.data import resolve_dataset
        from synthrank.data.splits import make_holdout

        spec = stage.spec
        counts = make_holdout(resolve_dataset(spec["dataset"]), spec["split"], spec["size"], spec["seed"], stage.output)
        return {"counts": counts, "folder": str(stage.output)}

    def _run_generate(self, stage: Stage, outputs) -> dict:
        from synthrank.generate.api import generate

        args = {key: self._fill(value, outputs) for key, value in stage.spec.items()}
        result = generate(output=stage.output, progress=self.show_progress, **args)
        return {"counts": result.manifest.get("counts"), "fidelity": result.manifest.get("fidelity"),
                "manifest": str(stage.output / "manifest.json")}

    def _run_adapt(self, stage: Stage, outputs) -> dict:
        from synthrank.generate.adapt import adapt

        # Only the arguments that name files or folders take placeholders (a style is free text).
        args = dict(stage.spec)
        for key in ADAPT_PATHS:
            if isinstance(args.get(key), list):
                args[key] = [self._fill(value, outputs) for value in args[key]]
            elif key in args:
                args[key] = self._fill(args[key], outputs)
        result = adapt(output=stage.output, progress=self.show_progress, **args)
        manifest = result.manifest
        return {"filter": manifest["filter"], "contexts": manifest["contexts"],
                "manifest": str(stage.output / "manifest.json")}

    def _run_mine(self, stage: Stage, outputs) -> dict:
        from synthrank.retrieval.mining import mine_negatives, write_mined

        spec = stage.spec
        result = mine_negatives(self._fill(spec["dataset"], outputs), spec["split"], top_k=spec["top_k"],
                                skip_top=spec["skip_top"], show_progress=self.show_progress)
        path = write_mined(result, stage.output, grade=spec["grade"])
        return {"qrels": str(path), **result.stats}

    def _run_train(self, stage: Stage, outputs) -> dict:
        from synthrank.train.config import load_train_config
        from synthrank.train.trainer import last_complete_checkpoint, train

        recipe = substitute(stage.spec["recipe"], outputs, self.config.base_dir)
        recipe_path = stage.output / "recipe.json"
        with atomic_write(recipe_path) as handle:
            handle.write(json.dumps(recipe, indent=2) + "\n")
        model_dir = stage.output / "model"
        resume = last_complete_checkpoint(model_dir) is not None
        overrides = {**stage.spec["train"], "data": str(recipe_path), "loss": stage.spec["loss"],
                     "model": stage.spec["model"], "output": str(model_dir), "resume": resume,
                     "quiet": not self.show_progress}
        # validates before anything is launched; errors name the experiment config and setting
        config = load_train_config(None, overrides, origin=f"{self.config.origin} [settings '{stage.name}']")
        if self.config.launcher:
            return self._launch_train(stage, config, model_dir, resume)
        result = train(config)
        return {"global_step": result.global_step, "train_loss": result.train_loss, "first_loss": result.first_loss,
                "resumed": resume, "model": str(model_dir)}

    def _launch_train(self, stage: Stage, config, model_dir: Path, resume: bool) -> dict:
        """Multi-process training: the launcher (torchrun, deepspeed, ...) runs ``synthrank train``."""
        import subprocess
        import sys

        config_path = stage.output / "train_config.json"
        with atomic_write(config_path) as handle:
            handle.write(config.model_dump_json(indent=2) + "\n")
        launcher = list(self.config.launcher)
        program = Path(launcher[0]).name
        if program in ("torchrun", "python", "python3"):
            module = ["-m", "synthrank"]
        elif program == "deepspeed":  # its launcher runs `python -u SCRIPT`; --module makes that `python -m`
            module = ["--module", "synthrank"]
        else:
            module = [sys.executable, "-m", "synthrank"]
        command = launcher + module + ["train", "--config", str(config_path)]
        self.echo("  $ " + " ".join(command))
        subprocess.run(command, check=True)
        return {"launcher": launcher, "resumed": resume, "model": str(model_dir)}

    def _run_eval(self, stage: Stage, outputs) -> dict:
        from synthrank.evaluate import EvalOptions, evaluate

        spec = stage.spec
        model = spec["base_model"] if spec["model"] == BASE else str(outputs[f"train/{spec['model']}"] / "model")
        settings = {key: value for key, value in spec.items() if key not in ("model", "base_model", "dataset")}
        options = EvalOptions(model=model, dataset=self._fill(spec["dataset"], outputs), **settings)
        result = evaluate(options, show_progress=self.show_progress)
        with atomic_write(stage.output / "result.json") as handle:
            handle.write(json.dumps(result.to_json(), indent=2) + "\n")
        return {"metrics": result.metrics, "num_queries": result.num_queries}


def format_plan(stages: list[Stage], estimates=None) -> str:
    """The --dry-run table: each stage, its status, its estimated cost and how it was worked
    out; the total names the stages without an estimate instead of counting them as zero."""
    lines = []
    if estimates is not None:
        lines += ["estimates from these throughputs (override them in the config's [estimates]):",
                  *estimates.lines(), ""]
    lines.append(f"{'stage':48s} {'status':8s} {'estimate':>10s}")
    total = 0.0
    unknown = []
    for stage in stages:
        status = stage.status()
        if status == "done":
            shown = "cached"
        elif stage.estimate_s is None:
            shown = "unknown"
            unknown.append(stage.key)
        else:
            shown = _duration(stage.estimate_s)
            total += stage.estimate_s
        lines.append(f"{stage.key:48s} {status:8s} {shown:>10s}")
        if status != "done" and stage.estimate_basis:
            lines.append(f"    {stage.estimate_basis}")
    if unknown:
        lines.append(f"{'total (not yet done)':48s} {'':8s} {'>= ' + _duration(total):>10s}")
        lines.append(f"    plus {len(unknown)} stage(s) without an estimate: {', '.join(unknown)}")
    else:
        lines.append(f"{'total (not yet done)':48s} {'':8s} {_duration(total):>10s}")
    return "\n".join(lines)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
