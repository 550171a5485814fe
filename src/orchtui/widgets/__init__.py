"""Widgets the console's screens and panes are built from."""

from orchtui.widgets.keyed_table import Column, KeyedTable, Row
from orchtui.widgets.lazy_rows import LazyRow, LazyRows

__all__ = ["Column", "KeyedTable", "LazyRow", "LazyRows", "Row"]
