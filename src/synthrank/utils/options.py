"""How a field of a stage's options model (``TrainConfig``, ``GenerateOptions``) appears on the
command line and in Hugging Face's ``TrainingArguments``.

Each option is declared once, as a pydantic field (name, type, default, ``description`` = help
text, validation); ``Cli`` and ``HF`` are extra ``Annotated`` metadata on that field, read by
:func:`synthrank.utils.cli.options_command` (which builds the typer options) and by
:class:`synthrank.train.arguments.RankingTrainingArguments` (which builds the ``Trainer``'s
arguments). pydantic keeps such metadata in ``FieldInfo.metadata`` and otherwise ignores it.

No typer import here: options models import this module and must stay cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

__all__ = ["Cli", "HF", "cli_of", "hf_of"]


@dataclass(frozen=True)
class Cli:
    """The command-line spelling of a field, where the default does not fit.

    ``flag``: the option name (default ``--field-name``; booleans get ``--x/--no-x``).
    ``type``: the type typer parses when the field's own does not fit (a dict read from
    ``KEY=VALUE`` items, a union). ``parse``: turns the parsed value into the field's input
    (may raise ValueError, shown as a one-line error). ``show_default``: the default as help
    shows it, when ``str(default)`` would mislead. ``hidden``: the field has no option (say why
    in a comment)."""

    flag: str | None = None
    type: Any = None
    parse: Callable[[Any], Any] | None = None
    show_default: str | None = None
    hidden: bool = False


@dataclass(frozen=True)
class HF:
    """The ``TrainingArguments`` argument(s) a training option sets, and how its value is
    converted (``convert(value)``; default: unchanged). ``None`` values are left out, so
    ``TrainingArguments`` keeps its own default, unless ``keep_none``."""

    names: tuple[str, ...]
    convert: Callable[[Any], Any] | None = None
    keep_none: bool = False

    def __init__(self, *names: str, convert: Callable[[Any], Any] | None = None, keep_none: bool = False):
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "convert", convert)
        object.__setattr__(self, "keep_none", keep_none)


def _metadata(info: FieldInfo, kind: type) -> Any:
    return next((item for item in info.metadata if isinstance(item, kind)), None)


def cli_of(info: FieldInfo) -> Cli:
    return _metadata(info, Cli) or Cli()


def hf_of(info: FieldInfo) -> HF | None:
    return _metadata(info, HF)


def flag_of(name: str, info: FieldInfo) -> str:
    """The option name of a field: ``Cli.flag`` or ``--field-name``."""
    return cli_of(info).flag or "--" + name.replace("_", "-")


def default_text(info: FieldInfo) -> str | None:
    """The default as ``--help`` shows it; None when there is none worth showing."""
    cli = cli_of(info)
    if cli.show_default is not None:
        return cli.show_default
    if info.is_required() or info.default_factory is not None or info.default is None:
        return None
    default = info.default
    if isinstance(default, (list, tuple)):
        return ",".join(map(str, default))
    return str(default)


def model_fields_with_cli(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """The fields of ``model`` that have a command-line option, in declaration order."""
    return {name: info for name, info in model.model_fields.items() if not cli_of(info).hidden}
