"""ARI's REST calls, typed, written once above a one-method :class:`~stasis_app.ari.protocol.Transport`.

Whatever carries the request (HTTP, the events websocket, the fake Asterisk of the tests), the answer is read
here, and only here, into a result or an error: a channel or bridge that is gone is :class:`CallGone` (a normal
path for the engine), any other refusal or no answer at all is :class:`AriError`.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
from collections import deque
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from pydantic import TypeAdapter

from models.ari import (
    HANDLED_EVENT_TYPES,
    Bridge,
    Channel,
    LiveRecording,
    StoredRecording,
    TransferState,
)
from models.ari_messages import UNUSED_EVENT_TYPES
from stasis_app.ari.protocol import AsteriskApi, HangupReason, Transport, TransportError
from stasis_app.errors import AriError, CallGone

__all__ = ["ENGINE_EVENT_TYPES", "AriRest", "error_for", "event_filter_body"]

_CHANNELS: TypeAdapter[list[Channel]] = TypeAdapter(list[Channel])
_BRIDGES: TypeAdapter[list[Bridge]] = TypeAdapter(list[Bridge])
# RESTResponse too: the filter applies to every message on the socket, and REST answers over the websocket
# (stasis_app.ari.ws_rest) would be dropped, the filter's own answer first.
# Dial and PlaybackStarted events are none of the engine's business (it learns a dial's outcome from StasisStart
# and the hangup cause, a playback's end from PlaybackFinished), and Dial alone is a sixth of what a transfer
# would make Asterisk serialise and send: not asked for.
ENGINE_EVENT_TYPES = tuple(kind for kind in HANDLED_EVENT_TYPES if kind not in UNUSED_EVENT_TYPES)


def event_filter_body(types: Iterable[str] = ENGINE_EVENT_TYPES) -> bytes:
    """The body of ``PUT /applications/{app}/eventFilter`` that lets ``types`` and REST answers through."""
    # RESTResponse too: on 22.10.1 the filter applies to REST answers on the socket as well.
    return json.dumps({"allowed": [{"type": kind} for kind in (*types, "RESTResponse")]}).encode()


# Asterisk 22.10.1 says a channel is gone in more ways than 404: addChannel / removeChannel answer 400 "Channel
# not found", and a channel that left Stasis (it is hanging up) answers 409 or 422 "Channel not in Stasis
# application". For the engine each of these means the same: that party is no longer in the call.
_GONE_STATUSES = (400, 409, 422)
_GONE_MESSAGE = re.compile(r"not found|not in Stasis", re.IGNORECASE)


# The ids Asterisk and the engine make ("1796255995.0", uuid hex) need no escaping: skip quote() for those.
_PLAIN_ID = re.compile(r"[A-Za-z0-9._~-]+\Z")


# Answer times: the median of the last so many, so that one stall (every request in flight answered late at
# once) does not read as a saturated Asterisk; answers older than this many seconds are no evidence.
_ANSWERS_KEPT = 64
_ANSWER_STALE_S = 2.0


def _id(value: str) -> str:
    """A channel/bridge/playback id as one path segment (``/`` and friends escaped)."""
    return value if _PLAIN_ID.match(value) else quote(value, safe="")


def _message(status: int, body: bytes) -> str:
    """Asterisk's ``{"message": ...}`` for an error status, else the status's reason phrase."""
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        return str(parsed["message"])
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def error_for(method: str, path: str, status: int, body: bytes) -> AriError:
    """The one mapping from an error status to the exception the engine sees."""
    message = _message(status, body)
    if status == 404 or (status in _GONE_STATUSES and _GONE_MESSAGE.search(message)):
        return CallGone(method, path, status, message)
    return AriError(method, path, status, message)


class AriRest:
    """The typed REST calls of :class:`AsteriskApi` over any :class:`Transport`.

    ``app`` is the Stasis application new channels are originated into. ``scrub`` hides a secret (the ARI
    password) from every error text, whatever produced it.
    """

    def __init__(self, transport: Transport, app: str, *, scrub: str = "") -> None:
        self.transport = transport
        self.app = app
        self._secret = scrub
        self._answers: deque[float] = deque(maxlen=_ANSWERS_KEPT)  # ms, for admission control
        self._answered_at = 0.0

    async def request(
        self, method: str, path: str, query: dict[str, str] | None = None, body: bytes | None = None
    ) -> bytes:
        """Send one request; the body of a 2xx answer, else :class:`CallGone` / :class:`AriError`."""
        loop = asyncio.get_running_loop()  # its clock: the one every timer of the app runs on
        started = loop.time()
        try:
            status, content = await self.transport.request(method, path, query, body)
        except TransportError as exc:
            raise AriError(method, path, None, self._scrub(str(exc))) from None
        finally:
            self._answered(started, loop.time())
        if status >= 400:
            error = error_for(method, path, status, content)
            error.reason = self._scrub(error.reason)
            raise type(error)(method, path, status, error.reason)
        return content

    def _answered(self, started: float, now: float) -> None:
        if now - self._answered_at >= _ANSWER_STALE_S:
            self._answers.clear()  # what came before a quiet spell says nothing about now
        self._answers.append((now - started) * 1000)
        self._answered_at = now

    def in_order(self) -> bool:
        """Whether Asterisk carries requests out in the order sent, without waiting for each answer."""
        return self.transport.ordered

    def answer_ms(self) -> float:
        """How long Asterisk has lately taken to answer: the median of the last 64 answers, in ms (0 once no
        answer came for a while)."""
        if asyncio.get_running_loop().time() - self._answered_at >= _ANSWER_STALE_S or not self._answers:
            return 0.0
        return statistics.median(self._answers)

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    async def answer(self, channel_id: str) -> None:
        """Answer a ringing inbound channel."""
        await self.request("POST", f"/channels/{_id(channel_id)}/answer")

    async def ring(self, channel_id: str) -> None:
        """Indicate ringing to the channel: 180 Ringing on an unanswered SIP call, the ring tone in-band (Asterisk's
        own tone generator) on an answered one."""
        await self.request("POST", f"/channels/{_id(channel_id)}/ring")

    async def ring_stop(self, channel_id: str) -> None:
        """Stop the in-band ring tone ``ring`` started on an answered channel."""
        await self.request("DELETE", f"/channels/{_id(channel_id)}/ring")

    async def hangup(self, channel_id: str, reason: HangupReason = "normal") -> None:
        """Hang the channel up with a cause."""
        await self.request("DELETE", f"/channels/{_id(channel_id)}", {"reason": reason})

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
        """Dial ``endpoint`` into this Stasis app; the new channel sends ``StasisStart`` when it answers."""
        query = {"endpoint": endpoint, "app": self.app, "appArgs": app_args, "channelId": channel_id}
        if caller_id is not None:
            query["callerId"] = caller_id
        query["timeout"] = str(timeout)
        if originator is not None:
            query["originator"] = originator
        body = _json({"variables": variables}) if variables else None
        return Channel.model_validate_json(await self.request("POST", "/channels", query, body))

    async def create_bridge(self, bridge_id: str, name: str) -> Bridge:
        """Create a mixing bridge with a chosen id."""
        content = await self.request("POST", f"/bridges/{_id(bridge_id)}", {"type": "mixing", "name": name})
        return Bridge.model_validate_json(content)

    async def destroy_bridge(self, bridge_id: str) -> None:
        """Destroy a bridge (its channels stay up)."""
        await self.request("DELETE", f"/bridges/{_id(bridge_id)}")

    async def add_to_bridge(self, bridge_id: str, channel_id: str, *more: str) -> None:
        """Put channels into a bridge, in one request (ARI's ``channel`` takes a comma-separated list): all of
        them, or none when one is missing."""
        channels = ",".join((channel_id, *more)) if more else channel_id
        await self.request("POST", f"/bridges/{_id(bridge_id)}/addChannel", {"channel": channels})

    async def remove_from_bridge(self, bridge_id: str, channel_id: str) -> None:
        """Take a channel out of a bridge."""
        await self.request("POST", f"/bridges/{_id(bridge_id)}/removeChannel", {"channel": channel_id})

    async def play(self, channel_id: str, media: str, playback_id: str) -> None:
        """Play Asterisk media (``sound:``, ``tone:``...) to a channel; it ends with ``PlaybackFinished``."""
        await self.request("POST", f"/channels/{_id(channel_id)}/play/{_id(playback_id)}", {"media": media})

    async def stop_playback(self, playback_id: str) -> None:
        """Stop a playback early."""
        await self.request("DELETE", f"/playbacks/{_id(playback_id)}")

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
        """Record the caller on a channel into the stored recording ``name`` (``ifExists=fail``: never overwrite)."""
        query = {
            "name": name,
            "format": format,
            "maxDurationSeconds": str(max_duration),
            "maxSilenceSeconds": str(max_silence),
            "ifExists": "fail",
            "beep": "true" if beep else "false",
            "terminateOn": terminate_on,
        }
        content = await self.request("POST", f"/channels/{_id(channel_id)}/record", query)
        return LiveRecording.model_validate_json(content)

    async def record_bridge(
        self, bridge_id: str, name: str, *, format: str = "wav", max_duration: int = 0, beep: bool = False
    ) -> LiveRecording:
        """``POST /bridges/{id}/record``: record the bridge's mix into ``name`` (``ifExists=fail``)."""
        query = {
            "name": name,
            "format": format,
            "maxDurationSeconds": str(max_duration),
            "ifExists": "fail",
            "beep": "true" if beep else "false",
            "terminateOn": "none",
        }
        content = await self.request("POST", f"/bridges/{_id(bridge_id)}/record", query)
        return LiveRecording.model_validate_json(content)

    async def stop_recording(self, name: str) -> None:
        """End a live recording now, keeping what it has."""
        await self.request("POST", f"/recordings/live/{_id(name)}/stop")

    async def stored_recording(self, name: str) -> StoredRecording | None:
        """A stored recording, or None if there is none by that name."""
        try:
            return StoredRecording.model_validate_json(await self.request("GET", f"/recordings/stored/{_id(name)}"))
        except CallGone:  # 404: no such recording
            return None

    async def delete_stored_recording(self, name: str) -> None:
        """Delete a stored recording."""
        await self.request("DELETE", f"/recordings/stored/{_id(name)}")

    async def send_dtmf(self, channel_id: str, dtmf: str) -> None:
        """Send DTMF to a channel (``0-9 * # A-D``, ``w`` a half-second pause, ``W`` a second)."""
        await self.request("POST", f"/channels/{_id(channel_id)}/dtmf", {"dtmf": dtmf})

    async def stored_recording_file(self, name: str) -> bytes:
        """The audio of a stored recording, as Asterisk keeps it; :class:`CallGone` (404) if there is none."""
        return await self.request("GET", f"/recordings/stored/{_id(name)}/file")

    async def transfer_progress(self, channel_id: str, state: TransferState) -> None:
        """Tell the transferor's phone how its REFER is going (a NOTIFY with a sipfrag)."""
        await self.request("POST", f"/channels/{_id(channel_id)}/transfer_progress", {"states": state.value})

    async def list_channels(self) -> list[Channel]:
        """Every channel Asterisk has now."""
        return _CHANNELS.validate_json(await self.request("GET", "/channels"))

    async def list_bridges(self) -> list[Bridge]:
        """Every bridge Asterisk has now."""
        return _BRIDGES.validate_json(await self.request("GET", "/bridges"))

    async def mute(self, channel_id: str, direction: Literal["in", "out", "both"] = "in") -> None:
        """Mute a channel (``in``: what it says is not heard in its bridge)."""
        await self.request("POST", f"/channels/{_id(channel_id)}/mute", {"direction": direction})

    async def unmute(self, channel_id: str, direction: Literal["in", "out", "both"] = "in") -> None:
        """Undo :meth:`mute`."""
        await self.request("DELETE", f"/channels/{_id(channel_id)}/mute", {"direction": direction})

    async def play_bridge(self, bridge_id: str, media: str, playback_id: str) -> None:
        """Play media to every channel of a bridge; it ends with ``PlaybackFinished``."""
        await self.request("POST", f"/bridges/{_id(bridge_id)}/play/{_id(playback_id)}", {"media": media})

    async def send_message(self, to: str, from_: str, body: str) -> None:
        """``PUT /endpoints/sendMessage``: an out-of-call message (a SIP MESSAGE for ``pjsip:`` targets)."""
        await self.request("PUT", "/endpoints/sendMessage", {"to": to, "from": from_, "body": body})

    async def set_event_filter(self, types: Iterable[str] = ENGINE_EVENT_TYPES) -> None:
        """Ask Asterisk to send this app only these event types (by default, those the engine acts on)."""
        await self.request("PUT", f"/applications/{_id(self.app)}/eventFilter", None, event_filter_body(types))

    async def asterisk_info(self) -> dict[str, Any]:
        """``GET /asterisk/info``: build, system (``version``), config and status, for start-up checks."""
        info: dict[str, Any] = json.loads(await self.request("GET", "/asterisk/info"))
        return info


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


if TYPE_CHECKING:
    # mypy checks here that AriRest matches the protocol the engine is written against.
    _implements: type[AsteriskApi] = AriRest
