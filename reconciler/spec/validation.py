"""pydantic's validation errors as problems a person can act on: the file, the line and
column the YAML document gives, the dotted field, and a message in plain words (a
"did you mean" for an unknown field, a hint instead of a regular expression)."""

from __future__ import annotations

import difflib
import typing
from pathlib import Path

from pydantic import BaseModel, ValidationError

from reconciler.core.errors import Problem
from reconciler.spec.fields import PATTERN_HINTS
from reconciler.spec.manifest import Manifest
from reconciler.spec.yamldoc import Loc, YamlDocument


def dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def problem_at(file: Path, document: YamlDocument, loc: Loc, message: str, *, key: bool = False) -> Problem:
    position = document.key_position_of(loc) if key else document.position_of(loc)
    return Problem(
        str(file),
        message,
        position.line if position else None,
        position.column if position else None,
        dotted(loc) or None,
    )


def _document_loc(data: object, loc: tuple) -> tuple[Loc, bool]:
    """The part of a pydantic error location that exists in the YAML document.

    pydantic adds segments for union members and for dict keys ('[key]'); those are
    dropped. Returns the location and whether the error is about a mapping key.
    """
    found: list[str | int] = []
    for part in loc:
        if part == "[key]":
            return tuple(found), True
        if isinstance(data, dict) and isinstance(part, str):
            found.append(part)
            if part not in data:  # a missing or unknown field
                break
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            found.append(part)
            data = data[part]
        else:  # a union member or type name that pydantic added
            break
    return tuple(found), False


def _model_fields_at(loc: Loc) -> list[str]:
    """Field names the manifest allows at `loc` (for 'did you mean')."""
    annotation: object = Manifest
    for part in loc:
        model = _model_in(annotation)
        if isinstance(part, int) or model is None:
            annotation = _item_type(annotation)
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
    model = _model_in(annotation)
    return list(model.model_fields) if model else []


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        model = _model_in(argument)
        if model:
            return model
    return None


def _item_type(annotation: object) -> object:
    arguments = typing.get_args(annotation)
    return arguments[-1] if arguments else annotation


def _message(error: dict) -> str:
    kind, value = error["type"], error.get("input")
    context = error.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind == "string_pattern_mismatch":
        hint = PATTERN_HINTS.get(context.get("pattern", ""), "has a value that is not allowed")
        return f"{_short(value)} is not valid: {hint}"
    if kind == "string_type" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"must be a string; YAML read the unquoted value as the number {value!r}, so put it in quotes"
    if kind in ("value_error", "assertion_error"):
        return str(context.get("error", error["msg"]))
    message = error["msg"]
    for prefix, replacement in (
        ("Input should be", "must be"),
        ("Input should have", "must have"),
        ("List should have", "must have"),
        ("String should have", "must have"),
        ("Dictionary should have", "must have"),
    ):
        if message.startswith(prefix):
            message = replacement + message[len(prefix) :]
            break
    if value is not None and not isinstance(value, (dict, list)):
        message += f", got {_short(value)}"
    return message


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validation_problems(file: Path, document: YamlDocument, error: ValidationError) -> list[Problem]:
    grouped: dict[tuple[Loc, bool], list[dict]] = {}
    for item in error.errors(include_url=False):
        grouped.setdefault(_document_loc(document.data, item["loc"]), []).append(item)
    problems = [_group_problem(file, document, loc, about_key, items) for (loc, about_key), items in grouped.items()]
    return sorted(problems, key=lambda p: (p.line or 0, p.column or 0, p.field or ""))


def _group_problem(file: Path, document: YamlDocument, loc: Loc, about_key: bool, items: list[dict]) -> Problem:
    """One problem per place: a union (a variable's value) fails once per member type,
    which reads better as one message."""
    first = items[0]
    if first["type"] == "extra_forbidden":
        unknown = loc[-1]
        allowed = _model_fields_at(loc[:-1])
        close = difflib.get_close_matches(str(unknown), allowed, n=1)
        message = f"unknown field {unknown!r}"
        message += f"; did you mean {close[0]!r}?" if close else f"; allowed here: {', '.join(allowed)}"
        return problem_at(file, document, loc, message, key=True)
    if about_key:
        message = f"key {_message(first)}"
        return problem_at(file, document, loc, message, key=True)
    specific = [item for item in items if not item["type"].endswith("_type")]
    if len(items) > 1 and not specific:
        message = f"must be a string, number or boolean, got {_short(first.get('input'))}"
    else:
        message = _message((specific or items)[0])
    return problem_at(file, document, loc, message)
