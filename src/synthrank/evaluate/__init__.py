"""Metrics (ir_measures / pytrec_eval) and the evaluator behind ``synthrank eval``."""

from synthrank.evaluate.evaluator import EvalResult, evaluate_model
from synthrank.evaluate.metrics import DEFAULT_MEASURES, compute_metrics, parse_measures, retrieval_depth

__all__ = ["DEFAULT_MEASURES", "EvalResult", "compute_metrics", "evaluate_model", "parse_measures", "retrieval_depth"]
