"""Reading and writing BEIR/MTEB folders: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.

Readers stream their files line by line and validate every record; a bad record raises
:class:`~synthrank.data.errors.DataFormatError` naming the file, line and field. Writers go
through a temporary file and an atomic rename, so a crash never leaves half a file behind.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from synthrank.data.errors import DataFormatError
from synthrank.utils import atomic_write

Qrels = dict[str, dict[str, int]]
"""query id -> passage id -> integer relevance grade."""


@dataclass
class Corpus:
    """Passages in file order; parallel lists keep memory low for large corpora."""

    ids: list[str] = field(default_factory=list)
    titles: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def documents(self) -> list[str]:
        """The strings an encoder sees: ``title + " " + text`` as BEIR and MTEB build them."""
        return [f"{t} {x}".strip() if t else x for t, x in zip(self.titles, self.texts)]

    def index(self) -> dict[str, int]:
        return {pid: i for i, pid in enumerate(self.ids)}


@dataclass
class QrelsReport:
    """How many qrels point at queries or passages that the dataset does not have."""

    num_rows: int
    unknown_query_rows: int
    unknown_passage_rows: int
    unknown_query_examples: list[str]
    unknown_passage_examples: list[str]

    @property
    def clean(self) -> bool:
        return self.unknown_query_rows == 0 and self.unknown_passage_rows == 0

    def describe(self) -> str:
        parts = []
        if self.unknown_query_rows:
            parts.append(
                f"{self.unknown_query_rows} of {self.num_rows} qrels rows name unknown queries "
                f"(e.g. {', '.join(self.unknown_query_examples)})"
            )
        if self.unknown_passage_rows:
            parts.append(
                f"{self.unknown_passage_rows} of {self.num_rows} qrels rows name unknown passages "
                f"(e.g. {', '.join(self.unknown_passage_examples)})"
            )
        return "; ".join(parts) if parts else "all qrels resolve"


# pytrec_eval keeps grades in a C int; a grade must also be a finite whole number.
MAX_GRADE = 2**31 - 1


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each line of a UTF-8 file (a byte-order mark at the start
    is dropped); bytes that are not UTF-8 raise DataFormatError naming the line and column."""
    path = Path(path)
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataFormatError(path, line_number, None,
                                      f"not valid UTF-8 (byte 0x{raw[error.start]:02x} at column {error.start + 1}); "
                                      f"re-encode the file as UTF-8") from None
            if line_number == 1 and line.startswith("\ufeff"):
                line = line[1:]
            yield line_number, line


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line; malformed JSON is an error."""
    path = Path(path)
    for line_number, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataFormatError(path, line_number, None, f"malformed JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise DataFormatError(path, line_number, None, "expected a JSON object")
        yield line_number, record


def _required_str(path: Path, line: int, record: dict, name: str, allow_empty: bool = False) -> str:
    if name not in record:
        raise DataFormatError(path, line, name, "missing")
    value = record[name]
    if isinstance(value, (int, float)) and name == "_id" and not isinstance(value, bool):
        value = str(value)  # some dumps store numeric ids; they are still ids
    if not isinstance(value, str):
        raise DataFormatError(path, line, name, f"expected a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise DataFormatError(path, line, name, "empty")
    return value


def _required_id(path: Path, line: int, record: dict) -> str:
    """An ``_id``: qrels and TREC run files separate their columns by whitespace, so an id
    holding whitespace could not be written to or read back from them."""
    value = _required_str(path, line, record, "_id")
    if any(char.isspace() for char in value):
        raise DataFormatError(path, line, "_id", f"id {value!r} contains whitespace, which qrels and run files "
                                                  f"cannot hold; rename it")
    return value


def load_corpus(path: str | Path) -> Corpus:
    """Read ``corpus.jsonl``: ``_id`` and ``text`` required, ``title`` optional, ids unique."""
    path = Path(path)
    corpus = Corpus()
    first_line: dict[str, int] = {}
    for line, record in iter_jsonl(path):
        pid = _required_id(path, line, record)
        title = record.get("title") or ""
        if not isinstance(title, str):
            raise DataFormatError(path, line, "title", f"expected a string, got {type(title).__name__}")
        # A passage may have an empty body only when its title carries the content.
        text = _required_str(path, line, record, "text", allow_empty=bool(title.strip()))
        if pid in first_line:
            raise DataFormatError(path, line, "_id", f"duplicate id {pid!r} (first on line {first_line[pid]})")
        first_line[pid] = line
        corpus.ids.append(pid)
        corpus.titles.append(title)
        corpus.texts.append(text)
    return corpus


def load_queries(path: str | Path) -> dict[str, str]:
    """Read ``queries.jsonl`` (``_id``, ``text``; ids unique) into ``{id: text}`` in file order."""
    path = Path(path)
    queries: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for line, record in iter_jsonl(path):
        qid = _required_id(path, line, record)
        text = _required_str(path, line, record, "text")
        if qid in first_line:
            raise DataFormatError(path, line, "_id", f"duplicate id {qid!r} (first on line {first_line[qid]})")
        first_line[qid] = line
        queries[qid] = text
    return queries


def _parse_grade(path: Path, line: int, raw: str) -> int:
    try:
        value = float(raw)
    except ValueError:
        raise DataFormatError(path, line, "score", f"not an integer grade: {raw!r}") from None
    if not math.isfinite(value) or value != int(value):
        raise DataFormatError(path, line, "score", f"not an integer grade: {raw!r}")
    if not 0 <= value <= MAX_GRADE:
        raise DataFormatError(path, line, "score", f"grade {raw!r} out of range: grades are whole numbers from 0 "
                                                   f"(not relevant) to {MAX_GRADE}")
    return int(value)


def load_qrels(path: str | Path) -> Qrels:
    """Read relevance judgements in BEIR TSV (``query-id corpus-id score``, header optional)
    or TREC format (``qid iteration docid grade``), detected per line by the column count."""
    path = Path(path)
    qrels: Qrels = {}
    seen: dict[tuple[str, str], int] = {}
    for line_number, line in iter_lines(path):
        if not line.strip():
            continue
        columns = line.split()
        if line_number == 1 and columns[:2] == ["query-id", "corpus-id"]:
            continue
        if len(columns) == 3:
            qid, pid, raw = columns
        elif len(columns) == 4:
            qid, _, pid, raw = columns
        else:
            raise DataFormatError(
                path, line_number, None, f"expected 3 (BEIR) or 4 (TREC) columns, got {len(columns)}"
            )
        grade = _parse_grade(path, line_number, raw)
        if (qid, pid) in seen:
            raise DataFormatError(
                path, line_number, "corpus-id",
                f"duplicate judgement for query {qid!r}, passage {pid!r} (first on line {seen[qid, pid]})",
            )
        seen[qid, pid] = line_number
        qrels.setdefault(qid, {})[pid] = grade
    return qrels


def check_qrels(qrels: Qrels, query_ids: Iterable[str], passage_ids: Iterable[str] | None) -> QrelsReport:
    """Count qrels rows whose query or passage is unknown (``passage_ids=None`` skips passages)."""
    known_queries = set(query_ids)
    known_passages = set(passage_ids) if passage_ids is not None else None
    rows = unknown_q = unknown_p = 0
    q_examples: list[str] = []
    p_examples: list[str] = []
    for qid, judged in qrels.items():
        rows += len(judged)
        if qid not in known_queries:
            unknown_q += len(judged)
            if len(q_examples) < 3:
                q_examples.append(qid)
        if known_passages is not None:
            for pid in judged:
                if pid not in known_passages:
                    unknown_p += 1
                    if len(p_examples) < 3:
                        p_examples.append(pid)
    return QrelsReport(rows, unknown_q, unknown_p, q_examples, p_examples)


@dataclass
class BeirDataset:
    """A BEIR folder loaded for one split: queries are restricted to those judged in the split."""

    path: Path
    split: str
    corpus: Corpus | None
    queries: dict[str, str]
    qrels: Qrels
    qrels_report: QrelsReport


def available_splits(folder: str | Path) -> list[str]:
    qrels_dir = Path(folder) / "qrels"
    return sorted(p.stem for p in qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []


def load_beir(folder: str | Path, split: str = "test", with_corpus: bool = True) -> BeirDataset:
    """Load a BEIR folder for ``split``; unknown ids in the qrels are counted, never dropped."""
    folder = Path(folder)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        splits = available_splits(folder)
        raise FileNotFoundError(f"{qrels_path}: no qrels for split {split!r}; available splits: {splits or 'none'}")
    for name in ("queries.jsonl",) + (("corpus.jsonl",) if with_corpus else ()):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name}: missing; a BEIR folder needs corpus.jsonl, queries.jsonl and qrels/")
    all_queries = load_queries(folder / "queries.jsonl")
    if not all_queries:
        raise DataFormatError(folder / "queries.jsonl", None, None, "no queries (the file is empty)")
    corpus = load_corpus(folder / "corpus.jsonl") if with_corpus else None
    if corpus is not None and not len(corpus):
        raise DataFormatError(folder / "corpus.jsonl", None, None, "no passages (the file is empty)")
    qrels = load_qrels(qrels_path)
    if not qrels:
        raise DataFormatError(qrels_path, None, None, "no judgements (the file is empty or holds only a header)")
    report = check_qrels(qrels, all_queries.keys(), corpus.ids if corpus is not None else None)
    queries = {qid: all_queries[qid] for qid in qrels if qid in all_queries}
    return BeirDataset(folder, split, corpus, queries, qrels, report)


def write_corpus(path: str | Path, passages: Iterable[Mapping[str, str]]) -> int:
    """Write passages (mappings with ``_id``, ``text`` and optional ``title``); returns the count."""
    count = 0
    with atomic_write(path) as handle:
        for passage in passages:
            record = {"_id": passage["_id"], "title": passage.get("title", ""), "text": passage["text"]}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_queries(path: str | Path, queries: Mapping[str, str]) -> int:
    with atomic_write(path) as handle:
        for qid, text in queries.items():
            handle.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
    return len(queries)


def write_qrels(path: str | Path, qrels: Mapping[str, Mapping[str, int]]) -> int:
    """Write BEIR TSV qrels with the ``query-id corpus-id score`` header; returns the row count."""
    rows = 0
    with atomic_write(path) as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for qid, judged in qrels.items():
            for pid, grade in judged.items():
                handle.write(f"{qid}\t{pid}\t{int(grade)}\n")
                rows += 1
    return rows
