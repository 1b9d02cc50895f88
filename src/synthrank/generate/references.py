"""Reference passages for grounded generation: per query, a real passage at the top level.

A small model rewrites and degrades a real passage far more reliably than it invents facts, so
in grounded mode the generator sees, for each query, a passage known to answer it and writes
the lower levels relative to it; the real passage itself becomes the query's top-level passage.

References come from a BEIR folder's qrels (the highest-graded judged passage of each query) or
from a JSONL file of ``{"query-id", "corpus-id", "title", "text"}`` rows (``synthrank adapt``
writes one: the document a query was written from).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from synthrank.data import DataFormatError, iter_jsonl, load_beir, resolve_dataset

__all__ = ["Reference", "load_references", "references_from_qrels"]

# Words of a reference shown to the generator by default: enough for its main content; every
# word is attended to at every decoding step, so on a CPU longer references cost throughput
# (180 words with a few-shot turn: ~750 prompt tokens and 0.15 passages/s on 2 AVX2 cores).
MAX_REFERENCE_WORDS = 120


@dataclass(frozen=True)
class Reference:
    doc_id: str
    title: str
    text: str

    def to_dict(self) -> dict:
        return asdict(self)

    def prompt_text(self, max_words: int = MAX_REFERENCE_WORDS) -> str:
        words = (f"{self.title}. {self.text}" if self.title else self.text).split()
        return " ".join(words[:max_words]) + (" ..." if len(words) > max_words else "")


def references_from_qrels(qrels: dict[str, dict[str, int]], documents: dict[str, tuple[str, str]],
                          query_ids: Iterable[str]) -> dict[str, Reference]:
    """Each query's highest-graded judged passage (ties: the smallest id), for queries that have
    one with a positive grade. ``documents``: id -> (title, text)."""
    out = {}
    for qid in query_ids:
        judged = [(grade, doc) for doc, grade in qrels.get(qid, {}).items() if grade > 0 and doc in documents]
        if not judged:
            continue
        best = max(grade for grade, _ in judged)
        doc_id = min(doc for grade, doc in judged if grade == best)
        title, text = documents[doc_id]
        out[qid] = Reference(doc_id, title, text)
    return out


def _load_jsonl(path: Path) -> dict[str, Reference]:
    out: dict[str, Reference] = {}
    for line_no, row in iter_jsonl(path):
        values = {}
        for field in ("query-id", "corpus-id", "text"):
            value = row.get(field)
            if not isinstance(value, str) or not value.strip():
                raise DataFormatError(path, line_no, field, "must be a non-empty string")
            values[field] = value
        title = row.get("title", "")
        if not isinstance(title, str):
            raise DataFormatError(path, line_no, "title", "must be a string")
        if values["query-id"] in out:
            raise DataFormatError(path, line_no, "query-id", f"a second reference for query {values['query-id']!r}")
        out[values["query-id"]] = Reference(values["corpus-id"], title, values["text"])
    return out


def load_references(source: str | Path, split: str | None, query_ids: Iterable[str]) -> dict[str, Reference]:
    """References for ``query_ids`` from a JSONL file, or from a BEIR folder / dataset name and
    its ``split`` qrels. Queries without one are left out (the caller decides what that means)."""
    path = Path(source).expanduser()
    wanted = list(query_ids)
    if path.is_file():
        references = _load_jsonl(path)
        return {qid: references[qid] for qid in wanted if qid in references}
    folder = path if path.is_dir() else resolve_dataset(str(source), download=False)
    if split is None:
        raise ValueError(f"references from the BEIR folder {folder} need a split (its qrels name the passages)")
    data = load_beir(folder, split)
    documents = {doc_id: (title, text) for doc_id, title, text in zip(data.corpus.ids, data.corpus.titles, data.corpus.texts)}
    return references_from_qrels(data.qrels, documents, wanted)
