"""The console's screens: the pane screens and the modals over them."""

from orchtui.screens.base import ConsoleScreen
from orchtui.screens.confirm import ConfirmMutationScreen
from orchtui.screens.help import HelpScreen
from orchtui.screens.main import MainScreen
from orchtui.screens.pane_screen import PaneScreen

__all__ = ["ConfirmMutationScreen", "ConsoleScreen", "HelpScreen", "MainScreen", "PaneScreen"]
