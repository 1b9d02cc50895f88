"""Retrieval: exact dense search, BM25, and the embedding cache."""

from synthrank.retrieval.bm25 import BM25Config, BM25Retriever
from synthrank.retrieval.cache import EmbeddingCache, corpus_fingerprint
from synthrank.retrieval.exact import exact_search, search_run, to_run

__all__ = ["BM25Config", "BM25Retriever", "EmbeddingCache", "corpus_fingerprint", "exact_search",
           "search_run", "to_run"]
