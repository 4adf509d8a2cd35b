"""ARI REST over the events websocket, against a real loopback websocket server that answers as Asterisk 22 does.

The answers' shape was taken from the sandbox's Asterisk 22.10.1: ``message_body`` is JSON text, absent on 204.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.server import ServerConnection, serve

from models.ari import AriEvent
from models.config import AriSettings
from stasis_app.ari import AriClient, Backoff, EventStream
from stasis_app.ari.protocol import TransportError
from stasis_app.ari.ws_rest import WebSocketTransport
from stasis_app.errors import AriError, CallGone
from tests.test_ari_events import FIRST

FAST = Backoff(initial=0.01, maximum=0.05, after_clean_close=0.01, jitter=0)
CHANNEL = {
    "id": "c9",
    "name": "PJSIP/bob-00000001",
    "state": "Down",
    "caller": {"name": "", "number": ""},
    "connected": {"name": "", "number": ""},
    "accountcode": "",
    "dialplan": {"context": "rcml", "exten": "s", "priority": 1, "app_name": "", "app_data": ""},
    "creationtime": "2026-01-01T00:00:00.000+0000",
    "language": "en",
}

Answer = Callable[[dict[str, Any]], tuple[int, Any] | None]


def asterisk_22(request: dict[str, Any]) -> tuple[int, Any] | None:
    """What the sandbox answers: pong, a channel, 404 for channel c404, 204 for the rest."""
    uri = request["uri"]
    if uri == "asterisk/ping":
        return 200, {"ping": "pong"}
    if uri == "channels" and request["method"] == "POST":
        return 200, CHANNEL
    if uri == "channels":
        return 200, [CHANNEL]
    if "c404" in uri:
        return 404, {"message": "Channel not found"}
    return 204, None


class Asterisk:
    """The websocket half of Asterisk: answers each RESTRequest with ``answer`` (None: never), records them,
    and sends ``events`` right after the socket opens."""

    def __init__(self, answer: Answer = asterisk_22, events: tuple[str, ...] = (), delay: float = 0.0) -> None:
        self.answer = answer
        self.events = events
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        self.sockets: list[ServerConnection] = []
        self.sends: set[asyncio.Future[None]] = set()
        self.port = 0

    async def handle(self, ws: ServerConnection) -> None:
        self.sockets.append(ws)
        for event in self.events:
            await ws.send(event)
        async for message in ws:
            request = json.loads(message)
            self.requests.append(request)
            answered = self.answer(request)
            if answered is not None:
                asyncio.get_running_loop().call_later(self.delay, self.reply, ws, request, *answered)

    def reply(self, ws: ServerConnection, request: dict[str, Any], status: int, body: Any) -> None:
        # Key order as Asterisk writes it: type first.
        response: dict[str, Any] = {
            "type": "RESTResponse",
            "transaction_id": "",
            "request_id": request.get("request_id", ""),
        }
        response |= {"status_code": status, "reason_phrase": "", "uri": request["uri"]}
        if body is not None:
            response |= {"content_type": "application/json", "message_body": json.dumps(body)}
        task = asyncio.ensure_future(ws.send(json.dumps(response)))
        self.sends.add(task)
        task.add_done_callback(self.sends.discard)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def uris(self) -> list[str]:
        return [request["uri"] for request in self.requests]


@asynccontextmanager
async def listening(asterisk: Asterisk) -> AsyncIterator[Asterisk]:
    async with serve(asterisk.handle, "127.0.0.1", 0) as server:
        asterisk.port = server.sockets[0].getsockname()[1]
        yield asterisk


class Handler:
    """Records events; ``resync`` runs as on_connected (the engine re-reads channels there)."""

    def __init__(self, resync: Callable[[], Any] | None = None) -> None:
        self.log: list[Any] = []
        self.resync = resync

    def on_event(self, event: AriEvent) -> None:
        self.log.append(type(event).__name__)

    async def on_connected(self, reconnect: bool) -> None:
        self.log.append(("connected", reconnect))
        if self.resync is not None:
            self.log.append(("resync", await self.resync()))


@asynccontextmanager
async def client(asterisk: Asterisk, handler: Handler, rest: str = "websocket") -> AsyncIterator[AriClient]:
    settings = AriSettings(url=asterisk.url, username="u", password="p", app="rcml", rest=rest, request_timeout=1.0)
    ari = AriClient(settings, backoff=FAST)
    task = asyncio.create_task(ari.run(handler))
    try:
        async with asyncio.timeout(2):
            while not asterisk.sockets or ("connected", False) not in handler.log:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        yield ari
    finally:
        await ari.close()
        await asyncio.wait_for(task, 2)


async def until(condition: Callable[[], bool], within: float = 2.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def test_typed_calls_go_over_the_websocket_as_rest_requests():
    async with listening(Asterisk()) as asterisk, client(asterisk, Handler()) as ari:
        await ari.ring("c1")
        channel = await ari.originate(endpoint="PJSIP/bob", channel_id="c9", app_args="dial", variables={"A": "1"})
        channels = await ari.list_channels()
        with pytest.raises(CallGone, match="Channel not found"):
            await ari.answer("c404")

    [ring] = [r for r in asterisk.requests if r["uri"] == "channels/c1/ring"]
    [originate] = [r for r in asterisk.requests if r["uri"] == "channels" and r["method"] == "POST"]
    assert ring == {
        "type": "RESTRequest",
        "request_id": ring["request_id"],
        "method": "POST",
        "uri": "channels/c1/ring",
    }
    assert originate["method"] == "POST"
    assert {q["name"]: q["value"] for q in originate["query_strings"]} == {
        "endpoint": "PJSIP/bob",
        "app": "rcml",
        "appArgs": "dial",
        "channelId": "c9",
        "timeout": "30",
    }
    assert originate["content_type"] == "application/json"
    assert json.loads(originate["message_body"]) == {"variables": {"A": "1"}}
    assert channel.id == "c9"
    assert [c.id for c in channels] == ["c9"]
    # The event filter went the same way, and each request had an id of its own.
    assert "applications/rcml/eventFilter" in asterisk.uris()
    ids = [r["request_id"] for r in asterisk.requests]
    assert len(set(ids)) == len(ids)


async def test_on_connected_can_make_requests_and_events_meanwhile_wait_in_order():
    # The events come before the answers to on_connected's own requests: the socket is read throughout,
    # responses reach their requests, and the events reach the handler only after on_connected.
    asterisk = Asterisk(events=tuple(FIRST[:3]), delay=0.05)
    ari: AriClient | None = None

    async def resync() -> int:
        assert ari is not None
        return len(await ari.list_channels())

    handler = Handler(resync)
    async with listening(asterisk):
        settings = AriSettings(url=asterisk.url, username="u", password="p", app="rcml", rest="websocket")
        ari = AriClient(settings, backoff=FAST)
        task = asyncio.create_task(ari.run(handler))
        try:
            await until(lambda: len(handler.log) == 5)
        finally:
            await ari.close()
            await asyncio.wait_for(task, 2)

    assert handler.log == [
        ("connected", False),
        ("resync", 1),
        "StasisStart",
        "ChannelStateChange",
        "ChannelEnteredBridge",
    ]


async def test_auto_uses_the_websocket_when_asterisk_answers_the_probe():
    async with listening(Asterisk()) as asterisk, client(asterisk, Handler(), rest="auto") as ari:
        await until(lambda: ari.over_socket is not None and ari.over_socket.route == "websocket")
        await ari.ring("c1")
    assert asterisk.uris()[0] == "asterisk/ping"
    assert "channels/c1/ring" in asterisk.uris()


class Recording:
    """A fallback transport that answers 204 and writes the request down."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.closed = False

    async def request(
        self, method: str, path: str, query: Mapping[str, str] | None = None, body: bytes | None = None
    ) -> tuple[int, bytes]:
        self.requests.append((method, path))
        return 204, b""

    async def aclose(self) -> None:
        self.closed = True


async def test_auto_falls_back_to_http_when_asterisk_ignores_rest_on_the_socket():
    old = Asterisk(answer=lambda request: None)  # Asterisk before 20.14 / 21.9 / 22.4: no answer at all
    fallback = Recording()
    transport = WebSocketTransport(timeout=1.0, fallback=fallback, probe_timeout=0.1)
    seen: list[str] = []

    async def filter_then_request() -> None:
        await transport.request("PUT", "/applications/rcml/eventFilter", None, b"{}")

    async with listening(old):
        stream = EventStream(f"ws://127.0.0.1:{old.port}/ari/events", {}, on_open=filter_then_request, rest=transport)
        handler = Handler(lambda: transport.request("GET", "/channels"))
        task = asyncio.create_task(stream.run(handler))
        try:
            await until(lambda: len(fallback.requests) == 2)
            seen = old.uris()
            assert transport.route == "http"
            started = time.monotonic()
            assert await transport.request("POST", "/channels/c1/ring") == (204, b"")
            assert time.monotonic() - started < 0.05  # decided: no more waiting on the socket
        finally:
            await stream.close()
            await asyncio.wait_for(task, 2)
            await transport.aclose()

    # Only the probe went over the socket; the filter and the resync waited for its answer, then took HTTP.
    assert seen == ["asterisk/ping"]
    assert sorted(fallback.requests[:2]) == [("GET", "/channels"), ("PUT", "/applications/rcml/eventFilter")]
    assert fallback.closed


async def test_a_request_on_a_dropped_socket_fails_fast_and_pending_ones_fail_when_it_drops():
    asterisk = Asterisk(answer=lambda r: None if "slow" in r["uri"] else asterisk_22(r))
    async with listening(asterisk), client(asterisk, Handler()) as ari:
        await ari.ring("c1")
        pending = asyncio.create_task(ari.ring("slow"))
        await until(lambda: "channels/slow/ring" in asterisk.uris())
        started = time.monotonic()
        asterisk.sockets[0].transport.abort()
        with pytest.raises(AriError, match="closed before Asterisk answered"):
            await pending
        assert time.monotonic() - started < 0.5  # not the 1 s request timeout
        with pytest.raises(AriError, match="events websocket is down"):
            await ari.ring("c1")
        # Reconnected: requests flow again on the new socket.
        await until(lambda: len(asterisk.sockets) == 2)
        await until(lambda: ari.over_socket is not None and ari.over_socket.route == "websocket")
        await ari.ring("c2")
    assert asterisk.uris()[-1] == "channels/c2/ring"


async def test_a_request_before_the_socket_opens_fails_fast():
    settings = AriSettings(url="http://127.0.0.1:9", rest="websocket")
    async with AriClient(settings) as ari:
        with pytest.raises(AriError, match="not connected yet"):
            await ari.ring("c1")


async def test_an_unanswered_request_times_out_and_a_late_answer_is_ignored():
    asterisk = Asterisk(delay=0.0)
    late = {"on": False}

    def answer(request: dict[str, Any]) -> tuple[int, Any] | None:
        return None if late["on"] and "late" in request["uri"] else asterisk_22(request)

    asterisk.answer = answer
    async with listening(asterisk), client(asterisk, Handler()) as ari:
        late["on"] = True
        with pytest.raises(AriError, match="no answer on the events websocket within 1 s"):
            await ari.ring("late")
        # The answer that never came to that request does not confuse the next one.
        asterisk.reply(asterisk.sockets[0], asterisk.requests[-1], 500, {"message": "too late"})
        await ari.ring("c1")


async def test_a_request_on_a_socket_already_closed_is_a_transport_error():
    # The socket closed before the stream could detach it: the websocket client's own error becomes ours.
    transport = WebSocketTransport(timeout=1.0)
    async with listening(Asterisk()) as asterisk, aiohttp.ClientSession() as http:
        ws = await http.ws_connect(asterisk.url)
        await ws.close()
        transport.attach(ws.send_str)
        with pytest.raises(TransportError, match="the events websocket closed: "):
            await transport.request("GET", "/channels")
    assert asterisk.requests == []


async def test_a_send_that_cannot_go_out_is_bounded_too_and_a_caller_cancel_stays_a_cancel():
    # Asterisk stopped reading the socket: the write waits on a full buffer. The request's own limit ends it.
    transport = WebSocketTransport(timeout=0.2)
    forever = asyncio.Event()

    async def stuck(_text: str) -> None:
        await forever.wait()

    transport.attach(stuck)
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"no answer on the events websocket within 0\.2 s"):
        await transport.request("POST", "/channels/c1/ring")
    assert time.monotonic() - started < 1.0
    assert transport._pending == {}
    # Whoever made the request may cancel it (a call ending): that is a cancel, not a transport error.
    for blocked_in in ("send", "answer"):
        if blocked_in == "answer":
            transport.attach(lambda _text: asyncio.sleep(0))
        waiting = asyncio.ensure_future(transport.request("POST", "/channels/c1/ring"))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    assert transport._pending == {}
