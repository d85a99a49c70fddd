"""Patterns every text field of a request carries, so ``/openapi.json`` says what is accepted.

No field takes a NUL character (PostgreSQL cannot store it in text, and it turned ``?q=%00``
into a match of everything on SQLite). Names and one-line values take no control character at
all; free text keeps tabs and line breaks.
"""

from __future__ import annotations

# Free text: anything but NUL.
TEXT = r"^[^\x00]*$"
# One line of text with something visible in it (titles): no control characters, not blank.
LINE_OF_TEXT = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
# A name (model, label, artifact): no control characters.
NAME = r"^[^\x00-\x1f\x7f]*$"
