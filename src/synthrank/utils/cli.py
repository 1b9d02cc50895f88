"""What every synthrank command does when it cannot go on."""

from __future__ import annotations

from typing import NoReturn

import typer


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: <message>`` in red on stderr and exit with ``code``: 2 (as click does for
    bad usage) unless the caller says the work itself failed (1)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=code)
