"""``<Record>``: record what the caller says into a stored recording Asterisk keeps, Twilio's way.

The recording is named ``RE`` + 32 hex digits (its ``RecordingSid``) and served by the app's HTTP side at
``{[http] base_url}/recordings/<name>.wav`` (``RecordingUrl``). It ends on ``maxLength``, on ``timeout`` seconds
of silence (Asterisk trims the silence), on a key of ``finishOnKey`` (``Digits``), or when the caller hangs up:
the recording is kept and ``action`` is still requested (``Digits=hangup``), its answer ignored, as Twilio does.
A recording with no audio (0 s) requests no action and the next verb runs. ``recordingStatusCallback`` is
requested in the background. Asterisk refusing or failing to record is one WARNING line and the next verb.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass

from models.ari import ChannelDtmfReceived, RecordingFailed, RecordingFinished
from models.rcml import Record
from stasis_app.context import CallContext, Needs
from stasis_app.errors import AriError, CallGone, MarkupError, WebhookError
from stasis_app.legs import CallLeg, LegEvents
from stasis_app.outcomes import HangupCall, Next, Outcome, Replace

__all__ = ["RecordVerb"]

log = logging.getLogger(__name__)

# Beyond maxLength, how long Asterisk may take to say the recording ended before we stop it ourselves.
_GRACE = 10.0


@dataclass
class _Result:
    kept: bool = False
    duration: int = 0
    digits: str = ""  # the key that ended it, "hangup", or "" (silence, maxLength)
    failure: str = ""


class RecordVerb:
    """Runs ``<Record>`` on the caller's channel."""

    needs = Needs.ANSWERED

    async def execute(self, call: CallContext, verb: Record) -> Outcome:
        number = call.number.number
        media = call.caller.media_leg
        if media is None:
            log.warning("number %s: <Record> skipped: this call has no channel of its own", number)
            return Next()
        name = "RE" + secrets.token_hex(16)
        with media.listen() as events:
            started = asyncio.get_running_loop().time()
            try:
                await call.start_recording(
                    name, max_duration=verb.max_length, max_silence=verb.timeout, beep=verb.play_beep
                )
            except CallGone:
                return HangupCall()
            except AriError as exc:
                log.warning("number %s: <Record> failed: Asterisk refused to record: %s; next verb", number, exc.reason)
                return Next()
            try:
                result = await _until_done(call, verb, media, events, name)
            except asyncio.CancelledError:
                await _stop(call, name)
                raise
        if call.caller.is_gone and not result.kept and not result.failure:
            # Hung up before Asterisk said how it ended: what it stored is still the caller's message.
            result.kept = await call.recording_kept(name)
            result.duration = round(asyncio.get_running_loop().time() - started)
            result.digits = "hangup"
        return await _report(call, verb, name, result)


async def _until_done(call: CallContext, verb: Record, media: CallLeg, events: LegEvents, name: str) -> _Result:
    """Wait for the recording's end, stopping it on a ``finishOnKey`` key."""
    result = _Result()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + verb.max_length + _GRACE
    stopped = False
    kinds = (RecordingFinished, RecordingFailed, ChannelDtmfReceived)
    while True:
        event = await events.next(kinds, timeout=max(deadline - loop.time(), 0.0))
        match event:
            case RecordingFinished(recording=recording) if recording.name == name:
                result.kept, result.duration = True, recording.duration or 0
                # A hangup ends the recording before the channel leaves Stasis: its hangup request says so first.
                if (call.caller.is_gone or media.hanging_up) and not result.digits:
                    result.digits = "hangup"
                return result
            case RecordingFailed(recording=recording) if recording.name == name:
                result.failure = recording.cause or "failed"
                return result
            case ChannelDtmfReceived(digit=digit) if digit in verb.finish_on_key and not stopped:
                result.digits, stopped = digit, True
                await _stop(call, name)
            case None if call.caller.is_gone:
                return result
            case None if not stopped:
                log.warning("number %s: <Record> %s did not end after maxLength; stopping it", call.number.number, name)
                stopped, deadline = True, loop.time() + _GRACE
                await _stop(call, name)
            case None:
                result.failure = "Asterisk never said it ended"
                return result
            case _:
                pass


async def _stop(call: CallContext, name: str) -> None:
    try:
        await call.stop_recording(name)
    except AriError:
        pass  # over already (CallGone): its RecordingFinished is on the way


async def _report(call: CallContext, verb: Record, name: str, result: _Result) -> Outcome:
    number = call.number.number
    gone = call.caller.is_gone or result.digits == "hangup"  # the latter: hanging up, its StasisEnd not read yet
    if result.failure or not result.kept:
        why = result.failure or "nothing was stored"
        log.warning("number %s: <Record> %s failed: %s; %s", number, name, why, "call over" if gone else "next verb")
        _status(call, verb, name, "failed", 0)
        return HangupCall() if gone else Next()
    recording_url = f"{call.settings.http.base_url}/recordings/{name}.wav"
    log.info("number %s: <Record> %s: %d s%s", number, name, result.duration, " (caller hung up)" if gone else "")
    _status(call, verb, name, "completed", result.duration, recording_url)
    if result.duration == 0 and not gone:
        return Next()  # no audio: Twilio requests no action either
    params = {
        "RecordingSid": name,
        "RecordingUrl": recording_url,
        "RecordingDuration": str(result.duration),
        "Digits": result.digits,
    }
    url = verb.action or call.document_url
    if gone:
        # The app still gets the recording; there is no call left to run its answer on.
        try:
            await call.fetch(url, verb.method, params)
        except (WebhookError, MarkupError) as exc:
            log.warning("number %s: %s", number, exc)
        return HangupCall()
    return Replace(await call.fetch(url, verb.method, params))


def _status(call: CallContext, verb: Record, name: str, status: str, duration: int, url: str = "") -> None:
    if verb.recording_status_callback is None:
        return
    params = {
        "RecordingSid": name,
        "RecordingUrl": url,
        "RecordingStatus": status,
        "RecordingDuration": str(duration),
        "RecordingChannels": "1",
        "RecordingSource": "RecordVerb",
    }
    call.notify(verb.recording_status_callback, verb.recording_status_callback_method, params)
