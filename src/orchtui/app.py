"""`orch console`: the Textual app every pane plugs into, in the manner of k9s.

The app owns what panes share: the engine, the refresh schedule, the connection
state and the confirmation of mutating actions. Panes are listed in
:mod:`orchtui.panes`; this module knows none of them by name except the first one
shown.

Refresh: notifications on the engine's one LISTEN connection mark the panes they
concern dirty; a 250 ms tick fetches the visible pane if it is dirty or older than
the slow-refresh period (which also moves ages along and covers notifications lost
while disconnected). Nothing is fetched while a modal is open.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import App
from textual.binding import BindingType
from textual.command import Provider
from textual.message import Message
from textual.screen import ModalScreen, Screen

import orchtui
from orchcore import Orch, OrchError, Settings
from orchcore.actors import local_operator
from orchtui.actions import ConsoleAction, Mutation, allowed
from orchtui.connection import describe_error, is_connection_error
from orchtui.palette import ConsoleCommands
from orchtui.pane import Pane
from orchtui.panes import PANES, command_names, pane_for
from orchtui.screens import (
    ConfirmMutationScreen,
    ConsoleScreen,
    HelpScreen,
    MainScreen,
    PaneScreen,
)
from orchtui.source import ConsoleSource

if TYPE_CHECKING:
    from orchcore.client.credentials import ApiCredentials
    from orchcore.client.remote import RemoteOrch

#: How often the visible pane is considered for a refresh (so at most 4 fetches a second).
REFRESH_TICK_SECONDS = 0.25
#: A pane with no notification is fetched again after this long (ages, missed NOTIFYs).
SLOW_REFRESH_SECONDS = 5.0
#: While the database is unreachable, how often to try again.
RETRY_SECONDS = 1.0
#: The notification a daemon's event stream sends when it cannot say what changed.
RESET_TOPIC = "reset"

GLOBAL_ACTIONS: tuple[ConsoleAction, ...] = (
    ConsoleAction("question_mark", "help", "Help", "Show every key", key_display="?"),
    ConsoleAction(
        "slash", "filter", "Filter", "Filter the rows as you type (esc clears)", key_display="/"
    ),
    ConsoleAction(
        "colon", "command_bar", "Pane", "Go to a pane by name (tab completes)", key_display=":"
    ),
    ConsoleAction(
        "ctrl+p",
        "command_palette",
        "Palette",
        "Find any pane or action by name",
        # Not in the footer: at 80 columns a pane's own keys come first (help lists it).
        show=False,
        key_display="^p",
        priority=True,
    ),
    ConsoleAction(
        "escape",
        "go_back",
        "Back",
        "Clear the filter, or go back to the previous screen",
        show=False,
        key_display="esc",
    ),
    ConsoleAction("q", "quit", "Quit", "Leave the console"),
    # Textual 8 binds ctrl+c to copying text (and a hint to press q); on a console run
    # over SSH it is the reflex for "stop", as in k9s, so it quits from anywhere.
    ConsoleAction(
        "ctrl+c",
        "quit",
        "Quit",
        "Leave the console, from anywhere (a prompt or a question too)",
        show=False,
        key_display="^c",
        priority=True,
    ),
)


def stylesheet_dir() -> Path:
    """``styles/`` of the source checkout, else the copy the wheel puts in the package."""
    package = Path(orchtui.__file__).resolve().parent
    checkout = package.parents[1] / "styles"
    return checkout if checkout.is_dir() else package / "styles"


def stylesheets() -> list[str | PurePath]:
    return [path for path in sorted(stylesheet_dir().glob("*.tcss"))]


class EngineNotification(Message):
    """A NOTIFY from the engine's listener, carried into the app's message loop."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        super().__init__()
        self.payload = payload


class ListenerStateChanged(Message):
    def __init__(self, connected: bool) -> None:
        super().__init__()
        self.connected = connected


class OrchConsole(App[int]):
    """The console. Give it an open source (the engine, :class:`Orch`, or the daemon's API,
    :class:`~orchcore.client.remote.RemoteOrch`), or ``open_orch`` to open one itself."""

    TITLE = "orch console"
    CSS_PATH = stylesheets()
    COMMANDS: ClassVar[set[type[Provider] | Callable[[], type[Provider]]]] = {ConsoleCommands}
    BINDINGS: ClassVar[list[BindingType]] = [action.binding() for action in GLOBAL_ACTIONS]

    def __init__(
        self,
        orch: ConsoleSource | None = None,
        *,
        readonly: bool = False,
        open_orch: Callable[[], Awaitable[ConsoleSource]] | None = None,
        first_pane: str = "overview",
        actor: str | None = None,
    ) -> None:
        if (orch is None) == (open_orch is None):
            raise ValueError("give either an open Orch or open_orch, not both or neither")
        # Under NO_COLOR, Textual by default turns colours into greys by luminance, which
        # leaves red state text dark grey on dark grey. Native ANSI mode makes it drop
        # colour outright instead: the terminal's own foreground, symbols and reverse video.
        super().__init__(ansi_color=True if "NO_COLOR" in os.environ else None)
        self.orch = orch
        self.readonly = readonly
        #: whom the confirmations name: the local user on the database, the token's name
        #: over the API (where the daemon records the token's identity, whatever is sent)
        self.actor = actor or local_operator()
        self.pane_classes = PANES
        self._open_orch = open_orch
        self._first_pane = first_pane
        self._panes: set[Pane[Any]] = set()
        self._listener_connected: bool | None = None
        self._notification_handler: Callable[[dict[str, Any]], None] | None = None
        self._failure: tuple[Pane[Any], BaseException] | None = None
        #: refresh ticks so far, paused or not (tests count them instead of sleeping)
        self.refresh_ticks = 0
        #: one detail screen kept a kind of pane, shown again with the next such pane
        self._detail_screens: dict[type[Pane[Any]], PaneScreen] = {}

    # -- lifecycle ---------------------------------------------------------------------

    def get_default_screen(self) -> Screen[Any]:
        return MainScreen(PANES, first=self._first_pane, command_names=command_names())

    async def on_mount(self) -> None:
        if self.orch is None:
            assert self._open_orch is not None
            try:
                self.orch = await self._open_orch()
            except OrchError as exc:
                self.exit(1, message=f"orch console: {exc}")
                return
        self._follow_listener(self.orch)
        self.set_interval(REFRESH_TICK_SECONDS, self._refresh_visible_pane)
        self._refresh_visible_pane()
        self.refresh_chrome()
        self.call_after_refresh(_settle_the_heap)

    async def on_unmount(self) -> None:
        gc.unfreeze()
        self._stop_following_listener()
        if self._open_orch is not None and self.orch is not None:
            await self.orch.close()

    def _follow_listener(self, orch: ConsoleSource) -> None:
        listener = orch.listener
        if listener is None:
            return
        self._listener_connected = listener.connected

        # The listener calls these from asyncpg's callbacks; posting a message moves
        # the work into the app's own loop, where widgets may be touched.
        def forward(payload: dict[str, Any]) -> None:
            self._post_if_running(EngineNotification(payload))

        self._notification_handler = forward
        listener.subscribe(forward)
        # The listener has no way to drop a state handler; _post_if_running keeps a
        # closed console from being posted to.
        listener.on_connection_state(
            lambda connected: self._post_if_running(ListenerStateChanged(connected))
        )

    def _stop_following_listener(self) -> None:
        """An engine outliving the console (a test's, an embedding app's) stops calling it."""
        handler, self._notification_handler = self._notification_handler, None
        listener = self.orch.listener if self.orch is not None else None
        if handler is not None and listener is not None:
            listener.unsubscribe(handler)

    def _post_if_running(self, message: Message) -> None:
        if self.is_running:
            self.post_message(message)

    # -- state the chrome shows ------------------------------------------------------------

    @property
    def engine(self) -> ConsoleSource:
        """The open engine; panes call this only after their first fetch, when it is set."""
        if self.orch is None:
            raise RuntimeError("the console has not connected yet")
        return self.orch

    @property
    def over_api(self) -> bool:
        """Whether the source is a daemon's API (its label is the daemon's URL)."""
        label = self.orch.database_label if self.orch is not None else ""
        return label.startswith(("http://", "https://"))

    @property
    def _link(self) -> str:
        """What the banner says was lost: the database, or the daemon."""
        return "daemon" if self.over_api else "database"

    @property
    def database_label(self) -> str:
        return self.orch.database_label if self.orch is not None else "connecting…"

    @property
    def environment(self) -> str:
        return self.orch.settings.environment if self.orch is not None else "–"

    def now(self) -> datetime:
        return self.orch.clock.now() if self.orch is not None else datetime.now(UTC)

    @property
    def connection_state(self) -> str:
        """``live`` (notifications flowing), ``polling`` (no listener) or ``offline``."""
        if self.orch is None or self._connection_problem() is not None:
            return "offline"
        return "live" if self._listener_connected else "polling"

    def _connection_problem(self) -> str | None:
        if self._failure is not None and is_connection_error(self._failure[1]):
            return describe_error(self._failure[1])
        if self._listener_connected is False:
            listener = self.orch.listener if self.orch is not None else None
            last = listener.last_error if listener is not None else None
            return last or "the notification connection closed"
        return None

    def problem(self) -> str | None:
        """What the banner says, or None when all is well."""
        lost = self._connection_problem()
        if lost is not None:
            return f"✖ {self._link} connection lost — retrying… ({lost})"
        if self._failure is not None:
            pane, error = self._failure
            return f"✖ {pane.TITLE} could not refresh — retrying… ({describe_error(error)})"
        return None

    def refresh_chrome(self) -> None:
        problem = self.problem()
        for screen in self.screen_stack:
            if isinstance(screen, ConsoleScreen) and screen.is_mounted:
                screen.refresh_chrome(problem)

    @property
    def active_pane(self) -> Pane[Any] | None:
        """The pane the operator is looking at (under any modal that is open)."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, ConsoleScreen):
                return screen.active_pane
        return None

    # -- refresh -------------------------------------------------------------------------

    def track_pane(self, pane: Pane[Any]) -> None:
        self._panes.add(pane)

    def untrack_pane(self, pane: Pane[Any]) -> None:
        self._panes.discard(pane)
        if self._failure is not None and self._failure[0] is pane:
            self._failure = None
            self.refresh_chrome()

    def _refresh_visible_pane(self) -> None:
        self.refresh_ticks += 1
        pane = self.active_pane
        if pane is not None:
            self.fetch_if_visible(pane)

    def fetch_if_visible(self, pane: Pane[Any]) -> None:
        """Fetch the pane the operator looks at when it needs it (each tick, and as a pane
        comes on screen rather than at the next tick)."""
        if not self.screen_stack:
            return  # shutting down: the timer may fire once after the last screen went
        if self.orch is None or isinstance(self.screen, ModalScreen):
            return  # paused under a modal: nothing moves beneath a question
        if pane is self.active_pane and pane.needs_refresh(self._refresh_period()):
            pane.start_fetch(self.orch)

    def _refresh_period(self) -> float:
        """Slow while notifications flow; polling at the retry pace when they cannot."""
        if self._failure is not None or not self._listener_connected:
            return RETRY_SECONDS
        return SLOW_REFRESH_SECONDS

    def on_engine_notification(self, message: EngineNotification) -> None:
        # "reset": the daemon's stream could not tell what changed meanwhile (it restarted,
        # or its own LISTEN connection was lost): everything is refetched.
        everything = message.payload.get("topic") == RESET_TOPIC
        for pane in self._panes:
            if everything or pane.concerns(message.payload):
                pane.mark_dirty()

    def on_listener_state_changed(self, message: ListenerStateChanged) -> None:
        self._listener_connected = message.connected
        if message.connected:
            # NOTIFY has no replay: whatever changed while we were away is unknown.
            for pane in self._panes:
                pane.mark_dirty()
        self.refresh_chrome()

    def fetch_succeeded(self, pane: Pane[Any]) -> None:
        if self._failure is not None:
            self._failure = None
        self.refresh_chrome()

    def fetch_failed(self, pane: Pane[Any], error: BaseException) -> None:
        self._failure = (pane, error)
        self.refresh_chrome()

    # -- navigation ------------------------------------------------------------------------

    @property
    def main_screen(self) -> MainScreen:
        screen = self.screen_stack[0]
        assert isinstance(screen, MainScreen)
        return screen

    def show_pane(self, name: str) -> None:
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.main_screen.switch_to(name)
        self.refresh_chrome()

    def open_detail(self, pane: Pane[Any]) -> None:
        """Show a detail pane on a screen of its own, over the one the operator is on."""
        kept = self._detail_screens.get(type(pane))
        if kept is not None and kept not in self.screen_stack:
            self.call_later(self._reopen, kept, pane)
            return
        # The first of its kind is kept for the next one; a detail opened from a detail
        # of its kind (the kept screen is on the stack) gets a screen of its own.
        screen = PaneScreen(pane, command_names=command_names())
        if kept is None:
            self.install_screen(screen, name=f"detail:{type(pane).__name__}")
            self._detail_screens[type(pane)] = screen
        self.push_screen(screen)
        self.call_after_refresh(self.refresh_chrome)

    async def _reopen(self, screen: PaneScreen, pane: Pane[Any]) -> None:
        await screen.take(pane)
        if self.orch is not None:
            # Fetching while the screen comes back: the read overlaps the first paint.
            pane.start_fetch(self.orch)
        await self.push_screen(screen)
        self.refresh_chrome()

    def run_command(self, command: str) -> None:
        """What ``:`` does with what was typed."""
        # ":q" is the Queues pane (its alias, as the bus's issue names it); leaving takes
        # the whole word, vim's forced form, or the q key outside the prompt.
        if command in ("quit", "q!"):
            self.exit(0)
            return
        if not command:
            return
        pane = pane_for(command)
        if pane is None:
            names = ", ".join(p.NAME for p in PANES)
            self.notify(f"No pane named {command!r}. Panes: {names}.", severity="warning")
            return
        self.show_pane(pane.NAME)

    async def run_pane_action(self, pane: Pane[Any], action: ConsoleAction) -> None:
        await self.run_action(action.action_string, pane)

    async def run_global_action(self, action: ConsoleAction) -> None:
        await self.run_action(action.action_string)

    # -- global actions ---------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "filter":
            pane = self.active_pane
            return pane is not None and pane.filter_table is not None
        return True

    def action_help(self) -> None:
        pane = self.active_pane
        self.push_screen(
            HelpScreen(
                pane_title=pane.TITLE if pane is not None else "",
                pane_actions=allowed(pane.ACTIONS, readonly=self.readonly) if pane else [],
                global_actions=[a for a in GLOBAL_ACTIONS if self.check_action(a.name, ())],
                pane_names=[p.NAME for p in PANES],
                readonly=self.readonly,
            )
        )

    def action_filter(self) -> None:
        if isinstance(self.screen, ConsoleScreen):
            self.screen.open_filter()

    def action_command_bar(self) -> None:
        if isinstance(self.screen, ConsoleScreen):
            self.screen.open_command_bar()

    def action_go_back(self) -> None:
        screen = self.screen
        if not isinstance(screen, ConsoleScreen):
            return
        if screen.clear_filter():
            return
        if isinstance(screen, PaneScreen):
            self.pop_screen()
            self.call_after_refresh(self.refresh_chrome)

    # -- mutations --------------------------------------------------------------------------

    def confirm_mutation(self, mutation: Mutation, *, origin: Pane[Any]) -> None:
        """Ask, and if the operator confirms with a reason, do it in their name."""
        if self.readonly:
            return

        def answered(reason: str | None) -> None:
            if reason is not None:
                self.run_worker(self._perform(mutation, reason, origin), group="mutation")

        self.push_screen(ConfirmMutationScreen(mutation, actor=self.actor), answered)

    async def _perform(self, mutation: Mutation, reason: str, origin: Pane[Any]) -> None:
        try:
            result = await mutation.perform(self.actor, reason)
        except OrchError as exc:
            self.notify(str(exc), title=f"{mutation.title} failed", severity="error")
        except Exception as exc:
            what = "database unavailable: " if is_connection_error(exc) else ""
            self.notify(
                f"{what}{describe_error(exc)}", title=f"{mutation.title} failed", severity="error"
            )
        else:
            if mutation.report is not None:
                outcome = mutation.report(result)
                self.notify(outcome.message, title=mutation.title, severity=outcome.severity)
            else:
                self.notify(mutation.done, title=mutation.title)
        origin.mark_dirty()


def _settle_the_heap() -> None:
    """What is alive once the console has started (Textual, the engine, the panes) lives
    as long as the console does: frozen out of the cycle collector's sight, so the full
    collections that a big fetch's allocations set off (a 1,000-span trace) do not walk
    it all again; measured, about a quarter of the time to open such a trace."""
    gc.collect()
    gc.freeze()


def run_console(settings: Settings, *, readonly: bool, dsn: str | None) -> int:
    """Open the engine, run the console until the operator quits, close the engine."""
    return asyncio.run(_run_console(settings, readonly=readonly, dsn=dsn))


async def _run_console(settings: Settings, *, readonly: bool, dsn: str | None) -> int:
    try:
        # The console never migrates (a schema older or newer than this orch's is refused
        # with what to do); it routes no calls, so it needs no discovery cache.
        orch = await Orch.open(settings, dsn=dsn, start_discovery=False)
    except OrchError as exc:
        print(f"orch console: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    try:
        app = OrchConsole(orch, readonly=readonly)
        await app.run_async()
        return app.return_code or 0
    finally:
        await orch.close()


def run_api_console(credentials: ApiCredentials, *, readonly: bool) -> int:
    """The console over the daemon's API: no database driver, the token's role deciding
    what it may do (a token that may not write gets the read-only console)."""
    return asyncio.run(_run_api_console(credentials, readonly=readonly))


def api_console(source: RemoteOrch, *, readonly: bool, first_pane: str = "overview") -> OrchConsole:
    """The console on a daemon's API: read-only when asked, or when the token's role may
    not write (its mutating keys hidden; the daemon refuses them anyway), and naming the
    token as the daemon's audit log will."""
    return OrchConsole(
        source,
        readonly=readonly or not source.identity.may("write"),
        actor=source.actor,
        first_pane=first_pane,
    )


async def _run_api_console(credentials: ApiCredentials, *, readonly: bool) -> int:
    from orchcore.client.remote import RemoteOrch

    try:
        source = await RemoteOrch.connect(credentials)
    except OrchError as exc:
        print(f"orch console: {exc}", file=sys.stderr)
        return 1
    if not source.identity.may("read"):
        await source.close()
        print(
            f"orch console: the token {source.identity.name!r} ({source.identity.role}) may "
            "not read; the console needs an operator's token (monitoring_system or more)",
            file=sys.stderr,
        )
        return 1
    try:
        app = api_console(source, readonly=readonly)
        await app.run_async()
        return app.return_code or 0
    finally:
        await source.close()
