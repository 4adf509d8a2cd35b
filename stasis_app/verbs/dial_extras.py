"""What a ``<Dial>`` does besides ringing and bridging: ``record``, ``hangupOnStar``, ``ringbackTone`` and a
``<Number>``'s ``sendDigits``. :class:`DialExtras` is asked at each step of the Dial (ringing, answered,
connected, over) and does nothing for an attribute that is not set.

- ``record``: Asterisk records no channel that is in a bridge, so the Dial records the bridge
  (``POST /bridges/{id}/record``: Asterisk adds a ``Recorder/`` channel of its own to it) from the answer, or
  from the start of ringing (the caller is not in the bridge yet: that part is silence). It is stopped when the
  connected call ends, and the Dial ``action`` gets ``RecordingUrl``, ``RecordingSid`` and
  ``RecordingDuration`` (as ``<Record>``'s: ``[http] base_url`` + ``/recordings/<sid>.wav``).
- ``hangupOnStar``: the caller pressing ``*`` hangs the callee up; the caller goes on with the ``action`` or
  the next verb (``DialCallStatus=completed``).
- ``ringbackTone``: Asterisk media (``tone:``, ``sound:``) or a URL played to the caller, answered first (ARI
  has no early media of its own), over and over until the Dial is decided, instead of 180 Ringing.
- ``sendDigits``: DTMF sent to the callee once it answers, before it is bridged with the caller.
- a noun's ``url``: its whisper (:mod:`stasis_app.whisper`), after ``sendDigits``, before the bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from models.ari import ChannelDtmfReceived, LiveRecording
from models.rcml import Dial, DialNoun, HttpMethod, Number
from stasis_app.bridges import Bridge
from stasis_app.context import CallContext
from stasis_app.errors import AriError
from stasis_app.legs import CallLeg, LegEvents
from stasis_app.media import MediaError, Played

__all__ = ["DialExtras"]

log = logging.getLogger(__name__)

# How long Asterisk may take to say a stopped bridge recording ended.
_RECORDING_GRACE_S = 10.0
# A ringback played over and over starts at most this often (a very short file would be a busy loop of requests).
_SHORTEST_LOOP_S = 0.5


class DialExtras:
    """The extras of one Dial attempt."""

    def __init__(self, call: CallContext, verb: Dial) -> None:
        self.call = call
        self.verb = verb
        self.star: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._digits: dict[str, str] = {}  # leg id -> its noun's sendDigits
        self._whispers: dict[str, tuple[str, HttpMethod]] = {}  # leg id -> its noun's url, method
        self._recording: tuple[str, asyncio.Future[LiveRecording]] | None = None
        self._tasks: list[asyncio.Task[None]] = []  # the ringback
        self._star_task: asyncio.Task[None] | None = None
        self._listening = contextlib.ExitStack()

    @property
    def _number(self) -> str:
        return self.call.number.number

    def dialing(self, leg: CallLeg, noun: DialNoun) -> None:
        if isinstance(noun, Number) and noun.send_digits:
            self._digits[leg.id] = noun.send_digits
        if noun.url:
            self._whispers[leg.id] = (noun.url, noun.method)

    # -- ringing ----------------------------------------------------------------------------------------------

    async def ring(self) -> None:
        """Let the caller hear the ringing, or the Dial's ``ringbackTone``."""
        tone = self.verb.ringback_tone
        # One of our numbers run in-process answering would answer the Dial that rang it: plain ringing there.
        if tone is None or self.call.caller.virtual or not self.call.has_media():
            await self.call.ring()
            return
        try:
            media = self.call.media.play_media(tone, self.call.document_url)
        except MediaError as exc:
            log.warning("number %s: <Dial> ringbackTone: %s; plain ringing instead", self._number, exc)
            await self.call.ring()
            return
        await self.call.answer()
        self._tasks.append(asyncio.ensure_future(self._ringback(media)))

    async def _ringback(self, media: str) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            if await self.call.play_media(media) is not Played.FINISHED:
                return  # a failed media is not retried; the caller hears silence until the Dial is decided
            await asyncio.sleep(started + _SHORTEST_LOOP_S - loop.time())

    def holds(self, winner: CallLeg) -> bool:
        """Whether the ringing must stop on its own before the bridge: a ringback playback (its stop is sent by
        its own task once cancelled, later than :func:`~stasis_app.ari.protocol.in_turn` needs), or a sendDigits
        or whisper to run on ``winner`` first."""
        return bool(self._tasks) or (not winner.virtual and (winner.id in self._digits or winner.id in self._whispers))

    async def stop_ringing(self) -> None:
        """Stop the ringback (a second call does nothing). Without a ringback playback to stop (:meth:`holds`),
        its one request goes out before it awaits anything."""
        for task in self._tasks:
            task.cancel()  # a ringback playback is stopped by its own cancellation (media.play_to)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.call.stop_ringing()

    async def ringing(self, bridge: Bridge) -> None:
        if self.verb.record == "record-from-ringing":
            await self._record(bridge)

    # -- answered and connected -------------------------------------------------------------------------------

    async def answered(self, winner: CallLeg) -> str | None:
        """The callee answered: its ``sendDigits``, then its whisper, before it is bridged. None: connect it;
        else the ``DialCallStatus`` the Dial ends with (the whisper hung up or failed)."""
        if winner.virtual:
            return None  # one of our numbers, run in-process: no channel of its own to send to or run on
        digits = self._digits.get(winner.id)
        if digits is not None:
            try:
                await self.call.send_digits_to(winner, digits)
            except AriError as exc:  # gone (the Dial sees it) or refused: the call goes on either way
                log.warning("number %s: <Number> sendDigits to %s not sent: %s", self._number, winner.name, exc.reason)
        whisper = self._whispers.get(winner.id)
        if whisper is None or winner.is_gone:
            return None
        return await self.call.whisper(winner, *whisper)

    async def connected(self, bridge: Bridge) -> None:
        """Caller and callee are in ``bridge``."""
        if self.verb.record == "record-from-answer":
            await self._record(bridge)
        media = self.call.caller.media_leg
        if self.verb.hangup_on_star and media is not None and not media.is_gone:
            events = self._listening.enter_context(media.listen())  # now: no key may slip by before the task runs
            self._star_task = asyncio.ensure_future(self._watch_star(events))

    async def _watch_star(self, events: LegEvents) -> None:
        while (event := await events.next(ChannelDtmfReceived)) is not None:
            if event.digit == "*":
                log.info("number %s: the caller pressed * (hangupOnStar): the Dial ends", self._number)
                self.star.set_result(None)
                return

    # -- recording --------------------------------------------------------------------------------------------

    async def _record(self, bridge: Bridge) -> None:
        name = "RE" + secrets.token_hex(16)
        ended = bridge.recording(name)
        try:
            await self.call.record_bridge(bridge, name, 0)  # 0: no limit of its own, the Dial's timeLimit is one
        except AriError as exc:
            bridge.recording_ended(LiveRecording(name=name, state="failed"))
            log.warning("number %s: <Dial> record: Asterisk refused to record: %s", self._number, exc.reason)
            return
        self._recording = (name, ended)

    async def close(self) -> None:
        """The Dial is over, however it ended: stop listening for ``*``."""
        star, self._star_task = self._star_task, None
        if star is not None:
            star.cancel()
            await asyncio.gather(star, return_exceptions=True)
        self._listening.close()

    async def recorded(self) -> dict[str, str]:
        """Stop the recording; its parameters for the ``action`` (none if nothing was recorded)."""
        if self._recording is None:
            return {}
        (name, ended), self._recording = self._recording, None
        if not ended.done():
            with contextlib.suppress(AriError):  # CallGone: over already, its end is on the way
                await self.call.stop_recording(name)
        try:
            recording = await asyncio.wait_for(asyncio.shield(ended), _RECORDING_GRACE_S)
        except TimeoutError:
            log.warning("number %s: <Dial> record %s: Asterisk never said it ended", self._number, name)
            return {}
        if recording.state != "done":
            log.warning("number %s: <Dial> record %s %s: %s", self._number, name, recording.state, recording.cause)
            return {}
        duration = recording.duration or 0
        log.info("number %s: <Dial> recorded %s: %d s", self._number, name, duration)
        return {
            "RecordingUrl": f"{self.call.settings.http.base_url}/recordings/{name}.wav",
            "RecordingSid": name,
            "RecordingDuration": str(duration),
        }
