"""Group drawing (graded/binary, random/top, sample_k, short pools) and the collator."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from synthrank.data.recipes import QueryPool, Recipe, SourcePassages, TrainingPools
from synthrank.train.dataset import GroupCollator, GroupDataset, draw_group


def make_pools(pool_specs: dict[str, list[tuple[list[int], int | None]]]) -> TrainingPools:
    """qid -> list of (grades, sample_k) per source; passage texts are '<qid>:<source>:<j>:g<grade>'."""
    passages: list[str] = []
    queries = []
    for qid, sources in pool_specs.items():
        pool = QueryPool(qid, f"query {qid}")
        for s, (grades, k) in enumerate(sources):
            ids = []
            for j, grade in enumerate(grades):
                ids.append(len(passages))
                passages.append(f"{qid}:{s}:{j}:g{grade}")
            pool.sources.append(SourcePassages(ids, list(grades), k))
        queries.append(pool)
    return TrainingPools(queries, passages)


def grade_of(text: str) -> int:
    return int(text.rsplit(":g", 1)[1])


def recipe(**kw) -> Recipe:
    return Recipe(sources=[{"dataset": "x"}], **kw)


def test_graded_random_group_is_distinct_and_labelled():
    pools = make_pools({"q": [([0, 1, 2, 3, 0, 1, 2, 3], None)]})
    ds = GroupDataset(pools, recipe(group_size=4), seed=1)
    item = ds[0]
    assert item["query"] == "query q" and len(item["passages"]) == 4 == len(item["labels"])
    assert len(set(item["passages"])) == 4
    assert item["labels"] == [float(grade_of(p)) for p in item["passages"]]


def test_draws_are_deterministic_per_seed_and_epoch_and_change_between_epochs():
    pools = make_pools({f"q{i}": [(list(range(4)) * 3, None)] for i in range(5)})
    a = GroupDataset(pools, recipe(group_size=3), seed=7)
    b = GroupDataset(pools, recipe(group_size=3), seed=7)
    c = GroupDataset(pools, recipe(group_size=3), seed=8)
    epoch0 = [a[i]["passages"] for i in range(5)]
    assert epoch0 == [b[i]["passages"] for i in range(5)]
    assert epoch0 != [c[i]["passages"] for i in range(5)]
    a.set_epoch(1)
    epoch1 = [a[i]["passages"] for i in range(5)]
    assert epoch1 != epoch0
    b.set_epoch(1)
    assert epoch1 == [b[i]["passages"] for i in range(5)]
    assert a.draw(2, epoch=0) == b.draw(2, epoch=0)  # a draw depends only on (seed, epoch, index)


def test_top_sampling_takes_the_most_relevant_first_ties_at_random():
    pools = make_pools({"q": [([0, 3, 1, 2, 2, 0, 2], None)]})
    ds = GroupDataset(pools, recipe(group_size=3, sampling="top"), seed=0)
    seen = Counter()
    for epoch in range(30):
        ds.set_epoch(epoch)
        item = ds[0]
        assert item["labels"] == [3.0, 2.0, 2.0]
        seen.update(item["passages"][1:])
    assert len(seen) == 3  # the three grade-2 passages rotate


def test_binary_groups_one_positive_then_negatives_below_threshold():
    pools = make_pools({"q": [([3, 2, 1, 0, 1, 0], None)]})
    ds = GroupDataset(pools, recipe(mode="binary", group_size=3, positive_threshold=2), seed=0)
    positives = set()
    for epoch in range(20):
        ds.set_epoch(epoch)
        item = ds[0]
        assert item["labels"] == [1.0, 0.0, 0.0]
        assert grade_of(item["passages"][0]) >= 2
        assert all(grade_of(p) < 2 for p in item["passages"][1:])
        assert len(set(item["passages"][1:])) == 2
        positives.add(item["passages"][0])
    assert len(positives) == 2


def test_binary_mode_drops_queries_without_positive_or_negative():
    pools = make_pools({"ok": [([1, 0, 0], None)], "nopos": [([0, 0], None)], "noneg": [([1, 1], None)]})
    ds = GroupDataset(pools, recipe(mode="binary", group_size=2), seed=0)
    assert [q.qid for q in ds.queries] == ["ok"] and ds.dropped == 2


def test_sample_k_limits_each_source_per_epoch():
    pools = make_pools({"q": [([3, 3, 3], 1), ([1] * 10, 2)]})
    ds = GroupDataset(pools, recipe(group_size=3), seed=0)
    drawn = set()
    for epoch in range(10):
        ds.set_epoch(epoch)
        item = ds[0]
        sources = Counter(p.split(":")[1] for p in item["passages"])
        assert sources == {"0": 1, "1": 2}
        drawn.update(item["passages"])
    assert len(drawn) > 5  # negatives re-drawn across epochs


def test_binary_falls_back_to_whole_pool_when_sample_k_misses_positives():
    pools = make_pools({"q": [([0, 0, 0, 0, 2], 2)]})
    ds = GroupDataset(pools, recipe(mode="binary", group_size=2), seed=0)
    for epoch in range(10):
        ds.set_epoch(epoch)
        assert grade_of(ds[0]["passages"][0]) == 2


def test_short_pools_repeat_or_drop():
    pools = make_pools({"short": [([2, 1], None)], "full": [([0, 1, 2, 3], None)]})
    repeat = GroupDataset(pools, recipe(group_size=4), seed=0)
    assert len(repeat) == 2
    item = repeat[0]
    assert len(item["passages"]) == 4 and set(item["passages"]) == {"short:0:0:g2", "short:0:1:g1"}
    top = GroupDataset(pools, recipe(group_size=4, sampling="top"), seed=0)
    assert top[0]["labels"][0] == 2.0 and top[0]["labels"] == sorted(top[0]["labels"], reverse=True)
    drop = GroupDataset(pools, recipe(group_size=4, short_groups="drop"), seed=0)
    assert [q.qid for q in drop.queries] == ["full"]


def test_group_size_override():
    pools = make_pools({"q": [([0, 1, 2, 3, 0], None)]})
    assert len(GroupDataset(pools, recipe(group_size=4), group_size=2)[0]["passages"]) == 2


def test_draw_group_uniform_over_passages():
    pool = make_pools({"q": [([0, 1, 2, 3], None)]}).queries[0]
    counts = Counter()
    for seed in range(400):
        chosen, _ = draw_group(pool, recipe(group_size=2), np.random.default_rng(seed))
        counts.update(chosen)
    assert set(counts) == {0, 1, 2, 3} and min(counts.values()) > 150


def test_collator_shapes_and_layout():
    from transformers import AutoTokenizer

    from synthrank.models import bundled_encoder_path

    tokenizer = AutoTokenizer.from_pretrained(bundled_encoder_path())
    collate = GroupCollator(tokenizer, query_max_length=8, passage_max_length=12, query_prefix="q: ")
    features = [{"query": "short", "passages": ["p00 word " * 20, "p01", "p02"], "labels": [3.0, 1.0, 0.0]},
                {"query": "a much longer query " * 5, "passages": ["p10", "p11", "p12"], "labels": [1.0, 1.0, 2.0]}]
    batch = collate(features)
    assert batch["query"]["input_ids"].shape == (2, 8)
    assert batch["passage"]["input_ids"].shape == (6, 12)
    assert batch["grades"].dtype == torch.float32
    assert batch["grades"].tolist() == [[3.0, 1.0, 0.0], [1.0, 1.0, 2.0]]
    # passages flattened query-major: row i*G + g is query i's g-th passage
    decoded = tokenizer.decode(batch["passage"]["input_ids"][4], skip_special_tokens=True)
    assert decoded == "p11"
    assert tokenizer.decode(batch["query"]["input_ids"][0], skip_special_tokens=True) == "q : short"
    with pytest.raises(ValueError, match="same size"):
        collate([features[0], {**features[1], "passages": ["x"], "labels": [1.0]}])
