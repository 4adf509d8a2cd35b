"""AriClient's event websocket against a real loopback websocket server playing Asterisk.

REST (the eventFilter PUT) goes to an ``httpx.MockTransport``; the websocket is a real
``websockets.asyncio.server.serve`` on 127.0.0.1, fed with events from a real Asterisk trace.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.server import Request, Response, ServerConnection, serve

from models.ari import (
    HANDLED_EVENT_TYPES,
    AriEvent,
    ChannelEnteredBridge,
    ChannelStateChange,
    Dial,
    StasisStart,
    UnknownEvent,
)
from models.config import AriSettings
from stasis_app.ari import AriClient, Backoff, EventLog, EventStream, StreamState
from stasis_app.errors import AriError

TRACE = Path("/work/shared/traces/blind_transfer_keep_transferor_until_answer.jsonl")
PASSWORD = "s3cret-pw"
TOKEN = base64.b64encode(f"rcml:{PASSWORD}".encode()).decode()
FAST = Backoff(initial=0.01, maximum=0.05, after_clean_close=0.01, jitter=0)


def trace_events() -> list[dict[str, Any]]:
    """The websocket messages Asterisk sent in a real blind transfer, in order."""
    lines = [json.loads(line) for line in TRACE.read_text().splitlines()]
    return [entry["event"] for entry in lines if entry["kind"] == "ws"]


# The first six: StasisStart, ChannelStateChange, ChannelEnteredBridge, Dial, ChannelStateChange, Dial.
FIRST = [json.dumps(event) for event in trace_events()[:6]]
VARSET = next(json.dumps(e) for e in trace_events() if e["type"] == "ChannelVarset")

Session = Callable[[ServerConnection], Awaitable[None]]


async def stay_open(ws: ServerConnection) -> None:
    await ws.wait_closed()


def send(*messages: str, then: Session = stay_open) -> Session:
    async def session(ws: ServerConnection) -> None:
        for message in messages:
            await ws.send(message)
        await then(ws)

    return session


async def close_cleanly(ws: ServerConnection) -> None:
    await ws.close()


async def drop(ws: ServerConnection) -> None:
    ws.transport.abort()


class FakeAsterisk:
    """The websocket half of Asterisk: one scripted session per connection (the last one repeats)."""

    def __init__(self, *sessions: Session) -> None:
        self.sessions = list(sessions) or [stay_open]
        self.upgrades: list[Request] = []
        self.refuse: HTTPStatus | None = None
        self.port = 0

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.upgrades.append(request)
        if self.refuse is not None:
            return connection.respond(self.refuse, "Unauthorized\n")
        return None

    async def handle(self, ws: ServerConnection) -> None:
        accepted = sum(1 for _ in self.upgrades) - 1
        await self.sessions[min(accepted, len(self.sessions) - 1)](ws)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def fake_asterisk(fake: FakeAsterisk) -> AsyncIterator[FakeAsterisk]:
    async with serve(fake.handle, "127.0.0.1", 0, process_request=fake.process_request) as server:
        fake.port = server.sockets[0].getsockname()[1]
        yield fake


class Recorder:
    """An EventHandler that writes down, in order, what it was given."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self.changed = asyncio.Event()

    def on_event(self, event: AriEvent) -> None:
        self.log.append(("event", event))
        self.changed.set()

    async def on_connected(self, reconnect: bool) -> None:
        self.log.append(("connected", reconnect))
        self.changed.set()

    @property
    def events(self) -> list[AriEvent]:
        return [item for kind, item in self.log if kind == "event"]

    async def wait_for(self, count: int, within: float = 2.0) -> None:
        async with asyncio.timeout(within):
            while len(self.log) < count:
                self.changed.clear()
                await self.changed.wait()


class Rest:
    """The REST half of Asterisk, as an httpx transport that records each request."""

    def __init__(self, status: int = 200, body: Any = None) -> None:
        self.requests: list[httpx.Request] = []
        self.status = status
        self.body = body if body is not None else {"name": "rcml"}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, json=self.body)


@asynccontextmanager
async def running(
    fake: FakeAsterisk, handler: Recorder, *, backoff: Backoff = FAST, rest: Rest | None = None
) -> AsyncIterator[tuple[AriClient, asyncio.Task[None]]]:
    settings = AriSettings(url=fake.url, username="rcml", password=PASSWORD, app="rcml")
    client = AriClient(settings, transport=httpx.MockTransport(rest or Rest()), backoff=backoff)
    task = asyncio.create_task(client.run(handler))
    try:
        yield client, task
    finally:
        await client.close()
        await asyncio.wait_for(task, 2)


async def until(condition: Callable[[], bool], within: float = 2.0) -> None:
    """Poll a plain condition (a list growing, a log line) that has no event to wait on."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def test_events_arrive_typed_and_in_order_after_on_connected():
    handler = Recorder()
    rest = Rest()
    async with fake_asterisk(FakeAsterisk(send(*FIRST, VARSET))) as fake, running(fake, handler, rest=rest):
        await handler.wait_for(1 + len(FIRST) + 1)
        await until(lambda: bool(rest.requests))

    assert handler.log[0] == ("connected", False)
    assert [type(e) for e in handler.events] == [
        StasisStart,
        ChannelStateChange,
        ChannelEnteredBridge,
        Dial,
        ChannelStateChange,
        Dial,
        UnknownEvent,
    ]
    assert [e.timestamp for e in handler.events[:6]] == [json.loads(m)["timestamp"] for m in FIRST]
    assert handler.events[-1].type == "ChannelVarset"


async def test_event_filter_allows_exactly_the_engines_types_and_rest_answers_once_per_connect():
    handler = Recorder()
    rest = Rest()
    fake = FakeAsterisk(send(FIRST[0], then=close_cleanly), send(FIRST[1]))
    async with fake_asterisk(fake), running(fake, handler, rest=rest):
        await handler.wait_for(4)
        await until(lambda: len(rest.requests) == 2)

    request = rest.requests[0]
    assert request.method == "PUT"
    assert request.url.path == "/ari/applications/rcml/eventFilter"
    assert request.headers["Authorization"] == f"Basic {TOKEN}"
    # RESTResponse: the filter applies to REST answers on the websocket too, its own answer first. No Dial, no
    # PlaybackStarted: nothing in the engine acts on them.
    allowed = [{"type": t} for t in (*HANDLED_EVENT_TYPES, "RESTResponse") if t not in {"Dial", "PlaybackStarted"}]
    assert json.loads(request.content) == {"allowed": allowed}
    assert rest.requests[1].url.path == request.url.path


async def test_a_failed_event_filter_is_one_log_line_and_events_still_flow(caplog):
    handler = Recorder()
    rest = Rest(status=400, body={"message": "Invalid event type"})
    async with fake_asterisk(FakeAsterisk(send(FIRST[0]))) as fake, running(fake, handler, rest=rest):
        await handler.wait_for(2)
        await until(lambda: "event filter" in caplog.text)

    assert isinstance(handler.events[0], StasisStart)
    [record] = [r for r in caplog.records if "event filter" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "Invalid event type" in record.getMessage()
    assert "\n" not in record.getMessage()


async def test_upgrade_carries_basic_auth_and_no_secret_in_url_or_logs(caplog):
    caplog.set_level(logging.DEBUG)
    handler = Recorder()
    async with fake_asterisk(FakeAsterisk()) as fake, running(fake, handler):
        await handler.wait_for(1)

    [upgrade] = fake.upgrades
    assert upgrade.path == "/ari/events?app=rcml&subscribeAll=false"
    assert upgrade.headers["Authorization"] == f"Basic {TOKEN}"
    assert "api_key" not in upgrade.path
    assert PASSWORD not in upgrade.path
    # The fake server (websockets) logs handshake headers at DEBUG; the client side (aiohttp) must not.
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("websockets.server")]
    assert any("connected" in line for line in ours)
    assert not [line for line in ours if PASSWORD in line or TOKEN in line]


async def test_a_bad_message_is_skipped_with_one_line_and_the_next_is_delivered(caplog):
    handler = Recorder()
    broken = json.dumps({"type": "StasisStart", "application": "rcml"})  # no channel
    messages = ("not json at all", broken, FIRST[0])
    async with fake_asterisk(FakeAsterisk(send(*messages))) as fake, running(fake, handler):
        await handler.wait_for(2)

    assert [type(e) for e in handler.events] == [StasisStart]
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 2
    assert "non-JSON" in skipped[0]
    assert "StasisStart" in skipped[1]
    assert "channel" in skipped[1]
    assert all("\n" not in line for line in skipped)


async def test_a_failing_handler_costs_one_event_not_the_stream(caplog):
    class Picky(Recorder):
        def on_event(self, event: AriEvent) -> None:
            if isinstance(event, StasisStart):
                raise ValueError("engine bug")
            super().on_event(event)

    handler = Picky()
    async with fake_asterisk(FakeAsterisk(send(FIRST[0], FIRST[1]))) as fake, running(fake, handler):
        await handler.wait_for(2)

    assert [type(e) for e in handler.events] == [ChannelStateChange]
    assert "handler failed on a StasisStart event" in caplog.text


@pytest.mark.parametrize("ending", [close_cleanly, drop], ids=["clean close", "dropped socket"])
async def test_after_the_socket_goes_the_client_reconnects_and_resyncs(ending, caplog):
    caplog.set_level(logging.INFO)
    handler = Recorder()
    fake = FakeAsterisk(send(FIRST[0], then=ending), send(FIRST[1]))
    async with fake_asterisk(fake), running(fake, handler) as (client, _):
        await handler.wait_for(4)
        assert client.state is StreamState.CONNECTED

    assert [kind if kind == "event" else (kind, item) for kind, item in handler.log] == [
        ("connected", False),
        "event",
        ("connected", True),
        "event",
    ]
    assert [type(e) for e in handler.events] == [StasisStart, ChannelStateChange]
    assert len(fake.upgrades) == 2
    assert "connected -> connecting: lost:" in caplog.text
    assert "retry in" in caplog.text


async def test_a_clean_close_does_not_spin():
    handler = Recorder()
    backoff = Backoff(initial=0.001, maximum=0.002, after_clean_close=0.1, jitter=0)
    async with fake_asterisk(FakeAsterisk(close_cleanly)) as fake, running(fake, handler, backoff=backoff):
        await asyncio.sleep(0.35)

    # One attempt at once, then one per 0.1 s; with the tiny backoff alone it would be hundreds.
    assert 2 <= len(fake.upgrades) <= 5


async def test_401_on_upgrade_backs_off_and_says_so_once(caplog):
    handler = Recorder()
    backoff = Backoff(initial=0.02, maximum=0.08, jitter=0)
    fake = FakeAsterisk()
    fake.refuse = HTTPStatus.UNAUTHORIZED
    async with fake_asterisk(fake), running(fake, handler, backoff=backoff) as (client, _):
        await asyncio.sleep(0.4)
        refused = len(fake.upgrades)
        assert client.state is StreamState.CONNECTING
        fake.refuse = None
        await handler.wait_for(1)

    # Delays 0.02, 0.04, 0.08, 0.08...: about seven attempts in 0.4 s, not hundreds.
    assert 3 <= refused <= 10
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "wrong ARI credentials" in errors[0].getMessage()
    assert PASSWORD not in caplog.text
    # Never connected before the credentials were fixed, so this is a first connect, not a reconnect.
    assert handler.log[0] == ("connected", False)


async def test_connection_refused_retries_until_asterisk_is_up(caplog):
    handler = Recorder()
    fake = FakeAsterisk(send(FIRST[0]))
    async with fake_asterisk(fake):
        port = fake.port
    # Nothing listens on the port now: connection refused, again and again.
    settings = AriSettings(url=f"http://127.0.0.1:{port}", username="rcml", password=PASSWORD, app="rcml")
    client = AriClient(settings, transport=httpx.MockTransport(Rest()), backoff=FAST)
    task = asyncio.create_task(client.run(handler))
    try:
        await until(lambda: "cannot connect" in caplog.text)
        await asyncio.sleep(0.15)
        async with serve(fake.handle, "127.0.0.1", port, process_request=fake.process_request):
            await handler.wait_for(2)
    finally:
        await client.close()
        await asyncio.wait_for(task, 2)

    assert handler.log[0] == ("connected", False)
    assert isinstance(handler.events[0], StasisStart)
    # The same failure repeated is one warning, not one per attempt.
    assert sum("cannot connect" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING) == 1


async def test_on_connected_failing_with_ari_error_reconnects():
    class Flaky(Recorder):
        async def on_connected(self, reconnect: bool) -> None:
            await super().on_connected(reconnect)
            if len(self.log) == 1:
                raise AriError("GET", "/channels", 500, "Internal Server Error")

    handler = Flaky()
    fake = FakeAsterisk(send(FIRST[0]))
    async with fake_asterisk(fake), running(fake, handler):
        await handler.wait_for(3)

    assert handler.log[:2] == [("connected", False), ("connected", True)]
    assert isinstance(handler.events[0], StasisStart)


@pytest.mark.parametrize("where", ["connected", "waiting to retry"])
async def test_close_stops_run_promptly(where):
    handler = Recorder()
    fake = FakeAsterisk()
    slow = Backoff(initial=30, maximum=30, jitter=0)
    if where == "waiting to retry":
        fake.refuse = HTTPStatus.UNAUTHORIZED
    async with fake_asterisk(fake):
        settings = AriSettings(url=fake.url, username="rcml", password=PASSWORD, app="rcml")
        client = AriClient(settings, transport=httpx.MockTransport(Rest()), backoff=slow)
        task = asyncio.create_task(client.run(handler))
        if where == "connected":
            await handler.wait_for(1)
        else:
            await until(lambda: len(fake.upgrades) == 1)
            await asyncio.sleep(0.05)
        started = time.monotonic()
        await client.close()
        await asyncio.wait_for(task, 1)

    assert time.monotonic() - started < 0.5
    assert task.result() is None
    assert client.state is StreamState.CLOSED
    with pytest.raises(AriError, match="closed"):
        await client.list_channels()


async def test_run_twice_is_a_readable_error():
    handler = Recorder()
    async with fake_asterisk(FakeAsterisk()) as fake, running(fake, handler) as (client, _):
        await handler.wait_for(1)
        with pytest.raises(RuntimeError, match="already running"):
            await client.run(handler)


async def test_env_proxy_settings_are_ignored_by_the_websocket(monkeypatch):
    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        proxied.append(1)
        writer.close()
        await writer.wait_closed()

    proxied: list[int] = []
    proxy = await asyncio.start_server(count, "127.0.0.1", 0)
    proxy_url = f"http://127.0.0.1:{proxy.sockets[0].getsockname()[1]}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, proxy_url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    handler = Recorder()
    try:
        async with fake_asterisk(FakeAsterisk(send(FIRST[0]))) as fake, running(fake, handler):
            await handler.wait_for(2)
    finally:
        proxy.close()
        await proxy.wait_closed()

    assert proxied == []
    assert len(fake.upgrades) == 1


async def test_event_log_records_every_message_raw_with_a_timestamp(tmp_path):
    garbage = "not json"
    fake = FakeAsterisk(send(*FIRST, VARSET, garbage))
    handler = Recorder()
    path = tmp_path / "events.jsonl"
    before = time.time()
    async with fake_asterisk(fake):
        settings = AriSettings(url=fake.url, username="rcml", password=PASSWORD, app="rcml")
        with EventLog(path) as sink:
            client = AriClient(settings, transport=httpx.MockTransport(Rest()), backoff=FAST, event_sink=sink)
            task = asyncio.create_task(client.run(handler))
            try:
                await handler.wait_for(1 + len(FIRST) + 1)  # connected, FIRST, VARSET; garbage is skipped
                await until(lambda: len(path.read_text().splitlines()) == len(FIRST) + 2)
            finally:
                await client.close()
                await asyncio.wait_for(task, 2)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    # Exactly what Asterisk sent, in order, the ChannelVarset the handler never sees included.
    assert [line["event"] for line in lines] == [json.loads(m) for m in (*FIRST, VARSET)] + [garbage]
    stamps = [line["ts"] for line in lines]
    assert stamps == sorted(stamps)
    assert before <= stamps[0] <= time.time()


# -- reconnect backoff after quick drops (issue 11, row 11) -----------------------------------------------------


def drop_after(*messages: str) -> Session:
    async def session(ws: ServerConnection) -> None:
        for message in messages:
            await ws.send(message)
        await asyncio.sleep(0.01)  # let the events reach the client before the reset
        ws.transport.abort()

    return session


async def connect_times(sessions: list[Session], backoff: Backoff, count: int) -> list[float]:
    """When each of the first ``count`` websocket upgrades reached the server."""
    times: list[float] = []

    def stamped(session: Session) -> Session:
        async def wrapper(ws: ServerConnection) -> None:
            times.append(time.monotonic())
            await session(ws)

        return wrapper

    fake = FakeAsterisk(*(stamped(s) for s in sessions))
    async with fake_asterisk(fake), running(fake, Recorder(), backoff=backoff):
        await until(lambda: len(times) >= count, within=5)
    return [t - times[0] for t in times[:count]]


async def test_quick_drops_of_a_working_connection_do_not_climb_to_the_maximum_delay():
    # Each connection delivers an event, then is reset: Asterisk works, the network blipped. Each reconnect
    # should cost the initial delay, not 0.05 -> 0.1 -> 0.2 -> 0.4 s on the way to the 10 s maximum.
    backoff = Backoff(initial=0.05, maximum=10.0, after_clean_close=0.0, jitter=0)
    times = await connect_times([drop_after(FIRST[0])] * 4 + [stay_open], backoff, 5)
    assert times[-1] < 0.5, times  # 4 x 0.05 s plus the work; doubling would be 0.75 s


async def test_a_connection_that_stayed_up_a_while_resets_the_doubling_too():
    async def up_then_drop(ws: ServerConnection) -> None:
        await asyncio.sleep(0.15)
        ws.transport.abort()

    backoff = Backoff(initial=0.1, maximum=10.0, after_clean_close=0.0, jitter=0, stable_after=0.1)
    times = await connect_times([up_then_drop] * 4 + [stay_open], backoff, 5)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap < 0.4 for gap in gaps), gaps  # 0.15 up + 0.1 wait each time; doubling reaches 0.95


async def test_a_server_that_accepts_and_drops_at_once_is_still_backed_off():
    backoff = Backoff(initial=0.05, maximum=10.0, after_clean_close=0.0, jitter=0)
    times = await connect_times([drop] * 4 + [stay_open], backoff, 5)
    assert times[-1] >= 0.7, times  # 0.05 + 0.1 + 0.2 + 0.4: no event, not up long, so the delay doubles


# -- what the websocket client must do whatever library it is built on --------------------------------------------


async def test_close_says_1000_to_asterisk():
    codes: list[int | None] = []

    async def record(ws: ServerConnection) -> None:
        await ws.wait_closed()
        codes.append(ws.close_code)

    handler = Recorder()
    async with fake_asterisk(FakeAsterisk(record)) as fake:
        async with running(fake, handler):
            await handler.wait_for(1)
        await until(lambda: bool(codes))  # before the server itself closes anything

    assert codes == [1000]


@pytest.mark.parametrize(
    ("code", "lost"),
    [
        (1001, "lost: closed by Asterisk (code 1001, shutting down)"),
        # Any other code is an error (RFC 6455 7.4.1): reported as a drop, the code and reason kept.
        (1011, "lost: connection dropped ("),
    ],
    ids=["going away", "internal error"],
)
async def test_a_close_by_asterisk_is_logged_with_its_code_and_reason(code, lost, caplog):
    caplog.set_level(logging.INFO)

    async def close(ws: ServerConnection) -> None:
        await ws.close(code, "shutting down")

    handler = Recorder()
    fake = FakeAsterisk(close, stay_open)
    async with fake_asterisk(fake), running(fake, handler):
        await handler.wait_for(2)

    [line] = [r.getMessage() for r in caplog.records if "lost:" in r.getMessage()]
    assert lost in line
    assert str(code) in line
    assert "shutting down" in line


async def test_asterisk_pings_are_answered_while_on_connected_runs():
    pongs: list[float] = []

    async def ping(ws: ServerConnection) -> None:
        pongs.append(await asyncio.wait_for(await ws.ping(), 2))
        await ws.wait_closed()

    class Resyncing(Recorder):
        async def on_connected(self, reconnect: bool) -> None:
            # The resync is still going when Asterisk pings: the socket must be read (and answered) meanwhile.
            try:
                await until(lambda: bool(pongs))
            finally:
                await super().on_connected(reconnect)

    handler = Resyncing()
    async with fake_asterisk(FakeAsterisk(ping)) as fake, running(fake, handler):
        await handler.wait_for(1)

    assert len(pongs) == 1


async def test_a_message_of_megabytes_is_taken_and_the_stream_goes_on():
    # GET /channels with thousands of channels, or an event with a huge variable, is megabytes in one message.
    big = json.loads(VARSET)
    big["value"] = "x" * (6 * 1024 * 1024)
    handler = Recorder()
    async with fake_asterisk(FakeAsterisk(send(json.dumps(big), FIRST[0]))) as fake, running(fake, handler):
        await handler.wait_for(3, within=5)

    assert [e.type for e in handler.events] == ["ChannelVarset", "StasisStart"]
    assert handler.log[0] == ("connected", False)


async def test_an_upgrade_that_never_answers_times_out_and_is_retried(caplog):
    accepted: list[asyncio.StreamWriter] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # reads the upgrade request, never answers it

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stream = EventStream(f"ws://127.0.0.1:{port}/ari/events", {}, backoff=FAST, open_timeout=0.1)
    task = asyncio.create_task(stream.run(Recorder()))
    try:
        await until(lambda: len(accepted) >= 2)
    finally:
        await stream.close()
        await asyncio.wait_for(task, 2)
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()

    assert "cannot connect: TimeoutError; retry in" in caplog.text
    assert stream.state is StreamState.CLOSED
