"""What a call does with its caller's audio: answer, ringback, playback and recording.

:class:`CallMedia` is the media half of :class:`stasis_app.session.CallSession` (the :class:`CallContext` its
verbs see). A leg's audio is its own channel, or for one of our numbers run in-process the channel of the call
that dialed it (``CallLeg.media_leg``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from stasis_app.ari.protocol import AsteriskApi
from stasis_app.bridges import Bridge
from stasis_app.errors import AriError, CallGone
from stasis_app.legs import CallLeg, LegState
from stasis_app.media import Played, dtmf_seconds, play_to

__all__ = ["CallMedia"]

log = logging.getLogger(__name__)


class CallMedia:
    """Media operations on ``self.leg``; a subclass provides ``leg`` and ``ari``."""

    leg: CallLeg
    # The in-band ring tone of an answered call: ("ring", channel id) or ("play", playback id).
    _ringback: tuple[str, str] | None = None

    @property
    def ari(self) -> AsteriskApi:
        raise NotImplementedError

    async def answer(self) -> None:
        leg = self.leg
        if leg.state is not LegState.INBOUND:
            return
        if not leg.virtual:
            await self.ari.answer(leg.id)
            leg.set_state(LegState.UP, "answered by the app")
            return
        # One of our numbers run in-process: its answer is the answer of the Dial that rang it, and media can
        # flow once that Dial has connected the caller.
        leg.set_state(LegState.UP, "answered by its app")
        if leg.twin is not None:
            leg.twin.set_state(LegState.UP, "its number's app answered")
        if leg.media_ready is not None:
            waits: set[asyncio.Future[Any]] = {leg.media_ready, leg.ended}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if leg.is_gone:
            raise CallGone("answer", leg.name, None, "the calling party hung up")

    async def ring(self) -> None:
        media = self.leg.media_leg
        try:
            if self.leg.is_up and media is not None:
                if media.name.startswith("PJSIP/"):
                    # An answered call hears no 180: chan_pjsip says so, and Asterisk makes the ring tone in-band
                    # itself, a tone generator on the channel that ring_stop ends. A tone:ring playback would do
                    # the same with a playback object, two events and a bridge action more, on every transfer.
                    self._ringback = ("ring", media.id)
                    await self.ari.ring(media.id)
                else:
                    # A Local channel would pass ring_stop on to its other half and leave its own tone playing.
                    self._ringback = ("play", secrets.token_hex(16))
                    await self.ari.play(media.id, "tone:ring", self._ringback[1])
            elif not self.leg.virtual:
                await self.ari.ring(self.leg.id)
            # else: the Dial that rang this number already lets its caller hear ringing
        except AriError as exc:  # no ringback is no reason to fail the Dial
            log.debug("no ringback for %s: %s", self.leg.name, exc)
            self._ringback = None

    async def stop_ringing(self) -> None:
        if self._ringback is not None:
            (kind, id_), self._ringback = self._ringback, None
            try:
                await (self.ari.ring_stop(id_) if kind == "ring" else self.ari.stop_playback(id_))
            except AriError:
                pass  # gone with its channel

    def has_media(self) -> bool:
        return self.leg.media_leg is not None

    async def play(self, media: str) -> bool:
        return await self.play_media(media) is not Played.CALLER_GONE

    async def play_media(self, media: str) -> Played:
        target = self.leg.media_leg
        if target is None:
            raise CallGone("play", self.leg.name, None, "no channel carries this leg's audio any more")
        return await play_to(self.ari, target, media, secrets.token_hex(16))

    async def send_digits(self, digits: str) -> None:
        target = self.leg.media_leg
        if target is None:
            raise CallGone("dtmf", self.leg.name, None, "no channel carries this leg's audio any more")
        await self.ari.send_dtmf(target.id, digits)
        await asyncio.wait({target.ended}, timeout=dtmf_seconds(digits))  # Asterisk sends them meanwhile

    async def start_recording(self, name: str, *, max_duration: int, max_silence: int, beep: bool) -> None:
        target = self.leg.media_leg
        if target is None or target.is_gone:
            raise CallGone("record", self.leg.name, None, "no channel carries this leg's audio any more")
        if target.bridge is not None:
            await target.bridge.release(self.ari, target)  # Asterisk records no channel that is in a bridge
        await self.ari.record(
            target.id, name, format="wav", max_duration=max_duration, max_silence=max_silence, beep=beep
        )

    async def record_bridge(self, bridge: Bridge, name: str, max_duration: int) -> None:
        await self.ari.record_bridge(bridge.id, name, format="wav", max_duration=max_duration)

    async def send_digits_to(self, leg: CallLeg, digits: str) -> None:
        await self.ari.send_dtmf(leg.id, digits)
        await asyncio.wait({leg.ended}, timeout=dtmf_seconds(digits))  # Asterisk sends them meanwhile

    async def stop_recording(self, name: str) -> None:
        await self.ari.stop_recording(name)

    async def recording_kept(self, name: str) -> bool:
        try:
            return await self.ari.stored_recording(name) is not None
        except AriError:
            return False
