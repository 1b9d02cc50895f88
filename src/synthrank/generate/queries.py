"""Query input for generation: a BEIR folder, a ``queries.jsonl`` or a TSV; subsets and shards."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping
from pathlib import Path

from synthrank.data import DataFormatError, load_qrels, load_queries, resolve_dataset
from synthrank.data.beir import iter_lines


def load_query_tsv(path: str | Path) -> dict[str, str]:
    """``<qid>\\t<text>`` per line (MS MARCO ``queries.tsv``); a ``query-id``/``_id`` header is skipped."""
    path = Path(path)
    queries: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, line in iter_lines(path):
        line = line.rstrip("\n").rstrip("\r")
        if not line.strip():
            continue
        if "\t" not in line:
            raise DataFormatError(path, number, None, "expected '<query id>\\t<query text>'")
        qid, text = line.split("\t", 1)
        qid, text = qid.strip(), text.strip()
        if number == 1 and qid.lower() in {"query-id", "_id", "qid", "id", "query_id"}:
            continue
        if not qid:
            raise DataFormatError(path, number, "query-id", "empty")
        if any(char.isspace() for char in qid):
            raise DataFormatError(path, number, "query-id", f"id {qid!r} contains whitespace, which qrels and "
                                                             f"run files cannot hold; rename it")
        if not text:
            raise DataFormatError(path, number, "text", "empty")
        if qid in first_line:
            raise DataFormatError(path, number, "query-id", f"duplicate id {qid!r} (first on line {first_line[qid]})")
        first_line[qid] = number
        queries[qid] = text
    return queries


def load_query_source(source: str | Path, split: str | None = None) -> dict[str, str]:
    """Queries from a BEIR folder (optionally only those judged in ``split``), a
    ``.jsonl`` file in BEIR's ``_id``/``text`` format, a ``.tsv`` file, or a dataset name.
    A source without any query is an error."""
    queries, origin = _load_query_source(source, split)
    if not queries:
        raise DataFormatError(origin, None, None, "no queries" + (f" judged in split {split!r}" if split else
                                                                  " (the file is empty)"))
    return queries


def _load_query_source(source: str | Path, split: str | None) -> tuple[dict[str, str], Path]:
    path = Path(source).expanduser()
    if not path.exists():
        path = resolve_dataset(str(source), download=False)
    if path.is_dir():
        queries = load_queries(path / "queries.jsonl")
        if split is not None:
            qrels_path = path / "qrels" / f"{split}.tsv"
            if not qrels_path.is_file():
                raise FileNotFoundError(f"{qrels_path}: no qrels for split {split!r}")
            judged = load_qrels(qrels_path)
            queries = {qid: text for qid, text in queries.items() if qid in judged}
            return queries, qrels_path
        return queries, path / "queries.jsonl"
    if split is not None:
        raise ValueError("--split only applies to a BEIR folder")
    if path.suffix.lower() in {".tsv", ".txt"}:
        return load_query_tsv(path), path
    return load_queries(path), path


def read_id_list(spec: str) -> list[str]:
    """Query ids from a comma-separated list or a file with one id per line (``@file`` or a path)."""
    candidate = Path(spec[1:] if spec.startswith("@") else spec)
    if spec.startswith("@") or (candidate.is_file() and "," not in spec):
        return [line.split()[0] for line in candidate.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [part.strip() for part in spec.split(",") if part.strip()]


def select_queries(queries: Mapping[str, str], *, ids: Iterable[str] | None = None, sample: int | None = None,
                   seed: int = 0, limit: int | None = None) -> dict[str, str]:
    """Restrict to ``ids`` (in their order), then draw ``sample`` at random with ``seed`` (file
    order is kept), then keep the first ``limit``."""
    if ids is not None:
        ids = list(dict.fromkeys(ids))
        unknown = [qid for qid in ids if qid not in queries]
        if unknown:
            raise KeyError(f"{len(unknown)} query ids are not in the input (e.g. {', '.join(unknown[:3])})")
        selected = {qid: queries[qid] for qid in ids}
    else:
        selected = dict(queries)
    if sample is not None:
        if sample < 0:
            raise ValueError("--sample must be >= 0")
        if sample < len(selected):
            keep = set(random.Random(seed).sample(list(selected), sample))
            selected = {qid: text for qid, text in selected.items() if qid in keep}
    if limit is not None:
        if limit < 0:
            raise ValueError("--limit must be >= 0")
        selected = dict(list(selected.items())[:limit])
    return selected


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``"i/n"`` with ``0 <= i < n`` -> ``(i, n)``."""
    if spec is None:
        return None
    try:
        i_text, n_text = spec.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise ValueError(f"--shard {spec!r}: expected i/n, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {spec!r}: need 0 <= i < n (shards are numbered from 0)")
    return i, n


def shard_of(qid: str, n: int) -> int:
    """A query's shard: stable across machines, runs and input orders."""
    return int.from_bytes(hashlib.sha1(qid.encode("utf-8")).digest()[:8], "big") % n


def shard_queries(queries: Mapping[str, str], shard: tuple[int, int] | None) -> dict[str, str]:
    if shard is None:
        return dict(queries)
    i, n = shard
    return {qid: text for qid, text in queries.items() if shard_of(qid, n) == i}
