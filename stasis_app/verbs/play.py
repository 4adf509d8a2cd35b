"""``<Play loop="N">media</Play>``: Asterisk media (``sound:``, ``tone:``, ``recording:``...) to the caller."""

from __future__ import annotations

import logging

from models.rcml import Play
from stasis_app.context import CallContext, Needs
from stasis_app.outcomes import HangupCall, Next, Outcome

log = logging.getLogger(__name__)


class PlayVerb:
    needs = Needs.ANSWERED

    async def execute(self, call: CallContext, verb: Play) -> Outcome:
        if not call.has_media():
            log.warning(
                "number %s: <Play> skipped: this call has no channel of its own to play to "
                '(a refer app on the far end of an in-process number; [routing] our_numbers = "local-channel")',
                call.number.number,
            )
            return Next()
        count = 0
        while verb.loop == 0 or count < verb.loop:  # loop="0" repeats until the caller hangs up
            count += 1
            if not await call.play(verb.media):
                return HangupCall()
        return Next()
