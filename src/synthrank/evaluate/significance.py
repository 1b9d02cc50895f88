"""Paired significance tests over per-query scores (scipy's permutation test underneath).

Two systems evaluated on the same queries give paired per-query scores. The paired
randomization test (Fisher; Smucker, Allan & Carterette 2007 recommend it for IR) asks how often
randomly swapping the two systems' scores within each query gives a mean difference at least as
large as the observed one. Settings trained with several seeds are compared on per-query scores
averaged over the seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["paired_randomization_test", "mean_over_seeds", "compare"]


def paired_randomization_test(a: Sequence[float], b: Sequence[float], n_resamples: int = 10_000,
                              seed: int = 0) -> float:
    """Two-sided p-value of mean(a - b) != 0 under the paired randomization test.

    Exact (every one of the 2^n sign assignments) when 2^n <= ``n_resamples``, else Monte Carlo
    with ``n_resamples`` random assignments (scipy counts the observed one, so p > 0)."""
    from scipy.stats import permutation_test

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired scores need two equal-length lists, got {x.shape} and {y.shape}")
    if len(x) == 0:
        raise ValueError("no paired scores")
    if np.allclose(x, y, rtol=0, atol=1e-12):
        return 1.0

    def mean_difference(u, v, axis):
        return np.mean(u - v, axis=axis)

    result = permutation_test((x, y), mean_difference, permutation_type="samples", vectorized=True,
                              n_resamples=n_resamples, alternative="two-sided", random_state=seed)
    return float(min(1.0, result.pvalue))


def mean_over_seeds(per_seed: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per-query scores averaged over seeds (runs of one setting); the queries must agree."""
    if not per_seed:
        raise ValueError("no runs to average")
    queries = set(per_seed[0])
    for run in per_seed[1:]:
        if set(run) != queries:
            raise ValueError("the runs of a setting were evaluated on different queries")
    return {q: float(np.mean([run[q] for run in per_seed])) for q in sorted(queries)}


def compare(system: Mapping[str, float], baseline: Mapping[str, float], n_resamples: int = 10_000,
            seed: int = 0) -> dict:
    """Mean difference and p-value of ``system`` against ``baseline`` on their common queries."""
    queries = sorted(set(system) & set(baseline))
    if not queries:
        raise ValueError("the two systems share no query")
    a = [system[q] for q in queries]
    b = [baseline[q] for q in queries]
    return {"delta": float(np.mean(a) - np.mean(b)), "p_value": paired_randomization_test(a, b, n_resamples, seed),
            "queries": len(queries), "wins": int(sum(x > y for x, y in zip(a, b))),
            "losses": int(sum(x < y for x, y in zip(a, b)))}
