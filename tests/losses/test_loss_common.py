"""Properties every registered loss must have: finiteness, invariance, direction, shapes."""

from __future__ import annotations

import pytest
import torch

from synthrank.losses import available_losses, expand_labels, get_loss
from synthrank.losses.base import own_block_scores

ALL = available_losses()


def make_batch(
    seed: int, q: int, g: int, *, in_batch: bool = True, levels: int = 4,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(q, q * g if in_batch else g, generator=gen, dtype=dtype)
    labels = torch.randint(0, levels, (q, g), generator=gen)
    return scores, labels


def as_labels(name: str, labels: torch.Tensor) -> torch.Tensor:
    # margin_mse takes float teacher scores instead of grades.
    return labels.float() if name == "margin_mse" else labels


EDGE_CASES = ["random", "q2", "tied_labels", "equal_scores", "all_zero_labels", "binary", "own_only"]


def edge_batch(case: str) -> tuple[torch.Tensor, torch.Tensor]:
    q, g = (2, 3) if case == "q2" else (4, 3)
    scores, labels = make_batch(7, q, g, in_batch=case != "own_only")
    if case == "tied_labels":
        labels = torch.full_like(labels, 2)
    elif case == "equal_scores":
        scores = torch.zeros_like(scores)
    elif case == "all_zero_labels":
        labels = torch.zeros_like(labels)
        scores = torch.zeros_like(scores)  # fully degenerate: identical rows everywhere
    elif case == "binary":
        labels = (labels > 1).long()
    return scores, labels


@pytest.mark.parametrize("case", EDGE_CASES)
@pytest.mark.parametrize("name", ALL)
def test_finite_value_and_gradients(name: str, case: str) -> None:
    scores, labels = edge_batch(case)
    scores.requires_grad_(True)
    value = get_loss(name)(scores, as_labels(name, labels))
    assert value.dim() == 0
    assert value.dtype == scores.dtype
    assert torch.isfinite(value)
    value.backward()
    assert scores.grad is not None
    assert torch.isfinite(scores.grad).all()


@pytest.mark.parametrize("name", ALL)
def test_float_labels_equal_int_labels(name: str) -> None:
    scores, labels = make_batch(3, 4, 3)
    loss = get_loss(name)
    torch.testing.assert_close(loss(scores, labels), loss(scores, labels.float()))


@pytest.mark.parametrize("name", ALL)
def test_invariant_to_row_constant_shift(name: str) -> None:
    scores, labels = make_batch(1, 5, 3, dtype=torch.float64)
    shift = torch.tensor([[0.0], [3.0], [-2.5], [10.0], [0.7]], dtype=torch.float64)
    loss = get_loss(name)
    torch.testing.assert_close(
        loss(scores + shift, as_labels(name, labels)),
        loss(scores, as_labels(name, labels)),
        rtol=1e-9, atol=1e-12,
    )


@pytest.mark.parametrize("in_batch", [True, False])
@pytest.mark.parametrize("name", ALL)
def test_lower_when_scores_agree_with_labels(name: str, in_batch: bool) -> None:
    q, g = 4, 4
    _, labels = make_batch(2, q, g)
    # Each query gets distinct grades so every list has a clear order.
    labels = torch.stack([torch.randperm(g, generator=torch.Generator().manual_seed(i)) for i in range(q)])
    target = labels.double() if name == "margin_mse" else labels
    aligned = expand_labels(labels.double(), q * g) if in_batch else labels.double()
    loss = get_loss(name)
    good = loss(aligned, target)
    bad = loss(-aligned, target)
    assert good < bad
    assert bad - good > 1e-3


@pytest.mark.parametrize("name", ALL)
def test_accepts_own_group_scores(name: str) -> None:
    scores, labels = make_batch(4, 3, 5, in_batch=False)
    value = get_loss(name)(scores, as_labels(name, labels))
    assert value.dim() == 0 and torch.isfinite(value)


@pytest.mark.parametrize(
    "name, params",
    [("emd", {}), ("margin_mse", {}), ("ranknet", {"in_batch": False}), ("lambdaloss", {"in_batch": False})],
)
def test_own_group_losses_ignore_in_batch_columns(name: str, params: dict) -> None:
    """Losses that only use the own group give the same value on [Q, Q*G] and [Q, G]."""
    scores, labels = make_batch(5, 4, 3)
    loss = get_loss(name, **params)
    full = loss(scores, as_labels(name, labels))
    own = loss(own_block_scores(scores, 3), as_labels(name, labels))
    torch.testing.assert_close(full, own)


@pytest.mark.parametrize("name", ALL)
def test_float64_preserved(name: str) -> None:
    scores, labels = make_batch(6, 3, 2, dtype=torch.float64)
    assert get_loss(name)(scores, as_labels(name, labels)).dtype == torch.float64
