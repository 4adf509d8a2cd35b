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
