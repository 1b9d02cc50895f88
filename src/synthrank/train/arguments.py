"""``RankingTrainingArguments``: Hugging Face ``TrainingArguments`` as synthrank runs them.

Like sentence-transformers' ``SentenceTransformerTrainingArguments`` and Trove's
``RetrievalTrainingArguments``, a dataclass subclass: its defaults are the settings every
synthrank run uses (the batches are dicts of tokenised queries and passages, so no column may
be dropped; the first step is logged), and :meth:`RankingTrainingArguments.from_options` fills
the rest from a :class:`~synthrank.train.config.TrainConfig`. Which argument each training
option sets is declared on the option itself (``HF(...)`` in ``TrainConfig``), so there is no
second list of option names here. The synthrank-only options (loss, temperature, loss_params,
group size, max lengths, chunk_size, forward_batch_size, ...) stay in ``TrainConfig``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments

from synthrank.utils.options import hf_of

__all__ = ["RankingTrainingArguments", "training_arguments_from"]


def training_arguments_from(options) -> dict[str, Any]:
    """The ``TrainingArguments`` keyword arguments the fields of ``options`` declare (``HF``)."""
    arguments: dict[str, Any] = {}
    for name, info in type(options).model_fields.items():
        target = hf_of(info)
        if target is None:
            continue
        value = getattr(options, name)
        if target.convert is not None:
            value = target.convert(value)
        if value is None and not target.keep_none:
            continue  # TrainingArguments' own default
        for argument in target.names:
            arguments[argument] = value
    return arguments


@dataclass
class RankingTrainingArguments(TrainingArguments):
    """``TrainingArguments`` with synthrank's fixed settings as defaults."""

    # A batch holds tokenised "query" and "passage" dicts and "grades", none of them a model input.
    remove_unused_columns: bool = field(default=False, metadata={"help": "synthrank batches are not model inputs"})
    logging_first_step: bool = field(default=True, metadata={"help": "Log the loss of the first step"})

    @classmethod
    def from_options(cls, options, **overrides) -> "RankingTrainingArguments":
        """The arguments a :class:`~synthrank.train.config.TrainConfig` asks for, on this machine:
        the CPU when there is no GPU, gloo for a multi-process run on CPUs."""
        import torch

        distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        arguments = {
            "save_strategy": "steps", "logging_strategy": "steps",
            "use_cpu": not torch.cuda.is_available(),
            **({"ddp_backend": "gloo"} if distributed and not torch.cuda.is_available() else {}),
            **training_arguments_from(options), **overrides,
        }
        return cls(**arguments)
