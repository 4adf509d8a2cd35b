"""One HTTP request to an application URL, bounded in time and size, every failure one :class:`WebhookError`.

Bounds (``[webhooks]``), because the customer's server is not to be trusted with a call:

* ``timeout``: ONE deadline for the whole request (connect, every redirect, headers and body), not
  per read: a server trickling a byte a second cannot hold a call longer than that.
* ``max_response_bytes``: a larger ``Content-Length`` is refused before reading; a body is read in
  chunks and refused as soon as it passes the limit; ``gzip`` / ``deflate`` are decoded by us with
  the same limit on the decoded size (a 1 MB "gzip bomb" never grows past it).
* Redirects are followed here, at most :data:`MAX_REDIRECTS`, only to ``http(s)`` URLs (never to
  ``app:`` or ``file:``); redirect bodies are never read.

Whatever goes wrong (a malformed URL, a broken Location, a TLS error, a bug in a library) comes out
as a :class:`WebhookError` naming the URL, with its password hidden: the session decides what it
means for the call, and never sees a traceback.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx

from models.rcml import HttpMethod
from stasis_app.errors import WebhookError
from stasis_app.redact import redact_url
from stasis_app.signature import sign_request

__all__ = ["ACCEPT_ENCODING", "MAX_REDIRECTS", "Body", "refuse_bad_redirects", "request_body"]

MAX_REDIRECTS = 10
# Only what _decode() can bound; httpx would otherwise offer br / zstd when those packages are installed.
ACCEPT_ENCODING = "gzip, deflate"
_GZIP = ("gzip", "x-gzip")
_HTTP = ("http", "https")


@dataclass(frozen=True)
class Body:
    """What a successful request gave: the decoded body, the status, and the final URL (after redirects)."""

    content: bytes
    status: int
    url: str
    redirected: bool


@dataclass(frozen=True)
class _Limits:
    timeout: float
    max_bytes: int
    auth_token: str | None


async def request_body(
    client: httpx.AsyncClient,
    url: str,
    method: HttpMethod,
    params: Mapping[str, str],
    *,
    timeout: float,
    max_bytes: int,
    auth_token: str | None = None,
) -> Body:
    """Request ``url`` (GET: params merged into its query; POST: a form) and return its 2xx body.

    Raises :class:`WebhookError`, and nothing else, for every way it can fail.
    """
    limits = _Limits(timeout, max_bytes, auth_token)
    try:
        async with asyncio.timeout(timeout):
            return await _follow(client, url, method, params, limits)
    except WebhookError:
        raise
    except _Refused as exc:
        raise WebhookError(url, exc.reason) from None
    except (TimeoutError, httpx.TimeoutException):
        raise WebhookError(url, f"timed out after {timeout:g} s") from None
    except httpx.ConnectError as exc:
        raise WebhookError(url, _connect_reason(exc)) from None
    except Exception as exc:  # InvalidURL, UnicodeError, ssl errors...: a bad URL or server is not our crash
        raise WebhookError(url, redact_url(f"{type(exc).__name__}: {_first_line(exc)}")) from None


async def _follow(
    client: httpx.AsyncClient, url: str, method: HttpMethod, params: Mapping[str, str], limits: _Limits
) -> Body:
    if method == "GET":
        # Merged into the URL's own query: httpx's params= would replace it.
        request = client.build_request("GET", httpx.URL(url).copy_merge_params(dict(params)))
    else:
        request = client.build_request("POST", url, data=dict(params))
    request.headers["Accept-Encoding"] = ACCEPT_ENCODING
    first = request
    for _ in range(MAX_REDIRECTS + 1):
        form = params if request.method == "POST" else None  # a 301/302/303 turns a POST into a GET
        if limits.auth_token is not None:
            sign_request(request, limits.auth_token, form)
        response = await client.send(request, stream=True, follow_redirects=False)
        try:
            if response.next_request is None:  # not a redirect
                if not response.is_success:
                    raise WebhookError(url, f"HTTP {response.status_code}")
                content = await _read(response, url, limits.max_bytes)
                return Body(content, response.status_code, str(response.url), request is not first)
        finally:
            await response.aclose()  # a redirect's body is never read
        request = response.next_request
    raise WebhookError(url, f"too many redirects (more than {MAX_REDIRECTS})")


class _Refused(Exception):
    """Raised by :func:`refuse_bad_redirects` inside httpx; :func:`request_body` names the original URL."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def refuse_bad_redirects(response: httpx.Response) -> None:
    """A response hook: refuse a redirect to anything but an http(s) URL, before httpx builds the request.

    httpx itself would raise ``InvalidURL`` for ``Location: app:x`` and follow nothing else, but with
    a message no one can act on; this one says where the redirect pointed.
    """
    if not response.has_redirect_location:
        return
    location = response.headers["Location"]
    shown = redact_url(location if len(location) <= 100 else f"{location[:100]}...")
    try:
        scheme = httpx.URL(urljoin(str(response.request.url), location)).scheme
    except Exception:  # InvalidURL, ValueError ("Invalid IPv6 URL")...
        raise _Refused(f"redirected to an invalid URL {shown!r}") from None
    if scheme not in _HTTP:
        raise _Refused(f"redirected to {shown!r}: only http:// and https:// are followed")


async def _read(response: httpx.Response, url: str, max_bytes: int) -> bytes:
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise WebhookError(url, f"response of {int(length)} bytes is larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > max_bytes:
                raise WebhookError(url, f"response is larger than {max_bytes} bytes")
            chunks.append(chunk)
    except httpx.StreamConsumed:
        # A response built in memory (a test transport's): httpx has read and decoded it already.
        if len(response.content) > max_bytes:
            raise WebhookError(url, f"response is larger than {max_bytes} bytes") from None
        return response.content
    encodings = [part.strip().lower() for part in response.headers.get("Content-Encoding", "").split(",")]
    return _decode(b"".join(chunks), encodings, url, max_bytes)


def _decode(body: bytes, encodings: list[str], url: str, max_bytes: int) -> bytes:
    """Undo each Content-Encoding (the last applied first), never producing more than ``max_bytes``."""
    for encoding in reversed(encodings):
        if encoding in ("", "identity"):
            continue
        if encoding in _GZIP:
            wbits = 16 + zlib.MAX_WBITS
        elif encoding == "deflate":
            # "deflate" is meant to be zlib-wrapped, but many servers send it raw: look at the header.
            wbits = zlib.MAX_WBITS if len(body) >= 2 and (body[0] << 8 | body[1]) % 31 == 0 else -zlib.MAX_WBITS
        else:
            raise WebhookError(url, f"unsupported Content-Encoding {encoding!r}")
        decoder = zlib.decompressobj(wbits)
        try:
            # max_length bounds the memory: zlib stops there, whatever the compression ratio.
            decoded = decoder.decompress(body, max_bytes + 1)
        except zlib.error as exc:
            raise WebhookError(url, f"invalid {encoding} body: {exc}") from None
        if len(decoded) > max_bytes:
            raise WebhookError(url, f"{encoding} response decodes to more than {max_bytes} bytes")
        body = decoded
    return body


def _connect_reason(exc: httpx.ConnectError) -> str:
    # httpx says "All connection attempts failed"; the refusal itself is further down the chain.
    cause: BaseException | None = exc
    for _ in range(8):  # bounded: a chain can in principle loop
        if cause is None:
            break
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        cause = cause.__cause__ or cause.__context__
    return redact_url(f"cannot connect: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
