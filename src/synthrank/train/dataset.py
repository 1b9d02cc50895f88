"""Per-query groups drawn from recipe pools (afresh each epoch), and the tokenizing collator.

Every draw is a pure function of ``(seed, epoch, index)``, so a run's data is reproducible
across processes and after ``--resume`` without saving any data-loader state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from synthrank.data.recipes import QueryPool, Recipe, TrainingPools

log = logging.getLogger(__name__)

__all__ = ["GroupDataset", "GroupCollator", "draw_group"]


def _sample_sources(pool: QueryPool, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Union of the pool's sources, each reduced to ``sample_k`` random passages when set."""
    passages: list[int] = []
    grades: list[int] = []
    for source in pool.sources:
        n = len(source.passages)
        if source.sample_k is not None and n > source.sample_k:
            picks = sorted(rng.choice(n, size=source.sample_k, replace=False).tolist())
            passages.extend(source.passages[j] for j in picks)
            grades.extend(source.grades[j] for j in picks)
        else:
            passages.extend(source.passages)
            grades.extend(source.grades)
    return passages, grades


def _take(n_available: int, n_wanted: int, rng: np.random.Generator) -> list[int]:
    """``n_wanted`` distinct positions in random order, topped up with repeats when too few."""
    order = rng.permutation(n_available).tolist()
    if n_available >= n_wanted:
        return order[:n_wanted]
    return order + rng.choice(n_available, size=n_wanted - n_available, replace=True).tolist()


def draw_group(pool: QueryPool, recipe: Recipe, rng: np.random.Generator,
               group_size: int | None = None) -> tuple[list[int], list[float]]:
    """Draw one group for ``pool``: passage indices and labels, both of length G.

    graded/random: G passages uniformly at random (without replacement), labels = grades.
    graded/top: passages sorted by grade, highest first (ties broken at random), first G.
    binary: one random positive (grade >= t) first, then G-1 random negatives (grade < t);
    labels 1, 0, ..., 0. Pools that are too small are topped up with random repeats.
    """
    g = group_size or recipe.group_size
    passages, grades = _sample_sources(pool, rng)
    if recipe.mode == "binary":
        t = recipe.positive_threshold
        positives = [j for j, grade in enumerate(grades) if grade >= t]
        negatives = [j for j, grade in enumerate(grades) if grade < t]
        if not positives or not negatives:
            # a source's random-k draw missed every positive (or negative): use the whole pool
            passages = [p for s in pool.sources for p in s.passages]
            grades = [x for s in pool.sources for x in s.grades]
            positives = [j for j, grade in enumerate(grades) if grade >= t]
            negatives = [j for j, grade in enumerate(grades) if grade < t]
            if not positives or not negatives:
                raise ValueError(f"query {pool.qid!r}: a binary group needs a positive and a negative")
        pos = positives[int(rng.integers(len(positives)))]
        chosen = [negatives[j] for j in _take(len(negatives), g - 1, rng)]
        return [passages[pos]] + [passages[j] for j in chosen], [1.0] + [0.0] * (g - 1)
    if recipe.sampling == "top":
        tiebreak = rng.random(len(grades))
        order = sorted(range(len(grades)), key=lambda j: (-grades[j], tiebreak[j]))
        if len(order) < g:
            order = order + [order[j] for j in rng.choice(len(order), size=g - len(order), replace=True)]
            order.sort(key=lambda j: -grades[j])
        chosen = order[:g]
    else:
        chosen = _take(len(grades), g, rng)
    return [passages[j] for j in chosen], [float(grades[j]) for j in chosen]


def _usable(pool: QueryPool, recipe: Recipe, g: int) -> bool:
    if recipe.mode == "binary":
        t = recipe.positive_threshold
        has_pos = any(grade >= t for s in pool.sources for grade in s.grades)
        has_neg = any(grade < t for s in pool.sources for grade in s.grades)
        if not (has_pos and has_neg):
            return False
        if recipe.short_groups == "drop":
            negatives = sum(1 for s in pool.sources for x in s.grades if x < t)
            return negatives >= g - 1
        return True
    if recipe.short_groups == "drop":
        return pool.max_size() >= g
    return pool.max_size() >= 1


class GroupDataset(torch.utils.data.Dataset):
    """Yields ``{"query": str, "passages": [G str], "labels": [G float]}`` per query.

    Groups are re-drawn every epoch: item ``i`` in epoch ``e`` is drawn with the random
    generator seeded by ``(seed, e, i)``. The trainer calls :meth:`set_epoch`.
    """

    def __init__(self, pools: TrainingPools, recipe: Recipe, seed: int = 0, group_size: int | None = None):
        self.recipe = recipe
        self.group_size = group_size or recipe.group_size
        if self.group_size < 2:
            raise ValueError(f"group size must be >= 2, got {self.group_size}")
        self.passages = pools.passages
        self.queries = [p for p in pools.queries if _usable(p, recipe, self.group_size)]
        self.dropped = len(pools.queries) - len(self.queries)
        if self.dropped:
            why = ("without both a positive and a negative" if recipe.mode == "binary"
                   else f"with fewer than {self.group_size} passages")
            log.warning("dropped %d of %d queries %s", self.dropped, len(pools.queries), why)
        if not self.queries:
            raise ValueError("no query can form a group with this recipe")
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.queries)

    def draw(self, index: int, epoch: int | None = None) -> tuple[list[int], list[float]]:
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch, index])
        return draw_group(self.queries[index], self.recipe, rng, self.group_size)

    def __getitem__(self, index: int) -> dict:
        chosen, labels = self.draw(index)
        return {"query": self.queries[index].text, "passages": [self.passages[j] for j in chosen], "labels": labels}


@dataclass
class GroupCollator:
    """Tokenizes a list of groups: queries [Q], passages flattened [Q*G] (query-major), labels [Q, G]."""

    tokenizer: object
    query_max_length: int = 128
    passage_max_length: int = 128
    query_prefix: str = ""
    passage_prefix: str = ""

    def __call__(self, features: list[dict]) -> dict:
        sizes = {len(f["passages"]) for f in features}
        if len(sizes) != 1:
            raise ValueError(f"all groups in a batch must have the same size, got {sorted(sizes)}")
        queries = [self.query_prefix + f["query"] for f in features]
        passages = [self.passage_prefix + p for f in features for p in f["passages"]]
        q = self.tokenizer(queries, padding=True, truncation=True, max_length=self.query_max_length,
                           return_tensors="pt")
        p = self.tokenizer(passages, padding=True, truncation=True, max_length=self.passage_max_length,
                           return_tensors="pt")
        labels = torch.tensor([f["labels"] for f in features], dtype=torch.float32)
        return {"query": dict(q), "passage": dict(p), "grades": labels}
