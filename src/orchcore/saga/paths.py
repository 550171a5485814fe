"""Dotted context paths: reading, writing and checking them.

Mappings name places in the workflow context with dotted paths (``event.date``,
``venue.reservation_id``); list items are addressed by index (``guests.0.name``).
Endpoints may interpolate paths in braces: ``/reservations/{venue.reservation_id}/cancel``;
each value goes in percent-encoded as one path segment (:func:`path_segment`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$")
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")

_MISSING = object()


class PathError(ValueError):
    pass


def check_path(path: str) -> str:
    if not PATH.match(path):
        raise PathError(f"{path!r} is not a well-formed dotted path (e.g. event.date)")
    return path


def check_template(template: str) -> str:
    """Every {placeholder} in an endpoint must be a well-formed path."""
    for match in PLACEHOLDER.finditer(template):
        check_path(match.group(1))
    if template.count("{") != template.count("}"):
        raise PathError(f"{template!r} has unbalanced braces")
    return template


def read(document: Any, path: str, default: Any = _MISSING) -> Any:
    current = document
    for part in path.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            if default is _MISSING:
                raise PathError(f"{path!r} is not in the context (missing {part!r})")
            return default
    return current


def write(document: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    current = document
    for part in parts[:-1]:
        child = current.get(part)
        if not isinstance(child, dict):
            child = {}
            current[part] = child
        current = child
    current[parts[-1]] = value


def build_request(mapping: Mapping[str, str], context: Any) -> dict[str, Any]:
    """The request body: each field from its context path (nested fields by dots)."""
    body: dict[str, Any] = {}
    for field, path in mapping.items():
        write(body, field, read(context, path))
    return body


def apply_output(mapping: Mapping[str, str], response: Any, context: dict[str, Any]) -> None:
    """Copy response fields into the context: ``{context_path: response_path}``."""
    for target, source in mapping.items():
        write(context, target, read(response, source))


def render(template: str, context: Any) -> str:
    """The endpoint with each {placeholder} replaced by its context value as one path
    segment: a value can name a resource, never change which path is called."""
    return PLACEHOLDER.sub(lambda m: path_segment(read(context, m.group(1))), template)


def path_segment(value: Any) -> str:
    """``value`` percent-encoded as exactly one path segment.

    ``/``, ``?``, ``#`` and ``%`` are encoded, so ``../payments`` stays inside its
    segment; a value of only dots is encoded whole (``%2E%2E``) so it is never a dot
    segment (the call path refuses an encoded one too, rather than guess).
    """
    text = str(value)
    if text and text.strip(".") == "":
        return "%2E" * len(text)
    return quote(text, safe="")
