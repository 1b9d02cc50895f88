"""WS2: squared 2-Wasserstein distance between Gaussian fits of predictions and targets."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import GradeSoftmaxLoss, check_inputs, expand_labels

__all__ = ["WS2Loss", "gaussian_w2_squared"]


def gaussian_w2_squared(pred: Tensor, target: Tensor) -> Tensor:
    """Squared 2-Wasserstein (Frechet) distance between Gaussian fits of two sample sets.

    ``pred`` and ``target`` are ``[N, D]``: N samples (rows) of a random vector
    in R^D, N >= 2.  Each set is fitted with a Gaussian (row mean ``mu``,
    unbiased covariance ``Sigma = X_c^T X_c / (N-1)``) and the result is::

        ||mu_P - mu_T||^2 + Tr(Sigma_P) + Tr(Sigma_T) - 2 Tr((Sigma_P Sigma_T)^{1/2})

    The trace of the matrix square root is computed in N x N instead of D x D:
    with ``A = (P - mu_P)/sqrt(N-1)`` and ``B = (T - mu_T)/sqrt(N-1)`` we have
    ``Sigma_P Sigma_T = A^T (A B^T) B``, whose non-zero eigenvalues equal those
    of ``M M^T`` with ``M = A B^T``; hence ``Tr((Sigma_P Sigma_T)^{1/2})`` is the
    sum of the singular values of M (its nuclear norm).  ``torch.linalg.svdvals``
    back-propagates ``U diag(dL/dsigma) V^T``, which stays finite for repeated
    and zero singular values (e.g. all rows identical, or the always-present
    zero singular value caused by centring), so no epsilon is needed.  At such
    degenerate points the gradient is a valid subgradient of the nuclear norm.
    """
    n = pred.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 samples to fit a covariance, got {n}")
    mu_p = pred.mean(dim=0)
    mu_t = target.mean(dim=0)
    scale = 1.0 / math.sqrt(n - 1)
    a = (pred - mu_p) * scale
    b = (target - mu_t) * scale
    mean_term = (mu_p - mu_t).pow(2).sum()
    trace_p = a.pow(2).sum()  # Tr(A^T A)
    trace_t = b.pow(2).sum()  # Tr(B^T B)
    trace_sqrt = torch.linalg.svdvals(a @ b.transpose(0, 1)).sum()
    return mean_term + trace_p + trace_t - 2.0 * trace_sqrt


class WS2Loss(GradeSoftmaxLoss, alias="ws2"):
    """Batch-level squared 2-Wasserstein distance between predicted and target lists.

    Formula (all in float64; the result is cast back to ``scores.dtype``)::

        L_exp = expand_labels(labels, C)            # [Q, C], other queries' passages -> grade 0
        T     = softmax(L_exp / label_temperature, dim=-1)   # reference: label_temperature = 1
        P     = softmax(scores / temperature, dim=-1)
        loss  = ||mu_P - mu_T||^2 + Tr(Sigma_P) + Tr(Sigma_T) - 2 Tr((Sigma_P Sigma_T)^{1/2})

    where the Q rows of P (resp. T) are treated as Q samples of a random vector
    in R^C, ``mu`` is the row mean and ``Sigma`` the unbiased (``/(Q-1)``)
    covariance.  See :func:`gaussian_w2_squared` for how the trace of the
    matrix square root is computed (nuclear norm of a Q x Q matrix, finite
    gradients without epsilon).

    With ``[Q, G]`` scores (no in-batch negatives) C = G and each row is a
    distribution over the query's own group.  Because the distance is between
    batch-level Gaussians, the loss needs Q >= 2 (ValueError otherwise).
    Invariant to adding a constant to a row of scores and to permuting the
    queries together with their column blocks.

    Score scale. The reference (``temperature = label_temperature = 1``) assumes unnormalised
    dot products (contriever's scores spread over several units). With an L2-normalised encoder
    (cosine in [-1, 1]) P at tau = 1 is nearly uniform over the C columns and cannot approach T;
    a small ``temperature`` (e.g. 0.05, the scale MiniLM was trained with) restores the range.
    ``label_temperature`` < 1 sharpens the targets: at 1 the Q*G - G in-batch passages (grade 0)
    hold most of each target row's mass (for G = 4, Q = 16: 66%), so the loss asks the model to
    score other queries' passages as high as its own level-0 passage; at 0.25 the own level-3
    passage holds most of it.

    Args:
        temperature: ``tau`` dividing the scores before the softmax (default 1.0).
        label_temperature: divides the grades before the target softmax (default 1.0, the
            reference; the authors use raw grades).
    """

    def forward(self, scores: Tensor, labels: Tensor) -> Tensor:
        q, _, c = check_inputs(scores, labels)
        if q < 2:
            raise ValueError(
                f"ws2 fits a Gaussian over the queries of a batch and needs Q >= 2, got Q={q}"
            )
        # float64 throughout: covariances of softmax rows are tiny and the
        # subtraction in the W2 formula cancels badly in float32.
        s64 = scores.to(torch.float64)
        targets = torch.softmax(expand_labels(labels.to(torch.float64), c) / self.label_temperature, dim=-1)
        preds = torch.softmax(s64 / self.temperature, dim=-1)
        return gaussian_w2_squared(preds, targets).to(scores.dtype)
