"""The ARI client the app runs with: the typed REST calls of :class:`~stasis_app.ari.rest.AriRest` over the
event websocket of :mod:`stasis_app.ari.events` (:mod:`stasis_app.ari.ws_rest`) or over HTTP
(:mod:`stasis_app.ari.transport`), as ``[ari] rest`` says: ``auto`` (the default) takes the websocket whenever
the connected Asterisk answers REST on it, HTTP otherwise.

The password only ever travels in an ``Authorization`` header: it is in no URL, log line or error message.
"""

from __future__ import annotations

import base64
import logging
from types import TracebackType
from typing import TYPE_CHECKING, Self
from urllib.parse import urlencode

import httpx

from models.config import AriSettings
from stasis_app.ari.events import Backoff, EventSink, EventStream, StreamState
from stasis_app.ari.protocol import AsteriskApi, EventHandler, Transport
from stasis_app.ari.rest import AriRest
from stasis_app.ari.transport import http_transport
from stasis_app.ari.ws_rest import WebSocketTransport
from stasis_app.errors import AriError

__all__ = ["AriClient"]

log = logging.getLogger(__name__)


class AriClient(AriRest):
    """Asterisk's REST interface (implements :class:`AsteriskApi`) and its event websocket (:meth:`run`).

    Use as ``async with AriClient(settings) as ari:``; ``transport`` replaces the HTTP transport in tests (and,
    with ``rest = "auto"``, sends REST there), ``backoff`` the websocket reconnect delays, ``event_sink`` sees
    every websocket event message as received.
    """

    def __init__(
        self,
        settings: AriSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff: Backoff | None = None,
        event_sink: EventSink | None = None,
    ) -> None:
        self._settings = settings
        token = base64.b64encode(f"{settings.username}:{settings.password}".encode()).decode("ascii")
        auth = {"Authorization": f"Basic {token}"}
        mode = "http" if transport is not None and settings.rest == "auto" else settings.rest
        self.over_socket: WebSocketTransport | None = None
        # Over HTTP always: a recording's audio is binary, which a websocket RESTResponse (text) cannot carry.
        http = http_transport(
            settings.url,
            auth,
            transport=transport,
            max_connections=settings.http_connections,
            timeout=settings.request_timeout,
        )
        self._files = AriRest(http, settings.app, scrub=settings.password)
        rest: Transport = http
        if mode == "websocket":
            rest = self.over_socket = WebSocketTransport(timeout=settings.request_timeout)
        elif mode == "auto":
            rest = self.over_socket = WebSocketTransport(timeout=settings.request_timeout, fallback=http)
        super().__init__(rest, settings.app, scrub=settings.password)
        base = f"{settings.url}/ari"
        scheme, rest_of_url = base.split("://", 1)
        query = urlencode({"app": settings.app, "subscribeAll": "false"})
        self._events = EventStream(
            f"{'wss' if scheme == 'https' else 'ws'}://{rest_of_url}/events?{query}",
            auth,
            backoff=backoff,
            on_open=self._apply_event_filter,
            sink=event_sink,
            rest=self.over_socket,
        )

    @property
    def state(self) -> StreamState:
        """Lifecycle: idle (built), connecting, connected (events flowing), closed."""
        return self._events.state

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def stored_recording_file(self, name: str) -> bytes:
        """The audio of a stored recording, always fetched over HTTP (binary)."""
        return await self._files.stored_recording_file(name)

    async def close(self) -> None:
        """Stop :meth:`run` (it returns) and close the HTTP connections. Safe to call more than once."""
        await self.transport.aclose()
        if self._files.transport is not self.transport:
            await self._files.transport.aclose()
        # Last, because close() may run inside the handler's on_connected, i.e. in the session it cancels.
        await self._events.close()

    async def run(self, handler: EventHandler) -> None:
        """Connect the event websocket and deliver every event to ``handler`` until :meth:`close`.

        After each (re)connect, ``handler.on_connected(reconnect=...)`` is awaited before any event is
        delivered; a lost connection is retried forever with backoff. Can be called once.
        """
        await self._events.run(handler)

    async def _apply_event_filter(self) -> None:
        # The app exists in Asterisk only while its websocket is open, so this runs after each connect.
        try:
            await self.set_event_filter()
        except AriError as exc:
            log.warning("ARI event filter not set, receiving every event type: %s", exc)


if TYPE_CHECKING:
    # mypy checks here that AriClient matches the protocol the engine is written against.
    _implements: type[AsteriskApi] = AriClient
