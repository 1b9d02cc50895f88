"""Pairwise losses: RankNet, LambdaRank-weighted logistic loss, MarginMSE."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.functional import softplus

from .base import Loss, positive, check_inputs, expand_labels, own_block_scores, zero_loss

__all__ = ["RankNetLoss", "LambdaLoss", "MarginMSELoss", "candidate_pairs"]


def candidate_pairs(
    scores: Tensor, labels: Tensor, in_batch: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Candidate list per query for pairwise losses.

    Returns ``(cand_scores [Q, K], cand_labels [Q, K], own_scores [Q, G],
    pair_mask [Q, G, K])`` where the candidates are all C columns (other
    queries' passages with grade 0) if ``in_batch`` and scores are ``[Q, Q*G]``,
    otherwise the own group (K = G).  ``pair_mask[q, i, j]`` is True when own
    passage i is strictly better graded than candidate j.  The higher-graded
    item of a pair is always an own passage: with non-negative grades an
    in-batch passage (grade 0) can only be the lower item.
    """
    _, g, c = check_inputs(scores, labels)
    labels = labels.to(scores.dtype)
    own_scores = own_block_scores(scores, g)
    if in_batch and c != g:
        cand_scores, cand_labels = scores, expand_labels(labels, c)
    else:
        cand_scores, cand_labels = own_scores, labels
    pair_mask = labels.unsqueeze(-1) > cand_labels.unsqueeze(-2)
    return cand_scores, cand_labels, own_scores, pair_mask


def _pair_logistic(own_scores: Tensor, cand_scores: Tensor, temperature: float) -> Tensor:
    """``log(1 + exp(-(s_i - s_j) / tau))`` for all (own i, candidate j): ``[Q, G, K]``."""
    diff = own_scores.unsqueeze(-1) - cand_scores.unsqueeze(-2)
    return softplus(-diff / temperature)


class _PairwiseLoss(Loss):
    """Shared hyper-parameters of the pairwise losses (not registered: no alias)."""

    def __init__(self, temperature: float = 1.0, in_batch: bool = True) -> None:
        super().__init__()
        self.temperature = positive("temperature", temperature)
        self.in_batch = bool(in_batch)


class RankNetLoss(_PairwiseLoss, alias="ranknet"):
    """RankNet pairwise logistic loss.

    Over the set Pairs of all (query q, own passage i, candidate j) with
    ``label_i > label_j``::

        loss = (1/|Pairs|) * sum_{(q,i,j) in Pairs} log(1 + exp(-(s_qi - s_qj) / temperature))

    i.e. the mean over all valid pairs of the batch (not per query).  With
    ``in_batch=True`` (default) and ``[Q, Q*G]`` scores, the candidates j also
    include the other queries' passages as grade 0 (labels are assumed
    non-negative, so in-batch passages only act as negatives); with
    ``in_batch=False`` or ``[Q, G]`` scores only own-group pairs are used.  If
    there are no valid pairs (e.g. all labels tied) the loss is ``0 * scores.sum()``.
    Invariant to adding a constant to a row of scores.

    Args:
        temperature: scale ``tau`` of the score differences (default 1.0).
        in_batch: also pair own passages with other queries' passages (default True).
    """

    def forward(self, scores: Tensor, labels: Tensor) -> Tensor:
        cand_scores, _, own_scores, pair_mask = candidate_pairs(scores, labels, self.in_batch)
        if not bool(pair_mask.any()):
            return zero_loss(scores)
        pair_loss = _pair_logistic(own_scores, cand_scores, self.temperature)
        return pair_loss[pair_mask].mean()


def _ranks(scores: Tensor) -> Tensor:
    """1-based rank of every column under a descending sort; ties keep column order."""
    order = torch.argsort(scores, dim=-1, descending=True, stable=True)
    positions = torch.arange(1, scores.shape[-1] + 1, device=scores.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, positions)


class LambdaLoss(_PairwiseLoss, alias="lambdaloss"):
    """LambdaRank-weighted pairwise logistic loss (|Delta NDCG| weights).

    Per query q with candidate list K (own group, plus other queries' passages
    as grade 0 if ``in_batch``), current 1-based ranks ``r_j`` by descending
    score (ties broken by column order), gains ``G_j = 2^{l_j} - 1`` and
    discounts ``D_j = 1 / log2(1 + r_j)``::

        IDCG_q        = sum_{k=1}^{|K|} G_(k) / log2(1 + k)      (gains sorted descending)
        |dNDCG_qij|   = |G_i - G_j| * |D_i - D_j| / IDCG_q       # NDCG change if i, j swap
        loss_q        = sum_{i own, j in K, l_i > l_j} |dNDCG_qij| * log(1 + exp(-(s_i - s_j) / tau))
        loss          = mean of loss_q over queries with at least one valid pair

    The weights are computed without gradient (standard LambdaRank: they only
    rescale the RankNet gradients).  Queries with no valid pair are skipped;
    if none has one the loss is ``0 * scores.sum()``.  Invariant to adding a
    constant to a row of scores.

    Args:
        temperature: scale ``tau`` of the score differences (default 1.0).
        in_batch: rank own passages among the in-batch passages too (grade 0;
            default True, matching ``ranknet``).
    """

    def forward(self, scores: Tensor, labels: Tensor) -> Tensor:
        cand_scores, cand_labels, own_scores, pair_mask = candidate_pairs(
            scores, labels, self.in_batch
        )
        has_pair = pair_mask.flatten(1).any(dim=-1)
        if not bool(has_pair.any()):
            return zero_loss(scores)
        weights = _delta_ndcg(cand_scores.detach(), cand_labels, own_scores.shape[-1])
        pair_loss = _pair_logistic(own_scores, cand_scores, self.temperature)
        # torch.where, not multiplication, so that no invalid pair can leak a NaN.
        per_query = torch.where(pair_mask, weights * pair_loss, 0.0).flatten(1).sum(dim=-1)
        return per_query[has_pair].mean()


def _delta_ndcg(cand_scores: Tensor, cand_labels: Tensor, group_size: int) -> Tensor:
    """``|Delta NDCG|`` of swapping own passage i with candidate j: ``[Q, G, K]``."""
    k = cand_scores.shape[-1]
    gains = torch.pow(2.0, cand_labels) - 1.0
    discounts = 1.0 / torch.log2(1.0 + _ranks(cand_scores).to(gains.dtype))
    ideal_discounts = 1.0 / torch.log2(
        torch.arange(2, k + 2, device=gains.device, dtype=gains.dtype)
    )
    idcg = (gains.sort(dim=-1, descending=True).values * ideal_discounts).sum(dim=-1)
    # Own passages are the first/only block (K == G) or the diagonal block.
    own_gains = own_block_scores(gains, group_size)
    own_discounts = own_block_scores(discounts, group_size)
    delta = (own_gains.unsqueeze(-1) - gains.unsqueeze(-2)).abs() * (
        own_discounts.unsqueeze(-1) - discounts.unsqueeze(-2)
    ).abs()
    # IDCG == 0 only when all gains are 0, in which case there are no valid pairs.
    return delta / idcg.clamp_min(torch.finfo(gains.dtype).tiny).view(-1, 1, 1)


class MarginMSELoss(Loss, alias="margin_mse"):
    """MarginMSE distillation (Hofstaetter et al., 2020) on own-group scores.

    Here ``labels`` are float *teacher scores* ``t`` of shape ``[Q, G]`` and the
    first passage of each group is the anchor (conventionally the positive)::

        loss = (1 / (Q (G-1))) * sum_q sum_{j=1}^{G-1} ((s_q0 - s_qj) - (t_q0 - t_qj))^2

    Only the own-group columns of ``scores`` are used (in-batch columns are
    ignored).  Needs G >= 2.  Invariant to adding a constant to a row of
    scores or of teacher scores.
    """

    def forward(self, scores: Tensor, labels: Tensor) -> Tensor:
        _, g, _ = check_inputs(scores, labels)
        if g < 2:
            raise ValueError(f"margin_mse needs at least 2 passages per query, got G={g}")
        own = own_block_scores(scores, g)
        teacher = labels.to(own.dtype)
        student_margin = own[:, :1] - own[:, 1:]
        teacher_margin = teacher[:, :1] - teacher[:, 1:]
        return (student_margin - teacher_margin).pow(2).mean()
