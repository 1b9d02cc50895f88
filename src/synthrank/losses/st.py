"""synthrank's ranking losses as loss modules for sentence-transformers' own trainer (bi-encoders).

sentence-transformers ships list-wise losses only for cross-encoders; :class:`ListwiseLoss` lets a
``SentenceTransformer`` bi-encoder train on graded groups with any loss of this package's registry
(``ws2``, ``kl``, ``emd``, ``infonce``, ``ranknet``, ...) inside ``SentenceTransformerTrainer``.
It scores exactly as :class:`synthrank.train.trainer.RankingTrainer` does (:func:`~synthrank.losses.base.in_batch_scores`:
every query against every passage of the batch, dot products, the temperature inside the loss), so
on the same embeddings the same loss and parameters give the same value in both trainers.

Dataset layout (a ``datasets.Dataset``; ``SentenceTransformerTrainer`` needs the ``datasets``
package: ``pip install datasets``)::

    query | passage_0 | passage_1 | ... | passage_{G-1} | label
    str   | str       | str       | ... | str           | [g_0, g_1, ..., g_{G-1}]   (G grades)

The first column is the query and the next G columns are its passages, in the order of the grades
in the label column (the column *order* matters, not the names: sentence-transformers hands the
text columns to the loss in dataset order). The label column must be called ``label``, ``labels``,
``score`` or ``scores`` (the names the sentence-transformers collator takes as labels).

Example::

    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from synthrank.losses.st import ListwiseLoss
    from synthrank.models import bundled_encoder_path

    model = SentenceTransformer(str(bundled_encoder_path()))  # all-MiniLM-L6-v2
    data = Dataset.from_dict({"query": queries,                                    # N strings
                              **{f"passage_{g}": passages[g] for g in range(4)},  # 4 x N strings
                              "label": grades})                 # N lists of 4 grades, e.g. [3, 2, 1, 0]
    loss = ListwiseLoss(model, "ws2", temperature=0.05, label_temperature=0.25)
    SentenceTransformerTrainer(model=model, train_dataset=data, loss=loss).train()

``ws2`` fits a Gaussian over the queries of a batch and needs at least 2 of them: when the
dataset size leaves a last batch of one row, pass ``dataloader_drop_last=True`` in the
``SentenceTransformerTrainingArguments``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from sentence_transformers.base.losses.merged_forward import embed_columns
from torch import Tensor, nn

from .base import Loss, _init_params, get_loss, in_batch_scores

__all__ = ["ListwiseLoss"]


class ListwiseLoss(nn.Module):
    """A synthrank ranking loss for a bi-encoder in ``SentenceTransformerTrainer``.

    For a batch of Q rows with G passage columns: the query column is embedded ``[Q, D]``, the
    passage columns ``G x [Q, D]`` are laid out query-major ``[Q*G, D]`` (query i's passages are
    rows ``i*G .. i*G+G-1``), every query is scored against all Q*G passages (dot product; cosine
    when the model ends with ``Normalize``) and the loss gets the ``[Q, Q*G]`` scores and the
    ``[Q, G]`` grades. The other queries' passages are in-batch negatives with grade 0 (see
    :mod:`synthrank.losses.base`). In-batch negatives come from the local batch only (no gathering
    across processes under DDP, unlike :class:`synthrank.train.trainer.RankingTrainer`). The columns are
    embedded with sentence-transformers' ``embed_columns``, as its own losses do (the model's
    ``truncate_dim``, if set, is not applied in training, as there).

    Args:
        model: the ``SentenceTransformer`` being trained.
        loss: a registry alias (see :func:`synthrank.losses.available_losses`) or a built
            :class:`~synthrank.losses.Loss`.
        **params: the loss's hyper-parameters when ``loss`` is an alias, e.g. ``temperature``
            (with an L2-normalised model such as all-MiniLM-L6-v2, scores are cosines in [-1, 1]:
            use a small temperature, e.g. 0.05) and ``label_temperature``.

    Labels: ``[Q, G]`` grades (ints or floats; binary 0/1 works too); ``ws2`` needs Q >= 2.
    """

    def __init__(self, model: nn.Module, loss: str | Loss = "ws2", **params: Any) -> None:
        super().__init__()
        self.model = model
        if isinstance(loss, Loss):
            if params:
                raise ValueError(f"pass the loss's parameters either to the built loss or with an alias, not both: {params}")
            self.loss_fn = loss
        else:
            self.loss_fn = get_loss(loss, **params)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        # The query column gets its own forward pass; the passage columns share one when they can.
        return self.compute_loss_from_embeddings(embed_columns(self.model, sentence_features), labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        """The loss for the query embeddings ``embeddings[0]`` and the G passage columns ``embeddings[1:]``."""
        if len(embeddings) < 2:
            raise ValueError(f"{type(self).__name__} needs a query column and at least one passage column, "
                             f"got {len(embeddings)} text column(s)")
        queries, columns = embeddings[0], embeddings[1:]
        shape = (queries.shape[0], len(columns))
        if labels is None:
            raise ValueError(f"{type(self).__name__} needs a label column ('label', 'labels', 'score' or 'scores') "
                             f"holding the {len(columns)} grades of each row's passages")
        if tuple(labels.shape) != shape:
            raise ValueError(f"{type(self).__name__} expects labels of shape (batch size, passage columns) = {shape}, "
                             f"got {tuple(labels.shape)}")
        passages = torch.stack(columns, dim=1).reshape(-1, queries.shape[-1])  # [Q, G, D] -> query-major [Q*G, D]
        scores = in_batch_scores(queries, passages)
        return self.loss_fn(scores, labels.to(scores.dtype))

    def get_config_dict(self) -> dict[str, Any]:
        """What sentence-transformers writes into the model card."""
        params = {p: getattr(self.loss_fn, p) for p in _init_params(type(self.loss_fn)) if hasattr(self.loss_fn, p)}
        return {"loss": self.loss_fn.alias, **params}
