"""Settings fields checked by type and range with pydantic: one source of truth for every way they come in.

A settings dataclass (``LockRecipe``, ``TrainConfig``) annotates each field with its type and range
(``Annotated[int, Field(ge=1)]``, ``Literal[...]``); ``check_fields`` validates (and coerces, e.g. ``"3"`` to 3)
an instance's fields in ``__post_init__``, and ``validate_values`` a mapping of field values from a YAML file
or from command-line flags, naming the field (or flag) and where it came from in one line.
"""

from __future__ import annotations

import dataclasses
import functools
import typing

from pydantic import BeforeValidator, Field, TypeAdapter, ValidationError

from ..errors import ModelLockError


def _not_bool(value):
    """true/false is not a number (pydantic would read it as 1/0)."""
    if isinstance(value, bool):
        raise ValueError("expected a number")
    return value


NUMBER = BeforeValidator(_not_bool)
Count = typing.Annotated[int, NUMBER, Field(ge=1)]  # epochs, batch size, steps: at least 1
NonNegativeInt = typing.Annotated[int, NUMBER, Field(ge=0)]
NonNegative = typing.Annotated[float, NUMBER, Field(ge=0.0)]
Positive = typing.Annotated[float, NUMBER, Field(gt=0.0)]
Fraction = typing.Annotated[float, NUMBER, Field(ge=0.0, le=1.0)]  # a share, 0..1


@functools.lru_cache(maxsize=None)
def field_types(cls: type) -> dict[str, typing.Any]:
    """``{field name: annotated type}`` of a dataclass, with its ``Annotated`` constraints."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


@functools.lru_cache(maxsize=None)
def _adapter(annotation) -> TypeAdapter:
    return TypeAdapter(annotation)


def describe(error: ValidationError) -> str:
    """The first problem pydantic found, as a phrase: ``input should be greater than or equal to 1``."""
    first = error.errors(include_url=False)[0]
    message = first["msg"].removeprefix("Value error, ")
    return message[:1].lower() + message[1:]


def validate_value(annotation, value, name: str, where: str):
    """``value`` checked (and coerced) against ``annotation``; ModelLockError ``where: name: problem, not value``."""
    try:
        return _adapter(annotation).validate_python(value)
    except ValidationError as e:
        raise ModelLockError(f"{where}{name}: {describe(e)}, not {value!r}") from None


def check_fields(obj, where: str) -> None:
    """Validate every field of the dataclass instance ``obj`` in place (``where`` starts the error line)."""
    for name, annotation in field_types(type(obj)).items():
        if dataclasses.is_dataclass(annotation):
            continue  # nested settings (a recipe's ``harden``) check their own fields
        setattr(obj, name, validate_value(annotation, getattr(obj, name), name, f"{where}: "))


def validate_values(types: dict[str, typing.Any], values: dict, where: str = "", names: dict | None = None) -> dict:
    """``values`` checked against ``types`` (unknown names are errors); ``names`` maps a field to how the user
    wrote it (``--epochs``). Errors read ``where: name: problem, not value``."""
    names = names or {}
    checked = {}
    for key, value in values.items():
        shown = names.get(key, key)
        if key not in types:
            raise ModelLockError(f"{where}unknown setting {shown!r}")
        checked[key] = validate_value(types[key], value, shown, where)
    return checked
