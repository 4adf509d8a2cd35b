"""What a verb returns: what happens next to the call. Verbs decide; the session carries it out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from models.rcml import Document
from stasis_app.ari.protocol import HangupReason

__all__ = ["DialWatcher", "Handover", "HangupCall", "Next", "Outcome", "Replace"]


class DialWatcher(Protocol):
    """Told how the first Dial of a document ends (a transfer's final NOTIFY waits on its refer app's Dial)."""

    def dial_started(self, ringing: list[str]) -> None:
        """The Dial is ringing these channel ids."""

    def dial_decided(self, status: str, answered_by: str | None) -> None:
        """``answered`` (with the channel id that answered), ``busy``, ``no-answer``, ``failed`` or ``canceled``."""


@dataclass(frozen=True)
class Next:
    """Run the next verb of the document."""


@dataclass(frozen=True)
class Replace:
    """Drop the rest of the document and run this one (a Dial ``action``, a ``Redirect``, a Refer URL).

    ``watcher``: told how the new document's first Dial goes (the refer app of a transfer)."""

    document: Document
    watcher: DialWatcher | None = None


@dataclass(frozen=True)
class HangupCall:
    """End the call with this cause."""

    reason: HangupReason = "normal"


@dataclass(frozen=True)
class Handover:
    """This session's caller left in a transfer: stop without touching the legs or the bridge it handed on."""


Outcome = Next | Replace | HangupCall | Handover
