"""Widgets the console's screens and panes are built from."""

from orchtui.widgets.keyed_table import Column, KeyedTable, Row

__all__ = ["Column", "KeyedTable", "Row"]
