"""Loss base class, alias registry and shared tensor helpers.

Input convention shared by every loss in this package
-----------------------------------------------------
``scores``: float tensor ``[Q, C]`` with either

* ``C == Q * G`` -- every query scored against every passage in the batch.
  Query ``i``'s own ``G`` passages are columns ``i*G .. i*G + G - 1`` (its
  *own block*); the other columns are in-batch passages of other queries.
* ``C == G`` -- no in-batch negatives: each query is scored only against its
  own group, so the own block of *every* row is columns ``0 .. G-1``.

``labels``: tensor ``[Q, G]`` with the grades of each query's own passages
(ints ``0..3``, binary ``0/1`` or floats).  Passages of other queries carry no
label; the losses that use them treat them as grade 0 (see
:func:`expand_labels`).

(For ``Q == 1`` both layouts coincide, as they should.)
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import torch
from torch import Tensor

__all__ = [
    "Loss",
    "get_loss",
    "available_losses",
    "check_inputs",
    "in_batch_scores",
    "expand_labels",
    "own_block_mask",
    "own_block_scores",
    "zero_loss",
]

# alias -> Loss subclass; filled by Loss.__init_subclass__.
_REGISTRY: dict[str, type["Loss"]] = {}


def positive(name: str, value: float) -> float:
    """A hyper-parameter that must be > 0 (temperatures), as float; ValueError otherwise."""
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return float(value)


class Loss(torch.nn.Module):
    """Base class of all ranking losses; subclasses register themselves by alias.

    Declare a loss with ``class MyLoss(Loss, alias="my_loss"): ...``.  The
    constructor takes the loss's hyper-parameters as keyword arguments and
    ``forward(scores, labels)`` returns a scalar tensor (see the module
    docstring for the shapes).  Subclasses without an alias (e.g. abstract
    intermediates) are not registered.
    """

    alias: ClassVar[str | None] = None

    def __init_subclass__(cls, alias: str | None = None, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.alias = alias
        if alias is None:
            return
        previous = _REGISTRY.get(alias)
        # Re-registering the *same* class (e.g. importlib.reload of its module) is
        # harmless; two different classes claiming one alias is a bug.
        if previous is not None and (
            previous.__module__,
            previous.__qualname__,
        ) != (cls.__module__, cls.__qualname__):
            raise ValueError(
                f"loss alias {alias!r} is already registered by "
                f"{previous.__module__}.{previous.__qualname__}"
            )
        _REGISTRY[alias] = cls

    def __init__(self) -> None:
        # Explicit no-argument signature: nn.Module.__init__ takes *args/**kwargs,
        # which would hide unknown parameters from get_loss's signature check.
        super().__init__()

    def forward(self, scores: Tensor, labels: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def extra_repr(self) -> str:
        params = _init_params(type(self))
        return ", ".join(f"{p}={getattr(self, p)!r}" for p in params if hasattr(self, p))


class GradeSoftmaxLoss(Loss):
    """A loss that compares softmax(scores / temperature) with softmax(grades / label_temperature)
    (``kl``, ``ws2``): the two temperatures, checked once."""

    def __init__(self, temperature: float = 1.0, label_temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = positive("temperature", temperature)
        self.label_temperature = positive("label_temperature", label_temperature)


def _init_params(cls: type[Loss]) -> list[str]:
    """Names of the keyword parameters accepted by ``cls.__init__``."""
    sig = inspect.signature(cls.__init__)
    return [
        name
        for name, p in sig.parameters.items()
        if name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def available_losses() -> list[str]:
    """Sorted list of the registered loss aliases."""
    return sorted(_REGISTRY)


def get_loss(name: str, **params: Any) -> Loss:
    """Instantiate the loss registered under ``name`` with keyword ``params``.

    Raises:
        ValueError: unknown ``name`` (the message lists the available aliases),
            or parameters the loss does not accept (the message names the loss
            and its accepted parameters).
    """
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown loss {name!r}; available losses: {', '.join(available_losses())}"
        ) from None
    # Check the parameters against the signature first, so that a TypeError
    # raised *inside* a constructor (a real bug) is not disguised as bad params.
    try:
        inspect.signature(cls).bind(**params)
    except TypeError as err:
        accepted = ", ".join(_init_params(cls)) or "(none)"
        raise ValueError(
            f"invalid parameters for loss {name!r}: {err}; accepted parameters: {accepted}"
        ) from None
    return cls(**params)


def check_inputs(scores: Tensor, labels: Tensor) -> tuple[int, int, int]:
    """Validate shapes and return ``(Q, G, C)``.

    ``scores`` must be ``[Q, Q*G]`` or ``[Q, G]``; ``labels`` must be ``[Q, G]``.
    """
    if scores.dim() != 2 or labels.dim() != 2:
        raise ValueError(
            f"scores and labels must be 2-D, got shapes {tuple(scores.shape)} "
            f"and {tuple(labels.shape)}"
        )
    q, g = labels.shape
    if scores.shape[0] != q:
        raise ValueError(
            f"scores has {scores.shape[0]} rows but labels has {q} (one row per query)"
        )
    c = scores.shape[1]
    if g == 0 or c not in (g, q * g):
        raise ValueError(
            f"scores must have G={g} or Q*G={q * g} columns for labels of shape "
            f"{(q, g)}, got {c}"
        )
    return q, g, c


def own_block_mask(
    num_queries: int, group_size: int, num_columns: int, device: torch.device | None = None
) -> Tensor:
    """Boolean ``[Q, C]`` mask of each row's own-group columns.

    For ``C == Q*G`` row ``i`` is True on columns ``i*G .. i*G+G-1``; for
    ``C == G`` every entry is True (each row only sees its own group).
    """
    if num_columns == group_size:
        return torch.ones(num_queries, group_size, dtype=torch.bool, device=device)
    if num_columns != num_queries * group_size:
        raise ValueError(
            f"num_columns must be G={group_size} or Q*G={num_queries * group_size}, "
            f"got {num_columns}"
        )
    eye = torch.eye(num_queries, dtype=torch.bool, device=device)
    return eye.repeat_interleave(group_size, dim=1)


def expand_labels(labels: Tensor, num_columns: int, fill: float | int = 0) -> Tensor:
    """Block-diagonal expansion of ``[Q, G]`` labels to ``[Q, num_columns]``.

    With ``num_columns == Q*G``: ``out[i, i*G + g] = labels[i, g]`` and every
    other entry (passages belonging to other queries) is ``fill``.  With
    ``num_columns == G`` the labels are returned unchanged (own group only).
    The dtype follows torch type promotion of ``labels`` and ``fill`` (an int
    fill keeps integer labels integer; a float fill gives a float result).
    """
    q, g = labels.shape
    mask = own_block_mask(q, g, num_columns, device=labels.device)
    # labels.repeat(1, Q) tiles row i's grades over all Q blocks; the mask then
    # keeps only block i.  Pure and differentiable w.r.t. labels.
    tiled = labels.repeat(1, num_columns // g)
    fill_t = torch.as_tensor(fill, device=labels.device)
    out_dtype = torch.result_type(labels, fill)
    return torch.where(mask, tiled.to(out_dtype), fill_t.to(out_dtype))


def own_block_scores(scores: Tensor, group_size: int) -> Tensor:
    """The ``[Q, G]`` scores of each query's own passages (drops in-batch columns)."""
    q, c = scores.shape
    if c == group_size:
        return scores
    if c != q * group_size:
        raise ValueError(
            f"scores must have G={group_size} or Q*G={q * group_size} columns, got {c}"
        )
    # [Q, Q, G] -> diagonal over the two query axes -> [G, Q] -> [Q, G]
    return scores.reshape(q, q, group_size).diagonal(dim1=0, dim2=1).transpose(0, 1)


def in_batch_scores(queries: Tensor, passages: Tensor) -> Tensor:
    """Scores ``[Q, Q*G]`` of every query against every passage of the batch: dot products in float32.

    ``queries`` is ``[Q, D]``; ``passages`` is ``[Q*G, D]`` in query-major order (query ``i``'s
    ``G`` passages are rows ``i*G .. i*G+G-1``), which makes query ``i``'s own block columns
    ``i*G .. i*G+G-1`` as the losses expect.  No temperature here: it lives in the losses.
    (Cosine similarity is the dot product of L2-normalised embeddings, e.g. a model whose module
    stack ends with ``Normalize``.)  Used by :class:`synthrank.train.trainer.RankingTrainer` and by
    :class:`synthrank.losses.st.ListwiseLoss`, so both train on the same scores.
    """
    if queries.dim() != 2 or passages.dim() != 2 or queries.shape[1] != passages.shape[1]:
        raise ValueError(
            f"queries [Q, D] and passages [Q*G, D] must be 2-D with the same D, got shapes "
            f"{tuple(queries.shape)} and {tuple(passages.shape)}"
        )
    if queries.shape[0] == 0 or passages.shape[0] % queries.shape[0]:
        raise ValueError(
            f"passages must hold G rows per query: {passages.shape[0]} passage rows for "
            f"{queries.shape[0]} queries"
        )
    return queries.float() @ passages.float().transpose(0, 1)


def zero_loss(scores: Tensor) -> Tensor:
    """A zero scalar connected to ``scores`` so ``backward()`` gives finite (zero) grads."""
    return (scores * 0.0).sum()
