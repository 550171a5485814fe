"""LazyRows: keyed rows styled only as they come into view, with a cursor and a filter."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult

from orchtui.widgets import LazyRows

STYLED: list[str] = []


@dataclass(frozen=True)
class Line:
    key: str
    text: str = field(compare=False)

    def styled(self) -> Text:
        STYLED.append(self.key)
        return Text(self.text)


def lines(count: int) -> list[Line]:
    return [
        Line(f"k{n}", f"span {n} {'payments' if n % 10 == 3 else 'venue'}") for n in range(count)
    ]


class RowsApp(App[None]):
    def __init__(self, rows: list[Line]) -> None:
        super().__init__()
        self.rows = rows
        self.highlighted: list[str | None] = []

    def compose(self) -> ComposeResult:
        yield LazyRows(id="rows")

    def on_mount(self) -> None:
        view = self.query_one(LazyRows)
        view.show_rows(self.rows)
        view.focus()

    @on(LazyRows.Highlighted)
    def _note(self, event: LazyRows.Highlighted) -> None:
        self.highlighted.append(event.key)


async def test_only_the_rows_on_screen_are_styled() -> None:
    STYLED.clear()
    app = RowsApp(lines(1000))
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.pause()
        view = app.query_one(LazyRows)
        assert view.row_count == view.total_count == 1000
        assert 0 < len(set(STYLED)) <= 20  # a screenful, not a thousand
        await pilot.press("G")  # to the last row: the view scrolls there
        await pilot.pause()
        assert view.selected_key == "k999"
        assert "k999" in STYLED and "k500" not in STYLED


async def test_keys_move_the_cursor_and_say_where_it_is() -> None:
    app = RowsApp(lines(100))
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(LazyRows)
        await pilot.press("j", "down")
        assert view.selected_key == "k2"
        await pilot.press("k")
        assert view.selected_key == "k1"
        await pilot.press("pagedown")
        assert view.cursor_row == 1 + view.scrollable_content_region.height
        assert view.scroll_y > 0  # the cursor stays in sight
        await pilot.press("g")
        assert view.selected_key == "k0" and view.scroll_y == 0
        await pilot.press("up")  # nothing above the first row
        assert view.selected_key == "k0"
        await pilot.pause()
        assert app.highlighted[0] == "k0" and app.highlighted[-1] == "k0"
        assert "k2" in app.highlighted


async def test_the_filter_keeps_the_cursor_on_its_row() -> None:
    app = RowsApp(lines(100))
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(LazyRows)
        view.move_cursor(row=13)
        view.set_filter("PAYMENTS")  # case does not matter
        assert view.shown_keys == [f"k{n}" for n in range(3, 100, 10)]
        assert view.total_count == 100 and view.row_count == 10
        assert view.selected_key == "k13"
        view.set_filter("nothing like it")
        assert view.selected_key is None and view.row_count == 0
        view.set_filter("")
        assert view.row_count == 100
        await pilot.pause()


async def test_new_rows_keep_the_cursor_on_its_key() -> None:
    app = RowsApp(lines(10))
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(LazyRows)
        view.move_cursor(row=5)
        view.show_rows([Line("new", "a new first row"), *lines(10)])
        assert view.selected_key == "k5" and view.cursor_row == 6
        view.show_rows(lines(3))  # its row went: the cursor stays within the rows
        assert view.selected_key == "k2"
        await pilot.pause()


async def test_a_click_puts_the_cursor_on_the_row() -> None:
    app = RowsApp(lines(10))
    async with app.run_test(size=(60, 12)) as pilot:
        await pilot.click(LazyRows, offset=(2, 4))
        assert app.query_one(LazyRows).selected_key == "k4"
