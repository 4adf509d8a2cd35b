"""``<Reject reason="busy|rejected"/>``: refuse an unanswered call with a cause the caller's phone shows."""

from __future__ import annotations

from models.rcml import Reject
from stasis_app.context import CallContext, Needs
from stasis_app.outcomes import HangupCall, Outcome


class RejectVerb:
    needs = Needs.NOTHING

    async def execute(self, call: CallContext, verb: Reject) -> Outcome:
        # Once answered there is nothing left to reject: a plain hangup is what the caller can still get.
        if call.caller.is_up:
            return HangupCall("normal")
        return HangupCall("busy" if verb.reason == "busy" else "rejected")
