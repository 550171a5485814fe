"""KeyedTable: rows drawn at the widths their content needs, whenever they were drawn."""

from __future__ import annotations

import inspect
import tomllib
from pathlib import Path

import textual
from packaging.requirements import Requirement
from textual.app import App, ComposeResult
from textual.widgets import DataTable

from orchtui.widgets.keyed_table import (
    TESTED_TEXTUAL_MAJOR,
    Column,
    KeyedTable,
    Row,
    overrides_private_api,
)
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


# -- the one override of DataTable's private API -----------------------------------------


def test_the_private_api_override_applies_only_under_the_tested_major() -> None:
    assert overrides_private_api(f"{TESTED_TEXTUAL_MAJOR}.0.0")
    assert overrides_private_api(f"{TESTED_TEXTUAL_MAJOR}.2.8")
    assert not overrides_private_api(f"{TESTED_TEXTUAL_MAJOR + 1}.0.0")
    assert not overrides_private_api(f"{TESTED_TEXTUAL_MAJOR - 1}.9.9")
    assert not overrides_private_api(f"{TESTED_TEXTUAL_MAJOR}0.0.0")  # 80, not 8
    assert not overrides_private_api("dev")


def test_the_override_is_installed_exactly_when_the_check_says_so() -> None:
    installed = "_update_dimensions" in vars(KeyedTable)
    assert installed == overrides_private_api(textual.__version__)


def test_the_installed_textual_is_the_major_the_pin_and_the_check_name() -> None:
    # Upgrading Textual past the pin must be a decision: re-test the override, move the
    # constant and the pin together.
    assert textual.__version__.split(".")[0] == str(TESTED_TEXTUAL_MAJOR)
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    (pin,) = [
        Requirement(dep) for dep in project["project"]["dependencies"] if dep.startswith("textual")
    ]
    assert f"{TESTED_TEXTUAL_MAJOR}.0.0" in pin.specifier
    assert f"{TESTED_TEXTUAL_MAJOR + 1}.0.0" not in pin.specifier
    assert f"{TESTED_TEXTUAL_MAJOR - 1}.99.0" not in pin.specifier


def test_the_private_method_overridden_still_has_the_shape_the_override_expects() -> None:
    overridden = DataTable._update_dimensions
    assert list(inspect.signature(overridden).parameters) == ["self", "new_rows"]
