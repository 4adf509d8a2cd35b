"""``<Pause length="N"/>``: wait, on an answered call (as Restcomm and Twilio do)."""

from __future__ import annotations

import asyncio

from models.rcml import Pause
from stasis_app.context import CallContext, Needs
from stasis_app.outcomes import HangupCall, Next, Outcome


class PauseVerb:
    needs = Needs.ANSWERED

    async def execute(self, call: CallContext, verb: Pause) -> Outcome:
        # Wake up early if the caller hangs up: nothing waits on a gone call.
        done, _ = await asyncio.wait({call.caller.ended}, timeout=verb.length)
        return HangupCall() if done else Next()
