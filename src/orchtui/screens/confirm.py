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
            extra = self.mutation.extra
            if extra is not None:
                yield Label(extra.label)
                yield Input(
                    extra.initial, placeholder=extra.placeholder, id="confirm-extra", compact=True
                )
            if self.mutation.needs_reason:
                yield Label(self.mutation.reason_label)
                yield Input(placeholder="why?", id="confirm-reason", compact=True)
            else:
                yield Label("Recorded in the audit log under your name.")
            yield Static("", id="confirm-error")  # shown only when there is something to say
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

    @on(Input.Submitted, "#confirm-extra")
    def _extra_submitted(self) -> None:
        # Enter in the first of two fields moves on to the reason rather than confirming.
        if self.mutation.needs_reason and not self.reason:
            self.query_one("#confirm-reason", Input).focus()
        else:
            self._confirm()

    def _confirm(self) -> None:
        extra = self.mutation.extra
        if extra is not None:
            field = self.query_one("#confirm-extra", Input)
            try:
                value = extra.parse(field.value)
            except ValueError as exc:
                self._refuse(f"✖ {exc}", field)
                return
        if self.mutation.needs_reason and not self.reason:
            self._refuse("✖ a reason is required", self.query_one("#confirm-reason", Input))
            return
        if extra is not None:
            extra.value = value
        self.dismiss(self.reason)

    def _refuse(self, message: str, field: Input) -> None:
        error = self.query_one("#confirm-error", Static)
        error.update(message)
        error.display = True
        field.focus()
