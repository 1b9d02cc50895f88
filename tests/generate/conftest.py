from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    path = Path(os.environ.get("SYNTHRANK_DATA_DIR", "../shared/data"))
    return path if path.is_absolute() else (REPO / path).resolve()


@pytest.fixture
def real_data() -> Path:
    path = data_dir()
    if not (path / "msmarco-dev-small" / "queries.jsonl").is_file():
        pytest.skip(f"real data not found under {path} (set SYNTHRANK_DATA_DIR)")
    return path


@pytest.fixture
def queries_file(tmp_path: Path) -> Path:
    path = tmp_path / "queries.jsonl"
    lines = [
        '{"_id": "q1", "text": "how long to boil an egg"}',
        '{"_id": "q2", "text": "capital of australia"}',
        '{"_id": "q3", "text": "symptoms of vitamin d deficiency"}',
        '{"_id": "q4", "text": "who invented the telephone"}',
        '{"_id": "q5", "text": "what causes thunder"}',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path
