"""The choices of how an encoder turns text into vectors, as types an options model can use
without importing torch (``synthrank.evaluate.options``, the encoder itself)."""

from __future__ import annotations

from typing import Literal

# synthrank names for sentence-transformers Pooling modes (see st_format.POOLING_MODES)
Pooling = Literal["mean", "cls", "last", "max", "weightedmean", "mean_sqrt_len_tokens"]
# "auto": bf16 where the hardware computes it natively, else float32; "int8": opt-in, CPU only
Dtype = Literal["auto", "float32", "bfloat16", "int8"]
