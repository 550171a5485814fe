"""Named SQL queries kept in .sql files beside the module that runs them.

A file holds blocks introduced by ``-- name: query_name`` lines; the text up to the
next such line is the query. Keeping SQL in SQL files means it is read, reviewed and
syntax-highlighted as SQL, and every statement the engine runs has a name.
"""

from __future__ import annotations

import re
from importlib import resources

_NAME_LINE = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


class Queries:
    def __init__(self, package: str, filename: str = "queries.sql") -> None:
        text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
        self._queries = parse_named_queries(text)
        self._origin = f"{package}/{filename}"

    def __getattr__(self, name: str) -> str:
        try:
            return self._queries[name]
        except KeyError:
            raise AttributeError(f"no query named {name!r} in {self._origin}") from None

    def names(self) -> list[str]:
        return sorted(self._queries)


def parse_named_queries(text: str) -> dict[str, str]:
    queries: dict[str, str] = {}
    matches = list(_NAME_LINE.finditer(text))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        body = text[match.end() : end].strip()
        name = match.group(1)
        if name in queries:
            raise ValueError(f"query {name!r} defined twice")
        if not body:
            raise ValueError(f"query {name!r} is empty")
        queries[name] = body
    return queries
