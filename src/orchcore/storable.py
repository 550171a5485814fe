"""What PostgreSQL can store, checked before it is asked to.

JSON that Python accepts and PostgreSQL refuses: a ``\\u0000`` in a string or a key
(``jsonb`` and ``text`` cannot hold NUL), and the non-numbers NaN and ±Infinity that
Python's ``json`` reads and writes by default. A value like that from a service's
answer or a caller's request would fail the statement that stores it, again on every
retry. Checked where such values enter, so the error names the field and the
statement never fails.
"""

from __future__ import annotations

import json
import math
from typing import Any

#: Nesting deeper than this is refused: a hostile answer must not exhaust the stack.
MAX_DEPTH = 64


class Unstorable(ValueError):
    """A value PostgreSQL would refuse; ``where`` is the dotted path to it."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}" if where else why)
        self.where = where
        self.why = why


def check_storable(value: Any, where: str = "") -> None:
    """Raise :class:`Unstorable` naming the first part of ``value`` jsonb cannot hold."""
    _check(value, where, 0)


def _check(value: Any, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise Unstorable(where, f"nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, str):
        if "\x00" in value:
            raise Unstorable(where, "contains \\u0000, which PostgreSQL cannot store")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Unstorable(where, f"{value} is not a JSON number")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise Unstorable(where, f"key {key!r} is not a string")
            if "\x00" in key:
                raise Unstorable(where, "a key contains \\u0000, which PostgreSQL cannot store")
            _check(item, f"{where}.{key}" if where else key, depth + 1)
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check(item, f"{where}.{index}" if where else str(index), depth + 1)
        return
    raise Unstorable(where, f"a {type(value).__name__} is not JSON")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads_strict(data: bytes | str) -> Any:
    """JSON as the standard has it: NaN and Infinity refused, like PostgreSQL does."""
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def plain_text(value: str) -> str:
    """A pydantic validator for text fields: NUL refused (PostgreSQL's text cannot hold it)."""
    if "\x00" in value:
        raise ValueError("contains \\u0000, which PostgreSQL cannot store")
    return value


def storable_document(value: Any) -> Any:
    """A pydantic validator for JSON fields: refused unless PostgreSQL can store it."""
    try:
        check_storable(value)
    except Unstorable as exc:
        raise ValueError(str(exc)) from None
    return value


def storable_text(text: str) -> str:
    """Free text (an error message, a service's words) made storable: NUL shown as �."""
    return text.replace("\x00", "\ufffd")


def storable_value(value: Any, depth: int = 0) -> Any:
    """Any value made storable as jsonb, never refused: NUL shown as �, non-numbers
    as null, other objects as their text, nesting past MAX_DEPTH as its text. For what
    orch records as observed (span tags), where losing a character beats losing a row."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return storable_text(value) if "\x00" in value else value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= MAX_DEPTH:
        return storable_text(str(value))
    if isinstance(value, dict):
        return {storable_text(str(k)): storable_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_value(item, depth + 1) for item in value]
    return storable_text(str(value))
