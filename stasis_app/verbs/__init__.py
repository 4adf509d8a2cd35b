"""One executor per RCML verb, and the table that maps a verb model to its executor."""

from __future__ import annotations

from typing import Any

from models import rcml
from stasis_app.context import VerbExecutor
from stasis_app.verbs.conference import ConferenceVerb
from stasis_app.verbs.dial import DialVerb
from stasis_app.verbs.gather import GatherVerb
from stasis_app.verbs.hangup import HangupVerb
from stasis_app.verbs.pause import PauseVerb
from stasis_app.verbs.play import PlayVerb
from stasis_app.verbs.record import RecordVerb
from stasis_app.verbs.redirect import RedirectVerb
from stasis_app.verbs.reject import RejectVerb
from stasis_app.verbs.say import SayVerb
from stasis_app.verbs.sms import SmsVerb

__all__ = ["EXECUTORS"]

EXECUTORS: dict[type[rcml.Verb], VerbExecutor[Any]] = {
    rcml.Dial: DialVerb(),
    rcml.Hangup: HangupVerb(),
    rcml.Pause: PauseVerb(),
    rcml.Play: PlayVerb(),
    rcml.Redirect: RedirectVerb(),
    rcml.Reject: RejectVerb(),
    rcml.Record: RecordVerb(),
    rcml.Say: SayVerb(),
    rcml.DialConference: ConferenceVerb(),
    rcml.Sms: SmsVerb(),
}
# <Gather> plays its nested verbs with the executors of this same table (Say nests once it is in it).
EXECUTORS[rcml.Gather] = GatherVerb(EXECUTORS)
