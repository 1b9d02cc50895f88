"""KL (ListNet-style) and per-query EMD against direct loop implementations."""

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


def softmax_list(xs: list[float]) -> list[float]:
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def row_labels(labels: list[list[int]], i: int, num_cols: int) -> list[float]:
    g = len(labels[0])
    start = i * g if num_cols != g else 0
    return [float(labels[i][c - start]) if start <= c < start + g else 0.0 for c in range(num_cols)]


def reference_kl(scores: torch.Tensor, labels: torch.Tensor, tau: float, label_tau: float) -> float:
    s, lab = scores.tolist(), labels.tolist()
    total = 0.0
    for i, row in enumerate(s):
        t = softmax_list([v / label_tau for v in row_labels(lab, i, len(row))])
        p = softmax_list([v / tau for v in row])
        total += sum(ti * math.log(ti / pi) for ti, pi in zip(t, p))
    return total / len(s)


def reference_emd(scores: torch.Tensor, labels: torch.Tensor, tau: float, levels: int,
                  label_tau: float = 1.0) -> float:
    q, g = labels.shape
    s, lab = scores.tolist(), labels.tolist()
    total = 0.0
    for i in range(q):
        start = i * g if len(s[i]) != g else 0
        p = softmax_list([v / tau for v in s[i][start : start + g]])
        t = softmax_list([float(v) / label_tau for v in lab[i]])
        mass_p = [sum(p[j] for j in range(g) if lab[i][j] == k) for k in range(levels)]
        mass_t = [sum(t[j] for j in range(g) if lab[i][j] == k) for k in range(levels)]
        cdf_p = cdf_t = 0.0
        for k in range(levels):
            cdf_p += mass_p[k]
            cdf_t += mass_t[k]
            total += abs(cdf_p - cdf_t)
    return total / q


@pytest.mark.parametrize("tau, label_tau", [(1.0, 1.0), (0.5, 2.0)])
@pytest.mark.parametrize("q, g, in_batch", [(4, 3, True), (3, 5, False), (2, 4, True)])
def test_kl_matches_loop(q: int, g: int, in_batch: bool, tau: float, label_tau: float) -> None:
    scores, labels = batch(q * 10 + g, q, g, in_batch)
    got = get_loss("kl", temperature=tau, label_temperature=label_tau)(scores, labels)
    assert got.item() == pytest.approx(reference_kl(scores, labels, tau, label_tau), rel=1e-10)


def test_kl_uses_in_batch_columns() -> None:
    scores, labels = batch(0, 4, 3)
    loss = get_loss("kl")
    changed = scores.clone()
    changed[0, 5] += 3.0  # column 5 belongs to query 1's block: in-batch for row 0
    assert not torch.isclose(loss(changed, labels), loss(scores, labels))


def test_kl_zero_at_target_and_nonnegative() -> None:
    scores, labels = batch(1, 3, 4, in_batch=False)
    assert abs(get_loss("kl")(labels.double(), labels).item()) < 1e-12
    assert get_loss("kl")(scores, labels).item() > 0


@pytest.mark.parametrize("tau", [1.0, 0.3])
@pytest.mark.parametrize("q, g, in_batch", [(4, 3, True), (3, 6, False), (2, 5, True)])
def test_emd_matches_loop(q: int, g: int, in_batch: bool, tau: float) -> None:
    scores, labels = batch(q * 7 + g, q, g, in_batch)
    levels = int(labels.max()) + 1
    got = get_loss("emd", temperature=tau)(scores, labels)
    assert got.item() == pytest.approx(reference_emd(scores, labels, tau, levels), rel=1e-10)


@pytest.mark.parametrize("tau, label_tau", [(0.05, 0.25), (1.0, 3.0)])
def test_emd_label_temperature_matches_loop(tau: float, label_tau: float) -> None:
    scores, labels = batch(5, 4, 4)
    levels = int(labels.max()) + 1
    got = get_loss("emd", temperature=tau, label_temperature=label_tau)(scores, labels)
    assert got.item() == pytest.approx(reference_emd(scores, labels, tau, levels, label_tau), rel=1e-10)
    default = get_loss("emd", temperature=tau)(scores, labels)
    assert abs(got.item() - default.item()) > 1e-6  # the option changes the targets


def test_emd_num_levels_param() -> None:
    scores, labels = batch(2, 4, 3)
    labels = labels.clamp(max=2)  # top grade 3 missing from this batch
    inferred = get_loss("emd")(scores, labels)
    fixed = get_loss("emd", num_levels=4)(scores, labels)
    torch.testing.assert_close(inferred, fixed)
    assert inferred.item() == pytest.approx(reference_emd(scores, labels, 1.0, 3), rel=1e-10)
    with pytest.raises(ValueError, match="num_levels"):
        get_loss("emd", num_levels=2)(scores, labels)


def test_emd_rejects_non_integer_or_negative_labels() -> None:
    scores = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="integer"):
        get_loss("emd")(scores, torch.tensor([[0.5, 1.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="non-negative"):
        get_loss("emd")(scores, torch.tensor([[-1, 1], [1, 0]]))


def test_emd_ignores_in_batch_and_is_invariant_to_in_group_permutation() -> None:
    q, g = 3, 4
    scores, labels = batch(5, q, g)
    loss = get_loss("emd")
    base = loss(scores, labels)
    changed = scores.clone()
    changed[0, g:] += torch.randn(q * g - g, dtype=torch.float64)  # only in-batch columns
    torch.testing.assert_close(loss(changed, labels), base)
    # Reordering the passages inside each group (scores and labels together).
    perm = torch.tensor([2, 0, 3, 1])
    col_perm = (torch.arange(q).unsqueeze(1) * g + perm).reshape(-1)
    torch.testing.assert_close(loss(scores[:, col_perm], labels[:, perm]), base)


def test_emd_depends_on_grade_order() -> None:
    """Mass misplaced on a far grade costs more than on an adjacent grade (ordered support)."""
    labels = torch.tensor([[3, 2, 0]])
    loss = get_loss("emd")
    near = loss(torch.tensor([[0.0, 5.0, -5.0]]), labels)  # mass on grade 2
    far = loss(torch.tensor([[0.0, -5.0, 5.0]]), labels)  # mass on grade 0
    assert far > near
