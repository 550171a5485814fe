"""KeyedTable: rows drawn at the widths their content needs, whenever they were drawn."""

from __future__ import annotations

from textual.app import App, ComposeResult

from orchtui.widgets.keyed_table import Column, KeyedTable, Row
from tests.console.helpers import on_screen

COLUMNS = (Column("name", "NAME"), Column("type", "TYPE"))


class _TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield KeyedTable(COLUMNS)


async def test_a_row_drawn_before_its_columns_are_measured_is_drawn_again() -> None:
    app = _TableApp()
    async with app.run_test(size=(60, 6)) as pilot:
        table = app.query_one(KeyedTable)
        table.show_rows([Row("a", ("venue-limit", "traffic"))])
        # A frame can come between adding a row and the idle moment when DataTable
        # measures its columns; that frame draws the row at the labels' widths.
        table.render_line(1)
        await pilot.pause()
        await on_screen(app, "venue-limit  traffic", timeout=1.0)
