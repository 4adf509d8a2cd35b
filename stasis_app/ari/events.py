"""The ARI event websocket: connect, hand every event to an :class:`EventHandler` in order, reconnect forever.

:class:`EventStream` knows nothing about REST; :class:`stasis_app.ari.client.AriClient` builds one with the
websocket URL and the Basic ``Authorization`` header, and passes an ``on_open`` hook (the event filter PUT).

Order on every (re)connect: the socket opens, ``on_open`` starts in the background, the handler's
``on_connected(reconnect=...)`` is awaited, and only then are events delivered. ARI does not replay events
missed while the socket was down, so the handler re-reads channels and bridges in ``on_connected``; the socket
is read all along, and events that arrive meanwhile are held and delivered after it, in order, none lost.

The same socket may carry REST (:mod:`stasis_app.ari.ws_rest`): given a ``rest`` endpoint, the stream tells it
when the socket opens and closes and hands it every ``RESTResponse`` instead of the handler, while
``on_connected`` runs too, so the handler's own requests are answered (reading only after it would deadlock).

An optional ``sink`` sees every event message as received, before it is parsed (``stasis-rcml run
--event-log``); :class:`EventLog` is the sink that writes them to a JSON Lines file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from http import HTTPStatus
from pathlib import Path
from typing import IO, Protocol

import aiohttp
import pydantic
from aiohttp import ClientWebSocketResponse, WSMessage, WSMsgType

from models.ari_messages import event_type, ignored_event, parse_event
from stasis_app.ari.protocol import EventHandler
from stasis_app.errors import AriError

__all__ = ["Backoff", "EventLog", "EventSink", "EventStream", "RestOverSocket", "StreamState"]

logger = logging.getLogger(__name__)


# Sees each websocket event message exactly as Asterisk sent it, before parsing.
EventSink = Callable[[str | bytes], None]


class RestOverSocket(Protocol):
    """What carries REST on the events socket (:class:`stasis_app.ari.ws_rest.WebSocketTransport`)."""

    def attach(self, send: Callable[[str], Awaitable[None]]) -> None:
        """A socket opened; ``send`` writes one text message on it."""

    def detach(self, reason: str) -> None:
        """The socket is gone."""

    def deliver(self, message: str | bytes) -> None:
        """A ``RESTResponse`` message, as read."""


class StreamState(StrEnum):
    """Where the event stream is in its life; it only ever moves forward to ``CLOSED``."""

    IDLE = "idle"  # built, run() not called yet
    CONNECTING = "connecting"  # opening the socket, or waiting to retry
    CONNECTED = "connected"  # events are flowing
    CLOSED = "closed"  # close() was called; run() has returned or is about to


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays in seconds: ``initial`` doubling up to ``maximum``, each scaled by ±``jitter``.

    ``after_clean_close`` is the least wait after Asterisk closes the socket cleanly, so a server that
    accepts and closes at once is never hammered. The doubling starts over once a connection has worked: it
    delivered an event, or stayed up ``stable_after`` seconds. A few quick drops of a working Asterisk thus
    cost ``initial`` each, not ``maximum`` (while the app is away, Asterisk refuses new calls).
    """

    initial: float = 0.5
    maximum: float = 10.0
    after_clean_close: float = 1.0
    jitter: float = 0.2
    stable_after: float = 1.5

    def delay(self, failures: int) -> float:
        """The wait before the next attempt, after ``failures`` (>= 1) failures in a row."""
        base = min(self.maximum, self.initial * 2.0 ** min(failures - 1, 30))
        return base * (1 + random.uniform(-self.jitter, self.jitter))


# How long a closing handshake may take before the socket is dropped: bounds close() on a wedged Asterisk.
_CLOSE_TIMEOUT = 2.0
# The largest message taken: GET /channels answered on the socket with thousands of channels is megabytes, and a
# message too large would cost the connection. Asterisk drops a websocket it cannot write to within ari.conf's
# websocket_write_timeout (100 ms by default), so the socket is read all along (events held while on_connected
# resyncs), never left to fill up.
_MAX_MESSAGE = 64 * 1024 * 1024
# Close codes that end a connection normally (RFC 6455 7.4.1): normal closure, going away, no status given.
# Any other is an error, reported as a dropped connection.
_CLEAN_CLOSE = frozenset({1000, 1001, 1005})


@dataclass
class _Lost:
    """Why a connection attempt or a connection ended."""

    reason: str
    connected_for: float | None = None  # None: never got connected
    clean: bool = False
    unauthorized: bool = False
    events: int = 0  # events it delivered (or held for delivery)


class EventStream:
    """One ARI application's event websocket, reconnecting until :meth:`close`."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        *,
        backoff: Backoff | None = None,
        on_open: Callable[[], Awaitable[None]] | None = None,
        open_timeout: float = 10.0,
        sink: EventSink | None = None,
        rest: RestOverSocket | None = None,
    ) -> None:
        # ``url`` carries no secret (auth goes in ``headers``), so it is safe to log.
        self._url = url
        self._headers = headers
        self._backoff = backoff or Backoff()
        self._on_open = on_open
        self._open_timeout = open_timeout
        self._sink = sink
        self._rest = rest
        self._state = StreamState.IDLE
        self._closing = asyncio.Event()
        self._session: asyncio.Task[_Lost] | None = None
        self._http: aiohttp.ClientSession | None = None  # made in run(), inside the running loop

    @property
    def state(self) -> StreamState:
        """The current lifecycle state."""
        return self._state

    def _set_state(self, new: StreamState, why: str) -> None:
        old, self._state = self._state, new
        logger.info("ARI events %s -> %s: %s", old, new, why)

    async def run(self, handler: EventHandler) -> None:
        """Deliver events to ``handler`` until :meth:`close`; never returns on a lost connection."""
        if self._state is StreamState.CLOSED:
            raise RuntimeError("EventStream.run(): the stream is closed")
        if self._state is not StreamState.IDLE:
            raise RuntimeError("EventStream.run(): already running; it can only run once")
        failures = 0
        reconnect = False
        last_failure = ""  # the previous failed attempt's reason, to log an unchanged outage once
        self._set_state(StreamState.CONNECTING, self._url)
        # One HTTP session for the stream's life, each socket one connection of it. Not trust_env: aiohttp then
        # ignores HTTP(S)_PROXY / ALL_PROXY and netrc; Asterisk is reached directly. No total timeout (aiohttp's
        # default is 5 minutes): the socket lives for hours, and the upgrade is bounded by open_timeout.
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None), trust_env=False)
        try:
            while not self._closing.is_set():
                self._session = asyncio.create_task(self._connect_and_read(self._http, handler, reconnect))
                try:
                    lost = await self._session
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if self._closing.is_set() and current is not None and not current.cancelling():
                        break  # close() cancelled the session, not our caller
                    raise
                finally:
                    self._session = None
                if self._closing.is_set():
                    break
                if lost.connected_for is not None:
                    reconnect = True
                    if lost.events or lost.connected_for >= self._backoff.stable_after:
                        failures = 0
                failures += 1
                delay = self._backoff.delay(failures)
                if lost.clean:
                    delay = max(delay, self._backoff.after_clean_close)
                self._report(lost, delay, repeated=lost.connected_for is None and lost.reason == last_failure)
                last_failure = lost.reason if lost.connected_for is None else ""
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), delay)
        finally:
            http, self._http = self._http, None
            await http.close()
        self._set_state(StreamState.CLOSED, "closed by the application")

    def _report(self, lost: _Lost, delay: float, *, repeated: bool) -> None:
        if lost.connected_for is not None:
            self._set_state(StreamState.CONNECTING, f"lost: {lost.reason}; retry in {delay:.1f} s")
        elif lost.unauthorized and not repeated:
            logger.error(
                "ARI events: Asterisk refused the websocket (401): wrong ARI credentials "
                "(check [ari] username and password); retry in %.1f s",
                delay,
            )
        else:
            # The same failure over and over (Asterisk down for minutes) is one warning, then debug lines.
            level = logging.DEBUG if repeated else logging.WARNING
            logger.log(level, "ARI events: cannot connect: %s; retry in %.1f s", lost.reason, delay)

    async def _connect_and_read(self, http: aiohttp.ClientSession, handler: EventHandler, reconnect: bool) -> _Lost:
        try:
            async with asyncio.timeout(self._open_timeout):
                ws = await http.ws_connect(
                    self._url,
                    headers=self._headers,
                    # autoping: Asterisk's pings are answered by the read loop. close: the bound on a closing
                    # handshake. Receive: no timeout, an idle Asterisk sends nothing for as long as it likes.
                    autoping=True,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=_CLOSE_TIMEOUT),
                    max_msg_size=_MAX_MESSAGE,
                )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == HTTPStatus.SWITCHING_PROTOCOLS:  # 101 with a bad Upgrade or Sec-WebSocket-Accept
                return _Lost(_describe(exc))
            return _Lost(f"HTTP {exc.status} on upgrade", unauthorized=exc.status == HTTPStatus.UNAUTHORIZED)
        except aiohttp.ClientConnectorError as exc:
            # Its own text adds "Cannot connect to host ... ssl:default"; the OS error says it all.
            return _Lost(_describe(exc.os_error))
        except (OSError, TimeoutError, aiohttp.ClientError) as exc:
            return _Lost(_describe(exc))
        opened = time.monotonic()
        rest = self._rest
        if rest is not None:
            rest.attach(ws.send_str)
        reader = _Reader(handler, self._sink, rest)
        reading = asyncio.create_task(reader.read(ws))
        hook = asyncio.create_task(self._run_hook()) if self._on_open is not None else None
        lost: _Lost | None = None
        try:
            self._set_state(StreamState.CONNECTED, "reconnected" if reconnect else "connected")
            try:
                await handler.on_connected(reconnect=reconnect)
            except AriError as exc:
                # The handler could not re-read state; a fresh connection gives it another try.
                lost = _Lost(f"on_connected failed: {exc}", time.monotonic() - opened)
                return lost
            reader.release()
            end = await reading
            code = (end.data or 1005) if end.type is WSMsgType.CLOSE else 0  # 0: no code in the close frame
            if code in _CLEAN_CLOSE:
                # Asterisk's close frame, answered with ours by aiohttp.
                reason = f"closed by Asterisk (code {code}{_suffix(end.extra)})"
                lost = _Lost(reason, time.monotonic() - opened, clean=True, events=reader.events)
            elif code:
                # A close frame saying something went wrong (1011 internal error, 1008 policy...).
                reason = f"connection dropped (received close code {code}{_suffix(end.extra)})"
                lost = _Lost(reason, time.monotonic() - opened, events=reader.events)
            elif end.type is WSMsgType.ERROR:
                # A protocol error (bad UTF-8, a message over _MAX_MESSAGE...): aiohttp closed the socket.
                why = _describe(end.data) if isinstance(end.data, BaseException) else str(end.data)
                lost = _Lost(f"connection dropped ({why})", time.monotonic() - opened, events=reader.events)
            else:  # CLOSED: the TCP connection ended without a close frame
                reason = "connection dropped (no close frame received)"
                lost = _Lost(reason, time.monotonic() - opened, events=reader.events)
            return lost
        except OSError as exc:
            lost = _Lost(_describe(exc), time.monotonic() - opened, events=reader.events)
            return lost
        finally:
            if rest is not None:
                rest.detach(lost.reason if lost is not None else "the event stream stopped")
            for task in (hook, reading):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            # Says 1000 to Asterisk in every case and returns at once on a dead socket: with the reading task
            # gone aiohttp does not wait for Asterisk's answering close frame. Bounded all the same, for a wedged
            # socket; cancelled, aiohttp drops the connection.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await ws.close()

    async def _run_hook(self) -> None:
        assert self._on_open is not None
        try:
            await self._on_open()
        except Exception:
            logger.exception("ARI events: on_open hook failed")

    async def close(self) -> None:
        """Stop :meth:`run` promptly: it returns instead of reconnecting. Safe to call more than once."""
        self._closing.set()
        if self._state is StreamState.IDLE:
            self._set_state(StreamState.CLOSED, "closed before run()")
        if self._session is not None and not self._session.done():
            self._session.cancel()


class EventLog:
    """A sink writing each message as one JSON line, ``{"ts": <unix time>, "event": {...}}``, flushed at once.

    A message that is not JSON is kept as a string, so the log shows what really came. Use as a context
    manager, or call :meth:`close`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        # Created 0600: the log holds caller names, numbers and SIP Call-IDs.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file: IO[str] = open(fd, "a", encoding="utf-8")  # noqa: SIM115  # closed by close()

    def __call__(self, message: str | bytes) -> None:
        try:
            event: object = json.loads(message)
        except ValueError:
            event = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
        self._file.write(json.dumps({"ts": time.time(), "event": event}, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Reader:
    """Reads one socket from the moment it opens: a ``RESTResponse`` goes to ``rest`` at once; an event is
    held until :meth:`release` (the end of ``on_connected``), then delivered as it comes."""

    __slots__ = ("events", "handler", "held", "rest", "sink")

    def __init__(self, handler: EventHandler, sink: EventSink | None, rest: RestOverSocket | None) -> None:
        self.handler = handler
        self.sink = sink
        self.rest = rest
        self.held: list[str | bytes] | None = []
        self.events = 0

    async def read(self, ws: ClientWebSocketResponse) -> WSMessage:
        """Read until the socket ends; returns the message that ended it (CLOSE, CLOSED or ERROR)."""
        handler, sink, rest = self.handler, self.sink, self.rest
        receive = ws.receive  # answers pings (autoping) and Asterisk's close frame (autoclose) on its own
        while True:
            frame = await receive()
            kind = frame.type
            if kind is not WSMsgType.TEXT and kind is not WSMsgType.BINARY:
                return frame
            message: str | bytes = frame.data
            # Asterisk writes "type" first: one look at the head of the message, no parse, routes a response.
            if rest is not None and type(message) is str and _RESPONSE in message[:_HEAD]:
                rest.deliver(message)
                continue
            self.events += 1
            if sink is not None:
                sink(message)
            if self.held is None:
                _deliver(handler, message)
            else:
                self.held.append(message)

    def release(self) -> None:
        held, self.held = self.held, None
        for message in held or ():
            _deliver(self.handler, message)


# A RESTResponse starts {"type":"RESTResponse" (or with spaces and a newline when ari.conf says pretty=yes).
_RESPONSE = '"RESTResponse"'
_HEAD = 40


def _deliver(handler: EventHandler, message: str | bytes) -> None:
    """Parse one message and hand it over; a bad message or a failing handler costs that one event only."""
    kind = event_type(message)
    if ignored_event(kind, message):
        return  # nobody acts on it: not worth a parse
    try:
        event = parse_event(message, kind=kind)
    except ValueError as exc:  # pydantic.ValidationError is one, and so is bad JSON or UTF-8
        logger.warning("ARI events: skipped a %s event: %s", _event_type(message), _one_line(exc))
        return
    try:
        handler.on_event(event)
    except Exception:
        # A bug in one call's handling must not stop the events of every other call.
        logger.exception("ARI events: the handler failed on a %s event", event.type)


def _event_type(message: str | bytes) -> str:
    # Only on the error path: the message did not parse, so find its type by hand.
    try:
        decoded = json.loads(message)
    except ValueError:
        return "non-JSON"
    kind = decoded.get("type") if isinstance(decoded, dict) else None
    return kind if isinstance(kind, str) else "untyped"


def _one_line(exc: Exception) -> str:
    if isinstance(exc, pydantic.ValidationError):
        errors = exc.errors(include_url=False, include_input=False)
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:3])
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _suffix(reason: str | None) -> str:
    return f", {reason}" if reason else ""
