"""A DataTable that is given whole snapshots and changes only what changed.

Each refresh hands over every row with a stable key. Rows that vanished are
removed, changed cells are updated in place and new rows are added, so the cursor
stays on the row the operator was looking at while the data moves underneath it.
The table also owns the pane's filter: it keeps every row it was given and shows
those that match.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import textual
from rich.console import RenderableType
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist, RowKey

#: The Textual major version the one override of DataTable's private API below was
#: written and tested against (pyproject pins it).
TESTED_TEXTUAL_MAJOR = 8


def overrides_private_api(textual_version: str) -> bool:
    """Whether KeyedTable may override DataTable's private ``_update_dimensions``.

    Only under the major version it was tested with: another major may rename the
    method or change what it does, and an override of a method that moved is either
    dead or wrong. Without it the table still works; a row added between two idle
    moments may be drawn cut to the header's widths for one frame."""
    major = textual_version.split(".", 1)[0]
    return major.isdigit() and int(major) == TESTED_TEXTUAL_MAJOR


@dataclass(frozen=True)
class Column:
    key: str
    label: str


@dataclass(frozen=True)
class Row:
    key: str
    cells: tuple[RenderableType, ...]

    def matches(self, needle: str) -> bool:
        """Case-insensitive substring match on any cell's visible text."""
        return any(needle in plain_text(cell).lower() for cell in self.cells)


def plain_text(cell: RenderableType) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


class KeyedTable(DataTable[RenderableType]):
    # Vi-style movement, as k9s users expect; the arrows and page keys still work.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "scroll_top", "Top", show=False),
        Binding("G", "scroll_bottom", "Bottom", show=False),
    ]

    def __init__(
        self, columns: Sequence[Column], *, id: str | None = None, cursor: bool = True
    ) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False, show_cursor=cursor)
        self._column_spec = tuple(columns)
        self._all_rows: list[Row] = []
        self._shown: dict[str, tuple[RenderableType, ...]] = {}
        self.filter_text = ""
        # Columns exist from the start, so rows given before mounting land in them.
        for column in self._column_spec:
            self.add_column(column.label, key=column.key)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "select_cursor":
            # Enter belongs to the pane (it opens the row's detail, say), so it shows in
            # the footer and help under the pane's description, not as "Select".
            return False
        return super().check_action(action, parameters)

    if overrides_private_api(textual.__version__):

        def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
            # DataTable measures new content when idle, but keys its cached lines by a
            # count that measuring does not change: a frame drawn between adding a row
            # and that idle moment would keep showing the row cut to the header labels'
            # widths.
            before = [column.content_width for column in self.ordered_columns]
            super()._update_dimensions(new_rows)
            if [column.content_width for column in self.ordered_columns] != before:
                self._clear_caches()  # the repaint DataTable asked for then draws afresh

    # -- what the pane calls --------------------------------------------------------

    def show_rows(self, rows: Sequence[Row]) -> None:
        self._all_rows = list(rows)
        self._sync()

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self._sync()

    @property
    def selected_key(self) -> str | None:
        """The key of the row under the cursor, if any."""
        if not self.row_count:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except CellDoesNotExist:  # the cursor can briefly point past the last row
            return None
        return row_key.value

    @property
    def total_count(self) -> int:
        return len(self._all_rows)

    @property
    def shown_keys(self) -> list[str]:
        return [str(row.key.value) for row in self.ordered_rows]

    # -- keeping the table in step ------------------------------------------------------

    def _sync(self) -> None:
        needle = self.filter_text.strip().lower()
        wanted = [row for row in self._all_rows if not needle or row.matches(needle)]
        wanted_keys = [row.key for row in wanted]
        cursor_key = self.selected_key

        for key in set(self._shown) - set(wanted_keys):
            self.remove_row(key)
            del self._shown[key]
        for row in wanted:
            if row.key in self._shown:
                self._update_changed_cells(row)
            else:
                self.add_row(*row.cells, key=row.key)
                self._shown[row.key] = row.cells
        if self.shown_keys != wanted_keys:
            self._rebuild_in_order(wanted)
        self._put_cursor_back(cursor_key)

    def _update_changed_cells(self, row: Row) -> None:
        before = self._shown[row.key]
        for column, old, new in zip(self._column_spec, before, row.cells, strict=True):
            if old != new:
                self.update_cell(row.key, column.key, new, update_width=True)
        self._shown[row.key] = row.cells

    def _rebuild_in_order(self, rows: list[Row]) -> None:
        """DataTable appends only; when a row must go between others, lay them out again."""
        scroll_y = self.scroll_y
        self.clear()
        for row in rows:
            self.add_row(*row.cells, key=row.key)
        self._shown = {row.key: row.cells for row in rows}
        self.scroll_to(y=scroll_y, animate=False)

    def _put_cursor_back(self, key: str | None) -> None:
        if key is None or key not in self._shown:
            return
        try:
            index = self.get_row_index(key)
        except RowDoesNotExist:
            return
        if index != self.cursor_row:
            self.move_cursor(row=index, animate=False)
