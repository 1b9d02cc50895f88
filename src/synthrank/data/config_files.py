"""Reading TOML/JSON config files (recipes, training configs, experiments) with errors that
name the file, the line (for syntax errors) and the field (for validation errors)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from synthrank.data.beir import iter_jsonl
from synthrank.data.errors import DataFormatError

ModelT = TypeVar("ModelT", bound=BaseModel)


def format_location(loc: tuple) -> str:
    """pydantic's error location as a dotted path with indices: ``sources[1].set_grade``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _toml_error_line(error: Exception) -> int | None:
    line = getattr(error, "lineno", None)  # Python >= 3.14 sets it
    if line is None:
        match = re.search(r"at line (\d+)", str(error))
        line = int(match.group(1)) if match else None
    return line


def read_config_file(path: str | Path, error_cls: type[DataFormatError] = DataFormatError,
                     what: str = "config") -> dict:
    """Parse ``path`` as TOML (``.toml``), JSON (``.json``), or either (other suffixes)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise error_cls(path, line, None, f"not valid UTF-8 (byte 0x{raw[error.start]:02x}); "
                                          f"re-encode the file as UTF-8") from None
    suffix = path.suffix.lower()
    data = None
    if suffix != ".json":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            if suffix == ".toml":
                raise error_cls(path, _toml_error_line(error), None, f"invalid TOML ({error})") from None
    if data is None:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            kind = "JSON" if suffix == ".json" else "TOML/JSON"
            raise error_cls(path, error.lineno, None, f"invalid {kind} ({error.msg})") from None
    if not isinstance(data, dict):
        raise error_cls(path, None, None, "expected a table/object at the top level")
    return data


def validate_config(model_cls: type[ModelT], data: dict, origin: str | Path,
                    error_cls: type[DataFormatError] = DataFormatError) -> ModelT:
    """Validate ``data``; every problem is listed, the first one's field is named."""
    try:
        return model_cls.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        problems = "; ".join(f"{format_location(e['loc'])}: {e['msg']}" for e in error.errors())
        raise error_cls(origin, None, format_location(first["loc"]), problems) from None


def validation_summary(error: ValidationError, command_line: type[BaseModel] | None = None) -> str:
    """A pydantic validation error as one line, each problem naming its field: ``field: problem``;
    given the options model a command line was built from, its fields are named by their flags
    (``--max-length must be >= 1``)."""
    from synthrank.utils.options import flag_of

    parts = []
    for item in error.errors():
        message, loc = item["msg"].removeprefix("Value error, "), item["loc"]
        if not loc:
            parts.append(message)
        elif command_line is not None and loc[0] in command_line.model_fields:
            parts.append(f"{flag_of(str(loc[0]), command_line.model_fields[str(loc[0])])} {message}")
        else:
            parts.append(f"{format_location(loc)}: {message}")
    return "; ".join(parts)


def parse_assignments(items: list[str] | None, option: str) -> dict[str, Any]:
    """``KEY=VALUE`` command-line items as a dict; a value is read as JSON when it parses
    (numbers, booleans, lists), else kept as text. ValueError names ``option`` and the item."""
    values: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{option} expects KEY=VALUE, got {item!r}")
        try:
            values[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.strip()] = raw
    return values


def read_json_records(path: str | Path, what: str) -> list:
    """A JSON list (a single object counts as a list of one) or JSONL file, as a list; errors name
    the file and, for JSONL, the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not valid UTF-8 (byte {error.object[error.start]:#04x}); re-encode the file "
                         "as UTF-8") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:  # JSONL: one record a line, errors with the line number
        data = [record for _, record in iter_jsonl(path)]
    return [data] if isinstance(data, dict) else data
