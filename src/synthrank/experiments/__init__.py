"""Experiments: configs, the staged runner (generate -> mine -> train -> eval), and reports."""

from synthrank.experiments.config import ExperimentConfig, ExperimentConfigError, load_experiment, parse_experiment
from synthrank.experiments.report import write_report
from synthrank.experiments.runner import Runner, Stage, format_plan, plan

__all__ = ["ExperimentConfig", "ExperimentConfigError", "Runner", "Stage", "format_plan", "load_experiment",
           "parse_experiment", "plan", "write_report"]
