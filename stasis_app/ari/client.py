"""A thin, typed asyncio ARI client: the REST calls of :class:`AsteriskApi` plus the event websocket.

One shared ``httpx.AsyncClient`` (keep-alive, no proxy from the environment, on the lean transport of
:mod:`stasis_app.ari.transport`) serves every REST call; the event
websocket lives in :mod:`stasis_app.ari.events`. The password only ever travels in an ``Authorization``
header: it is in no URL, log line or error message.
"""

from __future__ import annotations

import base64
import json as json_module
import logging
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote, urlencode, urlsplit

import httpx
from pydantic import TypeAdapter

from models.ari import HANDLED_EVENT_TYPES, Bridge, Channel, TransferState
from models.config import AriSettings
from stasis_app.ari.events import Backoff, EventSink, EventStream, StreamState
from stasis_app.ari.protocol import AsteriskApi, EventHandler, HangupReason
from stasis_app.ari.transport import AsteriskTransport
from stasis_app.errors import AriError, CallGone

__all__ = ["AriClient"]

logger = logging.getLogger(__name__)

# ARI answers in milliseconds on a healthy box; a call that takes seconds means Asterisk is wedged, and the
# engine would rather hear AriError than hang a verb.
_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
# Idle sockets are dropped after 5 s, well before Asterisk's http.conf session_keep_alive (15 s by default),
# so a request never goes out on a socket Asterisk is closing.
_LIMITS = httpx.Limits(max_connections=50, max_keepalive_connections=10, keepalive_expiry=5.0)

_EXTENSIONS = {"timeout": _TIMEOUT.as_dict()}

_CHANNELS: TypeAdapter[list[Channel]] = TypeAdapter(list[Channel])
_BRIDGES: TypeAdapter[list[Bridge]] = TypeAdapter(list[Bridge])
_EVENT_FILTER = {"allowed": [{"type": kind} for kind in HANDLED_EVENT_TYPES]}


def _id(value: str) -> str:
    """A channel/bridge/playback id as one path segment (``/`` and friends escaped)."""
    return quote(value, safe="")


class AriClient:
    """Asterisk's REST interface (implements :class:`AsteriskApi`) and its event websocket (:meth:`run`).

    Use as ``async with AriClient(settings) as ari:``; ``transport`` replaces the HTTP transport in tests,
    ``backoff`` the websocket reconnect delays, ``event_sink`` sees every websocket message as received.
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
        self._password = settings.password
        token = base64.b64encode(f"{settings.username}:{settings.password}".encode()).decode("ascii")
        auth = {"Authorization": f"Basic {token}"}
        base = f"{settings.url}/ari"
        self._base = base
        # Plain-HTTP Asterisk: requests go straight to our keep-alive transport, skipping the client's
        # per-request middleware (auth flow, cookies, redirects, hooks) that ARI never needs and that costs more
        # CPU than the request itself. Anything else (TLS, a test transport) goes through the client.
        self._lean = _lean_transport(settings.url) if transport is None else None
        if self._lean is not None:
            transport = self._lean
        host = urlsplit(settings.url).netloc
        self._headers = httpx.Headers({"Host": host, "Accept": "application/json", **auth})
        self._json_headers = httpx.Headers({**self._headers, "Content-Type": "application/json"})
        # trust_env=False: no HTTP(S)_PROXY/ALL_PROXY, no .netrc; Asterisk is always reached directly. The
        # header is set once on the client instead of an auth flow run per request.
        self._http = httpx.AsyncClient(
            base_url=base,
            headers=auth,
            timeout=_TIMEOUT,
            limits=_LIMITS,
            transport=transport,
            trust_env=False,
            follow_redirects=False,
        )
        scheme, rest = base.split("://", 1)
        query = urlencode({"app": settings.app, "subscribeAll": "false"})
        self._events = EventStream(
            f"{'wss' if scheme == 'https' else 'ws'}://{rest}/events?{query}",
            auth,
            backoff=backoff,
            on_open=self._apply_event_filter,
            sink=event_sink,
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

    async def close(self) -> None:
        """Stop :meth:`run` (it returns) and close the HTTP connections. Safe to call more than once."""
        await self._http.aclose()
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
            path = f"/applications/{_id(self._settings.app)}/eventFilter"
            await self._request("PUT", path, json=_EVENT_FILTER)
        except AriError as exc:
            logger.warning("ARI event filter not set, receiving every event type: %s", exc)

    # -- REST -----------------------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        """Send one request; a 404 raises CallGone, any other error status or failure AriError."""
        url = f"{self._base}{path}?{urlencode(params)}" if params else f"{self._base}{path}"
        content = _json_bytes(json) if json is not None else None
        headers = self._headers if content is None else self._json_headers
        request = httpx.Request(method, url, headers=headers, content=content, extensions=_EXTENSIONS)
        if self._http.is_closed:
            raise AriError(method, path, None, "the ARI client is closed")
        try:
            if self._lean is not None:
                response = await self._lean.handle_async_request(request)
            else:
                response = await self._http.send(request)
        except httpx.TimeoutException as exc:
            raise AriError(method, path, None, self._scrub(f"timed out ({type(exc).__name__})")) from None
        except httpx.HTTPError as exc:
            reason = self._scrub(f"cannot reach Asterisk: {_first_line(exc)}")
            raise AriError(method, path, None, reason) from None
        if response.status_code >= 400:
            message = self._scrub(_error_message(response))
            error = CallGone if response.status_code == 404 else AriError
            raise error(method, path, response.status_code, message)
        return response

    def _scrub(self, text: str) -> str:
        # Belt and braces: no exception text we pass on may carry the password, whatever produced it.
        return text.replace(self._password, "***") if self._password else text

    async def answer(self, channel_id: str) -> None:
        """Answer a ringing inbound channel."""
        await self._request("POST", f"/channels/{_id(channel_id)}/answer")

    async def ring(self, channel_id: str) -> None:
        """Indicate ringing to the channel (180 Ringing on an unanswered SIP call)."""
        await self._request("POST", f"/channels/{_id(channel_id)}/ring")

    async def hangup(self, channel_id: str, reason: HangupReason = "normal") -> None:
        """Hang the channel up with a cause."""
        await self._request("DELETE", f"/channels/{_id(channel_id)}", params={"reason": reason})

    async def originate(
        self,
        *,
        endpoint: str,
        channel_id: str,
        app_args: str,
        caller_id: str | None = None,
        timeout: int = 30,
        variables: dict[str, str] | None = None,
        originator: str | None = None,
    ) -> Channel:
        """Dial ``endpoint`` into this Stasis app; the new channel sends ``StasisStart`` when it answers."""
        params = {
            "endpoint": endpoint,
            "app": self._settings.app,
            "appArgs": app_args,
            "channelId": channel_id,
            "timeout": str(timeout),
        }
        if caller_id is not None:
            params["callerId"] = caller_id
        if originator is not None:
            params["originator"] = originator
        body = {"variables": variables} if variables else None
        response = await self._request("POST", "/channels", params=params, json=body)
        return Channel.model_validate_json(response.content)

    async def create_bridge(self, bridge_id: str, name: str) -> Bridge:
        """Create a mixing bridge with a chosen id."""
        params = {"type": "mixing", "name": name}
        response = await self._request("POST", f"/bridges/{_id(bridge_id)}", params=params)
        return Bridge.model_validate_json(response.content)

    async def destroy_bridge(self, bridge_id: str) -> None:
        """Destroy a bridge (its channels stay up)."""
        await self._request("DELETE", f"/bridges/{_id(bridge_id)}")

    async def add_to_bridge(self, bridge_id: str, channel_id: str) -> None:
        """Put a channel into a bridge."""
        await self._request("POST", f"/bridges/{_id(bridge_id)}/addChannel", params={"channel": channel_id})

    async def remove_from_bridge(self, bridge_id: str, channel_id: str) -> None:
        """Take a channel out of a bridge."""
        await self._request("POST", f"/bridges/{_id(bridge_id)}/removeChannel", params={"channel": channel_id})

    async def play(self, channel_id: str, media: str, playback_id: str) -> None:
        """Play Asterisk media (``sound:``, ``tone:``...) to a channel; it ends with ``PlaybackFinished``."""
        path = f"/channels/{_id(channel_id)}/play/{_id(playback_id)}"
        await self._request("POST", path, params={"media": media})

    async def stop_playback(self, playback_id: str) -> None:
        """Stop a playback early."""
        await self._request("DELETE", f"/playbacks/{_id(playback_id)}")

    async def transfer_progress(self, channel_id: str, state: TransferState) -> None:
        """Tell the transferor's phone how its REFER is going (a NOTIFY with a sipfrag)."""
        path = f"/channels/{_id(channel_id)}/transfer_progress"
        await self._request("POST", path, params={"states": state.value})

    async def list_channels(self) -> list[Channel]:
        """Every channel Asterisk has now."""
        return _CHANNELS.validate_json((await self._request("GET", "/channels")).content)

    async def list_bridges(self) -> list[Bridge]:
        """Every bridge Asterisk has now."""
        return _BRIDGES.validate_json((await self._request("GET", "/bridges")).content)

    async def asterisk_info(self) -> dict[str, Any]:
        """``GET /asterisk/info``: build, system (``version``), config and status, for start-up checks."""
        info: dict[str, Any] = (await self._request("GET", "/asterisk/info")).json()
        return info


def _json_bytes(value: Any) -> bytes:
    return json_module.dumps(value, separators=(",", ":")).encode()


def _lean_transport(url: str) -> httpx.AsyncBaseTransport | None:
    """Our keep-alive transport for plain-HTTP Asterisk; None (httpx's own) for anything else, such as TLS."""
    parsed = urlsplit(url)
    if parsed.scheme != "http" or not parsed.hostname:
        return None
    return AsteriskTransport(parsed.hostname, parsed.port or 80, keepalive_expiry=_LIMITS.keepalive_expiry or 5.0)


def _error_message(response: httpx.Response) -> str:
    """Asterisk's ``{"message": ...}`` for an error status, else the reason phrase."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return response.reason_phrase or f"HTTP {response.status_code}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


if TYPE_CHECKING:
    # mypy checks here that AriClient matches the protocol the engine is written against.
    _implements: type[AsteriskApi] = AriClient
