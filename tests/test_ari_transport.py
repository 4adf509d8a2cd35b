"""The lean HTTP/1.1 transport, against a real local server that answers as Asterisk does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from stasis_app.ari.protocol import TransportError
from stasis_app.ari.transport import AsteriskTransport


class Server:
    """A loopback HTTP server; ``answers`` are raw responses given in turn, ``requests`` what it read."""

    def __init__(self, *answers: bytes, close_after_each: bool = False, delay: float = 0.0) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.connections = 0
        self.open = 0  # connections open now, and the most ever open at once
        self.peak = 0
        self.close_after_each = close_after_each
        self.delay = delay
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self.writers:
            writer.close()
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.peak = max(self.peak, self.open)
        self.writers.append(writer)
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                self.requests.append(head + await reader.readexactly(length))
                await asyncio.sleep(self.delay)
                writer.write(self.answers.pop(0))
                await writer.drain()
                if self.close_after_each:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        self.open -= 1
        writer.close()


NO_CONTENT = b"HTTP/1.1 204 No Content\r\nServer: Asterisk\r\nContent-Length: 0\r\n\r\n"
JSON = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"id":"b1"}'


@contextlib.asynccontextmanager
async def transport(server: Server, **kwargs) -> AsyncIterator[AsteriskTransport]:
    ari = AsteriskTransport("127.0.0.1", server.port, headers={"Authorization": "Basic eA=="}, **kwargs)
    try:
        yield ari
    finally:
        await ari.aclose()


async def test_requests_share_one_kept_alive_connection():
    async with Server(NO_CONTENT, JSON) as server, transport(server) as ari:
        first = await ari.request("POST", "/channels/c1/answer")
        second = await ari.request("POST", "/bridges/b1", {"type": "mixing"}, b'{"variables":{"A":"1"}}')

    assert first == (204, b"")
    assert second == (200, b'{"id":"b1"}')
    assert server.connections == 1
    assert server.requests[0].startswith(b"POST /ari/channels/c1/answer HTTP/1.1\r\n")
    assert b"Content-Length: 0\r\n" in server.requests[0]
    assert b"Authorization: Basic eA==\r\n" in server.requests[0]
    assert server.requests[1].startswith(b"POST /ari/bridges/b1?type=mixing HTTP/1.1\r\n")
    assert b"Content-Type: application/json\r\n" in server.requests[1]
    assert server.requests[1].endswith(b'{"variables":{"A":"1"}}')


async def test_a_connection_the_server_closed_is_replaced_transparently():
    async with Server(NO_CONTENT, NO_CONTENT, close_after_each=True) as server, transport(server) as ari:
        await ari.request("POST", "/channels/c1/answer")
        await asyncio.sleep(0.05)  # the server's close reaches us while the connection sits idle
        status, _ = await ari.request("POST", "/channels/c1/ring")

    assert status == 204
    assert server.connections == 2
    assert len(server.requests) == 2


async def test_an_idle_connection_past_its_expiry_is_not_reused():
    async with Server(NO_CONTENT, NO_CONTENT) as server, transport(server, keepalive_expiry=0.01) as ari:
        await ari.request("POST", "/a")
        await asyncio.sleep(0.03)
        await ari.request("POST", "/b")
    assert server.connections == 2


async def test_chunked_and_close_delimited_bodies():
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n[1,2\r\n2\r\n,3\r\n1\r\n]\r\n0\r\n\r\n"
    async with Server(chunked) as server, transport(server) as ari:
        assert await ari.request("GET", "/channels") == (200, b"[1,2,3]")
    until_close = b"HTTP/1.0 200 OK\r\n\r\n[]"
    async with Server(until_close, close_after_each=True) as server, transport(server) as ari:
        assert await ari.request("GET", "/bridges") == (200, b"[]")


async def test_a_slow_answer_times_out():
    async with Server(NO_CONTENT, delay=0.5) as server, transport(server, timeout=0.05) as ari:
        with pytest.raises(TransportError, match="timed out"):
            await ari.request("POST", "/channels/c1/answer")


async def test_nobody_listening_is_a_transport_error():
    async with Server() as server:
        port = server.port
    with pytest.raises(TransportError, match="cannot reach Asterisk"):
        await AsteriskTransport("127.0.0.1", port).request("POST", "/channels")


async def test_closed_transport_refuses():
    ari = AsteriskTransport("127.0.0.1", 9)
    await ari.aclose()
    with pytest.raises(TransportError, match="closed"):
        await ari.request("GET", "/")


# -- the bound on connections ----------------------------------------------------------------------------------


async def test_a_burst_never_opens_more_than_max_connections_and_every_request_completes():
    burst = 60
    async with Server(*[NO_CONTENT] * burst, delay=0.01) as server, transport(server, max_connections=4) as ari:
        results = await asyncio.gather(*(ari.request("POST", f"/channels/c{i}/ring") for i in range(burst)))
        assert ari.in_use == 0

    assert results == [(204, b"")] * burst
    assert len(server.requests) == burst
    # Asterisk saw at most four connections at any moment, and the bound was used, not undershot.
    assert server.peak == 4
    assert server.connections == 4


async def test_waiting_requests_are_served_first_come_first_served():
    async with Server(*[NO_CONTENT] * 6, delay=0.01) as server, transport(server, max_connections=1) as ari:
        tasks = []
        for i in range(6):
            tasks.append(asyncio.create_task(ari.request("POST", f"/channels/c{i}/ring")))
            await asyncio.sleep(0)  # each request reaches the queue before the next is made
        await asyncio.gather(*tasks)

    order = [request.split(b" ", 2)[1] for request in server.requests]
    assert order == [f"/ari/channels/c{i}/ring".encode() for i in range(6)]


async def test_the_request_timeout_covers_the_wait_for_a_connection_and_frees_no_slot_twice():
    async with (
        Server(NO_CONTENT, NO_CONTENT, delay=0.2) as server,
        transport(server, max_connections=1, timeout=0.3) as ari,
    ):
        first = asyncio.create_task(ari.request("POST", "/channels/c1/answer"))
        await asyncio.sleep(0.01)
        # Queued behind the first (0.2 s), then its own 0.2 s answer: past the 0.3 s deadline as a whole.
        with pytest.raises(TransportError, match="timed out"):
            await ari.request("POST", "/channels/c2/answer")
        assert await first == (204, b"")
        assert ari.in_use == 0
        server.answers.append(NO_CONTENT)
        assert await ari.request("POST", "/channels/c3/answer") == (204, b"")
