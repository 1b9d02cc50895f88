"""Held-out dev splits: disjoint, deterministic, nothing copied."""

from __future__ import annotations

import pytest

from synthrank.data import load_beir
from synthrank.data.splits import make_holdout


def test_holdout_is_disjoint_deterministic_and_links_the_corpus(tiny_beir, tmp_path) -> None:
    qrels = tiny_beir / "qrels" / "test.tsv"
    qrels.write_text(qrels.read_text() + "q2\td5\t1\n")
    out1 = tmp_path / "h1"
    counts = make_holdout(tiny_beir, "test", 1, seed=3, output=out1)
    dev, rest = load_beir(out1, "dev"), load_beir(out1, "train")
    assert counts["dev"] == 1 and counts["train"] == 2
    assert not set(dev.qrels) & set(rest.qrels)
    assert set(dev.qrels) | set(rest.qrels) == {"q1", "q2", "q3"}
    assert (out1 / "corpus.jsonl").is_symlink() and len(dev.corpus) == 6
    out2 = tmp_path / "h2"
    make_holdout(tiny_beir, "test", 1, seed=3, output=out2)
    assert load_beir(out2, "dev").qrels == dev.qrels
    make_holdout(tiny_beir, "test", 1, seed=3, output=out1)  # again into the same folder: fine


def test_holdout_size_must_leave_both_sides(tiny_beir, tmp_path) -> None:
    with pytest.raises(ValueError, match="between 1 and 2"):
        make_holdout(tiny_beir, "test", 3, seed=0, output=tmp_path / "h")
