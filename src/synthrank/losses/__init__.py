"""Ranking losses for list-wise training of a dense retriever, behind one registry.

Usage::

    from synthrank.losses import get_loss, available_losses
    loss = get_loss("ws2", temperature=1.0)
    value = loss(scores, labels)    # scores [Q, Q*G] or [Q, G], labels [Q, G]

See :mod:`synthrank.losses.base` for the shape conventions.
"""

from .base import Loss, available_losses, expand_labels, get_loss, in_batch_scores

# Imported for their side effect: defining the classes registers their aliases.
from . import contrastive, listwise, pairwise, ws2  # noqa: F401

__all__ = ["Loss", "get_loss", "available_losses", "expand_labels", "in_batch_scores"]
