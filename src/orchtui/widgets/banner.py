"""The line that says the database is gone, and goes away when it is back."""

from __future__ import annotations

from textual.widgets import Static


class ConnectionBanner(Static):
    """Hidden while all is well; one line naming the failure otherwise."""

    def show_problem(self, message: str | None) -> None:
        self.set_class(message is not None, "-visible")
        self.update(message or "")
