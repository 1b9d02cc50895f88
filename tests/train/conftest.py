"""Fixtures for training tests (helpers live in train_helpers.py, a uniquely named module)."""

from __future__ import annotations

from pathlib import Path

import pytest

from train_helpers import make_tiny_model, make_toy_beir


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture()
def toy_beir(tmp_path) -> Path:
    return make_toy_beir(tmp_path / "toy")
