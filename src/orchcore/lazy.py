"""Package namespaces whose members are imported on first use (PEP 562).

A package's ``__init__`` that imports its members eagerly makes every import of
any one of its modules pay for all of them: ``orchcore.callpath.tls`` used to
bring in httpx through ``orchcore.callpath.caller``. Packages list where each
member lives instead, and the module is imported when the name is first read.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_members(
    package: str, homes: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``homes`` maps module → names."""
    home_of = {name: module for module, names in homes.items() for name in names}
    namespace = vars(importlib.import_module(package))

    def __getattr__(name: str) -> Any:
        module = home_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # later reads find it without coming here
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *home_of})

    return __getattr__, __dir__
