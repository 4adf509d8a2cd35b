"""What a verb executor returns, and the shape every executor has."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from models.rcml import Document, Verb
from stasis_app.ari.protocol import HangupReason

if TYPE_CHECKING:
    from stasis_app.session import CallSession

__all__ = ["Handover", "HangupCall", "Next", "Outcome", "Replace", "VerbExecutor"]


@dataclass(frozen=True)
class Next:
    """Run the next verb of the document."""


@dataclass(frozen=True)
class Replace:
    """Drop the rest of the document and run this one (a Dial ``action``, a ``Redirect``, a Refer URL)."""

    document: Document


@dataclass(frozen=True)
class HangupCall:
    """End the call with this cause."""

    reason: HangupReason = "normal"


@dataclass(frozen=True)
class Handover:
    """This session's caller left in a transfer: stop without touching the legs or the bridge it handed on."""


Outcome = Next | Replace | HangupCall | Handover

V_contra = TypeVar("V_contra", bound=Verb, contravariant=True)


class VerbExecutor(Protocol[V_contra]):
    """Runs one verb on a call and says what happens next."""

    async def execute(self, call: CallSession, verb: V_contra) -> Outcome: ...
