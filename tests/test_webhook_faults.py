"""The webhook fault matrix: whatever an application server does, one WebhookError line, in bounded time.

The slow and hostile servers are real ones on the loopback (asyncio), so the timing is the real
network stack's: a trickle is a byte every 0.1 s, which no per-read timeout ever catches.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from models.config import Settings, WebhookSettings
from models.rcml import Hangup
from stasis_app.errors import StasisRcmlError, WebhookError
from stasis_app.webhook import Webhooks

TIMEOUT = 1.0
CAP = 64 * 1024
HANGUP = b"<Response><Hangup/></Response>"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def webhooks(tmp_path: Path) -> AsyncIterator[Webhooks]:
    settings = Settings(base_dir=tmp_path, webhooks=WebhookSettings(timeout=TIMEOUT, max_response_bytes=CAP))
    async with Webhooks(settings) as client:
        yield client


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start a raw HTTP server on the loopback with a handler; returns its base URL."""
    servers: list[asyncio.Server] = []
    tasks: set[asyncio.Task[None]] = set()

    async def start(handler: Handler) -> str:
        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            tasks.add(asyncio.current_task())  # type: ignore[arg-type]
            try:
                await reader.readuntil(b"\r\n\r\n")
                await handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass  # the client gave up, as it should
            finally:
                writer.close()

        server = await asyncio.start_server(connection, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for task in tasks:
        task.cancel()
    for server in servers:
        server.close()
        await server.wait_closed()


def head(status: str = "200 OK", **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def one_line_failure(webhooks: Webhooks, url: str, *, within: float = TIMEOUT + 0.5) -> str:
    """Fetch ``url``: it must fail with exactly one WebhookError line, within ``within`` seconds."""
    started = time.monotonic()
    with pytest.raises(WebhookError) as caught:
        await webhooks.fetch(url, "POST", {"CallSid": "CA1", "From": "alice"})
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert elapsed < within, f"{message} after {elapsed:.1f} s"
    assert "\n" not in message
    assert "Traceback" not in message
    assert type(caught.value) is WebhookError
    return message


# -- time --------------------------------------------------------------------------------------------------


async def test_silent_server_times_out(webhooks: Webhooks, serve):
    async def silent(reader, writer):
        await asyncio.sleep(60)

    base = await serve(silent)
    assert await one_line_failure(webhooks, f"{base}/voice") == f"request to {base}/voice failed: timed out after 1 s"


@pytest.mark.parametrize(
    ("start", "byte"),
    [
        pytest.param(b"HTTP/1.1 200 OK\r\n", b"X", id="head"),  # a header line that never ends
        pytest.param(head(Content_Length=str(len(HANGUP) + 600)) + b"<Response>", b" ", id="body"),
    ],
)
async def test_trickling_server_is_bounded_by_one_deadline(webhooks: Webhooks, serve, start: bytes, byte: bytes):
    async def trickle(reader, writer):
        writer.write(start)
        for _ in range(600):  # one byte every 0.1 s: no single read ever waits long
            writer.write(byte)
            await writer.drain()
            await asyncio.sleep(0.1)

    base = await serve(trickle)
    assert (await one_line_failure(webhooks, f"{base}/voice")).endswith("timed out after 1 s")


async def test_deadline_covers_every_redirect(webhooks: Webhooks, serve):
    async def slow_redirect(reader, writer):
        await asyncio.sleep(0.4)  # each hop alone is well within the timeout
        writer.write(head("302 Found", Location="/again", Content_Length="0"))

    base = await serve(slow_redirect)
    assert (await one_line_failure(webhooks, f"{base}/voice")).endswith("timed out after 1 s")


# -- size --------------------------------------------------------------------------------------------------


async def test_declared_oversized_body_is_refused_before_reading(webhooks: Webhooks, serve):
    async def huge(reader, writer):
        writer.write(head(Content_Length=str(10 * 1024 * 1024)) + b"<Response>")
        await asyncio.sleep(60)  # reading it would time out instead

    base = await serve(huge)
    message = await one_line_failure(webhooks, f"{base}/voice", within=0.5)
    assert message.endswith(f"response of {10 * 1024 * 1024} bytes is larger than {CAP} bytes")


async def test_chunked_oversized_body_is_refused_once_past_the_cap(webhooks: Webhooks, serve):
    async def endless(reader, writer):
        writer.write(head(Transfer_Encoding="chunked"))
        chunk = b"<Pause/>" * 1024
        for _ in range(10_000):
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()

    base = await serve(endless)
    assert (await one_line_failure(webhooks, f"{base}/voice")).endswith(f"response is larger than {CAP} bytes")


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, as some servers send it
        ("gzip, gzip", lambda data: gzip.compress(gzip.compress(data))),
    ],
)
async def test_compression_bomb_is_refused_at_the_cap(webhooks: Webhooks, serve, encoding, compress):
    bomb = compress(b"<Response>" + b" " * 50_000_000)  # ~50 kB that would decode to 50 MB
    assert len(bomb) < CAP

    async def send_bomb(reader, writer):
        writer.write(head(Content_Encoding=encoding, Content_Length=str(len(bomb))) + bomb)

    base = await serve(send_bomb)
    message = await one_line_failure(webhooks, f"{base}/voice")
    assert message.endswith(f"response decodes to more than {CAP} bytes")


async def test_compressed_document_within_the_cap_is_decoded(webhooks: Webhooks, serve):
    body = gzip.compress(HANGUP)

    async def send(reader, writer):
        writer.write(head(Content_Encoding="gzip", Content_Length=str(len(body))) + body)

    base = await serve(send)
    assert (await webhooks.fetch(f"{base}/voice", "POST", {})).verbs == (Hangup(),)


@pytest.mark.parametrize(
    ("encoding", "body", "reason"),
    [
        ("br", b"\x0b\x02\x80", "unsupported Content-Encoding 'br'"),
        ("gzip", b"not gzip at all", "invalid gzip body: "),
    ],
)
async def test_undecodable_body(webhooks: Webhooks, serve, encoding, body, reason):
    async def send(reader, writer):
        writer.write(head(Content_Encoding=encoding, Content_Length=str(len(body))) + body)

    base = await serve(send)
    assert reason in await one_line_failure(webhooks, f"{base}/voice")


async def test_valid_but_huge_document_is_refused_quickly(tmp_path: Path, serve):
    document = b"<Response>" + b"<Hangup/>" * 1_100_000 + b"</Response>"  # 10 MB, 1.1 M verbs

    async def send(reader, writer):
        writer.write(head(Content_Length=str(len(document))) + document)

    base = await serve(send)
    settings = Settings(base_dir=tmp_path, webhooks=WebhookSettings(timeout=TIMEOUT))  # the default cap: 1 MiB
    async with Webhooks(settings) as webhooks:
        message = await one_line_failure(webhooks, f"{base}/voice", within=0.5)
    assert message.endswith(f"response of {len(document)} bytes is larger than 1048576 bytes")


async def test_oversized_local_app_is_refused(webhooks: Webhooks, tmp_path: Path):
    apps = tmp_path / "apps"
    apps.mkdir()
    (apps / "big.xml").write_bytes(b"<Response>" + b"<Pause/>" * CAP + b"</Response>")
    message = await one_line_failure(webhooks, "app:big", within=0.5)
    assert message == f"request to app:big failed: app file {apps / 'big.xml'} is larger than {CAP} bytes"


# -- redirects and URLs ------------------------------------------------------------------------------------


async def test_redirect_loop(webhooks: Webhooks, serve):
    async def loop(reader, writer):
        writer.write(head("302 Found", Location="/voice", Content_Length="0"))

    base = await serve(loop)
    assert (await one_line_failure(webhooks, f"{base}/voice")).endswith("too many redirects (more than 10)")


async def test_redirect_bodies_are_never_read(webhooks: Webhooks, serve):
    bomb = gzip.compress(b" " * 50_000_000)

    async def redirect_with_a_bomb(reader, writer):
        writer.write(head("302 Found", Location="/x", Content_Encoding="gzip", Content_Length=str(len(bomb))))
        writer.write(bomb)

    base = await serve(redirect_with_a_bomb)
    assert (await one_line_failure(webhooks, f"{base}/voice")).endswith("too many redirects (more than 10)")


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("app:x", "redirected to 'app:x': only http:// and https:// are followed"),
        ("file:///etc/passwd", "redirected to 'file:///etc/passwd': only http:// and https:// are followed"),
        ("ftp://example.test/x", "redirected to 'ftp://example.test/x': only http:// and https:// are followed"),
        ("http://[::1/x", "redirected to an invalid URL 'http://[::1/x'"),
        ("http://u:secret@[::1/x", "redirected to an invalid URL 'http://***@[::1/x'"),
    ],
)
async def test_redirect_to_anything_but_http_is_refused(webhooks: Webhooks, serve, location: str, reason: str):
    async def redirect(reader, writer):
        writer.write(head("302 Found", Location=location, Content_Length="0"))

    base = await serve(redirect)
    assert await one_line_failure(webhooks, f"{base}/voice") == f"request to {base}/voice failed: {reason}"


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1/x",
        "http://user:secret@[::1/x",
        "http://bad host/x",
        "http://127.0.0.1:99999/x",
        "http:///x",
        "http://\x00/x",
        "https://" + "a" * 300 + ".test/x",
    ],
)
async def test_bad_url_is_one_line(webhooks: Webhooks, url: str):
    message = await one_line_failure(webhooks, url)
    assert "secret" not in message


async def test_a_failure_from_a_given_client_is_one_line_too(tmp_path: Path):
    # With the caller's own client there is no redirect hook: whatever httpx raises still maps.
    def redirect(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "app:x"})

    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(redirect)) as client,
        Webhooks(Settings(base_dir=tmp_path), client=client) as webhooks,
    ):
        message = await one_line_failure(webhooks, "http://app.test/voice")
    assert message.startswith("request to http://app.test/voice failed: ")


async def test_an_unexpected_exception_in_the_transport_is_one_line(tmp_path: Path):
    def broken(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug somewhere below\nwith a second line")

    async with Webhooks(Settings(base_dir=tmp_path), transport=httpx.MockTransport(broken)) as webhooks:
        message = await one_line_failure(webhooks, "http://app.test/voice")
    assert message == "request to http://app.test/voice failed: RuntimeError: a bug somewhere below"


def test_webhook_error_is_a_project_error():
    assert issubclass(WebhookError, StasisRcmlError)
