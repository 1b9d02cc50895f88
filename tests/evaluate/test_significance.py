"""The paired randomization test against cases whose p-values are known exactly."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from synthrank.evaluate.significance import compare, mean_over_seeds, paired_randomization_test


def exact_p(a, b) -> float:
    """Enumerate all 2^n sign flips of the paired differences (two-sided, >= observed)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    observed = abs(d.mean())
    flips = [abs((d * np.array(signs)).mean()) >= observed - 1e-12
             for signs in itertools.product((1, -1), repeat=len(d))]
    return sum(flips) / len(flips)


def test_all_differences_positive_gives_two_over_two_to_the_n() -> None:
    a, b = [0.6, 0.7, 0.8, 0.9, 1.0], [0.5, 0.6, 0.7, 0.8, 0.9]
    assert paired_randomization_test(a, b) == pytest.approx(2 / 32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_full_enumeration(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.random(10)
    b = a - rng.normal(0.1, 0.2, 10)
    assert paired_randomization_test(a, b) == pytest.approx(exact_p(a, b), abs=1e-12)


def test_identical_systems_and_large_effects() -> None:
    rng = np.random.default_rng(3)
    a = rng.random(300)
    assert paired_randomization_test(a, a) == 1.0
    p = paired_randomization_test(a + 0.05 + rng.normal(0, 0.01, 300), a, n_resamples=2000)
    assert p < 0.001
    noise = paired_randomization_test(a + rng.normal(0, 0.2, 300), a, n_resamples=2000)
    assert noise > 0.01


def test_compare_and_mean_over_seeds() -> None:
    runs = [{"q1": 1.0, "q2": 0.0}, {"q1": 0.5, "q2": 1.0}]
    assert mean_over_seeds(runs) == {"q1": 0.75, "q2": 0.5}
    with pytest.raises(ValueError, match="different queries"):
        mean_over_seeds([{"q1": 1.0}, {"q2": 1.0}])
    result = compare({"q1": 0.75, "q2": 0.5, "q3": 0.0}, {"q1": 0.5, "q2": 0.5})
    assert result["queries"] == 2 and result["delta"] == pytest.approx(0.125)
    assert result["wins"] == 1 and result["losses"] == 0 and result["p_value"] == pytest.approx(1.0)
