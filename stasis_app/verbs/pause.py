"""``<Pause length="N"/>``: wait, answering the call first (as Restcomm and Twilio do)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from models.rcml import Pause
from stasis_app.verbs.base import HangupCall, Next, Outcome

if TYPE_CHECKING:
    from stasis_app.session import CallSession


class PauseVerb:
    async def execute(self, call: CallSession, verb: Pause) -> Outcome:
        await call.answer()
        # Wake up early if the caller hangs up: nothing waits on a gone call.
        done, _ = await asyncio.wait({call.leg.ended}, timeout=verb.length)
        return HangupCall() if done else Next()
