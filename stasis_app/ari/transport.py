"""HTTP transports for ARI's REST interface, beneath the one-method seam of :mod:`stasis_app.ari.protocol`.

:class:`AsteriskTransport` is a lean HTTP/1.1 keep-alive client on asyncio streams for plain-HTTP Asterisk: a
transferred call makes some 16 ARI requests, and building httpx request and response objects for each cost more
CPU than Asterisk spends on the whole call. Asterisk's HTTP server speaks plain HTTP/1.1 with ``Content-Length``
bodies, so a request here is one formatted head, one write and one read. :class:`HttpxTransport` carries
anything else (TLS, an injected test transport) through one shared ``httpx.AsyncClient``.

Both open at most ``max_connections`` connections at once and queue the other requests, first come first
served: Asterisk's ``http.conf`` ``sessionlimit`` (100 by default) is shared with every other HTTP client, and
beyond it Asterisk drops connections, so REST calls would fail mid-call exactly when load is highest.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit

import httpx

from stasis_app.ari.protocol import TransportError

__all__ = ["AsteriskTransport", "HttpxTransport", "http_transport"]

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


class AsteriskTransport:
    """HTTP/1.1 to one ``host:port`` under ``prefix`` (``/ari``): at most ``max_connections`` open at once,
    up to ``max_idle`` of them kept for ``keepalive_expiry`` s. ``headers`` (``Authorization``...) go with every
    request. ``timeout`` bounds a whole request: waiting for a free connection, connecting, the answer."""

    ordered = False  # each request on a connection of its own: Asterisk may carry them out in any order

    def __init__(
        self,
        host: str,
        port: int,
        *,
        prefix: str = "/ari",
        headers: Mapping[str, str] | None = None,
        max_connections: int = 20,
        max_idle: int = 10,
        keepalive_expiry: float = 5.0,
        connect_timeout: float = 3.0,
        timeout: float = 10.0,
    ) -> None:
        self._port = port
        self._host = host
        self._prefix = prefix
        fixed = {"Host": f"{host}:{port}", "Accept": "application/json", **(headers or {})}
        self._fixed = "".join(f"{name}: {value}\r\n" for name, value in fixed.items()).encode("latin-1")
        self._max_idle = min(max_idle, max_connections)
        self._max_connections = max_connections
        self._busy = 0  # connections lent to requests; with the idle ones never more than max_connections
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._expiry = keepalive_expiry
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._idle: list[_Connection] = []
        self._closed = False

    async def request(
        self, method: str, path: str, query: Mapping[str, str] | None = None, body: bytes | None = None
    ) -> tuple[int, bytes]:
        if self._closed:
            raise TransportError("the ARI client is closed")
        target = f"{self._prefix}{path}?{urlencode(query)}" if query else f"{self._prefix}{path}"
        data = self._head(method, target, body) + (body or b"")
        try:
            async with asyncio.timeout(self._timeout):
                await self._acquire()
                try:
                    return await self._send(data)
                finally:
                    self._release()
        except TimeoutError:
            raise TransportError("timed out waiting for Asterisk") from None

    @property
    def in_use(self) -> int:
        """Connections lent to requests now (at most ``max_connections``)."""
        return self._busy

    async def _send(self, data: bytes) -> tuple[int, bytes]:
        while True:
            connection, reused = self._take()
            if connection is None:
                connection = await self._connect()
            try:
                status, content, keep = await self._exchange(connection, data, reused)
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
            return status, content

    async def _acquire(self) -> None:
        if self._busy < self._max_connections and not self._waiters:
            self._busy += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the slot was handed over just as we gave up: pass it on
            else:
                self._waiters.remove(waiter)
            raise

    def _release(self) -> None:
        # Hand the slot straight to the longest waiter (FIFO); it stays counted as busy.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._busy -= 1

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

    async def _connect(self) -> _Connection:
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(self._host, self._port, limit=_MAX_HEAD)
        except TimeoutError:
            raise TransportError("cannot reach Asterisk: timed out connecting") from None
        except OSError as exc:
            raise TransportError(f"cannot reach Asterisk: {exc.strerror or exc}") from None
        return _Connection(reader, writer)

    def _head(self, method: str, target: str, body: bytes | None) -> bytes:
        head = b"%s %s HTTP/1.1\r\n%s" % (method.encode("ascii"), target.encode("ascii"), self._fixed)
        if body:
            head += b"Content-Type: application/json\r\n"
        if body or method in ("POST", "PUT", "PATCH"):
            head += b"Content-Length: %d\r\n" % len(body or b"")
        return head + b"\r\n"

    async def _exchange(self, connection: _Connection, data: bytes, reused: bool) -> tuple[int, bytes, bool]:
        reader = connection.reader
        try:
            connection.writer.write(data)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if reused and not exc.partial:
                    raise _StaleConnection from None
                raise TransportError("Asterisk closed the connection") from None
            status, length, chunked, keep = _parse_head(head)
            if chunked:
                content = await _read_chunked(reader)
            elif length is not None:
                content = await reader.readexactly(length) if length else b""
            else:
                content, keep = await reader.read(), False
        except ConnectionError as exc:
            if reused:
                raise _StaleConnection from None
            raise TransportError(f"connection to Asterisk lost: {exc}") from None
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise TransportError(f"bad answer from Asterisk: {exc}") from None
        return status, content, keep


class HttpxTransport:
    """ARI over one shared ``httpx.AsyncClient``: for TLS, or an injected httpx transport in tests.

    No proxy or ``.netrc`` from the environment (``trust_env=False``): Asterisk is always reached directly."""

    ordered = False  # concurrent connections

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        max_connections: int = 20,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=f"{base_url}/ari",
            headers=dict(headers or {}),
            timeout=httpx.Timeout(timeout, connect=3.0),
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=min(10, max_connections),
                keepalive_expiry=5.0,
            ),
            transport=transport,
            trust_env=False,
            follow_redirects=False,
        )

    async def request(
        self, method: str, path: str, query: Mapping[str, str] | None = None, body: bytes | None = None
    ) -> tuple[int, bytes]:
        if self._http.is_closed:
            raise TransportError("the ARI client is closed")
        headers = {"Content-Type": "application/json"} if body else None
        try:
            response = await self._http.request(method, path, params=query, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise TransportError(f"timed out ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            text = str(exc).splitlines()[0] if str(exc) else ""
            raise TransportError(f"cannot reach Asterisk: {type(exc).__name__}: {text}".rstrip(": ")) from None
        return response.status_code, response.content

    async def aclose(self) -> None:
        await self._http.aclose()


def http_transport(
    url: str,
    headers: Mapping[str, str],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    max_connections: int = 20,
    timeout: float = 10.0,
) -> AsteriskTransport | HttpxTransport:
    """The lean transport for plain-HTTP Asterisk, httpx for anything else (TLS) or an injected transport."""
    parsed = urlsplit(url)
    if transport is None and parsed.scheme == "http" and parsed.hostname:
        return AsteriskTransport(
            parsed.hostname, parsed.port or 80, headers=headers, max_connections=max_connections, timeout=timeout
        )
    return HttpxTransport(url, headers=headers, transport=transport, timeout=timeout, max_connections=max_connections)


def _parse_head(head: bytes) -> tuple[int, int | None, bool, bool]:
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP answer: {lines[0][:40]!r}")
    status = int(parts[1])
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
        elif lower == b"connection":
            keep = value.lower() == b"keep-alive" if not keep else value.lower() != b"close"
    if status in (204, 304) or 100 <= status < 200:
        length = 0
    return status, length, chunked, keep


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
