"""Metrics (ir_measures / pytrec_eval) and the evaluator behind ``synthrank eval``."""

from synthrank.evaluate.evaluator import EvalResult, evaluate, evaluate_model
from synthrank.evaluate.metrics import DEFAULT_MEASURES, compute_metrics, parse_measures, retrieval_depth
from synthrank.evaluate.options import EvalOptions, EvalSettings

__all__ = ["DEFAULT_MEASURES", "EvalOptions", "EvalResult", "EvalSettings", "compute_metrics", "evaluate",
           "evaluate_model", "parse_measures", "retrieval_depth"]
