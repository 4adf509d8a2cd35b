"""``<Dial><Conference>room</Conference></Dial>``: join the caller to a named room (:mod:`stasis_app.conference`).

The caller is answered, muted if ``muted``, waits (hearing ``waitUrl``) while the room has no starter, then is
in the room's bridge until it hangs up, the room ends (``endConferenceOnExit``) or the Dial's ``timeLimit``
passes. The Dial ``action`` is requested when it leaves (``DialCallStatus=completed``, ``DialCallDuration``); a
full room (``maxParticipants``) is ``failed``. A REFER while in a room is declined (603), as Restcomm does.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from models.ari import PlaybackFinished
from models.rcml import Conference, DialConference, Pause, Play
from stasis_app.conference import Participant, Room
from stasis_app.context import CallContext, Needs
from stasis_app.errors import AriError, CallGone, MarkupError, WebhookError
from stasis_app.legs import CallLeg, LegEvents
from stasis_app.outcomes import HangupCall, Next, Outcome, Replace

__all__ = ["ConferenceVerb"]

log = logging.getLogger(__name__)

# What a participant waiting for a starter hears by default: Asterisk's stock call-waiting tone (a 300 ms beep
# every 10 s, indications.conf), so the line is not dead silent; no music file is shipped.
DEFAULT_WAIT = "tone:callwaiting"
_MEDIA_SCHEMES = ("sound:", "tone:", "recording:", "digits:")
_MAX_WAIT_S = 7 * 24 * 3600  # loop.call_later overflows on absurd values

WaitItem = tuple[str, int]  # (media, loop) or ("", pause seconds)


class ConferenceVerb:
    needs = Needs.ANSWERED

    async def execute(self, call: CallContext, verb: DialConference) -> Outcome:
        status, duration = await _attend(call, verb)
        call.dial_ended(status)
        log.info("number %s: Conference %s %s (%d s)", call.number.number, verb.conference.name, status, duration)
        if verb.action is None:
            return HangupCall() if call.caller.is_gone else Next()
        params = {"DialCallStatus": status, "DialCallDuration": str(duration), "DialCallSid": ""}
        if call.caller.is_gone:
            try:  # the app still learns how it ended; there is no call left to run its answer on
                await call.fetch(verb.action, verb.method, params)
            except (WebhookError, MarkupError) as exc:
                log.warning("number %s: %s", call.number.number, exc)
            return HangupCall()
        return Replace(await call.fetch(verb.action, verb.method, params))


async def _attend(call: CallContext, verb: DialConference) -> tuple[str, int]:
    """Take part in the room until leaving it: (DialCallStatus, seconds in the room)."""
    noun, leg = verb.conference, call.caller
    if leg.virtual:
        log.warning("number %s: <Conference> needs a channel of its own; not for a call run in-process", leg.label)
        return "failed", 0
    room = call.conferences.room(noun.name)
    if room.is_full:
        log.warning("conference %s is full (%d participants): %s refused", noun.name, room.max_participants, leg.label)
        return "failed", 0
    callback = call.absolute(noun.status_callback) if noun.status_callback else None
    participant = Participant(leg, noun, call.params(), status_callback=callback)
    room.add(participant)
    ari = call.conferences.ari
    try:
        if noun.muted:
            await ari.mute(leg.id, "in")
            participant.muted = True
        if not room.started.done():
            await _wait(call, room, noun)
        if leg.is_gone or room.ended.done():
            return ("canceled" if leg.is_gone else "completed"), 0
        await room.enter(participant)
        waits: set[asyncio.Future[Any]] = {leg.ended, room.ended}
        await asyncio.wait(waits, timeout=min(verb.time_limit, _MAX_WAIT_S), return_when=asyncio.FIRST_COMPLETED)
    except CallGone:
        pass  # the caller hung up, or the room's bridge went with the room: either way, out
    except AriError as exc:
        log.warning("conference %s: %s could not take part: %s", noun.name, leg.label, exc)
        return "failed", 0
    finally:
        await room.leave(participant)
    if not participant.joined:
        return ("canceled" if leg.is_gone else "completed"), 0
    return "completed", round(time.monotonic() - participant.joined_at)


async def _wait(call: CallContext, room: Room, noun: Conference) -> None:
    """Play the wait media (looped) until the room starts or the caller leaves."""
    leg = call.caller
    items = await _wait_items(call, noun)
    stop: set[asyncio.Future[Any]] = {room.started, leg.ended}
    if not items:
        await asyncio.wait(stop, return_when=asyncio.FIRST_COMPLETED)
        return
    while True:
        for media, count in items:
            if not media:
                await asyncio.wait(stop, timeout=count, return_when=asyncio.FIRST_COMPLETED)
            else:
                played = 0
                while (count == 0 or played < count) and not any(f.done() for f in stop):
                    played += 1
                    if not await _play_until(call, leg, media, stop):
                        break
            if any(f.done() for f in stop):
                return


async def _wait_items(call: CallContext, noun: Conference) -> list[WaitItem]:
    """What to play while waiting: Asterisk media as is, or the Play/Pause verbs of an RCML waitUrl."""
    url = DEFAULT_WAIT if noun.wait_url is None else noun.wait_url
    if not url:
        return []  # waitUrl="": silence
    if url.startswith(_MEDIA_SCHEMES):
        return [(url, 0)]
    params = {"FriendlyName": noun.name}
    try:
        document = await call.fetch(url, noun.wait_method, params)
    except (WebhookError, MarkupError) as exc:
        log.warning("conference %s: waitUrl: %s; waiting in silence", noun.name, exc)
        return []
    items: list[WaitItem] = []
    for verb in document.verbs:
        match verb:
            case Play(media=media, loop=loop):
                items.append((media, loop))
            case Pause(length=length):
                items.append(("", length))
            case _:
                log.warning("conference %s: waitUrl: <%s> is not played while waiting; skipped", noun.name, verb.verb)
    return items


async def _play_until(call: CallContext, leg: CallLeg, media: str, stop: set[asyncio.Future[Any]]) -> bool:
    """Play ``media`` to ``leg``; True when it finished, False when a ``stop`` future came first (or Asterisk
    refused: then the wait goes on in silence)."""
    ari, playback_id = call.conferences.ari, secrets.token_hex(16)
    with leg.listen() as events:
        try:
            await ari.play(leg.id, media, playback_id)
        except AriError as exc:
            log.warning("conference wait media %s: %s; waiting in silence", media, exc)
            await asyncio.wait(stop, return_when=asyncio.FIRST_COMPLETED)
            return False
        finished = asyncio.ensure_future(_finished(events, playback_id))
        try:
            await asyncio.wait({finished, *stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not finished.done():
                finished.cancel()
                try:
                    await ari.stop_playback(playback_id)
                except AriError:
                    pass  # finished or gone meanwhile
        return finished.done() and not finished.cancelled() and finished.result()


async def _finished(events: LegEvents, playback_id: str) -> bool:
    while (event := await events.next(PlaybackFinished)) is not None:
        if event.playback.id == playback_id:
            return True
    return False
