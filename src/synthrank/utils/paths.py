"""Where synthrank keeps what it can recompute: downloaded datasets, embeddings, re-encoded models."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$SYNTHRANK_CACHE_DIR``, else ``~/.cache/synthrank``."""
    return Path(os.environ.get("SYNTHRANK_CACHE_DIR", Path.home() / ".cache" / "synthrank"))
