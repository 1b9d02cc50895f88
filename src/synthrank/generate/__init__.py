"""Multi-level synthetic ranking contexts: an LLM writes passages at graded relevance levels
for real queries (``synthrank generate``) and grades (query, passage) pairs (``synthrank judge``).

The Python API is :func:`generate` (the function behind ``synthrank generate``; its options are
:class:`GenerateOptions`). Importing this package is cheap: :func:`generate` and its options are
imported on first use, model libraries when a backend is built.
"""

from synthrank.generate.bundled import BundledModelMissing, bundled_generator_path
from synthrank.generate.levels import TREC_DL_LEVELS, Level, default_levels, load_levels

__all__ = ["BundledModelMissing", "GenerateOptions", "GenerateResult", "Level", "TREC_DL_LEVELS",
           "bundled_generator_path", "default_levels", "generate", "load_levels"]

# name -> the module that defines it, imported on first use
_LAZY = {"generate": "api", "GenerateResult": "api", "GenerateOptions": "options"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"synthrank.generate.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'synthrank.generate' has no attribute {name!r}")
