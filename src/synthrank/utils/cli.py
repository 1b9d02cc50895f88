"""What every synthrank command does when it cannot go on, and commands built from an options model."""

from __future__ import annotations

import types
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, Optional, Union, get_args, get_origin

import typer


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: <message>`` in red on stderr and exit with ``code``: 2 (as click does for
    bad usage) unless the caller says the work itself failed (1)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=code)


def _fits(default: Any, kind: Any) -> bool:
    """Whether typer can show ``default`` as the default of an option of type ``kind``."""
    if default is None:
        return True
    if get_origin(kind) is Literal:
        return default in get_args(kind)
    if kind is float:
        return isinstance(default, (int, float)) and not isinstance(default, bool)
    return isinstance(kind, type) and type(default) is kind


def _cli_type(model: type, name: str, info) -> Any:
    """The type typer parses for a field (typer checks ``Literal`` choices itself)."""
    from synthrank.utils.options import cli_of

    cli = cli_of(info)
    if cli.type is not None:
        return cli.type
    annotation = info.annotation
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
    else:
        members = [annotation]
    if len(members) == 1:
        (kind,) = members
        if get_origin(kind) is Literal or kind in (bool, int, float, str, Path):
            return kind
    raise TypeError(f"{model.__name__}.{name}: typer cannot parse {annotation}; declare Cli(type=..., parse=...)")


def options_command(model: type, run: Callable[..., None], *, extras: Callable | list | None = None,
                    required: bool = True, name: str, doc: str) -> Callable[..., None]:
    """A typer command whose options are the fields of the pydantic ``model`` (its single
    declaration: flag, type, help = the field's description, shown default = the field's
    default), followed by the typer-annotated parameters of ``extras`` (a function, or a list of
    ``inspect.Parameter``: options that are no field, e.g. ``--config``, ``--quiet``, shortcuts).

    ``run(given, **extras)`` receives in ``given`` only the options that were typed (after
    ``Cli.parse``), so that a config file may set the others; the model then supplies the
    defaults and validates. ``required``: fields without a default are required by typer too (a command
    that takes ``--config`` passes False: the file may give them)."""
    import inspect

    from synthrank.utils.options import cli_of, flag_of, model_fields_with_cli

    fields = model_fields_with_cli(model)
    # required options first (e.g. --dataset before the inherited how-to options of EvalOptions)
    fields = dict(sorted(fields.items(), key=lambda item: not item[1].is_required()))
    parameters = []
    for field, info in fields.items():
        kind = _cli_type(model, field, info)
        flag = flag_of(field, info)
        declaration = f"{flag}/--no-{flag[2:]}" if kind is bool else flag
        default = None if info.is_required() or info.default_factory is not None else info.default
        shown = cli_of(info).show_default
        if shown is not None or not _fits(default, kind):
            default = None  # help shows the model's default as text; the model supplies it
        option = typer.Option(declaration, help=info.description,
                              show_default=shown if shown is not None else default not in (None, ""))
        if required and info.is_required():
            default = inspect.Parameter.empty
        parameters.append(inspect.Parameter(field, inspect.Parameter.KEYWORD_ONLY, default=default,
                                            annotation=Annotated[Optional[kind], option]))
    if extras is None:
        extra_parameters = []
    elif callable(extras):
        extra_parameters = list(inspect.signature(extras, eval_str=True).parameters.values())
    else:
        extra_parameters = list(extras)
    clash = {p.name for p in extra_parameters} & set(fields)
    if clash:
        raise TypeError(f"{name}: extra options {sorted(clash)} are fields of {model.__name__}")

    def command(typer_context: typer.Context, **values) -> None:
        given = {}
        for field, info in fields.items():
            value = values.pop(field)
            source = typer_context.get_parameter_source(field)
            if source is None or source.name not in ("COMMANDLINE", "ENVIRONMENT"):
                continue  # not typed: a config file or the model's default applies
            if value is None or (isinstance(value, (list, tuple)) and not value):
                continue
            parse = cli_of(info).parse
            if parse is not None:
                try:
                    value = parse(value)
                except ValueError as error:
                    fail(str(error))
            given[field] = value
        run(given, **values)

    context = inspect.Parameter("typer_context", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    command.__signature__ = inspect.Signature(
        [context] + parameters + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in extra_parameters])
    command.__name__ = command.__qualname__ = name
    command.__doc__ = doc
    return command
