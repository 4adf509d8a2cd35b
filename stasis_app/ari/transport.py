"""A lean HTTP/1.1 keep-alive transport for httpx, for talking to Asterisk's own HTTP server.

httpx's default transport (httpcore over anyio) costs about 0.9 ms of CPU per request on a small machine; a
transferred call makes some 16 ARI requests, which alone would cost more CPU than Asterisk spends on the whole
call. Asterisk's HTTP server speaks plain HTTP/1.1 with ``Content-Length`` bodies, so a small pool of
keep-alive connections on asyncio streams does the job for about a quarter of that, and the ``httpx.AsyncClient``
above it stays the same. Anything unusual (TLS, a proxy) keeps httpx's default transport.
"""

from __future__ import annotations

import asyncio
import time

import httpx

__all__ = ["AsteriskTransport"]

_MAX_HEAD = 64 * 1024


class _Connection:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = time.monotonic()

    def close(self) -> None:
        self.writer.close()


class _StaleConnection(Exception):
    """A kept-alive connection the server had closed before it read our request: safe to send again."""


class AsteriskTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 to one ``host:port``, keeping up to ``max_idle`` connections open for ``keepalive_expiry`` s."""

    def __init__(self, host: str, port: int, *, max_idle: int = 10, keepalive_expiry: float = 5.0) -> None:
        self._host = host
        self._port = port
        self._max_idle = max_idle
        self._expiry = keepalive_expiry
        self._idle: list[_Connection] = []
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the transport is closed")
        timeouts = request.extensions.get("timeout", {})
        body = await request.aread()
        head = self._head(request, len(body))
        while True:
            connection, reused = self._take()
            if connection is None:
                connection = await self._connect(request, timeouts.get("connect"))
            try:
                status, headers, content, keep = await self._exchange(
                    connection, head + body, reused, timeouts.get("read"), request
                )
            except _StaleConnection:
                connection.close()
                continue
            except BaseException:
                connection.close()
                raise
            if keep and len(self._idle) < self._max_idle and not self._closed:
                connection.idle_since = time.monotonic()
                self._idle.append(connection)
            else:
                connection.close()
            return httpx.Response(status, headers=headers, content=content, request=request)

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    # -- internals --------------------------------------------------------------------------------------------

    def _take(self) -> tuple[_Connection | None, bool]:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if now - connection.idle_since < self._expiry and not connection.reader.at_eof():
                return connection, True
            connection.close()
        return None, False

    async def _connect(self, request: httpx.Request, timeout: float | None) -> _Connection:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(self._host, self._port, limit=_MAX_HEAD)
        except TimeoutError:
            raise httpx.ConnectTimeout("timed out connecting to Asterisk", request=request) from None
        except OSError as exc:
            raise httpx.ConnectError(f"{exc.strerror or exc}", request=request) from None
        return _Connection(reader, writer)

    def _head(self, request: httpx.Request, length: int) -> bytes:
        lines = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), request.url.raw_path)]
        for name, value in request.headers.raw:
            lower = name.lower()
            if lower not in (b"content-length", b"transfer-encoding", b"connection"):
                lines.append(b"%s: %s\r\n" % (name, value))
        if length or request.method in ("POST", "PUT", "PATCH"):
            lines.append(b"Content-Length: %d\r\n" % length)
        lines.append(b"\r\n")
        return b"".join(lines)

    async def _exchange(
        self, connection: _Connection, data: bytes, reused: bool, timeout: float | None, request: httpx.Request
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
        reader = connection.reader
        try:
            async with asyncio.timeout(timeout):
                connection.writer.write(data)
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as exc:
                    if reused and not exc.partial:
                        raise _StaleConnection from None
                    raise httpx.RemoteProtocolError("Asterisk closed the connection", request=request) from None
                status, headers, length, chunked, keep = _parse_head(head, request)
                if chunked:
                    content = await _read_chunked(reader)
                elif length is not None:
                    content = await reader.readexactly(length) if length else b""
                else:
                    content, keep = await reader.read(), False
        except TimeoutError:
            raise httpx.ReadTimeout("timed out waiting for Asterisk", request=request) from None
        except ConnectionError as exc:
            if reused:
                raise _StaleConnection from None
            raise httpx.ReadError(str(exc), request=request) from None
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise httpx.RemoteProtocolError(f"bad answer from Asterisk: {exc}", request=request) from None
        return status, headers, content, keep


def _parse_head(head: bytes, request: httpx.Request) -> tuple[int, list[tuple[bytes, bytes]], int | None, bool, bool]:
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise httpx.RemoteProtocolError(f"not an HTTP answer: {lines[0][:40]!r}", request=request)
    status = int(parts[1])
    headers: list[tuple[bytes, bytes]] = []
    length: int | None = None
    chunked = False
    keep = parts[0] == b"HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        value = value.strip()
        lower = name.strip().lower()
        if lower == b"content-length":
            length = int(value)
        elif lower == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
            continue  # the body is handed on de-chunked
        elif lower == b"connection":
            keep = value.lower() == b"keep-alive" if not keep else value.lower() != b"close"
        headers.append((name.strip(), value))
    if status in (204, 304) or 100 <= status < 200:
        length = 0
    return status, headers, length, chunked, keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
