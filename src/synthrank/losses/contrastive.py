"""InfoNCE contrastive loss with in-batch negatives."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Loss, positive, check_inputs, own_block_mask, expand_labels, zero_loss

__all__ = ["InfoNCELoss"]


class InfoNCELoss(Loss, alias="infonce"):
    """InfoNCE / softmax cross-entropy over all columns, averaged over positives.

    Positives of query i are its own passages with ``label >= positive_threshold``.
    With ``log p_ic = log_softmax(scores_i / temperature)_c`` over *all* C columns
    (own group plus in-batch passages; other positives of the same query stay in
    the denominator)::

        loss_i = -(1 / |Pos_i|) * sum_{c in Pos_i} log p_ic
        loss   = mean of loss_i over the rows with |Pos_i| > 0

    Rows without a positive are skipped; if no row has one the loss is
    ``0 * scores.sum()`` (zero with finite, zero gradients).  With ``[Q, G]``
    scores the denominator is the query's own group only.  Invariant to adding
    a constant to a row of scores.

    Args:
        temperature: softmax temperature (default 1.0, the method's default; the
            common 0.05 of dense-retrieval papers must be passed explicitly).
        positive_threshold: minimum grade of a positive (default 1, i.e. binary
            labels work as-is; use e.g. 2 for graded labels 0..3).
    """

    def __init__(self, temperature: float = 1.0, positive_threshold: float = 1) -> None:
        super().__init__()
        self.temperature = positive("temperature", temperature)
        self.positive_threshold = positive_threshold

    def forward(self, scores: Tensor, labels: Tensor) -> Tensor:
        q, g, c = check_inputs(scores, labels)
        log_p = torch.log_softmax(scores / self.temperature, dim=-1)
        own = own_block_mask(q, g, c, device=scores.device)
        # Positives must lie in the own block; the mask guards against a
        # threshold <= 0 matching the 0 fill of other queries' columns.
        pos = own & (expand_labels(labels, c) >= self.positive_threshold)
        n_pos = pos.sum(dim=-1)
        has_pos = n_pos > 0
        if not bool(has_pos.any()):
            return zero_loss(scores)
        # masked_fill instead of multiplying by the mask: log_p may be -inf in
        # non-positive columns, and -inf * 0 would be NaN.
        pos_log_p = log_p.masked_fill(~pos, 0.0).sum(dim=-1)
        per_row = -pos_log_p[has_pos] / n_pos[has_pos].to(log_p.dtype)
        return per_row.mean()
