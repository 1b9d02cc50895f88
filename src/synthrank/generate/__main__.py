"""``python -m synthrank.generate {generate,generate-merge,judge,adapt} ...``: the commands on their own."""

from __future__ import annotations

import typer

from synthrank.generate.adapt_cli import adapt_command
from synthrank.generate.cli import generate_command, judge_command, merge_command

app = typer.Typer(add_completion=False, no_args_is_help=True)
app.command("generate")(generate_command)
app.command("generate-merge")(merge_command)
app.command("judge")(judge_command)
app.command("adapt")(adapt_command)

if __name__ == "__main__":
    app()
