"""Dropout for training: the probability on attention, and how dropout masks are drawn on CPU.

Why a training option: with dropout on the attention probabilities, torch's fused attention
kernel (``scaled_dot_product_attention``'s flash path) cannot run on CPU, so attention falls
back to the unfused matrix product + softmax path, and a Bernoulli mask as large as the
attention matrix ([texts, heads, tokens, tokens]) is drawn in every layer. On MiniLM, 16
queries and 64 passages of 128 tokens, that is ~20 % of a CPU training step (README,
"Training speed"). Hidden-state dropout is a different module and is left as the model says.

The probability is set on the live modules only (Hugging Face attention classes read it at
forward time); the model's ``config.json`` keeps its own value, so a saved model trains on
elsewhere as its authors configured it.

Drawing the masks: torch's CPU dropout draws one Bernoulli number per element. With attention
dropout off, the hidden-state dropouts left (13 in MiniLM: embeddings, and two per layer) still
took 6 % of an AVX2-emulated and 9-10 % of an AVX-512 training step (``benchmarks/dropout_cost.py
--profile``). ``use_fast_dropout`` swaps
them for ``FastDropout``, which cuts each 64-bit word of torch's generator into four 16-bit
uniform numbers: ~4x fewer generator calls, same probability up to a rounding to 1/65536, same
seeding (``torch.manual_seed``), same recomputation under gradient checkpointing (which restores
the generator's state).
"""

from __future__ import annotations

import math

import torch

__all__ = ["FastDropout", "drop_mask", "set_attention_dropout", "use_fast_dropout"]

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


_LANE_VALUES = 1 << 16  # a 16-bit lane takes each of 65,536 values equally often


def drop_mask(shape: torch.Size | tuple[int, ...], probability: float,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """A CPU bool tensor of ``shape``, each element True (dropped) with ``probability`` rounded to a
    multiple of 1/65536 (0.1 -> 0.100006), independently. Four elements per 64-bit random word."""
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"dropout probability {probability}: must be in [0, 1]")
    steps = round(probability * _LANE_VALUES)
    if steps == _LANE_VALUES:  # the threshold 2^15 is not an int16: every lane is below it
        return torch.ones(shape, dtype=torch.bool)
    count = math.prod(shape)
    # random_ over the whole int64 range draws all 64 bits; a plain random_() leaves the sign bit
    # at 0, and one lane in four would then almost never be dropped
    words = torch.empty((count + 3) // 4, dtype=torch.int64).random_(-(1 << 63), None, generator=generator)
    lanes = words.view(torch.int16)[:count]
    return (lanes < -(1 << 15) + steps).view(shape)


class _MaskedScale(torch.autograd.Function):
    """x -> x * keep / (1 - p), with the mask kept as bool for the backward pass (as torch's
    dropout keeps it). ``masked_fill`` is used because multiplying by a bool tensor takes a slow
    type-promotion path on CPU (~2x the time of the fill, measured on AVX2 and AVX-512)."""

    @staticmethod
    def forward(ctx, inputs: torch.Tensor, dropped: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(dropped)
        ctx.scale = scale
        return inputs.masked_fill(dropped, 0).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (dropped,) = ctx.saved_tensors
        return grad.masked_fill(dropped, 0).mul_(ctx.scale), None, None


class FastDropout(torch.nn.Dropout):
    """``nn.Dropout`` whose CPU masks come from ``drop_mask``. Elsewhere (GPU, eval mode,
    p = 0, or p below what 16 bits resolve) it is torch's own dropout."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if (not self.training or inputs.device.type != "cpu" or self.inplace
                or round(self.p * _LANE_VALUES) in (0, _LANE_VALUES)):
            return super().forward(inputs)
        dropped = drop_mask(inputs.shape, self.p)
        return _MaskedScale.apply(inputs, dropped, 1.0 / (1.0 - self.p))


def use_fast_dropout(model: torch.nn.Module) -> int:
    """Replace every plain ``nn.Dropout`` in ``model`` by a ``FastDropout`` of the same
    probability; returns how many were replaced. Subclasses of ``nn.Dropout`` are left alone
    (they may do more than drop). An attention module's dropout is replaced too, harmlessly:
    Hugging Face reads its ``p`` and passes it to the attention kernel, which ``FastDropout``
    keeps."""
    count = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is torch.nn.Dropout:
                replacement = FastDropout(child.p, inplace=child.inplace)
                replacement.train(child.training)
                setattr(module, name, replacement)
                count += 1
    return count
