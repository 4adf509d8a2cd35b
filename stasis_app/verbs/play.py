"""``<Play loop="N" digits="...">media</Play>``: Asterisk media (``sound:``, ``tone:``, ``recording:``...), an
``http(s)://`` URL (Asterisk's HTTP media cache), or a URL relative to the document (for an ``app:`` document,
a file of the apps folder served by the app's HTTP side); ``digits`` sends DTMF before any media.

Media that cannot be played (a 404, a refused connection, a format Asterisk cannot read) is one WARNING line and
the next verb, as Twilio does; a ``loop`` is not retried on a URL that just failed.
"""

from __future__ import annotations

import logging

from models.rcml import Play
from stasis_app.context import CallContext, Needs
from stasis_app.media import MediaError, Played
from stasis_app.outcomes import HangupCall, Next, Outcome
from stasis_app.redact import redact_url

__all__ = ["PlayVerb"]

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
        if verb.digits:
            await call.send_digits(verb.digits)
        if not verb.media:
            return HangupCall() if call.caller.is_gone else Next()
        try:
            media = call.media.play_media(verb.media, call.document_url)
        except MediaError as exc:
            log.warning("number %s: %s; skipped", call.number.number, exc)
            return Next()
        count = 0
        while verb.loop == 0 or count < verb.loop:  # loop="0" repeats until the caller hangs up
            count += 1
            match await call.play_media(media):
                case Played.CALLER_GONE:
                    return HangupCall()
                case Played.FAILED:
                    log.warning(
                        "number %s: <Play> %s: Asterisk could not play it (not found, unreachable, or a format it "
                        "cannot read); going on",
                        call.number.number,
                        redact_url(media.removeprefix("sound:")),
                    )
                    return Next()
                case Played.FINISHED:
                    pass
        return Next()
