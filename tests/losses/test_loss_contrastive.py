"""InfoNCE against a direct loop implementation."""

from __future__ import annotations

import math

import pytest
import torch

from synthrank.losses import get_loss


def reference_infonce(scores: torch.Tensor, labels: torch.Tensor, tau: float, thr: float) -> float:
    q, g = labels.shape
    rows = []
    for i in range(q):
        row = [v / tau for v in scores[i].tolist()]
        log_z = math.log(sum(math.exp(v) for v in row))
        start = i * g if len(row) != g else 0
        pos = [start + j for j in range(g) if labels[i, j].item() >= thr]
        if pos:
            rows.append(-sum(row[c] - log_z for c in pos) / len(pos))
    return sum(rows) / len(rows)


@pytest.mark.parametrize("tau, thr", [(1.0, 1), (0.05, 2), (0.5, 3)])
@pytest.mark.parametrize("q, g, in_batch", [(4, 3, True), (3, 4, False), (2, 2, True)])
def test_matches_loop(q: int, g: int, in_batch: bool, tau: float, thr: float) -> None:
    gen = torch.Generator().manual_seed(q + g)
    scores = torch.randn(q, q * g if in_batch else g, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 4, (q, g), generator=gen)
    labels[0, 0] = 3  # at least one positive for every threshold
    got = get_loss("infonce", temperature=tau, positive_threshold=thr)(scores, labels)
    assert got.item() == pytest.approx(reference_infonce(scores, labels, tau, thr), rel=1e-10)


def test_single_positive_equals_cross_entropy() -> None:
    q, g = 4, 3
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(q, q * g, generator=gen, dtype=torch.float64)
    labels = torch.zeros(q, g, dtype=torch.long)
    labels[:, 0] = 1  # the classic DPR layout: positive first in each group
    expected = torch.nn.functional.cross_entropy(scores, torch.arange(q) * g)
    torch.testing.assert_close(get_loss("infonce")(scores, labels), expected)


def test_rows_without_positive_are_skipped() -> None:
    scores = torch.randn(3, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    labels = torch.tensor([[1, 0], [0, 0], [0, 1]])
    full = get_loss("infonce")(scores, labels)
    expected = reference_infonce(scores, labels, 1.0, 1)
    assert full.item() == pytest.approx(expected, rel=1e-12)


def test_no_positive_at_all_gives_zero_with_zero_grad() -> None:
    scores = torch.randn(3, 6, requires_grad=True)
    value = get_loss("infonce")(scores, torch.zeros(3, 2))
    value.backward()
    assert value.item() == 0.0
    assert torch.equal(scores.grad, torch.zeros_like(scores))


def test_threshold_zero_does_not_count_other_queries_passages() -> None:
    scores = torch.randn(2, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    labels = torch.zeros(2, 2)
    got = get_loss("infonce", positive_threshold=0)(scores, labels)
    assert got.item() == pytest.approx(reference_infonce(scores, labels, 1.0, 0), rel=1e-12)


def test_handles_masked_out_columns() -> None:
    """-inf scores (e.g. masked duplicates) in non-positive columns keep value and grads finite."""
    scores = torch.randn(2, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    scores[0, 4] = float("-inf")
    scores.requires_grad_(True)
    value = get_loss("infonce")(scores, torch.tensor([[1, 0, 0], [0, 2, 0]]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(scores.grad).all()
