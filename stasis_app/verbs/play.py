"""``<Play loop="N">media</Play>``: Asterisk media (``sound:``, ``tone:``, ``recording:``...) to the caller."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

from models.rcml import Play
from stasis_app.verbs.base import HangupCall, Next, Outcome

if TYPE_CHECKING:
    from stasis_app.session import CallSession


class PlayVerb:
    async def execute(self, call: CallSession, verb: Play) -> Outcome:
        await call.answer()
        count = 0
        while verb.loop == 0 or count < verb.loop:  # loop="0" repeats until the caller hangs up
            count += 1
            playback_id = uuid.uuid4().hex
            finished = call.services.registry.expect_playback(playback_id)
            await call.ari.play(call.leg.id, verb.media, playback_id)
            waits: set[asyncio.Future[Any]] = {finished, call.leg.ended}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if not finished.done():
                finished.cancel()
            if call.leg.is_gone:
                return HangupCall()
        return Next()
