"""``<Reject reason="busy|rejected"/>``: refuse an unanswered call with a cause the caller's phone shows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from models.rcml import Reject
from stasis_app.verbs.base import HangupCall, Outcome

if TYPE_CHECKING:
    from stasis_app.session import CallSession


class RejectVerb:
    async def execute(self, call: CallSession, verb: Reject) -> Outcome:
        # Once answered there is nothing left to reject: a plain hangup is what the caller can still get.
        if call.leg.is_up:
            return HangupCall("normal")
        return HangupCall("busy" if verb.reason == "busy" else "rejected")
