"""A Dial noun's ``statusCallback``: the dialed call's progress told to the app as Twilio tells it.

``initiated`` once the INVITE is on its way, ``ringing``, ``answered`` (``CallStatus=in-progress``) and
``completed`` (with the final ``CallStatus``: completed, busy, no-answer, failed or canceled, and
``CallDuration``), each only if ``statusCallbackEvent`` asks for it. Fire-and-forget: the call never waits.
"""

from __future__ import annotations

import time
from email.utils import formatdate

from models.rcml import StatusCallback
from stasis_app.context import CallContext
from stasis_app.legs import CallLeg, LegState

__all__ = ["CallProgress"]


class CallProgress:
    """Tells ``callback`` how ``leg`` (dialed by ``call``'s Dial) goes."""

    def __init__(self, call: CallContext, leg: CallLeg, callback: StatusCallback) -> None:
        self.call = call
        self.leg = leg
        self.callback = callback
        self.sequence = 0
        leg.on_change.append(self._changed)

    def initiated(self) -> None:
        if not self.leg.is_gone:
            self._tell("initiated", "initiated")

    def _changed(self, leg: CallLeg) -> None:
        match leg.state:
            case LegState.RINGING:
                self._tell("ringing", "ringing")
            case LegState.UP:
                self._tell("answered", "in-progress")
            case LegState.GONE:
                self._tell("completed", self._final_status(leg), final=True)
            case _:
                pass

    def _final_status(self, leg: CallLeg) -> str:
        if leg.answered_at is not None:
            return "completed"
        if leg.cause in (17, 21):
            return "busy"
        if leg.cause in (18, 19):
            return "no-answer"
        return "canceled" if leg.hanging_up else "failed"

    def _tell(self, event: str, status: str, *, final: bool = False) -> None:
        if event not in self.callback.events:
            return
        leg, caller = self.leg, self.call.caller
        params = {
            "CallSid": leg.call_sid,
            "ParentCallSid": caller.call_sid,
            "From": leg.party.from_,
            "To": leg.party.to,
            "Direction": leg.role.value,
            "CallStatus": status,
            "CallbackSource": "call-progress-events",
            "SequenceNumber": str(self.sequence),
            "Timestamp": formatdate(usegmt=True),
        }
        if final:
            answered = leg.answered_at
            params["CallDuration"] = str(round(time.monotonic() - answered) if answered is not None else 0)
        self.sequence += 1
        self.call.notify(self.callback.url, self.callback.method, params)
