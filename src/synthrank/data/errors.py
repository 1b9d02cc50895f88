"""Errors raised for bad input files: they always name the file, the line and the field."""

from __future__ import annotations

from pathlib import Path


class DataFormatError(ValueError):
    """A record in an input file is malformed.

    The message reads ``<file>:<line>: field '<field>': <problem>`` so that a user can open the
    file at the right place without a traceback from inside a library.
    """

    def __init__(self, path: str | Path, line: int | None, field: str | None, problem: str):
        self.path = Path(path)
        self.line = line
        self.field = field
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        what = f" field '{field}':" if field else ""
        super().__init__(f"{where}:{what} {problem}")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset name could not be resolved to a folder (locally, in the cache or by download)."""


def error_message(error: BaseException) -> str:
    """The text of an error for the user; a KeyError's one argument without the quotes str()
    adds (stripping quotes from str() instead would also eat a quote that ends the message)."""
    if isinstance(error, KeyError) and len(error.args) == 1:
        return str(error.args[0])
    return str(error)
