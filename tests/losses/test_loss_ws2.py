"""WS2 (the authors' loss) against an independent numpy/scipy computation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from synthrank.losses import expand_labels, get_loss
from synthrank.losses.ws2 import gaussian_w2_squared


def np_softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def reference_ws2(scores: np.ndarray, labels: np.ndarray, temperature: float = 1.0,
                  label_temperature: float = 1.0) -> float:
    """Direct float64 formula with full D x D covariances and scipy's sqrtm."""
    q, g = labels.shape
    d = scores.shape[1]
    expanded = np.zeros((q, d))
    for i in range(q):
        start = i * g if d == q * g else 0  # [Q, G] scores: own block is 0..G-1
        expanded[i, start : start + g] = labels[i]
    p = np_softmax(scores.astype(np.float64) / temperature)
    t = np_softmax(expanded / label_temperature)
    mu_p, mu_t = p.mean(axis=0), t.mean(axis=0)
    cov_p = np.cov(p, rowvar=False, ddof=1)
    cov_t = np.cov(t, rowvar=False, ddof=1)
    with warnings.catch_warnings():
        # Sigma_P Sigma_T has rank <= Q-1 < D, so it is always singular; scipy warns
        # but the trace of the root is still accurate (checked against SVD to ~1e-7).
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        cross = scipy.linalg.sqrtm(cov_p @ cov_t)
    return float(
        np.sum((mu_p - mu_t) ** 2)
        + np.trace(cov_p)
        + np.trace(cov_t)
        - 2.0 * np.real(np.trace(cross))
    )


def batch(seed: int, q: int, g: int, in_batch: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    scores = 2.0 * torch.randn(q, q * g if in_batch else g, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 4, (q, g), generator=gen)
    return scores, labels


@pytest.mark.parametrize("temperature", [1.0, 0.5])
@pytest.mark.parametrize("q, g", [(4, 3), (8, 4), (2, 5), (5, 2)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_scipy_sqrtm(seed: int, q: int, g: int, temperature: float) -> None:
    scores, labels = batch(seed, q, g)
    got = get_loss("ws2", temperature=temperature)(scores, labels).item()
    want = reference_ws2(scores.numpy(), labels.numpy(), temperature)
    assert want > 0
    assert got == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("temperature, label_temperature", [(0.05, 1.0), (0.05, 0.25), (1.0, 0.5)])
@pytest.mark.parametrize("seed", [0, 1])
def test_score_scale_options_match_scipy(seed: int, temperature: float, label_temperature: float) -> None:
    """Cosine-like scores in [-1, 1] (an L2-normalised encoder) with the score-scale options."""
    scores, labels = batch(seed, 8, 4)
    scores = torch.tanh(scores)
    got = get_loss("ws2", temperature=temperature, label_temperature=label_temperature)(scores, labels).item()
    want = reference_ws2(scores.numpy(), labels.numpy(), temperature, label_temperature)
    assert got == pytest.approx(want, rel=1e-6)


def test_label_temperature_sharpens_targets() -> None:
    """Below 1 the target of a graded row concentrates on its top grade: predictions that put
    all mass on each query's own top passage get closer to the targets."""
    q, g = 6, 4
    labels = torch.tensor([[3, 2, 1, 0]] * q)
    scores = torch.full((q, q * g), -30.0, dtype=torch.float64)
    for i in range(q):
        scores[i, i * g] = 30.0
    loss = {lt: get_loss("ws2", label_temperature=lt)(scores, labels).item() for lt in (1.0, 0.1)}
    assert loss[0.1] < 0.1 * loss[1.0]


def test_default_is_the_reference_formula() -> None:
    scores, labels = batch(9, 5, 3)
    explicit = get_loss("ws2", temperature=1.0, label_temperature=1.0)(scores, labels)
    assert get_loss("ws2")(scores, labels).item() == explicit.item()


@pytest.mark.parametrize("q, g", [(4, 3), (6, 5)])
def test_matches_scipy_on_own_group_scores(q: int, g: int) -> None:
    scores, labels = batch(11, q, g, in_batch=False)
    got = get_loss("ws2")(scores, labels).item()
    assert got == pytest.approx(reference_ws2(scores.numpy(), labels.numpy()), rel=1e-6)


def test_float32_input_computed_in_float64() -> None:
    scores, labels = batch(3, 6, 3)
    got32 = get_loss("ws2")(scores.float(), labels)
    assert got32.dtype == torch.float32
    want = reference_ws2(scores.float().double().numpy(), labels.numpy())
    assert got32.item() == pytest.approx(want, rel=1e-5)


def test_invariant_to_permuting_queries_with_their_blocks() -> None:
    q, g = 5, 3
    scores, labels = batch(4, q, g)
    perm = torch.tensor([3, 0, 4, 2, 1])
    # New query a is old query perm[a]; its block (and every block) moves with it.
    col_perm = (perm.unsqueeze(1) * g + torch.arange(g)).reshape(-1)
    permuted = scores[perm][:, col_perm]
    loss = get_loss("ws2")
    base_value = loss(scores, labels)
    torch.testing.assert_close(loss(permuted, labels[perm]), base_value, rtol=1e-10, atol=1e-14)
    # Sanity: permuting only the rows (breaking the block alignment) changes the value.
    assert not torch.isclose(loss(scores[perm], labels[perm]), base_value, rtol=1e-6)


def test_zero_when_predictions_equal_targets() -> None:
    q, g = 4, 3
    _, labels = batch(5, q, g)
    scores = expand_labels(labels.double(), q * g)  # softmax(scores) == softmax(labels)
    assert abs(get_loss("ws2")(scores, labels).item()) < 1e-12


def test_nonnegative_on_random_inputs() -> None:
    loss = get_loss("ws2")
    for seed in range(10):
        scores, labels = batch(seed, 3 + seed % 4, 2 + seed % 3)
        assert loss(scores, labels).item() > -1e-12


@pytest.mark.parametrize("q", [0, 1])
def test_raises_for_fewer_than_two_queries(q: int) -> None:
    scores, labels = torch.zeros(q, 3), torch.zeros(q, 3)
    with pytest.raises(ValueError, match="Q >= 2"):
        get_loss("ws2")(scores, labels)


def test_gradcheck() -> None:
    scores, labels = batch(8, 3, 2)
    scores.requires_grad_(True)
    loss = get_loss("ws2", temperature=0.7)
    assert torch.autograd.gradcheck(lambda s: loss(s, labels), (scores,))


@pytest.mark.parametrize(
    "scores, labels",
    [
        (torch.zeros(4, 12), torch.zeros(4, 3)),  # all rows identical: M == 0
        (torch.zeros(3, 2), torch.ones(3, 2)),  # [Q, G], identical rows
        (torch.zeros(2, 6), torch.tensor([[3, 0, 0], [3, 0, 0]])),  # Q=2, equal scores
        (torch.randn(4, 4, generator=torch.Generator().manual_seed(0)), torch.full((4, 4), 2.0)),
    ],
)
def test_finite_gradients_at_degenerate_points(scores: torch.Tensor, labels: torch.Tensor) -> None:
    scores = scores.double().requires_grad_(True)
    value = get_loss("ws2")(scores, labels)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(scores.grad).all()


def test_gaussian_w2_is_symmetric_and_matches_trace_identity() -> None:
    gen = torch.Generator().manual_seed(9)
    x = torch.rand(5, 7, generator=gen, dtype=torch.float64)
    y = torch.rand(5, 7, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(gaussian_w2_squared(x, y), gaussian_w2_squared(y, x))
    assert abs(gaussian_w2_squared(x, x).item()) < 1e-12
    with pytest.raises(ValueError):
        gaussian_w2_squared(x[:1], y[:1])
