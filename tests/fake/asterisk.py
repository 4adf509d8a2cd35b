"""An in-memory Asterisk 22 for tests: implements :class:`stasis_app.ari.protocol.AsteriskApi` and sends its
events to an :class:`~stasis_app.ari.protocol.EventHandler` in order, through a queue, like the websocket.

    fake = FakeAsterisk()
    fake.attach(engine)
    await fake.start()
    fake.phone("PJSIP/bob", answer_after=0.02)
    alice = await fake.call_in("alice", "1001")
    ...
    await fake.settle()
    fake.assert_nothing_leaked()

What it copies from the real traces (/work/shared/traces, Asterisk 22.10.1):

- (tests/captures/*.jsonl, the e2e runs' --event-log) a Local originate: ;2's StasisStart before ;1's Dial "";
  answering ;2: ;1 Up, ;2 Up, ;1 Dial ANSWER, ;1 StasisStart, after a REST call made at the same time; the app
  hears both halves' ChannelDestroyed; an answered ;1 hung up: ;2 hung up, StasisEnd, a soft hangup request
  (cause 16, the dialplan's Hangup()), ;2 destroyed, then ;1 destroyed. A failing phone: ChannelHangupRequest
  with the cause, then the Dial status (BUSY...), then ChannelDestroyed;
- event order: inbound StasisStart(Ring) -> answer -> ChannelStateChange(Up); originate -> Dial "" ->
  [ChannelStateChange Ringing, Dial RINGING] -> ChannelStateChange Up, Dial ANSWER, StasisStart(appArgs);
  hangup -> ChannelHangupRequest -> ChannelLeftBridge -> StasisEnd -> ChannelDestroyed;
- REST DELETE gives ChannelHangupRequest cause=32 soft=True (AST_SOFTHANGUP_EXPLICIT) and ChannelDestroyed
  with the reason's Q.850 cause; the phone hanging up gives ChannelHangupRequest without cause and cause 16;
- ChannelDestroyed reaches the app only for channels it originated (the originate subscribes the app, to both
  halves of a Local channel); a channel that came in from the dialplan (inbound PJSIP) is last heard of at
  StasisEnd;
- an originated channel's ChannelDestroyed shows dialplan AppDial2 "(Outgoing Line)" again;
- REFER: one ChannelTransfer without state; each transfer_progress is echoed as a ChannelTransfer with that
  state, its referred_by a fresh snapshot (connected_channel only when exactly one other channel shares the
  bridge); the echo is delivered before the REST call returns. Hanging the transferor up with the subscription
  still active NOTIFYs 503 and sends a ChannelTransfer with state "channel_progress" between StasisEnd and
  ChannelDestroyed; a later transfer_progress gets 404 (CallGone);
- Refer-To: the user part only, %xx unescaped, cut to 79 characters; a tel: URI gets 400 and no event.

Assumptions beyond the traces (to verify against a real Asterisk):

1. ChannelVarset, ChannelConnectedLine, BridgeCreated and other types the engine does not handle are not
   produced: the real client asks for HANDLED_EVENT_TYPES only (eventFilter).
2. originate to an endpoint with no phone script fails like a missing/unreachable PJSIP endpoint:
   ast_dial_prerun fails and ARI answers 500 "Allocation failed" (AriError); no channel, no event.
3. A busy / rejecting phone: ChannelHangupRequest with the cause (not soft), then Dial BUSY (17) or
   CONGESTION (21, 34, 38, 41, 42) or NOANSWER (18, 19) or CHANUNAVAIL (other causes), then ChannelDestroyed
   (the order is 22.10.1's for 486; the status table beyond BUSY is assumed).
   The final answer comes ``answer_after`` seconds after the INVITE; with ``ring`` the 180 comes first.
4. Ring timeout (``timeout`` x ``timeout_scale`` seconds): ChannelDestroyed 19 only: no final Dial event, no
   ChannelHangupRequest (tests/contract.py checks it against the real Asterisk).
5. The app DELETEs a leg still being dialed: ChannelHangupRequest(32, soft), Dial CANCEL, ChannelDestroyed
   with the reason's cause (16 for normal).
6. Local/exten@context/n: ;1 gets the given id, ;2 the id + "-2" (like otherChannelId). ;2 StasisStart(args=[],
   Ring, caller = the originate's callerId), then Dial "" for ;1. ring(;2) -> ;1 Ringing + Dial RINGING;
   answer(;2) -> ;1 Up, ;2 Up, Dial ANSWER, StasisStart(appArgs) (captured). Before answer, ;2 ending with
   cause C ends ;1 like a failing phone with cause C (Dial BUSY/NOANSWER/CONGESTION...); ;1 ending (DELETE,
   timeout) ends ;2 with ChannelHangupRequest(C). After answer either half ending ends the other with cause 16
   (normal clearing).
7. ChannelHangupRequest on a bridged, playing channel is followed by PlaybackFinished (state "done") before
   ChannelLeftBridge. stop_playback also reports "done". tone: media play until stopped.
   ``ring`` on an answered channel sends no 180 (chan_pjsip cannot) and raises no event: Asterisk starts its own
   ring tone generator, until ``DELETE /channels/{id}/ring`` (``ring_tone``). A Local channel's stop does not
   stop its own tone: core_unreal.c queues it to the other half (read from Asterisk's source, not captured).
8. transfer_progress with no active REFER subscription (never referred, or already final): 204 and nothing
   else (no NOTIFY, no echo); it is recorded in ``stray_transfer_progress``. A second REFER replaces the
   first.
9. Attended REFER (protocol_id): refer_to also carries destination_channel / connected_channel / bridge of the
   channel whose protocol_id matches, when there is one.
10. addChannel / removeChannel naming a missing channel: 400 "Channel not found" (AriRest maps it to CallGone); a
    channel not in Stasis: 422; a missing bridge or playback: 404. Calls on a channel not in Stasis that need
    its control (answer, ring, play): 409. Stasis bridges are never destroyed by Asterisk when they empty.
11. REST paths are ARI's without the /ari prefix, as stasis_app.ari.client spells them (POST /bridges/{id}
    with type=mixing; creating an existing id again is refused with 500, as ARI refuses a type on update).
12. Uniqueids are "1795497500.<n>", SIP channel names "PJSIP/<user>-<8 hex>", Local "Local/x@ctx-<8 hex>;1/;2";
    inbound channels show dialplan priority 1 (the traces show 2: the rig's dialplan had a step before
    Stasis), originated PJSIP channels the context "rcml" (Switch.endpoint_context).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from models.ari import AriEvent, Bridge, Channel, TransferState
from models.ari_messages import parse_event
from stasis_app.ari.protocol import EventHandler, Transport, TransportError
from stasis_app.ari.rest import AriRest
from tests.fake.events import bridge_json, channel_json, playback_json
from tests.fake.media import MediaCache
from tests.fake.model import (
    HANGUP_REASON_CAUSE,
    FakeBridge,
    FakeChannel,
    FakePlayback,
    Phone,
    ReferSubscription,
    parse_caller_id,
)
from tests.fake.recording import RecordingRefused, Recordings
from tests.fake.switch import Switch

__all__ = ["FakeAsterisk", "Phone"]

log = logging.getLogger(__name__)


class _Refused(Exception):
    """Asterisk answers a request with an error status and ``{"message": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class FakeAsterisk:
    """In-memory Asterisk: REST calls of the engine, the phones' side of each call, and what to assert on."""

    media_duration = 0.01  # seconds a sound:/digits:/... playback lasts
    timeout_scale = 1.0  # multiplies the originate timeout, so a test can make "30 s" pass quickly
    # As Asterisk over the events websocket: requests take effect in the order they are made (each request's
    # effect happens before it first awaits). False makes the engine wait for each answer, as over HTTP.
    ordered = True

    def __init__(self, app: str = "rcml") -> None:
        self.app = app
        self.event_log: list[dict[str, Any]] = []
        self.rest_log: list[tuple[str, str, dict[str, Any]]] = []
        self.answer_delay = 0.0  # seconds every REST answer takes: a saturated Asterisk
        self._switch = Switch(app, self._emit)
        self._queue: asyncio.Queue[AriEvent] = asyncio.Queue()
        # Event type -> seconds the app waits for it after the events before it (order kept): what a busy
        # Asterisk or network does between two events that the fake would otherwise hand over in one go.
        self.event_gaps: dict[str, float] = {}
        self._handler: EventHandler | None = None
        self._pump: asyncio.Task[None] | None = None
        self._delivering = False
        self._connected = True
        self.handler_errors: list[BaseException] = []
        self._closed = False
        self._failures: list[tuple[str, str, int]] = []  # (method, path prefix, status), answered in order
        self.media_cache = MediaCache()  # sound:http(s):// media are fetched, as Asterisk's media cache does
        self._fetching: set[asyncio.Task[None]] = set()
        self.dtmf_sent: dict[str, list[str]] = {}  # channel id -> each POST .../dtmf's digits
        self.stored_recordings: dict[str, bytes] = {}  # GET /recordings/stored/{name}/file
        self.api = AriRest(self, app)  # the typed REST calls, as the engine makes them
        switch = self._switch
        self.recordings = Recordings(
            lambda type_, **fields: self._emit(switch.events.event(type_, **fields)),
            lambda delay, fn, *args: switch.later(None, delay, fn, *args),
        )
        switch.on_hangup.append(self.recordings.hung_up)

    # -- event stream -------------------------------------------------------------------------------------

    def attach(self, handler: EventHandler) -> None:
        self._handler = handler

    async def start(self) -> None:
        if self._handler is None:
            raise RuntimeError("attach(handler) before start()")
        self._pump = asyncio.create_task(self._deliver(self._handler), name="fake-asterisk-websocket")
        await self._handler.on_connected(reconnect=False)

    async def stop(self) -> None:
        for handle in list(self._switch.timers):
            handle.cancel()
        self._switch.timers.clear()
        for task in list(self._fetching):
            task.cancel()
        await asyncio.gather(*self._fetching, return_exceptions=True)
        await self.media_cache.aclose()
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
            self._pump = None

    def disconnect(self) -> None:
        """The websocket drops: events happen but are lost, as ARI does not replay them."""
        self._connected = False

    async def reconnect(self) -> None:
        """The websocket is back: the handler is told so and may re-read channels and bridges."""
        assert self._handler is not None
        self._connected = True
        await self._handler.on_connected(reconnect=True)

    async def restart_app(self, handler: EventHandler) -> None:
        """The app died (its undelivered events with it) and a new one connects under the same name: events go
        to ``handler`` from now on, told of its first connect. Whatever the old app left in Asterisk stays."""
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        self._queue = asyncio.Queue()
        self._handler = handler
        self._connected = True
        self._pump = asyncio.create_task(self._deliver(handler), name="fake-asterisk-websocket")
        await handler.on_connected(reconnect=False)

    def deliver_late(self, raw: dict[str, Any]) -> None:
        """An event sent before a reconnect reaches the app after it (it was in flight)."""
        self._queue.put_nowait(parse_event(raw))

    def fail(self, method: str, path_prefix: str, *, status: int = 500, times: int = 1) -> None:
        """The next ``times`` requests ``method`` on a path starting with ``path_prefix`` are answered ``status``
        and change nothing (Asterisk having a bad moment)."""
        self._failures += [(method, path_prefix, status)] * times

    def _emit(self, raw: dict[str, Any]) -> None:
        self.event_log.append(raw)
        if self._connected:
            self._queue.put_nowait(parse_event(raw))

    async def _deliver(self, handler: EventHandler) -> None:
        while True:
            event = await self._queue.get()
            self._delivering = True
            if (gap := self.event_gaps.get(event.type)) is not None:
                await asyncio.sleep(gap)  # it came in a later read than the events before it
            try:
                handler.on_event(event)
            except Exception as exc:  # a handler bug must fail the test, not kill the stream
                log.exception("handler failed on %s", event.type)
                self.handler_errors.append(exc)
            finally:
                self._delivering = False

    def _busy(self) -> bool:
        now = asyncio.get_running_loop().time()
        due = any(not h.cancelled() and h.when() <= now for h in self._switch.timers)
        return due or bool(self._fetching) or self._delivering or (self._pump is not None and not self._queue.empty())

    async def settle(self, *, quiet_rounds: int = 20, limit: float = 5.0) -> None:
        """Wait until every event is delivered and every scripted timer due by now has run (and the handler's
        reactions have had ``quiet_rounds`` loop turns to make their REST calls). Re-raises handler errors."""
        deadline = time.monotonic() + limit
        quiet = 0
        while quiet < quiet_rounds:
            await asyncio.sleep(0)
            quiet = 0 if self._busy() else quiet + 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"fake Asterisk did not settle within {limit}s")
        self._raise_errors()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 2.0) -> None:
        """Let time pass until ``predicate()`` holds; TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            self._raise_errors()
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            await asyncio.sleep(0.001)

    def _raise_errors(self) -> None:
        errors = self.handler_errors + self._switch.errors
        if errors:
            self.handler_errors.clear()
            self._switch.errors.clear()
            raise errors[0]

    # -- the phones' side ---------------------------------------------------------------------------------

    def phone(
        self,
        endpoint: str,
        *,
        answer_after: float | None = 0.01,
        busy: bool = False,
        reject_cause: int | None = None,
        ring: bool = True,
        hangup_after: float | None = None,
    ) -> Phone:
        """Script how ``endpoint`` (``PJSIP/bob``) behaves when dialed (``answer_after=None``: never answers).
        ``hangup_after`` also applies to an inbound call from that endpoint, counted from the app's answer."""
        phone = Phone(endpoint, answer_after, busy, reject_cause, ring, hangup_after)
        self._switch.phones[endpoint] = phone
        return phone

    async def call_in(
        self, caller: str = "alice", exten: str = "1001", *, context: str = "rcml", timestamp: str | None = None
    ) -> str:
        """``PJSIP/<caller>`` dials ``exten``; the channel enters Stasis ringing (its StasisStart stamped
        ``timestamp``, e.g. a past time for an event that queued in Asterisk). Returns its id."""
        self._switch.events.stamp = timestamp
        ch = self._switch.inbound(caller, exten, context)
        await asyncio.sleep(0)
        return ch.id

    async def phone_hangup(self, channel_id: str) -> None:
        """The person on ``channel_id`` hangs up."""
        self._switch.phone_hangup(self._live(channel_id))
        await asyncio.sleep(0)

    async def refer(self, channel_id: str, destination: str | None, *, protocol_id: str | None = None) -> int:
        """The phone on ``channel_id`` sends REFER: Refer-To ``destination``, or Replaces ``protocol_id`` for
        an attended transfer. Returns Asterisk's answer: 202, or 400 for a Refer-To it cannot use (tel:)."""
        status = self._switch.refer(self._live(channel_id), destination, protocol_id)
        await asyncio.sleep(0)
        return status

    async def phone_dtmf(self, channel_id: str, digits: str) -> None:
        """The person on ``channel_id`` presses ``digits``, one ChannelDtmfReceived each."""
        for digit in digits:
            self._switch.dtmf(self._live(channel_id), digit)
            await asyncio.sleep(0)

    def _live(self, channel_id: str) -> FakeChannel:
        try:
            return self._switch.channels[channel_id]
        except KeyError:
            raise AssertionError(f"no live channel {channel_id!r}") from None

    # -- REST: the one-method transport beneath stasis_app.ari.rest.AriRest -------------------------------------

    async def request(
        self, method: str, path: str, query: Mapping[str, str] | None = None, body: bytes | None = None
    ) -> tuple[int, bytes]:
        """One ARI REST request, answered with Asterisk's status and JSON body (``{"message": ...}`` on errors)."""
        params: dict[str, Any] = dict(query or {})
        if body:
            params |= json.loads(body)
        self.rest_log.append((method, path, params))
        if self.answer_delay:
            await asyncio.sleep(self.answer_delay)
        if self._closed:
            raise TransportError("the ARI client is closed")
        for failure in self._failures:
            if failure[0] == method and path.startswith(failure[1]):
                self._failures.remove(failure)
                return failure[2], b'{"message":"Internal Server Error"}'
        route = self._route(method, [unquote(part) for part in path.strip("/").split("/")])
        if route is None:
            return 404, b'{"message":"Resource not found"}'
        try:
            result = await route(params)
        except _Refused as refused:
            return refused.status, json.dumps({"message": refused.message}).encode()
        if result is None:
            return 204, b""
        if isinstance(result, bytes):  # a file (a stored recording), sent as is
            return 200, result
        if method == "POST" and path.rsplit("/", 2)[-2] == "play":
            return 201, json.dumps(result).encode()  # Asterisk: 201 Created, the playback
        return 200, json.dumps(result).encode()

    async def aclose(self) -> None:
        self._closed = True

    def _route(self, method: str, parts: list[str]) -> Callable[[dict[str, Any]], Awaitable[Any]] | None:
        match method, parts:
            case "POST", ["channels"]:
                return self._originate
            case "GET", ["channels"]:
                return self._list_channels
            case "GET", ["bridges"]:
                return self._list_bridges
            case "DELETE", ["channels", channel_id]:
                return lambda p: self._hangup(channel_id, p.get("reason", "normal"))
            case "POST", ["channels", channel_id, "answer"]:
                return lambda _p: self._answer(channel_id)
            case "POST", ["channels", channel_id, "ring"]:
                return lambda _p: self._ring(channel_id)
            case "DELETE", ["channels", channel_id, "ring"]:
                return lambda _p: self._ring_stop(channel_id)
            case "POST", ["channels", channel_id, "play", playback_id]:
                return lambda p: self._play(channel_id, p.get("media", ""), playback_id)  # 201, as Asterisk
            case "POST", ["channels", channel_id, "transfer_progress"]:
                return lambda p: self._transfer_progress(channel_id, p.get("states", ""))
            case "POST", ["bridges", bridge_id]:
                return lambda p: self._create_bridge(bridge_id, p.get("name", ""))
            case "DELETE", ["bridges", bridge_id]:
                return lambda _p: self._destroy_bridge(bridge_id)
            case "POST", ["bridges", bridge_id, "addChannel"]:
                return lambda p: self._add_to_bridge(bridge_id, p.get("channel", ""))
            case "POST", ["bridges", bridge_id, "removeChannel"]:
                return lambda p: self._remove_from_bridge(bridge_id, p.get("channel", ""))
            case "POST", ["channels", channel_id, "dtmf"]:
                return lambda p: self._send_dtmf(channel_id, p.get("dtmf", ""))
            case "GET", ["recordings", "stored", name, "file"]:
                return lambda _p: self._stored_recording_file(name)
            case "POST", ["bridges", bridge_id, "play", playback_id]:
                return lambda p: self._play_bridge(bridge_id, p.get("media", ""), playback_id)
            case "POST", ["channels", channel_id, "mute"]:
                return lambda p: self._mute(channel_id, p.get("direction", "both"), True)
            case "DELETE", ["channels", channel_id, "mute"]:
                return lambda p: self._mute(channel_id, p.get("direction", "both"), False)
            case "PUT", ["endpoints", "sendMessage"]:
                return self._send_message
            case "DELETE", ["playbacks", playback_id]:
                return lambda _p: self._stop_playback(playback_id)
            case "PUT", ["applications", _app, "eventFilter"]:
                return self._event_filter
            case ("POST", ["channels" | "bridges", _, "record"]) | (_, ["recordings", *_]):
                return self._recording_route(method, parts)
        return None

    def _recording_route(self, method: str, parts: list[str]) -> Callable[[dict[str, Any]], Awaitable[Any]] | None:
        recordings = self.recordings

        async def answer(fn: Callable[[], Any]) -> Any:
            try:
                result = fn()
            except RecordingRefused as refused:
                raise _Refused(refused.status, refused.message) from None
            await asyncio.sleep(0)
            return result

        def live(name: str) -> str:
            if name not in recordings.live:
                raise _Refused(404, "Recording not found")
            return name

        match method, parts:
            case "POST", ["channels", channel_id, "record"]:
                return lambda p: answer(lambda: recordings.start(self._channel(channel_id, stasis=True), p))
            case "POST", ["bridges", bridge_id, "record"]:
                return lambda p: answer(lambda: recordings.start_bridge(self._bridge(bridge_id).id, p))
            case "POST", ["recordings", "live", name, "stop"]:
                return lambda _p: answer(lambda: recordings.finish(live(name)))
            case "DELETE", ["recordings", "live", name]:
                return lambda _p: answer(lambda: recordings.cancel(live(name)))
            case "GET", ["recordings", "stored", name] if name in recordings.stored:
                return lambda _p: answer(lambda: {"name": name, "format": recordings.stored[name].format})
            case "DELETE", ["recordings", "stored", name] if name in recordings.stored:
                return lambda _p: answer(lambda: recordings.stored.pop(name) and None)
        return None

    async def _list_channels(self, _params: dict[str, Any]) -> list[dict[str, Any]]:
        return [channel_json(ch) for ch in self._switch.channels.values()]

    async def _list_bridges(self, _params: dict[str, Any]) -> list[dict[str, Any]]:
        return [bridge_json(br) for br in self._switch.bridges.values()]

    async def _event_filter(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"name": self.app, **params}

    # -- REST: channels -----------------------------------------------------------------------------------

    def _channel(self, channel_id: str, *, stasis: bool = False) -> FakeChannel:
        ch = self._switch.channels.get(channel_id)
        if ch is None:
            raise _Refused(404, "Channel not found")
        if stasis and not ch.in_stasis:
            raise _Refused(409, "Channel not in Stasis application")
        return ch

    async def _answer(self, channel_id: str) -> None:
        ch = self._channel(channel_id, stasis=True)
        if ch.local_half == 2 and not self.ordered:
            # The answer crosses the Local pair's frame queue before either half reports Up: a REST call made
            # at the same time on another HTTP connection (adding the callee to the bridge) is seen first. Over
            # the websocket the next request waits for this one: Up comes first (seed capture).
            await asyncio.sleep(0)
            if ch.id not in self._switch.channels:
                raise _Refused(404, "Channel not found")
        self._switch.answer(ch)
        await asyncio.sleep(0)

    async def _ring(self, channel_id: str) -> None:
        self._switch.ring(self._channel(channel_id, stasis=True))
        await asyncio.sleep(0)

    async def _ring_stop(self, channel_id: str) -> None:
        self._switch.ring_stop(self._channel(channel_id, stasis=True))
        await asyncio.sleep(0)

    async def _hangup(self, channel_id: str, reason: str) -> None:
        ch = self._channel(channel_id)
        if reason not in HANGUP_REASON_CAUSE:
            raise _Refused(400, "Invalid reason for hangup provided")
        self._switch.rest_hangup(ch, HANGUP_REASON_CAUSE[reason])
        await asyncio.sleep(0)

    async def _originate(self, params: dict[str, Any]) -> dict[str, Any]:
        endpoint, channel_id = params.get("endpoint", ""), params.get("channelId", "")
        if channel_id in self._switch.names:
            raise _Refused(409, "Channel with given unique ID already exists")
        if not endpoint.startswith("Local/") and endpoint not in self._switch.phones:
            raise _Refused(500, "Allocation failed")
        timeout = float(params.get("timeout", 30)) * self.timeout_scale
        caller = parse_caller_id(params.get("callerId"))
        snapshot = self._switch.originate(endpoint, channel_id, params.get("appArgs", ""), caller, timeout)
        await asyncio.sleep(0)
        return snapshot

    async def _transfer_progress(self, channel_id: str, states: str) -> None:
        ch = self._channel(channel_id)
        try:
            state = TransferState(states)
        except ValueError:
            raise _Refused(400, f"Invalid state {states!r}") from None
        self._switch.transfer_progress(ch, state)
        await asyncio.sleep(0)

    # -- REST: bridges and playbacks ----------------------------------------------------------------------

    def _bridge(self, bridge_id: str) -> FakeBridge:
        br = self._switch.bridges.get(bridge_id)
        if br is None:
            raise _Refused(404, "Bridge not found")
        return br

    def _member(self, channel_id: str) -> FakeChannel:
        ch = self._switch.channels.get(channel_id)
        if ch is None:
            raise _Refused(400, "Channel not found")
        if not ch.in_stasis:
            raise _Refused(422, "Channel not in Stasis application")
        return ch

    async def _create_bridge(self, bridge_id: str, name: str) -> dict[str, Any]:
        if bridge_id in self._switch.bridges:
            raise _Refused(500, "Supplying a bridge type when updating a bridge is not allowed.")
        br = self._switch.bridges[bridge_id] = FakeBridge(bridge_id, name)
        return bridge_json(br)

    async def _destroy_bridge(self, bridge_id: str) -> None:
        self.recordings.bridge_destroyed(self._bridge(bridge_id).id)
        self._switch.destroy_bridge(self._bridge(bridge_id))
        await asyncio.sleep(0)

    async def _add_to_bridge(self, bridge_id: str, channels: str) -> None:
        br = self._bridge(bridge_id)
        # A comma-separated list: every channel is looked up first, and one missing refuses them all.
        members = [self._member(channel_id) for channel_id in channels.split(",") if channel_id]
        if not members:
            raise _Refused(400, "Missing parameter channel")
        for member in members:
            self._switch.enter(br, member)
        await asyncio.sleep(0)

    async def _remove_from_bridge(self, bridge_id: str, channel_id: str) -> None:
        br = self._bridge(bridge_id)
        ch = self._member(channel_id)
        if ch.bridge_id != bridge_id:
            raise _Refused(422, "Channel not in this bridge")
        self._switch.leave(br, ch)
        await asyncio.sleep(0)

    async def _play(self, channel_id: str, media: str, playback_id: str) -> dict[str, Any]:
        ch = self._channel(channel_id, stasis=True)
        if media.startswith(("http://", "https://")):
            pb = self._switch.play(ch, media, playback_id, None)  # Asterisk 22: "scheme is unsupported", never ends
        elif media.startswith(("sound:http://", "sound:https://")):
            pb = self._switch.play(ch, media, playback_id, None)
            task = asyncio.create_task(self._fetch_and_play(pb, media.removeprefix("sound:")))
            self._fetching.add(task)
            task.add_done_callback(self._fetching.discard)
        else:
            pb = self._switch.play(ch, media, playback_id, self.media_duration)
        await asyncio.sleep(0)
        return playback_json(pb)

    async def _fetch_and_play(self, pb: FakePlayback, url: str) -> None:
        if await self.media_cache.playable(url):
            pb.timer = self._switch.later(None, self.media_duration, self._switch.finish_playback, pb)
        else:
            self._switch.finish_playback(pb, "failed")

    async def _send_dtmf(self, channel_id: str, dtmf: str) -> None:
        self._channel(channel_id, stasis=True)
        self.dtmf_sent.setdefault(channel_id, []).append(dtmf)
        await asyncio.sleep(0)

    async def _stored_recording_file(self, name: str) -> bytes:
        if name not in self.stored_recordings:
            raise _Refused(404, "Recording not found")
        await asyncio.sleep(0)
        return self.stored_recordings[name]

    async def _play_bridge(self, bridge_id: str, media: str, playback_id: str) -> None:
        self._switch.play_bridge(self._bridge(bridge_id), media, playback_id, self.media_duration)
        await asyncio.sleep(0)

    async def _mute(self, channel_id: str, direction: str, on: bool) -> None:
        self._channel(channel_id, stasis=True)
        if direction not in ("in", "out", "both"):
            raise _Refused(400, "Invalid direction specified")
        if on:
            self._switch.muted[channel_id] = direction
        else:
            self._switch.muted.pop(channel_id, None)

    async def _send_message(self, params: dict[str, Any]) -> None:
        # Asterisk 22.10.1: a technology it has no message handler for is 404 "Endpoint not found"; a pjsip:
        # endpoint that does not exist is accepted (202) and fails later, in Asterisk's log only.
        to, from_, body = params.get("to", ""), params.get("from", ""), params.get("body", "")
        tech, _, resource = to.partition(":")
        if tech != "pjsip" or not resource:
            raise _Refused(404, "Endpoint not found")
        delivered = f"PJSIP/{resource.split('/')[0]}" in self._switch.phones
        self._switch.messages.append({"to": to, "from": from_, "body": body, "delivered": str(delivered)})

    async def _stop_playback(self, playback_id: str) -> None:
        pb = self._switch.playbacks.get(playback_id)
        if pb is None:
            raise _Refused(404, "Playback not found")
        self._switch.finish_playback(pb)
        await asyncio.sleep(0)

    # -- what tests assert on -----------------------------------------------------------------------------

    @property
    def channels(self) -> dict[str, Channel]:
        """Live channels by id, as snapshots."""
        return {cid: Channel.model_validate(channel_json(ch)) for cid, ch in self._switch.channels.items()}

    @property
    def bridges(self) -> dict[str, Bridge]:
        """Live bridges by id, as snapshots."""
        return {bid: Bridge.model_validate(bridge_json(br)) for bid, br in self._switch.bridges.items()}

    @property
    def phones(self) -> dict[str, Phone]:
        return self._switch.phones

    @property
    def refers(self) -> dict[str, ReferSubscription]:
        """The REFER subscription of each transferor channel (kept after the channel is gone)."""
        return self._switch.refers

    @property
    def notifies(self) -> dict[str, list[int]]:
        """The NOTIFY sipfrags each transferor's phone got, in order: 100, 200, 503, 603."""
        return {cid: sub.notifies for cid, sub in self._switch.refers.items()}

    @property
    def muted(self) -> dict[str, str]:
        """Channels muted now, with the direction."""
        return self._switch.muted

    @property
    def messages(self) -> list[dict[str, str]]:
        """Out-of-call messages Asterisk accepted (``delivered``: a scripted phone has that endpoint)."""
        return self._switch.messages

    @property
    def ringing(self) -> dict[str, bool]:
        """Channels whose phone was sent 180 Ringing by ``ring``."""
        return self._switch.ringing

    @property
    def ring_tone(self) -> set[str]:
        """Answered channels hearing the in-band ring tone now (``ring`` after the answer, until ``ring_stop``)."""
        return self._switch.ring_tone

    @property
    def ring_tones(self) -> dict[str, int]:
        """How often each answered channel's in-band ring tone was started."""
        return self._switch.ring_tones

    @property
    def hangup_causes(self) -> dict[str, int]:
        """The Q.850 cause each ended channel went with (for a REST hangup, what the far end was told)."""
        return self._switch.hangup_causes

    @property
    def played(self) -> dict[str, list[str]]:
        """Every media played to each channel, in order."""
        return self._switch.played

    def playing(self, channel_id: str) -> list[str]:
        """The media playing to a channel now (started, not finished or stopped)."""
        return [
            pb.media for pb in self._switch.playbacks.values() if pb.kind == "channel" and pb.channel_id == channel_id
        ]

    @property
    def stray_transfer_progress(self) -> list[tuple[str, TransferState]]:
        """transfer_progress calls on a channel without an active REFER subscription."""
        return self._switch.stray_transfer_progress

    def subscription_terminated(self, channel_id: str) -> bool:
        return self._switch.refers[channel_id].terminated

    def in_bridge(self, channel_id: str) -> str | None:
        ch = self._switch.channels.get(channel_id)
        return ch.bridge_id if ch else None

    def bridged_with(self, channel_id: str) -> set[str]:
        ch = self._switch.channels.get(channel_id)
        return {peer.id for peer in self._switch.peers_of(ch)} if ch else set()

    def name_of(self, channel_id: str) -> str:
        """The channel name (``PJSIP/bob-00000004``) of any channel this fake ever had."""
        return self._switch.names[channel_id]

    def events_of(self, *types: str) -> list[dict[str, Any]]:
        """Logged event dicts, optionally only of the given types."""
        return [e for e in self.event_log if not types or e["type"] in types]

    def assert_nothing_leaked(self) -> None:
        left = [f"channel {ch.name} ({cid}, {ch.state})" for cid, ch in self._switch.channels.items()]
        left += [f"bridge {bid} with {br.channels}" for bid, br in self._switch.bridges.items()]
        left += [f"playback {pid} of {pb.media}" for pid, pb in self._switch.playbacks.items()]
        left += [f"recording {name}" for name in self.recordings.live]
        if left:
            raise AssertionError("left behind: " + "; ".join(left))


if TYPE_CHECKING:
    # The fake sits beneath the same typed REST calls as the real transports: mypy holds it to the seam.
    _implements: type[Transport] = FakeAsterisk
