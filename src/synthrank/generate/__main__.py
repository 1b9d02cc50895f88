"""``python -m synthrank.generate {generate,generate-merge,judge} ...``: the commands on their own."""

from __future__ import annotations

import typer

from synthrank.generate.cli import generate_command, judge_command, merge_command

app = typer.Typer(add_completion=False, no_args_is_help=True)
app.command("generate")(generate_command)
app.command("generate-merge")(merge_command)
app.command("judge")(judge_command)

if __name__ == "__main__":
    app()
