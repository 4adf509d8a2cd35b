"""``<Hangup/>``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from models.rcml import Hangup
from stasis_app.verbs.base import HangupCall, Outcome

if TYPE_CHECKING:
    from stasis_app.session import CallSession


class HangupVerb:
    async def execute(self, call: CallSession, verb: Hangup) -> Outcome:
        return HangupCall("normal")
