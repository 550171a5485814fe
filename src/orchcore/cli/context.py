"""Shared plumbing of the verbs: opening the engine, confirmation, key=value parsing."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import click

from orchcore.errors import ValidationFailed
from orchcore.settings import Settings

P = ParamSpec("P")
T = TypeVar("T")

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def settings_from(ctx: click.Context) -> Settings:
    obj: dict[str, Any] = ctx.ensure_object(dict)
    return Settings.from_env(database_url=obj.get("dsn"))


def run_with_orch(
    coro_fn: Callable[..., Awaitable[T]], *, listen: bool = False
) -> Callable[..., T]:
    """Open the engine for one verb, run it, close the engine (and its embedded server).

    A verb never migrates: a schema older or newer than this orch's stops it with one
    line saying what to do (`orch db migrate` is the verb that migrates)."""

    @functools.wraps(coro_fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        # Imported here, when a verb runs: help and --version need none of the engine.
        from orchcore.facade import Orch

        ctx = click.get_current_context()
        settings = settings_from(ctx)

        async def main() -> T:
            # Orch.open checks the schema (SchemaMode.CHECK) unless told to migrate.
            orch = await Orch.open(settings, listen=listen, start_discovery=False)
            try:
                return await coro_fn(orch, *args, **kwargs)
            finally:
                await orch.close()

        return asyncio.run(main())

    return wrapper


def confirm_destructive(prompt: str, *, yes: bool) -> None:
    """Ask before a destructive action; refuse without --yes when nobody can answer."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise ValidationFailed(
            "--yes", f"{prompt.rstrip('?')}: confirm with --yes (stdin is not a terminal)"
        )
    if not click.confirm(prompt, default=False):
        raise click.Abort()


def parse_pairs(pairs: tuple[str, ...], *, option: str) -> dict[str, Any]:
    """key=value pairs; values that parse as JSON (numbers, true, lists) are typed."""
    import json

    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValidationFailed(option, f"expected key=value, got {pair!r}")
        try:
            result[key] = json.loads(value)
        except ValueError:
            result[key] = value
    return result


def load_document(path: str, *, option: str) -> dict[str, Any]:
    """A JSON or YAML file (or - for stdin) holding one object."""
    import json

    import yaml

    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
    except OSError as exc:
        raise ValidationFailed(option, f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ValidationFailed(option, f"{path} is not valid JSON/YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValidationFailed(option, f"{path} must hold one object")
    return data
