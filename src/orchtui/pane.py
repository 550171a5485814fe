"""The contract every pane implements, and the machinery it gets for free.

A pane is one module with two halves:

* a **fetch**: an async function taking :class:`~orchcore.Orch` and returning a
  snapshot (a pydantic model or dataclass, no widgets), and
* a **render**: a :class:`Pane` subclass whose :meth:`Pane.show` puts a snapshot
  on screen, updating rows in place by key (see :class:`~orchtui.widgets.KeyedTable`).

A subclass sets ``NAME``/``TITLE``/``TOPICS``/``ACTIONS``, implements ``fetch`` (usually
by calling the module's fetch function) and ``show``, and for each mutating action
a ``mutation_<name>`` method returning the :class:`~orchtui.actions.Mutation` to
confirm. Everything else is here: the console decides *when* to fetch (dirty from a
notification, or stale), runs at most one fetch per pane at a time in a worker,
keeps the data age, and reports failures to the console's connection banner.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from textual.widget import Widget

from orchtui.actions import ConsoleAction, Mutation, Unavailable
from orchtui.formatting import age
from orchtui.source import ConsoleSource
from orchtui.widgets.keyed_table import KeyedTable

if TYPE_CHECKING:
    from orchtui.app import OrchConsole

SnapshotT = TypeVar("SnapshotT")


class FilteredRows(Protocol):
    """What ``/`` filters: a KeyedTable, or LazyRows for rows too many to hand a table."""

    filter_text: str

    @property
    def row_count(self) -> int: ...

    @property
    def total_count(self) -> int: ...

    @property
    def selected_key(self) -> str | None: ...

    def set_filter(self, text: str) -> None: ...

    def focus(self, scroll_visible: bool = True) -> Any: ...


#: A fetch that takes longer than this is abandoned and counted as a lost connection.
FETCH_TIMEOUT_SECONDS = 10.0


class Pane(Widget, Generic[SnapshotT]):
    """A view of one part of the system, refreshed from the engine."""

    #: the name used by ``:name`` and the palette; top-level panes need one
    NAME: ClassVar[str] = ""
    #: other names ``:`` accepts (k9s-style short forms)
    ALIASES: ClassVar[tuple[str, ...]] = ()
    TITLE: ClassVar[str] = ""
    #: one line for the palette and the help screen
    SUMMARY: ClassVar[str] = ""
    #: notification topics (``orch`` channel) that make this pane's data stale
    TOPICS: ClassVar[frozenset[str]] = frozenset()
    #: the pane's keys; BINDINGS are derived from these
    ACTIONS: ClassVar[tuple[ConsoleAction, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if "ACTIONS" in cls.__dict__:
            # Derived before Textual merges bindings in its own __init_subclass__.
            cls.BINDINGS = [action.binding() for action in cls.ACTIONS]
        super().__init_subclass__(**kwargs)

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.snapshot: SnapshotT | None = None
        #: engine-clock time of the last successful fetch
        self.fetched_at: datetime | None = None
        self.last_error: BaseException | None = None
        self._dirty = True
        self._fetching = False
        self._last_attempt = -math.inf

    # -- what a pane implements -------------------------------------------------------

    async def fetch(self, orch: ConsoleSource) -> SnapshotT:
        raise NotImplementedError

    def show(self, snapshot: SnapshotT) -> None:
        raise NotImplementedError

    def concerns(self, notification: Mapping[str, Any]) -> bool:
        """Whether a notification makes this pane's data stale (by topic by default)."""
        return notification.get("topic") in self.TOPICS

    @property
    def breadcrumb(self) -> str:
        """Where the operator is, for the header: ``Services › venue``."""
        return self.TITLE

    @property
    def filter_table(self) -> FilteredRows | None:
        """The table ``/`` filters (the pane's first table by default; None: no filter)."""
        tables = self.query(KeyedTable)
        return tables.first() if tables else None

    # -- the console's side ----------------------------------------------------------------

    @property
    def console(self) -> OrchConsole:
        from orchtui.app import OrchConsole

        assert isinstance(self.app, OrchConsole)
        return self.app

    def on_mount(self) -> None:
        self.console.track_pane(self)
        self.update_border_title()
        # Fetched as soon as it is on screen, not at the next refresh tick (up to a
        # quarter of a second later): an opened trace or workflow shows at once.
        self.call_later(self.console.fetch_if_visible, self)

    def on_unmount(self) -> None:
        self.console.untrack_pane(self)

    def mark_dirty(self) -> None:
        self._dirty = True

    @property
    def dirty(self) -> bool:
        """Told by a notification that its data changed, and not fetched since."""
        return self._dirty

    def needs_refresh(self, every_seconds: float) -> bool:
        if self._fetching or not self.is_mounted:
            return False
        return self._dirty or time.monotonic() - self._last_attempt >= every_seconds

    def start_fetch(self, orch: ConsoleSource) -> None:
        """Fetch in a worker unless a fetch is already running (they never overlap)."""
        if self._fetching:
            return
        self._fetching = True
        # Cleared before the fetch starts, so a notification arriving during it marks
        # the pane dirty again and the next tick fetches what the notification said.
        self._dirty = False
        self._last_attempt = time.monotonic()
        self.run_worker(self._fetch_and_show(orch), group="fetch", exit_on_error=False)

    async def _fetch_and_show(self, orch: ConsoleSource) -> None:
        try:
            snapshot = await asyncio.wait_for(self.fetch(orch), FETCH_TIMEOUT_SECONDS)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.last_error = exc
            self.console.fetch_failed(self, exc)
            return
        finally:
            self._fetching = False
        self.snapshot = snapshot
        self.fetched_at = orch.clock.now()
        self.last_error = None
        self.show(snapshot)
        self.update_border_title()
        self.console.fetch_succeeded(self)

    def data_age(self, now: datetime) -> str:
        if self.fetched_at is None:
            return "loading…"
        return f"data {age(self.fetched_at, now)} old"

    def focus_primary(self) -> None:
        """Give the keyboard to the pane's main widget when it comes into view."""
        table = self.filter_table
        if table is not None:
            table.focus()
        elif self.can_focus:
            self.focus()

    # -- filter ---------------------------------------------------------------------------

    @property
    def filter_text(self) -> str:
        table = self.filter_table
        return table.filter_text if table is not None else ""

    def set_filter(self, text: str) -> None:
        table = self.filter_table
        if table is not None:
            table.set_filter(text)
            self.update_border_title()

    def update_border_title(self) -> None:
        """``Services [2/5] /ven``: what is shown of how many, and the filter if any."""
        title = self.breadcrumb
        table = self.filter_table
        if table is not None and self.snapshot is not None:
            shown, total = table.row_count, table.total_count
            title += f" [{shown}/{total}]" if shown != total else f" [{total}]"
            if table.filter_text:
                title += f" /{table.filter_text}"
        self.border_title = title

    # -- actions ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # A mutating action under --readonly is hidden from the footer and its key is dead.
        return not (action == "mutate" and self.console.readonly)

    def action_mutate(self, name: str) -> None:
        if self.console.readonly:
            return
        declared = {a.name for a in self.ACTIONS if a.mutating}
        if name not in declared:
            raise ValueError(f"{type(self).__name__} declares no mutating action {name!r}")
        build: Callable[[], Mutation | None] = getattr(self, f"mutation_{name}")
        try:
            mutation = build()
        except Unavailable as why:
            self.notify(str(why), severity="warning")
            return
        if mutation is None:
            self.notify("Select a row first.", severity="warning")
            return
        self.console.confirm_mutation(mutation, origin=self)
