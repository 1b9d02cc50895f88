"""RankNet, LambdaRank-weighted loss and MarginMSE against direct loop implementations."""

from __future__ import annotations

import math

import pytest
import torch

from synthrank.losses import get_loss


def batch(seed: int, q: int, g: int, in_batch: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(q, q * g if in_batch else g, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 4, (q, g), generator=gen)
    return scores, labels


def candidates(scores: torch.Tensor, labels: torch.Tensor, i: int, in_batch: bool):
    """(own column indices, candidate column indices, grade of every candidate) for query i."""
    q, g = labels.shape
    c = scores.shape[1]
    start = i * g if c != g else 0
    own = list(range(start, start + g))
    cols = list(range(c)) if (in_batch and c != g) else own
    grade = {col: (labels[i, col - start].item() if col in own else 0) for col in cols}
    return own, cols, grade


def reference_ranknet(scores: torch.Tensor, labels: torch.Tensor, tau: float, in_batch: bool):
    terms = []
    for i in range(labels.shape[0]):
        own, cols, grade = candidates(scores, labels, i, in_batch)
        for a in own:
            for b in cols:
                if grade[a] > grade[b]:
                    terms.append(torch.log1p(torch.exp(-(scores[i, a] - scores[i, b]) / tau)))
    return torch.stack(terms).mean()


def ndcg(order: list[int], grade: dict[int, float]) -> float:
    dcg = sum((2.0 ** grade[col] - 1) / math.log2(2 + pos) for pos, col in enumerate(order))
    ideal = sorted(grade.values(), reverse=True)
    idcg = sum((2.0 ** v - 1) / math.log2(2 + pos) for pos, v in enumerate(ideal))
    return dcg / idcg


def reference_lambdaloss(scores: torch.Tensor, labels: torch.Tensor, tau: float, in_batch: bool):
    per_query = []
    for i in range(labels.shape[0]):
        own, cols, grade = candidates(scores, labels, i, in_batch)
        if max(grade.values()) == 0:
            continue  # no valid pair (and NDCG undefined): query skipped
        # Stable descending sort: ties keep column order.
        order = sorted(cols, key=lambda col: -scores[i, col].item())
        base = ndcg(order, grade)
        terms = []
        for a in own:
            for b in cols:
                if grade[a] > grade[b]:
                    swapped = list(order)
                    pa, pb = swapped.index(a), swapped.index(b)
                    swapped[pa], swapped[pb] = b, a
                    weight = abs(ndcg(swapped, grade) - base)  # literal swap, no formula
                    terms.append(weight * torch.log1p(torch.exp(-(scores[i, a] - scores[i, b]) / tau)))
        if terms:
            per_query.append(torch.stack(terms).sum())
    return torch.stack(per_query).mean()


def reference_margin_mse(scores: torch.Tensor, teacher: torch.Tensor):
    q, g = teacher.shape
    terms = []
    for i in range(q):
        start = i * g if scores.shape[1] != g else 0
        s = scores[i, start : start + g]
        for j in range(1, g):
            terms.append(((s[0] - s[j]) - (teacher[i, 0] - teacher[i, j])) ** 2)
    return torch.stack(terms).mean()


def assert_value_and_grad_match(loss_fn, ref_fn, scores: torch.Tensor) -> None:
    s1 = scores.clone().requires_grad_(True)
    s2 = scores.clone().requires_grad_(True)
    got, want = loss_fn(s1), ref_fn(s2)
    got.backward()
    want.backward()
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(s1.grad, s2.grad, rtol=1e-9, atol=1e-12)


CASES = [(4, 3, True), (4, 3, False), (3, 5, True), (2, 4, True), (3, 4, False)]


@pytest.mark.parametrize("tau", [1.0, 0.5])
@pytest.mark.parametrize("q, g, full", CASES)
@pytest.mark.parametrize("in_batch", [True, False])
def test_ranknet_matches_loop(q: int, g: int, full: bool, in_batch: bool, tau: float) -> None:
    scores, labels = batch(q * 3 + g, q, g, full)
    loss = get_loss("ranknet", temperature=tau, in_batch=in_batch)
    assert_value_and_grad_match(
        lambda s: loss(s, labels), lambda s: reference_ranknet(s, labels, tau, in_batch), scores
    )


@pytest.mark.parametrize("tau", [1.0, 0.5])
@pytest.mark.parametrize("q, g, full", CASES)
@pytest.mark.parametrize("in_batch", [True, False])
def test_lambdaloss_matches_loop(q: int, g: int, full: bool, in_batch: bool, tau: float) -> None:
    scores, labels = batch(q * 5 + g, q, g, full)
    loss = get_loss("lambdaloss", temperature=tau, in_batch=in_batch)
    assert_value_and_grad_match(
        lambda s: loss(s, labels), lambda s: reference_lambdaloss(s, labels, tau, in_batch), scores
    )


def test_lambdaloss_with_tied_scores_matches_loop() -> None:
    scores, labels = batch(9, 3, 4)
    scores = scores.round()  # many exact ties -> tie-breaking by column order
    labels[1] = 0  # a query without any valid pair is skipped
    loss = get_loss("lambdaloss")
    assert_value_and_grad_match(
        lambda s: loss(s, labels), lambda s: reference_lambdaloss(s, labels, 1.0, True), scores
    )


def test_lambdaloss_weights_are_delta_ndcg_of_a_swap() -> None:
    """One misordered pair at ranks 1-2 vs the same pair at ranks 3-4 of a 4-list.

    Every other pair is ordered with a huge margin (its logistic term ~ 0), so
    the loss is |dNDCG| * log(1 + e^{-(-1)}) and the ratio of the two losses is
    the ratio of the discount gaps (1 - 1/log2 3) / (1/log2 4 - 1/log2 5).
    """
    loss = get_loss("lambdaloss", in_batch=False)
    top = loss(torch.tensor([[0.0, 1.0, -100.0, -200.0]], dtype=torch.float64), torch.tensor([[3, 2, 1, 0]]))
    low = loss(torch.tensor([[200.0, 100.0, 0.0, 1.0]], dtype=torch.float64), torch.tensor([[3, 2, 1, 0]]))
    idcg = 7 + 3 / math.log2(3) + 1 / math.log2(4)
    log_term = math.log1p(math.e)
    assert top.item() == pytest.approx((7 - 3) * (1 - 1 / math.log2(3)) / idcg * log_term, rel=1e-9)
    assert low.item() == pytest.approx((1 - 0) * (1 / math.log2(4) - 1 / math.log2(5)) / idcg * log_term, rel=1e-9)
    assert top > low


@pytest.mark.parametrize("name", ["ranknet", "lambdaloss"])
def test_no_valid_pairs_gives_zero_with_zero_grad(name: str) -> None:
    scores = torch.randn(3, 9, requires_grad=True)
    value = get_loss(name)(scores, torch.zeros(3, 3, dtype=torch.long))
    value.backward()
    assert value.item() == 0.0
    assert torch.equal(scores.grad, torch.zeros_like(scores))


def test_ranknet_in_batch_adds_pairs() -> None:
    scores, labels = batch(1, 4, 3)
    with_batch = get_loss("ranknet", in_batch=True)(scores, labels)
    without = get_loss("ranknet", in_batch=False)(scores, labels)
    assert not torch.isclose(with_batch, without)
    changed = scores.clone()
    changed[0, 6:] += 5.0  # in-batch columns of row 0 only
    assert torch.isclose(get_loss("ranknet", in_batch=False)(changed, labels), without)
    assert get_loss("ranknet", in_batch=True)(changed, labels) > with_batch


@pytest.mark.parametrize("q, g, full", [(4, 3, True), (3, 5, False), (2, 2, True)])
def test_margin_mse_matches_loop(q: int, g: int, full: bool) -> None:
    scores, _ = batch(q + g, q, g, full)
    teacher = torch.randn(q, g, generator=torch.Generator().manual_seed(q), dtype=torch.float64)
    loss = get_loss("margin_mse")
    assert_value_and_grad_match(
        lambda s: loss(s, teacher), lambda s: reference_margin_mse(s, teacher), scores
    )


def test_margin_mse_teacher_shift_invariance_and_zero_at_teacher() -> None:
    teacher = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    scores = torch.randn(3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    loss = get_loss("margin_mse")
    shifted = teacher + torch.tensor([[1.0], [-4.0], [9.0]], dtype=torch.float64)
    torch.testing.assert_close(loss(scores, shifted), loss(scores, teacher))
    assert loss(teacher + 2.0, teacher).item() == pytest.approx(0.0, abs=1e-12)


def test_margin_mse_needs_two_passages() -> None:
    with pytest.raises(ValueError, match="G=1"):
        get_loss("margin_mse")(torch.zeros(2, 2), torch.zeros(2, 1))
