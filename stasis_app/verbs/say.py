"""``<Say voice="woman" language="en-US" loop="1">text</Say>``: speech rendered by the TTS engine, played to the
caller through Asterisk's HTTP media cache from the app's own HTTP side.

Speech that cannot be rendered (engine missing or failing, a full disk) or played is one WARNING line and the
next verb, as Twilio goes on after a failed ``<Say>``.
"""

from __future__ import annotations

import logging

from models.rcml import Say
from stasis_app.context import CallContext, Needs
from stasis_app.media import Played
from stasis_app.outcomes import HangupCall, Next, Outcome
from stasis_app.tts import TtsError

__all__ = ["SayVerb"]

log = logging.getLogger(__name__)

_SHOWN = 40  # characters of the text quoted in a log line


class SayVerb:
    needs = Needs.ANSWERED

    async def execute(self, call: CallContext, verb: Say) -> Outcome:
        if not verb.text:
            return Next()
        shown = verb.text if len(verb.text) <= _SHOWN else verb.text[:_SHOWN] + "..."
        if not call.has_media():
            log.warning("number %s: <Say> skipped: this call has no channel of its own to play to", call.number.number)
            return Next()
        try:
            media = await call.media.speech_media(verb.text, verb.voice, verb.language)
        except TtsError as exc:
            log.warning("number %s: <Say> %r skipped: %s", call.number.number, shown, exc)
            return Next()
        count = 0
        while verb.loop == 0 or count < verb.loop:  # loop="0": until the caller hangs up
            count += 1
            match await call.play_media(media):
                case Played.CALLER_GONE:
                    return HangupCall()
                case Played.FAILED:
                    log.warning(
                        "number %s: <Say> %r: Asterisk could not play %s (is res_http_media_cache loaded, and is "
                        "[http] public_url reachable from Asterisk?)",
                        call.number.number,
                        shown,
                        media.removeprefix("sound:"),
                    )
                    return Next()
                case Played.FINISHED:
                    pass
        return Next()
