"""Held-out dev splits: choose settings on queries that are never generated for nor trained on.

``make_holdout`` draws ``size`` judged queries of a BEIR folder's split at random (seeded) and
writes a BEIR folder whose ``qrels/dev.tsv`` holds them and ``qrels/train.tsv`` the rest. The
corpus and queries files are symbolic links to the source's (nothing is copied), so evaluation
on ``dev`` runs against the full corpus.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from synthrank.data.beir import load_qrels, write_qrels
from synthrank.utils import atomic_write

__all__ = ["make_holdout"]


def _link(target: Path, link: Path) -> None:
    if link.is_symlink() or link.exists():
        if link.is_symlink() and Path(os.readlink(link)) == target:
            return
        link.unlink()
    link.symlink_to(target)


def make_holdout(folder: str | Path, split: str, size: int, seed: int, output: str | Path,
                 dev_name: str = "dev", rest_name: str = "train") -> dict:
    """Write the held-out folder; returns its counts. Deterministic for (qrels, size, seed)."""
    folder, output = Path(folder).resolve(), Path(output)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        raise FileNotFoundError(f"{qrels_path}: no qrels for split {split!r}")
    qrels = load_qrels(qrels_path)
    judged = sorted(qid for qid, passages in qrels.items() if any(g > 0 for g in passages.values()))
    if not 0 < size < len(judged):
        raise ValueError(f"holdout size must be between 1 and {len(judged) - 1} (the judged queries of "
                         f"{qrels_path}), got {size}")
    rng = np.random.default_rng(seed)
    dev = set(np.asarray(judged)[rng.choice(len(judged), size=size, replace=False)].tolist())
    (output / "qrels").mkdir(parents=True, exist_ok=True)
    for name in ("corpus.jsonl", "queries.jsonl"):
        _link(folder / name, output / name)
    write_qrels(output / "qrels" / f"{dev_name}.tsv", {q: qrels[q] for q in sorted(dev)})
    write_qrels(output / "qrels" / f"{rest_name}.tsv", {q: p for q, p in qrels.items() if q not in dev})
    counts = {"source": str(qrels_path), "seed": seed, dev_name: len(dev), rest_name: len(qrels) - len(dev)}
    with atomic_write(output / "holdout.json") as handle:
        handle.write(json.dumps(counts, indent=2) + "\n")
    return counts
