"""Embedding cache keyed by what produced the vectors.

The key hashes the encoder fingerprint (weight bytes + encoding settings) and the corpus
content (every id, title and text, in order), so changing the model, a setting or a single
passage can never reuse stale vectors. Vectors are stored as ``.npy`` and read with
``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from synthrank.data.beir import Corpus
from synthrank.utils import atomic_write, cache_dir


def corpus_fingerprint(corpus: Corpus) -> str:
    digest = hashlib.sha256()
    for pid, title, text in zip(corpus.ids, corpus.titles, corpus.texts):
        digest.update(f"{pid}\x1f{title}\x1f{text}\x1e".encode())
    return digest.hexdigest()


class EmbeddingCache:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else cache_dir() / "embeddings"

    def key(self, encoder_fingerprint: str, corpus: Corpus) -> str:
        return hashlib.sha256(f"{encoder_fingerprint}\n{corpus_fingerprint(corpus)}".encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def load(self, key: str, expected_rows: int) -> np.ndarray | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            vectors = np.load(path, allow_pickle=False, mmap_mode="r")
        except (ValueError, OSError):
            return None  # a damaged entry is recomputed, never trusted
        if vectors.ndim != 2 or vectors.shape[0] != expected_rows:
            return None
        return np.array(vectors)  # a writable in-memory copy; the mmap closes

    def save(self, key: str, vectors: np.ndarray, meta: dict | None = None) -> Path:
        path = self.path(key)
        with atomic_write(path, "wb") as handle:
            np.save(handle, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
        if meta is not None:
            with atomic_write(path.with_suffix(".json")) as handle:
                json.dump(meta, handle, indent=2)
        return path

    def get_or_compute(self, encoder_fingerprint: str, corpus: Corpus,
                       compute: Callable[[], np.ndarray], meta: dict | None = None) -> tuple[np.ndarray, bool]:
        """Return (vectors, hit)."""
        key = self.key(encoder_fingerprint, corpus)
        cached = self.load(key, len(corpus))
        if cached is not None:
            return cached, True
        vectors = compute()
        self.save(key, vectors, meta)
        return vectors, False
