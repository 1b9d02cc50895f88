"""BM25 through bm25s, with Anserini's defaults (k1 0.9, b 0.4, Porter-style English
stemming via Snowball, English stop words) so scores are comparable to published runs."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from synthrank.data.beir import Corpus
from synthrank.data.trec import Run


def _import_bm25s():
    """bm25s sets its logger to DEBUG when imported (it logs each index build); bring it back to
    synthrank's verbosity, so its lines show only with -v."""
    import bm25s

    verbose = logging.getLogger("synthrank").isEnabledFor(logging.INFO)
    logging.getLogger("bm25s").setLevel(logging.INFO if verbose else logging.WARNING)
    return bm25s


@dataclass(frozen=True)
class BM25Config:
    k1: float = 0.9
    b: float = 0.4
    method: str = "lucene"
    stemmer: str | None = "english"
    stopwords: str | None = "en"

    def __post_init__(self) -> None:
        if not self.k1 >= 0:
            raise ValueError(f"BM25 k1 must be >= 0 (Anserini: 0.9), got {self.k1}")
        if not 0 <= self.b <= 1:
            raise ValueError(f"BM25 b must be between 0 and 1 (Anserini: 0.4), got {self.b}")
        if self.stemmer:
            import Stemmer

            if self.stemmer not in Stemmer.algorithms():
                raise ValueError(f"unknown BM25 stemmer {self.stemmer!r}; choose 'none' or one of: "
                                 f"{', '.join(sorted(Stemmer.algorithms()))}")


class BM25Retriever:
    """Sparse lexical retrieval over ``title + " " + text`` of each passage."""

    def __init__(self, config: BM25Config | None = None, **overrides):
        cfg = config or BM25Config()
        self.config = BM25Config(**{**cfg.__dict__, **overrides})
        self._model = None
        self._passage_ids: list[str] = []

    def _stemmer(self):
        if not self.config.stemmer:
            return None
        import Stemmer

        return Stemmer.Stemmer(self.config.stemmer).stemWords

    def _tokenize(self, texts: list[str], return_ids: bool, show_progress: bool):
        bm25s = _import_bm25s()

        return bm25s.tokenize(texts, stopwords=self.config.stopwords or [], stemmer=self._stemmer(),
                              return_ids=return_ids, show_progress=show_progress)

    def index(self, corpus: Corpus, show_progress: bool = True) -> "BM25Retriever":
        bm25s = _import_bm25s()

        if not len(corpus):
            raise ValueError("BM25 needs at least one passage to index; the corpus is empty")
        tokens = self._tokenize(corpus.documents(), return_ids=True, show_progress=show_progress)
        self._model = bm25s.BM25(k1=self.config.k1, b=self.config.b, method=self.config.method)
        self._model.index(tokens, show_progress=show_progress)
        self._passage_ids = list(corpus.ids)
        return self

    def search(self, queries: dict[str, str], k: int, drop_self_hits: bool = True,
               show_progress: bool = True) -> Run:
        """Top-k passages per query; queries with no known term get an empty hit list."""
        if self._model is None:
            raise RuntimeError("call index(corpus) before search()")
        query_ids = list(queries)
        tokens = self._tokenize([queries[q] for q in query_ids], return_ids=False, show_progress=False)
        extra = 1 if drop_self_hits else 0
        k_asked = min(k + extra, len(self._passage_ids))
        indices, scores = self._model.retrieve(tokens, k=k_asked, show_progress=show_progress, n_threads=0)
        run: Run = {}
        for row, qid in enumerate(query_ids):
            hits: dict[str, float] = {}
            for index, score in zip(np.asarray(indices[row]), np.asarray(scores[row])):
                pid = self._passage_ids[int(index)]
                if score <= 0 or (drop_self_hits and pid == qid):
                    continue  # a zero score means no query term matched: not a hit
                hits[pid] = float(score)
                if len(hits) == k:
                    break
            run[qid] = hits
        return run

    def score_pairs(self, queries: dict[str, str], candidates: dict[str, list[str]]) -> dict[str, dict[str, float]]:
        """BM25 score of each query against each of its candidate passages (ids in the index);
        0.0 where no query term occurs in a passage. Statistics (IDF, lengths) are the index's."""
        if self._model is None:
            raise RuntimeError("call index(corpus) before score_pairs()")
        position = {pid: i for i, pid in enumerate(self._passage_ids)}
        query_ids = list(queries)
        tokens = self._tokenize([queries[q] for q in query_ids], return_ids=False, show_progress=False)
        scores: dict[str, dict[str, float]] = {}
        for qid, query_tokens in zip(query_ids, tokens):
            wanted = [pid for pid in candidates.get(qid, []) if pid in position]
            if not query_tokens:
                scores[qid] = dict.fromkeys(wanted, 0.0)
                continue
            all_scores = self._model.get_scores(list(query_tokens))
            scores[qid] = {pid: float(all_scores[position[pid]]) for pid in wanted}
        return scores
