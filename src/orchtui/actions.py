"""The action registry: what a key does, said once, read by footer, help and palette.

A pane (or the app) declares its actions as :class:`ConsoleAction` values. The
bindings Textual dispatches are derived from them, and so are the help screen and
the command palette, so the three can never disagree. An action marked
``mutating`` changes state in the engine: under ``--readonly`` it is dropped
everywhere, and otherwise it goes through a confirmation that names its target
and asks why (see :class:`Mutation`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from textual.binding import Binding


@dataclass(frozen=True)
class ConsoleAction:
    """One key of a pane or of the console.

    ``name`` is the action method suffix: ``action_<name>`` for an ordinary action,
    ``mutation_<name>`` (returning a :class:`Mutation`) for a mutating one.
    """

    key: str
    name: str
    description: str  # a word or two, for the footer
    explanation: str = ""  # a sentence, for help and the palette
    mutating: bool = False
    show: bool = True  # in the footer; help and palette list every action regardless
    key_display: str | None = None
    priority: bool = False  # fires even while a text input has focus

    @property
    def action_string(self) -> str:
        """What the binding runs: mutating actions all pass through the confirmation."""
        return f"mutate('{self.name}')" if self.mutating else self.name

    def binding(self) -> Binding:
        return Binding(
            self.key,
            self.action_string,
            self.description,
            show=self.show,
            key_display=self.key_display,
            priority=self.priority,
        )

    @property
    def shown_key(self) -> str:
        return self.key_display or self.key

    @property
    def long_description(self) -> str:
        return self.explanation or self.description


def allowed(actions: Iterable[ConsoleAction], *, readonly: bool) -> list[ConsoleAction]:
    """The actions an operator may use: everything, or only what changes nothing."""
    return [action for action in actions if not (readonly and action.mutating)]


#: Performs a confirmed mutation: called with the acting operator and their reason.
Perform = Callable[[str, str], Awaitable[Any]]

Severity = Literal["information", "warning", "error"]


@dataclass(frozen=True)
class Outcome:
    """What the console says once a mutation has happened, when that depends on its result."""

    message: str
    severity: Severity = "information"


class Unavailable(Exception):
    """Raised by a ``mutation_<name>`` to say why there is nothing to confirm.

    The message is shown to the operator instead of a question ("No failed step to
    skip."), so a key pressed on the wrong row explains itself.
    """


@dataclass
class ExtraField:
    """One more thing the confirmation asks for besides the reason (a step's output, say).

    ``parse`` turns what was typed into the value, raising ``ValueError`` with a message
    for the operator when it cannot; the confirmation stays open until it parses. Once
    confirmed, ``value`` holds the result for the mutation's ``perform`` to read.
    """

    label: str
    placeholder: str = ""
    initial: str = ""
    parse: Callable[[str], Any] = str
    value: Any = field(default=None, init=False)


@dataclass(frozen=True)
class Mutation:
    """A state change an operator asked for, waiting for their confirmation.

    ``question`` names the target in full ("Deregister instance venue-2 of service
    venue?") because the confirmation is the last chance to notice a wrong row.
    """

    title: str  # "Deregister instance"
    question: str
    verb: str  # the confirm button: "Deregister"
    perform: Perform
    done: str  # said once it has happened: "Deregistered instance venue-2"
    consequence: str = ""  # what else happens, if not obvious
    #: False where the engine keeps no reason for this change: then none is asked for
    #: (asking and dropping it would be a lie told to the audit log).
    needs_reason: bool = True
    #: Turns what ``perform`` returned into what is said instead of ``done``.
    report: Callable[[Any], Outcome] | None = None
    #: What the reason field is called, where the engine records it as something else
    #: (a note of what was done by hand, say).
    reason_label: str = "Reason, recorded in the audit log (Enter confirms):"
    #: Asked for above the reason, when the change needs more than a reason.
    extra: ExtraField | None = None
