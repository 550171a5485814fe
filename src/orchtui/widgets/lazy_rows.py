"""Keyed rows drawn only when they come into view: a cursor, a filter, no cells.

A DataTable measures and stores every row it is given, so handing it a 1,000-span trace
costs more than a frame before anything is drawn. :class:`LazyRows` keeps the rows as
they are (anything with a key, its plain text and a way to style itself) and styles
only the lines the terminal shows, through Textual's line API. It offers what panes
use of :class:`~orchtui.widgets.KeyedTable`: ``show_rows``, ``selected_key``,
``shown_keys``, ``set_filter``, and a message when the highlighted row changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Protocol

from rich.segment import Segment
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip


class LazyRow(Protocol):
    """What a row must offer: a stable key, the text the filter matches, its styling."""

    @property
    def key(self) -> str: ...

    @property
    def text(self) -> str: ...

    def styled(self) -> Text: ...


class LazyRows(ScrollView, can_focus=True, inherit_bindings=False):
    """Rows by key, one a line, styled as they are drawn (see the module's doc)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"lazy-rows--cursor"}
    # Vi-style movement as in every table of the console; the arrows and page keys too.
    # Sideways keys are not bound (nor inherited from ScrollView): rows fit the width, and
    # a pane may give ← and → a meaning of its own (the waterfall folds with them).
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,g", "first", "Top", show=False),
        Binding("end,G", "last", "Bottom", show=False),
    ]
    DEFAULT_CSS = """
    LazyRows {
        background: $surface;
        overflow-x: hidden;
        scrollbar-gutter: stable;
        & > .lazy-rows--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:focus > .lazy-rows--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
    }
    """

    class Highlighted(Message):
        """The cursor came to another row (``key`` None: there are no rows)."""

        def __init__(self, rows: LazyRows, key: str | None) -> None:
            super().__init__()
            self.rows = rows
            self.key = key

        @property
        def control(self) -> LazyRows:
            return self.rows

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._all: list[LazyRow] = []
        self._shown: list[LazyRow] = []
        self._index: dict[str, int] = {}
        self.filter_text = ""
        self.cursor_row = 0
        #: lines already styled, by (row, under the cursor); dropped when anything changes
        self._lines: dict[tuple[int, bool], Strip] = {}
        self._announced: str | None = None

    # -- what the pane calls ---------------------------------------------------------------

    def show_rows(self, rows: Sequence[LazyRow]) -> None:
        """Every row there is; the cursor stays on its row's key where that still shows."""
        self._all = list(rows)
        self._refilter()

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self._refilter()

    @property
    def selected_key(self) -> str | None:
        if not self._shown:
            return None
        return self._shown[min(self.cursor_row, len(self._shown) - 1)].key

    @property
    def shown_keys(self) -> list[str]:
        return [row.key for row in self._shown]

    @property
    def row_count(self) -> int:
        return len(self._shown)

    @property
    def total_count(self) -> int:
        return len(self._all)

    def get_row_index(self, key: str) -> int:
        """The line a shown row is on; KeyError for a row not shown."""
        return self._index[key]

    def move_cursor(self, *, row: int, animate: bool = False) -> None:
        """Put the cursor on line ``row`` (kept within the rows) and scroll it into view."""
        if not self._shown:
            self.cursor_row = 0
            self._announce()
            return
        before = self.cursor_row
        self.cursor_row = max(0, min(row, len(self._shown) - 1))
        if self.cursor_row != before:
            self._lines.pop((before, True), None)
            self._lines.pop((self.cursor_row, False), None)
            self.refresh_lines(before)
            self.refresh_lines(self.cursor_row)
        self._scroll_cursor_into_view()
        self._announce()

    # -- keys and the mouse ----------------------------------------------------------------

    def action_cursor_up(self) -> None:
        self.move_cursor(row=self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(row=self.cursor_row + 1)

    def action_page_up(self) -> None:
        self.move_cursor(row=self.cursor_row - max(1, self.scrollable_content_region.height))

    def action_page_down(self) -> None:
        self.move_cursor(row=self.cursor_row + max(1, self.scrollable_content_region.height))

    def action_first(self) -> None:
        self.move_cursor(row=0)

    def action_last(self) -> None:
        self.move_cursor(row=len(self._shown) - 1)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is not None:
            self.move_cursor(row=int(self.scroll_y) + offset.y)

    # -- drawing ---------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        index = int(self.scroll_y) + y
        width = self.scrollable_content_region.width
        if index >= len(self._shown):
            return Strip.blank(width, self.rich_style)
        under_cursor = index == self.cursor_row
        line = self._lines.get((index, under_cursor))
        if line is None:
            line = self._style_line(self._shown[index], under_cursor)
            self._lines[(index, under_cursor)] = line
        return line.crop_extend(0, width, self.rich_style)

    def _style_line(self, row: LazyRow, under_cursor: bool) -> Strip:
        segments = list(row.styled().render(self.app.console))
        base = self.rich_style
        if under_cursor:
            base += self.get_component_rich_style("lazy-rows--cursor")
        # The row's own styles over the base: an error stays red under the cursor.
        return Strip(Segment.apply_style(segments, base))

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._lines.clear()

    def on_resize(self, event: events.Resize) -> None:
        self._lines.clear()
        self.virtual_size = Size(self.scrollable_content_region.width, len(self._shown))
        self._scroll_cursor_into_view()

    # -- keeping in step ---------------------------------------------------------------------

    def _refilter(self) -> None:
        keep = self.selected_key
        needle = self.filter_text.strip().lower()
        self._shown = [r for r in self._all if not needle or needle in r.text.lower()]
        self._index = {row.key: n for n, row in enumerate(self._shown)}
        self._lines.clear()
        self.virtual_size = Size(self.scrollable_content_region.width, len(self._shown))
        self.cursor_row = self._index.get(keep, self.cursor_row) if keep is not None else 0
        self.cursor_row = max(0, min(self.cursor_row, len(self._shown) - 1))
        self.refresh()
        self._scroll_cursor_into_view()
        self._announce()

    def _scroll_cursor_into_view(self) -> None:
        height = self.scrollable_content_region.height
        if height <= 0:
            return
        top = int(self.scroll_y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, immediate=True)
        elif self.cursor_row >= top + height:
            self.scroll_to(y=self.cursor_row - height + 1, animate=False, immediate=True)

    def _announce(self) -> None:
        key = self.selected_key
        if key != self._announced:
            self._announced = key
            self.post_message(self.Highlighted(self, key))
