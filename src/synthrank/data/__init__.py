"""Data formats (BEIR folders, TREC qrels and runs), validation and dataset resolution."""

from synthrank.data.beir import (
    BeirDataset,
    Corpus,
    Qrels,
    QrelsReport,
    available_splits,
    check_qrels,
    iter_jsonl,
    load_beir,
    load_corpus,
    load_qrels,
    load_queries,
    write_corpus,
    write_qrels,
    write_queries,
)
from synthrank.data.errors import DataFormatError, DatasetNotFoundError
from synthrank.data.resolve import resolve_dataset
from synthrank.data.trec import Run, load_run, load_trec_qrels, write_run, write_trec_qrels

__all__ = [
    "BeirDataset", "Corpus", "Qrels", "QrelsReport", "Run", "DataFormatError", "DatasetNotFoundError",
    "available_splits", "check_qrels", "iter_jsonl", "load_beir", "load_corpus", "load_qrels",
    "load_queries", "load_run", "load_trec_qrels", "resolve_dataset", "write_corpus", "write_qrels",
    "write_queries", "write_run", "write_trec_qrels",
]
