"""One labelling item (an emotion and a GIF), its leases and its consensus.

An item goes to ``LABELLERS_PER_GIF`` = 2 labellers. Its consensus once both answered: both yes
→ positive, both no → negative; a disagreement is dropped (policy ``drop``, the paper: never a
positive) or waits for the admin's ``adjudicate`` event (policy ``adjudicate``).
:class:`gifemo.apps.label.state.LabelState` keeps the items and changes them under its lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gifemo.apps.label.project import LABELLERS_PER_GIF
from gifemo.apps.label.store import Event


class LabelError(Exception):
    """A request the rules refuse; ``status`` is the HTTP status the server answers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Lease:
    expires: float
    version: int
    priority: int = 0
    served: float = 0.0


@dataclass
class Item:
    emotion: str
    gif_id: str
    decisions: dict[str, Event] = field(default_factory=dict)  # user -> live label event
    skipped: set[str] = field(default_factory=set)
    adjudication: Event | None = None
    leases: dict[str, Lease] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return len(self.decisions) >= LABELLERS_PER_GIF

    def pair(self) -> list[Event]:
        """The two live answers, first answered first."""
        return sorted(self.decisions.values(), key=lambda e: e.seq)[:LABELLERS_PER_GIF]

    def status(self) -> str:
        """pending | agreed | disagreed | adjudicated."""
        if not self.complete:
            return "pending"
        a, b = self.pair()
        if a.answer == b.answer:
            return "agreed"
        return "adjudicated" if self.adjudication is not None else "disagreed"

    def final(self, policy: str) -> bool | None:
        """The consensus label (None while pending or awaiting adjudication)."""
        st = self.status()
        if st == "agreed":
            return bool(self.pair()[0].answer)
        if st == "adjudicated":
            return bool(self.adjudication.answer)  # type: ignore[union-attr]
        if st == "disagreed" and policy == "drop":
            return False
        return None
