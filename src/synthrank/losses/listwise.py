"""List-wise distribution-matching losses: KL (ListNet-style) and per-query 1-D EMD."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import GradeSoftmaxLoss, Loss, positive, check_inputs, expand_labels, own_block_scores

__all__ = ["KLLoss", "EMDLoss", "grade_level_mass"]


class KLLoss(GradeSoftmaxLoss, alias="kl"):
    """ListNet-style KL divergence between target and predicted list distributions.

    Per query i, over all C columns (in-batch passages *included*, with grade 0
    -- the same expanded targets as ``ws2``, so the two losses are comparable)::

        T_i  = softmax(expand_labels(labels, C)_i / label_temperature)
        P_i  = softmax(scores_i / temperature)
        loss = (1/Q) * sum_i sum_c T_ic * (log T_ic - log P_ic)    # KL(T_i || P_i)

    With ``[Q, G]`` scores the distributions are over the own group only.
    Invariant to adding a constant to a row of scores.

    Args:
        temperature: temperature of the predicted softmax (default 1.0).
        label_temperature: temperature of the target softmax over grades (default 1.0).
    """

    def forward(self, scores: Tensor, labels: Tensor) -> Tensor:
        _, _, c = check_inputs(scores, labels)
        expanded = expand_labels(labels.to(scores.dtype), c)
        log_t = torch.log_softmax(expanded / self.label_temperature, dim=-1)
        log_p = torch.log_softmax(scores / self.temperature, dim=-1)
        kl_rows = (log_t.exp() * (log_t - log_p)).sum(dim=-1)
        return kl_rows.mean()


def grade_level_mass(probs: Tensor, grades: Tensor, num_levels: int) -> Tensor:
    """Aggregate per-passage probabilities ``[Q, G]`` into mass per grade level ``[Q, K]``.

    ``out[i, k] = sum_g probs[i, g] * [grades[i, g] == k]`` for ``k = 0..K-1``.
    """
    one_hot = torch.nn.functional.one_hot(grades, num_levels).to(probs.dtype)  # [Q, G, K]
    return torch.einsum("qg,qgk->qk", probs, one_hot)


class EMDLoss(Loss, alias="emd"):
    """Per-query 1-D earth mover's (Wasserstein-1) distance over ordered grade levels.

    Only each query's own G passages are used (in-batch columns are ignored), so
    this is the per-query counterpart of the batch-level ``ws2``.  For query i::

        p_i      = softmax(s_own_i / temperature)                 # over own G passages
        t_i      = softmax(labels_i / label_temperature)          # reference: raw grades as logits
        P_i(k)   = sum_g p_ig [labels_ig == k],  T_i(k) likewise  # mass per grade level
        EMD_i    = sum_{k=0}^{K-1} |CDF_P_i(k) - CDF_T_i(k)|      # W1 on support 0..K-1
        loss     = (1/Q) * sum_i EMD_i

    with unit distance between adjacent grade levels.  Labels must be
    non-negative integers (ints or integer-valued floats).  Invariant to adding
    a constant to a row of scores.

    Args:
        temperature: temperature of the predicted softmax (default 1.0).
        num_levels: number K of grade levels; ``None`` (default) infers
            ``max(labels) + 1`` from each batch.  Fix it (e.g. 4 for grades 0..3)
            when batches may miss the top grade -- this does not change the
            value (the CDFs agree beyond the largest present grade) but makes
            the level support explicit.
        label_temperature: divides the grades before the target softmax (default 1.0).
    """

    def __init__(self, temperature: float = 1.0, num_levels: int | None = None,
                 label_temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = positive("temperature", temperature)
        self.label_temperature = positive("label_temperature", label_temperature)
        if num_levels is not None and num_levels < 1:
            raise ValueError(f"num_levels must be >= 1 or None, got {num_levels}")
        self.num_levels = num_levels

    def forward(self, scores: Tensor, labels: Tensor) -> Tensor:
        _, g, _ = check_inputs(scores, labels)
        grades = _integer_grades(labels)
        levels = int(grades.max()) + 1 if self.num_levels is None else self.num_levels
        if int(grades.max()) >= levels:
            raise ValueError(
                f"labels contain grade {int(grades.max())} but num_levels={levels}"
            )
        own = own_block_scores(scores, g)
        pred = grade_level_mass(torch.softmax(own / self.temperature, dim=-1), grades, levels)
        target = grade_level_mass(
            torch.softmax(labels.to(own.dtype) / self.label_temperature, dim=-1), grades, levels
        )
        emd_rows = (pred.cumsum(dim=-1) - target.cumsum(dim=-1)).abs().sum(dim=-1)
        return emd_rows.mean()


def _integer_grades(labels: Tensor) -> Tensor:
    """Labels as int64 grade levels; raises if they are negative or not integral."""
    if labels.is_floating_point():
        if not bool(torch.all(labels == labels.round())):
            raise ValueError("emd needs integer grade labels (got non-integral floats)")
    if bool((labels < 0).any()):
        raise ValueError("emd needs non-negative grade labels")
    return labels.long()
