"""Dropout on attention probabilities, set for training without touching the saved config.

Why a training option: with dropout on the attention probabilities, torch's fused attention
kernel (``scaled_dot_product_attention``'s flash path) cannot run on CPU, so attention falls
back to the unfused matrix product + softmax path, and a Bernoulli mask as large as the
attention matrix ([texts, heads, tokens, tokens]) is drawn in every layer. On MiniLM, 16
queries and 64 passages of 128 tokens, that is ~20 % of a CPU training step (README,
"Training speed"). Hidden-state dropout is a different module and is left as the model says.

The probability is set on the live modules only (Hugging Face attention classes read it at
forward time); the model's ``config.json`` keeps its own value, so a saved model trains on
elsewhere as its authors configured it.
"""

from __future__ import annotations

import torch

__all__ = ["set_attention_dropout"]

# attention modules keep their probability dropout under one of these names: an nn.Dropout
# (BERT, RoBERTa, XLM-R, MPNet, DistilBERT: "dropout"; GPT-2: "attn_dropout") or a float that
# the forward pass reads (Llama, Qwen, ModernBERT, ...: "attention_dropout")
_DROPOUT_CHILDREN = ("dropout", "attn_dropout")
_DROPOUT_FLOATS = ("attention_dropout",)


def _is_attention(module: torch.nn.Module) -> bool:
    """An attention module proper (``BertSelfAttention``), not a block holding one and an output
    projection (``BertAttention`` holds ``BertSelfOutput``, whose dropout is on hidden states)."""
    name = type(module).__name__
    if not name.endswith("Attention"):
        return False
    return not any(_is_attention(child) for child in module.children())


def set_attention_dropout(model: torch.nn.Module, probability: float) -> int:
    """Set the dropout on attention probabilities of every attention module in ``model`` to
    ``probability``; returns how many modules were set (0: none found, nothing changed)."""
    if not 0.0 <= probability < 1.0:
        raise ValueError(f"attention dropout {probability}: must be in [0, 1)")
    count = 0
    for module in model.modules():
        if not _is_attention(module):
            continue
        found = False
        for attr in _DROPOUT_CHILDREN:
            child = getattr(module, attr, None)
            if isinstance(child, torch.nn.Dropout):
                child.p = probability
                found = True
        for attr in _DROPOUT_FLOATS:
            if isinstance(getattr(module, attr, None), float):
                setattr(module, attr, float(probability))
                found = True
        count += found
    return count
