"""Helpers shared by every layer of synthrank: atomic file writes, the cache folder, finding
the files of a model shipped inside a PyPI package, and the command lines' error exit.

This package imports nothing from synthrank, so any module may import it without a cycle.
``synthrank.utils.cli`` (which imports typer) is left out here; import it by name.
"""

from synthrank.utils.files import atomic_write
from synthrank.utils.packaged import packaged_file
from synthrank.utils.paths import cache_dir

__all__ = ["atomic_write", "cache_dir", "packaged_file"]
