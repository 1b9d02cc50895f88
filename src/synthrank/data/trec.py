"""TREC run files (``qid Q0 docid rank score tag``) and TREC qrels (``qid 0 docid grade``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from synthrank.data.beir import Qrels, iter_lines, load_qrels
from synthrank.utils import atomic_write
from synthrank.data.errors import DataFormatError

Run = dict[str, dict[str, float]]
"""query id -> passage id -> retrieval score."""


def write_run(path: str | Path, run: Mapping[str, Mapping[str, float]], tag: str = "synthrank") -> int:
    """Write a TREC run, each query's hits sorted by descending score; returns the row count."""
    rows = 0
    with atomic_write(path) as handle:
        for qid, hits in run.items():
            ranked = sorted(hits.items(), key=lambda item: (-item[1], item[0]))
            for rank, (pid, score) in enumerate(ranked, start=1):
                handle.write(f"{qid} Q0 {pid} {rank} {score:.6f} {tag}\n")
                rows += 1
    return rows


def load_run(path: str | Path) -> Run:
    path = Path(path)
    run: Run = {}
    for line_number, line in iter_lines(path):
        if not line.strip():
            continue
        columns = line.split()
        if len(columns) != 6:
            raise DataFormatError(path, line_number, None, f"expected 6 columns, got {len(columns)}")
        qid, _, pid, _, raw_score, _ = columns
        try:
            score = float(raw_score)
        except ValueError:
            raise DataFormatError(path, line_number, "score", f"not a number: {raw_score!r}") from None
        run.setdefault(qid, {})[pid] = score
    return run


def write_trec_qrels(path: str | Path, qrels: Mapping[str, Mapping[str, int]]) -> int:
    rows = 0
    with atomic_write(path) as handle:
        for qid, judged in qrels.items():
            for pid, grade in judged.items():
                handle.write(f"{qid} 0 {pid} {int(grade)}\n")
                rows += 1
    return rows


def load_trec_qrels(path: str | Path) -> Qrels:
    """TREC qrels share the BEIR reader, which accepts both layouts."""
    return load_qrels(path)
