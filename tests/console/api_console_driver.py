"""Run as a process of its own by test_console_over_api.py: the console over the API
with nothing of the database's — no DSN in the environment, and every connection to a
PostgreSQL port or socket refused — driving a breaker reset and a workflow retry.

Prints one JSON line of what it saw; exits 0 when both actions were confirmed."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys

DATABASE_PORTS = {5432}


def refuse_the_database() -> None:
    """Any attempt to reach PostgreSQL from this process fails loudly."""
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: object) -> None:
        port = address[1] if isinstance(address, tuple) and len(address) > 1 else None
        path = address if isinstance(address, str | bytes) else ""
        if port in DATABASE_PORTS or ".s.PGSQL" in str(path):
            raise OSError(f"this process may not reach the database ({address!r})")
        real_connect(self, address)  # type: ignore[arg-type]

    socket.socket.connect = connect  # type: ignore[method-assign]


async def main() -> int:
    from orchcore.client.credentials import resolve_credentials
    from orchcore.client.remote import RemoteOrch
    from orchtui.app import api_console
    from tests.console.helpers import on_screen, pane_loaded

    credentials = resolve_credentials(api_url=None, token_file=None, ca_file=None)
    source = await RemoteOrch.connect(credentials)
    seen: dict[str, object] = {"readonly": None}
    try:
        app = api_console(source, readonly=False)
        seen["readonly"] = app.readonly
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            app.show_pane("breakers")
            await pane_loaded(app, "breakers")
            await on_screen(app, "catering → photographers")
            pane = app.active_pane
            assert pane is not None
            pane.set_filter("photographers")  # the saga's calls made breakers of their own
            await pilot.pause()
            await pilot.press("r", "shift+tab", *"venue fixed", "enter")
            await on_screen(app, "is closed")
            app.show_pane("workflows")
            await pane_loaded(app, "workflows")
            await on_screen(app, "✖ failed")
            await pilot.press("R")
            await pilot.press("shift+tab", *"card limit raised", "enter")
            await on_screen(app, "● completed")  # retried, and the daemon ran it on
            seen["actor"] = app.actor
    finally:
        await source.close()
    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    assert not any(k in os.environ for k in ("ORCH_DATABASE_URL", "ORCH_TEST_DSN", "PGHOST"))
    refuse_the_database()
    sys.exit(asyncio.run(main()))
