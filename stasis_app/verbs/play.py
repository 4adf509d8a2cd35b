"""``<Play loop="N">media</Play>``: Asterisk media (``sound:``, ``tone:``, ``recording:``...) to the caller."""

from __future__ import annotations

from models.rcml import Play
from stasis_app.context import CallContext, Needs
from stasis_app.outcomes import HangupCall, Next, Outcome


class PlayVerb:
    needs = Needs.ANSWERED

    async def execute(self, call: CallContext, verb: Play) -> Outcome:
        count = 0
        while verb.loop == 0 or count < verb.loop:  # loop="0" repeats until the caller hangs up
            count += 1
            if not await call.play(verb.media):
                return HangupCall()
        return Next()
