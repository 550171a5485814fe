"""The last stop before a state change: names the target, asks why, defaults to Cancel."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from orchtui.actions import Mutation


class ConfirmMutationScreen(ModalScreen[str | None]):
    """Dismisses with the operator's reason when confirmed, or None when cancelled.

    Cancel has the focus, so a reflexive Enter does nothing harmful. Confirming needs
    a reason, because the audit log records who did it *and why* (unless the engine
    keeps no reason for this change: then none is asked for, and "" is returned).
    """

    AUTO_FOCUS = "#cancel"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", show=False)]

    def __init__(self, mutation: Mutation, *, actor: str) -> None:
        super().__init__()
        self.mutation = mutation
        self.actor = actor

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog") as dialog:
            dialog.border_title = self.mutation.title
            yield Static(self.mutation.question, id="confirm-question")
            if self.mutation.consequence:
                yield Static(self.mutation.consequence, id="confirm-consequence")
            if self.mutation.needs_reason:
                yield Label("Reason, recorded in the audit log (Enter confirms):")
                yield Input(placeholder="why?", id="confirm-reason", compact=True)
                yield Static("", id="confirm-error")  # shown only when there is something to say
            else:
                yield Label("Recorded in the audit log under your name.")
            with Horizontal(id="confirm-buttons"):
                yield Static(f"acting as {self.actor}", id="confirm-actor")
                yield Button("Cancel", id="cancel", compact=True)
                yield Button(self.mutation.verb, id="confirm", variant="error", compact=True)

    @property
    def reason(self) -> str:
        if not self.mutation.needs_reason:
            return ""
        return self.query_one("#confirm-reason", Input).value.strip()

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#confirm")
    def _confirm_pressed(self) -> None:
        self._confirm()

    @on(Input.Submitted, "#confirm-reason")
    def _reason_submitted(self) -> None:
        self._confirm()

    def _confirm(self) -> None:
        if self.mutation.needs_reason and not self.reason:
            error = self.query_one("#confirm-error", Static)
            error.update("✖ a reason is required")
            error.display = True
            self.query_one("#confirm-reason", Input).focus()
            return
        self.dismiss(self.reason)
