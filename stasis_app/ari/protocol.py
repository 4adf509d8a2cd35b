"""The seams between the call engine and Asterisk: what the engine may ask, how it hears events, and the one
method every way of reaching Asterisk's REST interface implements.

    engine ──AsteriskApi──▶ AriRest (typed methods, status -> error) ──Transport──▶ HTTP | the fake Asterisk

:class:`stasis_app.ari.rest.AriRest` writes the typed REST calls once, above a :class:`Transport`; the HTTP
transports of :mod:`stasis_app.ari.transport` and the fake Asterisk in ``tests/`` sit beneath it. Nothing above
this package imports httpx or aiohttp's websocket client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal, Protocol

from models.ari import AriEvent, Bridge, Channel, LiveRecording, StoredRecording, TransferState

__all__ = ["AsteriskApi", "EventHandler", "HangupReason", "Transport", "TransportError", "in_turn"]

HangupReason = Literal[
    "normal",
    "busy",
    "congestion",
    "no_answer",
    "timeout",
    "rejected",
    "unallocated",
    "normal_unspecified",
    "number_incomplete",
    "codec_mismatch",
    "interworking",
    "failure",
    "answered_elsewhere",
]
"""``DELETE /channels/{id}?reason=``; Asterisk maps each to a Q.850 cause (busy -> 17, no_answer -> 19...)."""


class TransportError(Exception):
    """Asterisk could not be asked at all (refused, reset, timed out, closed): no status to go by."""


class Transport(Protocol):
    """One REST request to Asterisk. ``path`` is ARI's without the ``/ari`` prefix (``/channels/c1/answer``);
    ``query`` values are sent as given (the transport encodes them); ``body`` is JSON text or None.

    Returns the status and the body as Asterisk sent them; raises :class:`TransportError` when there is no answer.
    Turning a status into an error is the caller's business (:class:`stasis_app.ari.rest.AriRest`), the same for
    every transport."""

    async def request(
        self, method: str, path: str, query: Mapping[str, str] | None = None, body: bytes | None = None
    ) -> tuple[int, bytes]: ...

    async def aclose(self) -> None:
        """Release connections; later requests raise :class:`TransportError`."""

    @property
    def ordered(self) -> bool:
        """True while Asterisk carries requests out in the order they were sent, each before it reads the next
        (REST over the events websocket): a request may then go out before the one before it is answered, and
        Asterisk still sees them in turn. False over HTTP, where each request has a connection of its own."""


class AsteriskApi(Protocol):
    """The REST calls the engine makes. Calls naming a channel or bridge that is gone raise ``CallGone``;
    any other refusal raises ``AriError``."""

    async def answer(self, channel_id: str) -> None:
        """Answer a ringing inbound channel."""

    async def ring(self, channel_id: str) -> None:
        """Indicate ringing to the channel: 180 Ringing on an unanswered SIP call, the ring tone in-band (Asterisk's
        own tone generator) on an answered one."""

    async def ring_stop(self, channel_id: str) -> None:
        """Stop the in-band ring tone ``ring`` started on an answered channel."""

    async def hangup(self, channel_id: str, reason: HangupReason = "normal") -> None:
        """Hang the channel up with a cause."""

    async def originate(
        self,
        *,
        endpoint: str,
        channel_id: str,
        app_args: str,
        caller_id: str | None = None,
        timeout: int = 30,
        variables: dict[str, str] | None = None,
        originator: str | None = None,
    ) -> Channel:
        """Dial ``endpoint``; the new channel enters this Stasis app (``StasisStart``) when it answers.

        ``originator`` is the channel on whose behalf it is dialed: the new channel takes its codecs from it, so a
        Local channel into one of our own numbers speaks the caller's ulaw instead of slin192."""

    async def create_bridge(self, bridge_id: str, name: str) -> Bridge:
        """Create a mixing bridge with a chosen id."""

    async def destroy_bridge(self, bridge_id: str) -> None:
        """Destroy a bridge (its channels stay up)."""

    async def add_to_bridge(self, bridge_id: str, channel_id: str, *more: str) -> None:
        """Put channels into a bridge, in one request: all of them, or none when one is missing (that one is
        gone: :class:`CallGone`)."""

    async def remove_from_bridge(self, bridge_id: str, channel_id: str) -> None:
        """Take a channel out of a bridge."""

    async def play(self, channel_id: str, media: str, playback_id: str) -> None:
        """Start playing Asterisk media (``sound:``, ``tone:``...) to a channel; ends with ``PlaybackFinished``."""

    async def stop_playback(self, playback_id: str) -> None:
        """Stop a playback early."""

    async def record(
        self,
        channel_id: str,
        name: str,
        *,
        format: str = "wav",
        max_duration: int = 0,
        max_silence: int = 0,
        beep: bool = False,
        terminate_on: str = "none",
    ) -> LiveRecording:
        """Record what the caller on a channel says into the stored recording ``name`` (never overwriting one);
        ends with ``RecordingFinished`` (or ``RecordingFailed``). 0 means no limit."""

    async def record_bridge(
        self, bridge_id: str, name: str, *, format: str = "wav", max_duration: int = 0, beep: bool = False
    ) -> LiveRecording:
        """Record what a bridge mixes (everyone in it) into the stored recording ``name``; Asterisk puts a
        ``Recorder/`` channel of its own in the bridge. Ends with ``RecordingFinished`` (``target_uri``
        ``bridge:ID``) when stopped or when the bridge is destroyed."""

    async def stop_recording(self, name: str) -> None:
        """End a live recording now, keeping what it has (``RecordingFinished`` follows)."""

    async def stored_recording(self, name: str) -> StoredRecording | None:
        """A stored recording, or None if there is none by that name."""

    async def delete_stored_recording(self, name: str) -> None:
        """Delete a stored recording."""

    async def send_dtmf(self, channel_id: str, dtmf: str) -> None:
        """Send DTMF to a channel (``0-9 * # A-D``, ``w`` a half-second pause, ``W`` a second)."""

    async def stored_recording_file(self, name: str) -> bytes:
        """The audio of a stored recording, as Asterisk keeps it (``GET /recordings/stored/{name}/file``)."""

    async def transfer_progress(self, channel_id: str, state: TransferState) -> None:
        """Tell the transferor's phone how its REFER is going (a NOTIFY with a sipfrag)."""

    async def list_channels(self) -> list[Channel]:
        """Every channel Asterisk has now."""

    async def list_bridges(self) -> list[Bridge]:
        """Every bridge Asterisk has now."""

    async def mute(self, channel_id: str, direction: Literal["in", "out", "both"] = "in") -> None:
        """Mute a channel (``in``: what it says is not heard in its bridge)."""

    async def unmute(self, channel_id: str, direction: Literal["in", "out", "both"] = "in") -> None:
        """Undo :meth:`mute`."""

    async def play_bridge(self, bridge_id: str, media: str, playback_id: str) -> None:
        """Start playing media to every channel of a bridge; ends with ``PlaybackFinished``."""

    def in_order(self) -> bool:
        """Whether requests sent one after another are carried out in that order without waiting for each
        answer (:attr:`Transport.ordered`): see :func:`in_turn`."""

    def answer_ms(self) -> float:
        """How long Asterisk has lately taken to answer a request, in milliseconds (the median of the last 64;
        0 when nothing was answered for a while): how far behind the app Asterisk is."""

    async def send_message(self, to: str, from_: str, body: str) -> None:
        """Send an out-of-call message (``to``: ``pjsip:bob``; a SIP MESSAGE with res_pjsip_messaging).
        Asterisk accepts it (202) and sends it on its own: no event says whether it was delivered."""


class EventHandler(Protocol):
    """What receives events. ``on_event`` must not block: it is called in websocket order, one at a time."""

    def on_event(self, event: AriEvent) -> None:
        """One event, in the order Asterisk sent it."""

    async def on_connected(self, reconnect: bool) -> None:
        """The event stream is (re)connected; after a reconnect, events may have been missed."""


async def in_turn(ari: AsteriskApi, *steps: Callable[[], Awaitable[object]]) -> None:
    """Run ``steps`` (each one request, or none) so that Asterisk carries them out in this order, and raise the
    first one's error, if any, once every step has ended; every step runs, whatever the ones before it did.

    Where Asterisk keeps the order itself (:meth:`AsteriskApi.in_order`), each step starts before the one before
    it is answered and the answers are awaited together: one round trip for them all instead of one each, which
    under load is what a caller waits for. A step must then send its request before anything else it awaits.
    Elsewhere (HTTP), each step waits for the one before it.
    """
    if ari.in_order():
        results: list[object] = await asyncio.gather(*(step() for step in steps), return_exceptions=True)
    else:
        results = []
        for step in steps:
            try:
                results.append(await step())
            except Exception as exc:
                results.append(exc)
    for result in results:
        if isinstance(result, BaseException):
            raise result
