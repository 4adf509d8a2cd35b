"""``<Hangup/>``."""

from __future__ import annotations

from models.rcml import Hangup
from stasis_app.context import CallContext, Needs
from stasis_app.outcomes import HangupCall, Outcome


class HangupVerb:
    needs = Needs.NOTHING

    async def execute(self, call: CallContext, verb: Hangup) -> Outcome:
        return HangupCall("normal")
