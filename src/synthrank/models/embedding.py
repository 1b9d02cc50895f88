"""The one embedding function: tokenized features -> sentence vectors, through the model's modules.

Training (with a graph, :class:`synthrank.train.trainer.RankingTrainer`) and evaluation (under
inference mode, :meth:`synthrank.models.Encoder.encode`) both call :func:`embed`, so what is
trained is what is evaluated, and both equal ``SentenceTransformer.encode``: the features run
through every module of the stack (Transformer, Pooling, Dense, Normalize, ...).
"""

from __future__ import annotations

import torch

__all__ = ["embed"]


def _unwrap(model):
    return getattr(model, "module", model)  # DDP / DeepSpeed wrap the SentenceTransformer


def _forward(model, features: dict) -> torch.Tensor:
    vectors = model(dict(features))["sentence_embedding"]  # modules add keys to the dict they get
    truncate_dim = getattr(_unwrap(model), "truncate_dim", None)
    return vectors[..., :truncate_dim] if truncate_dim else vectors


def _rows(features: dict, index: torch.Tensor, n: int, width: int | None) -> dict:
    """The rows ``index`` of every per-text tensor, cut to ``width`` tokens; other entries as they are."""
    out = {}
    for key, value in features.items():
        if torch.is_tensor(value) and value.dim() >= 1 and value.shape[0] == n:
            value = value[index]
            if width is not None and value.dim() == 2:
                value = value[:, :width]
        out[key] = value
    return out


def embed(model, features: dict, forward_batch_size: int | None = None) -> torch.Tensor:
    """Sentence vectors [B, D] for tokenized ``features`` (``input_ids``, ``attention_mask``, ...).

    A graph is kept when grad is enabled. With ``forward_batch_size``, texts are sorted by length
    and run in forward passes of at most that many, each cut to its own longest text (right
    padding), so a batch of mixed lengths wastes little compute on padding; the result is in input
    order and equals one padded pass up to float rounding.
    """
    device = next(_unwrap(model).parameters()).device
    features = {k: v.to(device) if torch.is_tensor(v) else v for k, v in features.items()}
    mask = features["attention_mask"]
    n = mask.shape[0]
    size = forward_batch_size or n
    lengths = mask.sum(dim=1)
    positions = torch.arange(mask.shape[1], device=mask.device)
    right_padded = bool((mask.bool() == (positions[None, :] < lengths[:, None])).all())
    if size >= n and (not right_padded or int(lengths.max()) == mask.shape[1]):
        return _forward(model, features)
    order = torch.argsort(lengths, descending=True, stable=True)
    parts = []
    for index in order.split(size):
        width = int(lengths[index].max()) if right_padded else None
        parts.append(_forward(model, _rows(features, index, n, width)))
    return torch.cat(parts)[torch.argsort(order)]
