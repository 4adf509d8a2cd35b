"""ARI REST over the events websocket (Asterisk 20.14, 21.9, 22.4 and later), beneath the one-method seam.

A request is one text message on the socket the events arrive on, and its answer one message back::

    -> {"type": "RESTRequest", "request_id": "7", "method": "PUT", "uri": "applications/rcml/eventFilter",
        "query_strings": [{"name": ..., "value": ...}], "content_type": "application/json", "message_body": "{...}"}
    <- {"type": "RESTResponse", "request_id": "7", "status_code": 200, "reason_phrase": "OK", "message_body": ...}

No connection to open, no HTTP head to write or parse on either side: on the sandbox's Asterisk 22.10.1 this is
cheaper than the lean HTTP transport (figures in the README).

:class:`WebSocketTransport` owns no socket: the :class:`~stasis_app.ari.events.EventStream` tells it when a
socket opens (:meth:`~WebSocketTransport.attach`) and closes (:meth:`~WebSocketTransport.detach`), and hands it
each ``RESTResponse`` it reads (:meth:`~WebSocketTransport.deliver`); a future per ``request_id`` does the rest.
A request while no socket is open fails at once; the requests in flight fail when the socket goes.

With a ``fallback`` (``[ari] rest = "auto"``), each new socket is first asked ``GET asterisk/ping``; an
Asterisk that answers gets every request over the socket, an older one (it ignores the message) gets them over
the fallback HTTP transport until the next connect. Requests made meanwhile wait for that answer. Before the
first socket has answered, requests take the fallback; once one has, a request while the socket is down fails
fast like in ``websocket`` mode.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping

from pydantic_core import from_json, to_json

from stasis_app.ari.protocol import Transport, TransportError

__all__ = ["WebSocketTransport"]

logger = logging.getLogger(__name__)

# Sends one text message on the socket (aiohttp's ``ClientWebSocketResponse.send_str``).
Send = Callable[[str], Awaitable[None]]


class WebSocketTransport:
    """REST requests as ``RESTRequest`` messages on the events websocket, answers matched by ``request_id``.

    ``timeout`` bounds each request; ``fallback`` (with ``probe_timeout``) makes the websocket a choice per
    connection instead of a requirement (see the module docstring).
    """

    def __init__(self, *, timeout: float = 10.0, fallback: Transport | None = None, probe_timeout: float = 2.0) -> None:
        self._timeout = timeout
        self._fallback = fallback
        self._probe_timeout = probe_timeout
        self._send: Send | None = None
        self._over_socket = False  # this socket carries REST (probed, or no fallback to choose)
        self._carried = False  # some socket has: from then on a request with no socket fails fast
        self._probe: asyncio.Task[None] | None = None
        self._down = "the events websocket is not connected yet"
        self._pending: dict[str, asyncio.Future[tuple[int, bytes]]] = {}
        self._ids = itertools.count(1)
        self._closed = False

    @property
    def route(self) -> str:
        """Where the next request goes: ``websocket``, ``http``, or ``none`` (no socket: it would fail)."""
        if self._send is not None and self._over_socket:
            return "websocket"
        if self._fallback is not None and (self._send is not None or not self._carried):
            return "http"
        return "none"

    @property
    def ordered(self) -> bool:
        """While requests go over the socket: Asterisk reads a websocket's messages one at a time, and carries a
        request out before it reads the next."""
        return self.route == "websocket"

    async def request(
        self, method: str, path: str, query: Mapping[str, str] | None = None, body: bytes | None = None
    ) -> tuple[int, bytes]:
        if self._closed:
            raise TransportError("the ARI client is closed")
        if self._probe is not None:
            # A socket just opened and its answer to the probe decides the route: wait for it (bounded). wait(),
            # not await: the probe is cancelled if the socket goes, and that is no reason to cancel this caller.
            await asyncio.wait((self._probe,))
        send = self._send
        if send is None or not self._over_socket:
            if self._fallback is not None and (send is not None or not self._carried):
                return await self._fallback.request(method, path, query, body)
            raise TransportError(f"no events websocket to send the request on: {self._down}")
        message: dict[str, object] = {"type": "RESTRequest", "request_id": "", "method": method, "uri": path[1:]}
        if query:
            message["query_strings"] = [{"name": name, "value": value} for name, value in query.items()]
        if body:
            message["content_type"] = "application/json"
            message["message_body"] = body.decode()
        return await self._exchange(send, message, self._timeout)

    def attach(self, send: Send) -> None:
        """A socket opened: send requests with ``send``. Called by the event stream before any hook runs."""
        self._send = send
        self._over_socket = self._fallback is None
        self._carried = self._carried or self._over_socket
        if self._fallback is not None and not self._closed:
            self._probe = asyncio.create_task(self._probe_socket(send))

    def detach(self, reason: str) -> None:
        """The socket is gone (``reason`` says why): fail every request waiting on it, refuse new ones."""
        self._send = None
        self._over_socket = False
        self._down = f"the events websocket is down ({reason})"
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(TransportError(f"the events websocket closed before Asterisk answered: {reason}"))

    def deliver(self, message: str | bytes) -> None:
        """One ``RESTResponse`` as read from the socket: complete the request it answers."""
        try:
            answer = from_json(message)  # pydantic-core's parser: twice json.loads' speed on these
            future = self._pending.pop(answer["request_id"], None)
            status = int(answer["status_code"])
            body = answer.get("message_body")
            content = body.encode() if isinstance(body, str) else b""
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("ARI: skipped a RESTResponse that does not parse: %s", exc)
            return
        if future is None:
            # Its request timed out (or was cancelled) already.
            logger.debug("ARI: a RESTResponse for a request no longer waiting: %s", answer.get("request_id"))
        elif not future.done():
            future.set_result((status, content))

    async def aclose(self) -> None:
        self._closed = True
        self.detach("the ARI client is closed")
        if self._fallback is not None:
            await self._fallback.aclose()

    # -- internals --------------------------------------------------------------------------------------------

    async def _exchange(self, send: Send, message: dict[str, object], timeout: float) -> tuple[int, bytes]:
        request_id = str(next(self._ids))
        message["request_id"] = request_id
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        self._pending[request_id] = future
        # One timer per request, not asyncio.timeout's context manager (about 3 % of the app's CPU at 20 calls/s,
        # profiled). It fails the answer's future; a send still under way then (the socket's buffer full: Asterisk
        # stopped reading it) is cancelled by it instead.
        bound = _Bound(future, asyncio.current_task(), timeout)
        timer = loop.call_later(timeout, bound.expire)
        try:
            await send(to_json(message).decode())
            bound.sent = True
            return await future
        except asyncio.CancelledError:
            if bound.expired and not bound.sent and bound.task is not None and bound.task.uncancel() == 0:
                raise bound.error() from None  # the timer's own cancel, nobody else's
            raise
        except ConnectionError as exc:
            # aiohttp raises ClientConnectionResetError (a ConnectionResetError) on a socket closing or gone.
            raise TransportError(f"the events websocket closed: {exc}") from None
        finally:
            timer.cancel()
            self._pending.pop(request_id, None)

    async def _probe_socket(self, send: Send) -> None:
        probe: dict[str, object] = {"type": "RESTRequest", "method": "GET", "uri": "asterisk/ping"}
        try:
            status, _ = await self._exchange(send, probe, self._probe_timeout)
        except TransportError as exc:
            logger.info("ARI REST goes over HTTP: Asterisk did not answer REST on the websocket (%s)", exc)
            self._over_socket = False
        else:
            self._over_socket = status == 200
            self._carried = self._carried or self._over_socket
            route = "the events websocket" if self._over_socket else "HTTP"
            logger.info("ARI REST goes over %s (the websocket answered the probe with %d)", route, status)
        finally:
            if self._send is send:
                self._probe = None


class _Bound:
    """One request's time limit (see ``WebSocketTransport._exchange``)."""

    __slots__ = ("expired", "future", "sent", "task", "timeout")

    def __init__(self, future: asyncio.Future[tuple[int, bytes]], task: asyncio.Task[object] | None, timeout: float):
        self.future = future
        self.task = task
        self.timeout = timeout
        self.sent = False
        self.expired = False

    def error(self) -> TransportError:
        return TransportError(f"no answer on the events websocket within {self.timeout:g} s")

    def expire(self) -> None:
        self.expired = True
        if not self.sent and self.task is not None:
            self.task.cancel()
        elif not self.future.done():
            self.future.set_exception(self.error())
