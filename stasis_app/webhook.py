"""The one requester for every application URL: Voice URL, Refer URL, Dial action, Redirect.

Two kinds of URL give an RCML document:

* ``http://`` / ``https://``: requested with httpx, GET with the parameters in the query string or
  POST with them as a form body (Twilio semantics), signed with ``X-Twilio-Signature`` when an auth
  token is configured. Redirects are followed; a non-2xx answer, a timeout, a connection failure,
  an oversized body or anything else that goes wrong is a :class:`WebhookError` (see
  :mod:`stasis_app.webhook_http` for the bounds).
* ``app:NAME``: the local file ``<apps_path>/NAME.xml``, read on every request (so editing an app
  takes effect on the next call), in which every ``$core_X`` placeholder is replaced by the request
  parameter ``X``, as Restcomm's visual designer does, after parsing and in attribute values and
  text only (see :func:`stasis_app.rcml.parse_rcml`). An unknown ``$core_X`` becomes the empty string.

A relative URL (``action="next.xml"``) is resolved against ``base``, the URL of the document that
contained it: with :func:`urllib.parse.urljoin` for an http(s) base; for an ``app:`` base, local apps
live in one flat folder, so ``next.xml``, ``./next.xml``, ``/next.xml`` and ``next`` all name the
sibling ``app:next``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from urllib.parse import urljoin

import httpx

from models.config import NumberConfig, Settings, is_safe_app_name
from models.rcml import Document, HttpMethod
from stasis_app import __version__
from stasis_app.errors import MarkupError, WebhookError
from stasis_app.rcml import parse_rcml
from stasis_app.rcml_source import placeholder_names
from stasis_app.redact import redact_url
from stasis_app.webhook_http import refuse_bad_redirects, request_body

__all__ = ["ERROR_DOCUMENT", "ERROR_FETCH", "Webhooks", "app_file", "read_app_file", "resolve_url"]

log = logging.getLogger(__name__)

_HTTP = ("http://", "https://")
_PARSED_PER_APP = 64  # documents kept per app file that takes $core_ parameters, one per set of their values
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")

# Twilio's error codes, sent as ErrorCode to a Voice Fallback URL: the document could not be fetched,
# or it was not valid markup.
ERROR_FETCH = "11200"
ERROR_DOCUMENT = "12100"


def resolve_url(url: str, base: str | None = None) -> str:
    """The absolute application URL (``http(s)://...`` or ``app:NAME``) that ``url`` names.

    Raises :class:`WebhookError` for a relative URL without a base, or one that leaves the apps folder.
    """
    if _SCHEME.match(url):
        return url  # absolute; a scheme other than http(s) or app: is refused by fetch()
    if base is None:
        raise WebhookError(url, "relative URL outside any document")
    if base.startswith(_HTTP):
        try:
            return urljoin(base, url)
        except ValueError as exc:  # "Invalid IPv6 URL" and the like
            raise WebhookError(url, f"cannot resolve against {redact_url(base)}: {exc}") from None
    if base.startswith("app:"):
        name = url.removeprefix("./").removeprefix("/")
        return f"app:{name.removesuffix('.xml')}"
    raise WebhookError(url, f"cannot resolve against {redact_url(base)}")


def app_file(apps_path: Path, url: str) -> Path:
    """The file an ``app:NAME`` URL names (``NAME`` or ``NAME.xml``), refusing names that leave the folder."""
    name = url.removeprefix("app:").removesuffix(".xml")
    if not is_safe_app_name(name):
        raise WebhookError(url, "app name must be a plain file name ([A-Za-z0-9_.-], no slash, no ..)")
    return apps_path / f"{name}.xml"


class Webhooks:
    """Fetches and parses the RCML document behind any application URL.

    One shared :class:`httpx.AsyncClient` serves every request. Pass ``client`` to use your own (it is
    then yours to close) or ``transport`` (e.g. :class:`httpx.MockTransport`) to keep the default
    client but fake the network.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._timeout = settings.webhooks.timeout
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            transport=transport,
            timeout=self._timeout,
            follow_redirects=False,  # followed by request_body(), hop by hop, within one deadline
            # Proxies and .netrc from the environment must not capture calls to the customer's app.
            trust_env=False,
            headers={"User-Agent": f"stasis-rcml/{__version__}"},
            event_hooks={"response": [refuse_bad_redirects]},
        )
        # url -> (its file, (mtime_ns, size), text): an unchanged app costs one stat() per request. Only URLs
        # that named an existing file are kept, so documents naming other ones cannot grow it.
        self._app_cache: dict[str, tuple[Path, tuple[int, int], str]] = {}
        # url -> (text, the $core_ names it uses, documents by those names' values): the same text with the same
        # values always parses the same (frozen), and a transfer's refer app then costs no parse on its way to the
        # target's INVITE (its ReferTarget is one of a few extensions; Transferor/Transferee change every call).
        self._parsed: dict[str, tuple[str, tuple[str, ...], dict[tuple[str, ...], Document]]] = {}

    async def __aenter__(self) -> Webhooks:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def warm_up(self) -> None:
        """One request to a throw-away loopback server, so the HTTP stack's lazy set-up (about 30 ms of imports
        and backend start-up on the first request) is paid at start, not by the first caller."""

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()

        try:
            server = await asyncio.start_server(answer, "127.0.0.1", 0)
        except OSError:
            return  # no loopback to warm up on: the first request pays, nothing worse
        port = server.sockets[0].getsockname()[1]
        try:
            async with asyncio.timeout(2):
                await self._client.get(f"http://127.0.0.1:{port}/warm-up")
        except (httpx.HTTPError, TimeoutError, OSError):
            pass  # only a warm-up
        finally:
            server.close()
            await server.wait_closed()

    async def aclose(self) -> None:
        """Close the HTTP client (unless it was given to us)."""
        if self._owns_client:
            await self._client.aclose()

    async def fetch(
        self, url: str, method: HttpMethod, params: Mapping[str, str], *, base: str | None = None
    ) -> Document:
        """Request ``url`` (relative URLs resolve against ``base``) and parse the RCML it gives.

        Raises :class:`WebhookError` when there is no document, :class:`MarkupError` when it is not RCML.
        The document's ``source`` is the resolved URL: pass it as ``base`` for the URLs it contains.
        """
        started = time.monotonic()
        log.debug("%s %s %s", method, redact_url(url), params)  # formatted only when DEBUG is on
        target = url
        try:
            target = resolve_url(url, base)
            if target.startswith("app:"):
                document, status = self._fetch_app(target, params), "ok"
            else:
                document, status = await self._fetch_http(target, method, params)
        except (WebhookError, MarkupError) as exc:
            # The caller says what the failure means for the call, in one line; here only the timing.
            log.debug("%s %s failed: %s (%d ms)", method, redact_url(target), exc, _ms(started))
            raise
        log.debug("%s %s -> %s (%d ms)", method, redact_url(target), status, _ms(started))
        return document

    async def notify(self, url: str, method: HttpMethod, params: Mapping[str, str], *, base: str | None = None) -> None:
        """Request a status callback URL (``recordingStatusCallback``) and ignore what it answers.

        Meant to run in a task of its own: it never raises, a failure is one WARNING line, and it has the same
        deadline and bounds as every other request. An ``app:`` URL has nobody to tell and is skipped."""
        started = time.monotonic()
        target = url
        try:
            target = resolve_url(url, base)
            if target.startswith("app:"):
                log.debug("status callback %s skipped: a local app cannot receive callbacks", target)
                return
            if not target.startswith(_HTTP):
                raise WebhookError(target, "unsupported URL (need http:// or https://)")
            webhooks = self._settings.webhooks
            body = await request_body(
                self._client,
                target,
                method,
                params,
                timeout=self._timeout,
                max_bytes=webhooks.max_response_bytes,
                auth_token=webhooks.auth_token,
            )
        except WebhookError as exc:
            log.warning("status callback failed: %s", exc)
            return
        log.debug("%s %s -> %s (%d ms)", method, redact_url(target), body.status, _ms(started))

    async def fetch_voice(self, number: NumberConfig, params: Mapping[str, str]) -> Document:
        """The document a new call on ``number`` runs: its Voice URL, or its Voice Fallback URL when that fails.

        The fallback (if the number has one) is requested when the Voice URL gives no document or an
        invalid one, with ``ErrorCode`` (11200: not fetched, 12100: invalid RCML) and ``ErrorUrl`` added,
        as Twilio does; the first failure is logged as a WARNING. Raises the fallback's error when it
        fails too, or the Voice URL's when there is no fallback.
        """
        try:
            return await self.fetch(number.voice_url, number.voice_method, params)
        except (WebhookError, MarkupError) as exc:
            if number.voice_fallback_url is None:
                raise
            code = ERROR_DOCUMENT if isinstance(exc, MarkupError) else ERROR_FETCH
            log.warning("number %s: %s; trying its Voice Fallback URL", number.number, exc)
        extra = {"ErrorCode": code, "ErrorUrl": redact_url(number.voice_url)}
        return await self.fetch(number.voice_fallback_url, number.voice_fallback_method, {**params, **extra})

    async def _fetch_http(self, url: str, method: HttpMethod, params: Mapping[str, str]) -> tuple[Document, str]:
        if not url.startswith(_HTTP):
            raise WebhookError(url, "unsupported URL (need http://, https:// or app:NAME)")
        webhooks = self._settings.webhooks
        body = await request_body(
            self._client,
            url,
            method,
            params,
            timeout=self._timeout,
            max_bytes=webhooks.max_response_bytes,
            auth_token=webhooks.auth_token,
        )
        # After a redirect, relative URLs in the document are relative to where it really came from.
        source = str(httpx.URL(body.url).copy_with(query=None)) if body.redirected else url
        return parse_rcml(body.content, source), str(body.status)

    def _fetch_app(self, url: str, params: Mapping[str, str]) -> Document:
        # Synchronous on purpose: a stat() of a small local file (and a read when it changed) costs
        # less than handing it to a thread.
        text = self._read_app(url)
        parsed = self._parsed.get(url)
        if parsed is None or parsed[0] is not text:  # _read_app hands back the same str while the file is unchanged
            if text.count("core_") != text.count("$core_"):
                return parse_rcml(text, url, params)  # a placeholder behind an entity (&#36;core_X): parse each time
            parsed = (text, placeholder_names(text), {})
            self._parsed[url] = parsed
        _, names, documents = parsed
        values = tuple(params.get(name, "") for name in names)
        document = documents.get(values)
        if document is None:
            document = parse_rcml(text, url, params)
            if len(documents) >= _PARSED_PER_APP:
                del documents[next(iter(documents))]  # the oldest: a bound, not an LRU (hits do not reorder)
            documents[values] = document
        return document

    def _read_app(self, url: str) -> str:
        cached = self._app_cache.get(url)
        # The name is checked and the path built once per URL that named a file that was there.
        path = cached[0] if cached is not None else app_file(self._settings.apps_path, url)
        try:
            stat = os.stat(path)
            key: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            key = None  # read_app_file() says what is wrong
        if key is not None and cached is not None and cached[1] == key:
            return cached[2]
        text = read_app_file(path, url, self._settings.webhooks.max_response_bytes)
        if key is not None:
            self._app_cache[url] = (path, key, text)
        return text


def read_app_file(path: Path, url: str, max_bytes: int | None = None) -> str:
    """The text of the local app file ``path`` (named ``url``); a :class:`WebhookError` if unreadable.

    With ``max_bytes``, a larger file is refused before it is read (the same bound as an HTTP response).
    """
    try:
        if max_bytes is not None and path.stat().st_size > max_bytes:
            raise WebhookError(url, f"app file {path} is larger than {max_bytes} bytes")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WebhookError(url, f"no such app file {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WebhookError(url, f"cannot read {path}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
