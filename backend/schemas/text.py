"""Patterns every text field of a request carries, so ``/openapi.json`` says what is accepted,
and the integer type of request bodies.

No field takes a NUL character (PostgreSQL cannot store it in text, and it turned ``?q=%00``
into a match of everything on SQLite). Names and one-line values take no control character at
all; free text keeps tabs and line breaks.
"""

from __future__ import annotations

from typing import Annotated

from annotated_types import Ge, Le
from pydantic import BeforeValidator, Strict

# Free text: anything but NUL.
TEXT = r"^[^\x00]*$"
# One line of text with something visible in it (titles): no control characters, not blank.
LINE_OF_TEXT = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
# A name (model, label, artifact): no control characters.
NAME = r"^[^\x00-\x1f\x7f]*$"


def _integral_number(value: object) -> object:
    """JSON Schema counts 3.0 as an integer; pydantic's strict int does not. Anything else (a
    string, a boolean, 3.5) is left for the strict check to refuse."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def json_int(minimum: int, maximum: int) -> object:
    """An integer as JSON Schema means it (3 and 3.0, never "3" or true), within the bounds. The
    bounds come before the validator, or the schema would lose them."""
    return Annotated[int, Strict(), Ge(minimum), Le(maximum), BeforeValidator(_integral_number)]
