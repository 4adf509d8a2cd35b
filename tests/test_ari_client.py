"""AriClient's REST side: each call's method, path, query and body; errors; auth; no proxy from the env."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from models.ari import Bridge, Channel, TransferState
from models.config import AriSettings
from stasis_app.ari import AriClient, StreamState
from stasis_app.ari.rest import AriRest
from stasis_app.errors import AriError, CallGone

TRACE = Path("/work/shared/traces/blind_transfer_keep_transferor_until_answer.jsonl")
PASSWORD = "s3cret-pw"
SETTINGS = AriSettings(url="http://127.0.0.1:8088", username="rcml", password=PASSWORD, app="rcml")
BASE = "http://127.0.0.1:8088/ari"


def rest_answer(path: str) -> Any:
    """Asterisk's JSON answer to the first REST call on ``path`` in the real trace."""
    for line in TRACE.read_text().splitlines():
        entry = json.loads(line)
        if entry["kind"] == "rest" and entry["path"] == path and entry["body"] is not None:
            return entry["body"]
    raise LookupError(path)


@pytest.fixture
async def ari() -> AsyncIterator[AriClient]:
    # httpx's own transport, which respx intercepts; the lean transport has tests of its own against a real server.
    async with AriClient(SETTINGS, transport=httpx.AsyncHTTPTransport()) as client:
        yield client


@pytest.fixture
def mock() -> respx.MockRouter:
    with respx.mock(base_url=BASE, assert_all_called=True) as router:
        yield router


Call = Callable[[AriClient], Awaitable[object]]

SIMPLE_CALLS: list[tuple[str, Call, str, str, dict[str, str]]] = [
    ("answer", lambda a: a.answer("c1"), "POST", "/ari/channels/c1/answer", {}),
    ("ring", lambda a: a.ring("c1"), "POST", "/ari/channels/c1/ring", {}),
    ("hangup", lambda a: a.hangup("c1"), "DELETE", "/ari/channels/c1", {"reason": "normal"}),
    ("hangup busy", lambda a: a.hangup("c1", "busy"), "DELETE", "/ari/channels/c1", {"reason": "busy"}),
    ("destroy_bridge", lambda a: a.destroy_bridge("b1"), "DELETE", "/ari/bridges/b1", {}),
    (
        "add_to_bridge",
        lambda a: a.add_to_bridge("b1", "c1"),
        "POST",
        "/ari/bridges/b1/addChannel",
        {"channel": "c1"},
    ),
    (
        "add_to_bridge, two at once",
        lambda a: a.add_to_bridge("b1", "c1", "c2"),
        "POST",
        "/ari/bridges/b1/addChannel",
        {"channel": "c1,c2"},
    ),
    (
        "remove_from_bridge",
        lambda a: a.remove_from_bridge("b1", "c1"),
        "POST",
        "/ari/bridges/b1/removeChannel",
        {"channel": "c1"},
    ),
    (
        "play",
        lambda a: a.play("c1", "sound:hello-world", "p1"),
        "POST",
        "/ari/channels/c1/play/p1",
        {"media": "sound:hello-world"},
    ),
    ("stop_playback", lambda a: a.stop_playback("p1"), "DELETE", "/ari/playbacks/p1", {}),
    (
        "transfer_progress",
        lambda a: a.transfer_progress("c1", TransferState.ANSWERED),
        "POST",
        "/ari/channels/c1/transfer_progress",
        {"states": "channel_answered"},
    ),
]


@pytest.mark.parametrize(
    ("call", "method", "path", "params"), [c[1:] for c in SIMPLE_CALLS], ids=[c[0] for c in SIMPLE_CALLS]
)
async def test_simple_call_sends_method_path_and_query(ari, mock, call, method, path, params):
    route = mock.route().respond(204)

    assert await call(ari) is None

    request = route.calls.last.request
    assert request.method == method
    assert request.url.path == path
    assert dict(request.url.params) == params
    assert request.content == b""
    assert route.call_count == 1


async def test_originate_sends_query_and_variables_and_parses_channel(ari, mock):
    answer = rest_answer("/ari/channels")
    route = mock.post("/channels").respond(200, json=answer)

    channel = await ari.originate(
        endpoint="PJSIP/bob",
        channel_id="rig-bob-7019094a",
        app_args="dialed",
        caller_id='"alice" <alice>',
        timeout=25,
        variables={"CALLERID(name)": "alice", "X_SID": "CA1"},
        originator="1795497502.3",
    )

    request = route.calls.last.request
    assert dict(request.url.params) == {
        "endpoint": "PJSIP/bob",
        "app": "rcml",
        "appArgs": "dialed",
        "channelId": "rig-bob-7019094a",
        "callerId": '"alice" <alice>',
        "timeout": "25",
        "originator": "1795497502.3",
    }
    assert json.loads(request.content) == {"variables": {"CALLERID(name)": "alice", "X_SID": "CA1"}}
    assert isinstance(channel, Channel)
    assert channel.id == "rig-bob-7019094a"
    assert channel.name == answer["name"]


async def test_originate_without_variables_or_caller_id_sends_no_body(ari, mock):
    route = mock.post("/channels").respond(200, json={"id": "c2", "name": "PJSIP/carol-1", "state": "Down"})

    await ari.originate(endpoint="PJSIP/carol", channel_id="c2", app_args="transfer-target")

    request = route.calls.last.request
    assert request.content == b""
    assert "callerId" not in request.url.params
    assert request.url.params["timeout"] == "30"


async def test_create_bridge_asks_for_a_mixing_bridge_with_our_id(ari, mock):
    answer = rest_answer("/ari/bridges")
    route = mock.post(f"/bridges/{answer['id']}").respond(200, json=answer)

    bridge = await ari.create_bridge(answer["id"], "rcml-acceptance")

    assert dict(route.calls.last.request.url.params) == {"type": "mixing", "name": "rcml-acceptance"}
    assert isinstance(bridge, Bridge)
    assert bridge.id == answer["id"]
    assert bridge.bridge_type == "mixing"


async def test_list_channels_and_bridges_parse_every_item(ari, mock):
    mock.get("/channels").respond(200, json=[{"id": "c1", "state": "Up"}, {"id": "c2"}])
    mock.get("/bridges").respond(200, json=[rest_answer("/ari/bridges")])

    channels = await ari.list_channels()
    bridges = await ari.list_bridges()

    assert [c.id for c in channels] == ["c1", "c2"]
    assert channels[0].state == "Up"
    assert [b.name for b in bridges] == ["rcml-acceptance"]


async def test_asterisk_info_returns_the_json(ari, mock):
    mock.get("/asterisk/info").respond(200, json=rest_answer("/ari/asterisk/info"))

    info = await ari.asterisk_info()

    assert info["system"]["version"] == "22.10.1"


async def test_ids_are_one_quoted_path_segment(ari, mock):
    route = mock.post(url__regex=r".*/answer$").respond(204)

    await ari.answer("a/b c?d")

    assert route.calls.last.request.url.raw_path == b"/ari/channels/a%2Fb%20c%3Fd/answer"


async def test_404_raises_call_gone_with_asterisks_message(ari, mock):
    mock.post("/channels/gone/transfer_progress").respond(404, json={"message": "Channel not found"})

    with pytest.raises(CallGone) as caught:
        await ari.transfer_progress("gone", TransferState.ANSWERED)

    assert caught.value.status == 404
    assert caught.value.reason == "Channel not found"
    assert caught.value.path == "/channels/gone/transfer_progress"


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (400, "Invalid transfer state"),
        (409, "Channel is already bridged"),
        (500, "Allocation failed"),
    ],
)
async def test_error_status_raises_ari_error_with_asterisks_message(ari, mock, status, message):
    mock.post("/channels/c1/answer").respond(status, json={"message": message})

    with pytest.raises(AriError) as caught:
        await ari.answer("c1")

    assert not isinstance(caught.value, CallGone)
    assert caught.value.status == status
    assert caught.value.reason == message
    assert str(caught.value) == f"ARI POST /channels/c1/answer -> {status} {message}"


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (404, "Channel not found"),
        (400, "Channel not found"),  # addChannel / removeChannel naming a channel that is gone
        (409, "Channel not in Stasis application"),  # hanging up: it left Stasis
        (422, "Channel not in Stasis application"),
    ],
)
async def test_every_way_asterisk_says_gone_is_call_gone(ari, mock, status, message):
    mock.post("/channels/c1/answer").respond(status, json={"message": message})

    with pytest.raises(CallGone) as caught:
        await ari.answer("c1")

    assert (caught.value.status, caught.value.reason) == (status, message)


async def test_error_without_json_body_gives_the_reason_phrase(ari, mock):
    mock.post("/channels/c1/answer").respond(503, text="<html>oops</html>")

    with pytest.raises(AriError, match="503 Service Unavailable"):
        await ari.answer("c1")


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("[Errno 111] Connection refused"), httpx.ReadTimeout("timed out")],
    ids=["refused", "timeout"],
)
async def test_unreachable_asterisk_raises_ari_error_without_status(ari, mock, failure):
    mock.post("/channels/c1/ring").mock(side_effect=failure)

    with pytest.raises(AriError) as caught:
        await ari.ring("c1")

    assert caught.value.status is None
    assert not isinstance(caught.value, CallGone)


async def test_basic_auth_header_is_sent_and_password_never_in_errors(ari, mock):
    route = mock.post("/channels/c1/answer").respond(500, json={"message": f"bad {PASSWORD} echo"})
    mock.post("/channels/c1/ring").mock(side_effect=httpx.ConnectError(f"cannot reach rcml:{PASSWORD}@x"))

    with pytest.raises(AriError) as status_error:
        await ari.answer("c1")
    with pytest.raises(AriError) as connect_error:
        await ari.ring("c1")

    request = route.calls.last.request
    token = base64.b64encode(f"rcml:{PASSWORD}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {token}"
    assert PASSWORD not in str(request.url)
    assert PASSWORD not in str(status_error.value)
    assert PASSWORD not in str(connect_error.value)


async def test_calls_after_close_raise_ari_error_and_state_is_closed():
    client = AriClient(SETTINGS)
    assert client.state is StreamState.IDLE

    await client.close()

    assert client.state is StreamState.CLOSED
    with pytest.raises(AriError, match="closed"):
        await client.answer("c1")
    with pytest.raises(RuntimeError, match="closed"):
        await client.run(object())  # type: ignore[arg-type]


# -- no proxy from the environment: a real ARI stand-in and a real "proxy" on loopback --------------------


class _TinyHttp:
    """A loopback HTTP/1.1 server that answers 204 to everything and records request lines."""

    def __init__(self) -> None:
        self.request_lines: list[str] = []
        self.connections = 0
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> _TinyHttp:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                self.request_lines.append(head.split(b"\r\n", 1)[0].decode())
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            await writer.wait_closed()
            self._handlers.discard(task)

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=2)


async def test_env_proxy_settings_are_ignored(monkeypatch):
    async with _TinyHttp() as asterisk, _TinyHttp() as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        settings = AriSettings(url=asterisk.url, username="rcml", password=PASSWORD, app="rcml")

        async with AriClient(settings) as client:
            await client.answer("c1")

    assert asterisk.request_lines == ["POST /ari/channels/c1/answer HTTP/1.1"]
    assert proxy.connections == 0


async def test_a_recordings_audio_goes_over_http_even_when_rest_goes_over_the_websocket(mock):
    settings = SETTINGS.model_copy(update={"rest": "websocket"})
    route = mock.get("/recordings/stored/r1/file").respond(200, content=b"RIFF\x00\xffWAVE")
    async with AriClient(settings, transport=httpx.AsyncHTTPTransport()) as client:
        assert await client.stored_recording_file("r1") == b"RIFF\x00\xffWAVE"
    assert route.called


class _Answering:
    """A transport whose every answer takes ``delay`` seconds."""

    ordered = False

    def __init__(self) -> None:
        self.delay = 0.0

    async def request(self, method: str, path: str, query: Any = None, body: bytes | None = None) -> tuple[int, bytes]:
        await asyncio.sleep(self.delay)
        return 204, b""


async def test_answer_time_is_the_median_of_recent_answers_so_one_stall_does_not_count():
    transport = _Answering()
    rest = AriRest(transport, "rcml")
    assert rest.answer_ms() == 0.0  # nothing answered yet
    for _ in range(40):
        await rest.ring("c1")
    assert rest.answer_ms() < 5
    transport.delay = 0.05
    await asyncio.gather(*(rest.ring("c1") for _ in range(20)))  # a stall: twenty answered late at once
    assert rest.answer_ms() < 5
    await asyncio.gather(*(rest.ring("c1") for _ in range(30)))  # slow for good: most recent answers late
    assert rest.answer_ms() >= 50
