"""Multi-level synthetic ranking contexts: an LLM writes passages at graded relevance levels
for real queries (``synthrank generate``) and grades (query, passage) pairs (``synthrank judge``).

Importing this package is cheap; model libraries load when a backend is built.
"""

from synthrank.generate.bundled import BundledModelMissing, bundled_generator_path
from synthrank.generate.levels import TREC_DL_LEVELS, Level, default_levels, load_levels

__all__ = ["BundledModelMissing", "Level", "TREC_DL_LEVELS", "bundled_generator_path", "default_levels",
           "load_levels"]
