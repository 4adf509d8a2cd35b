"""The one requester for every application URL: Voice URL, Refer URL, Dial action, Redirect.

Two kinds of URL give an RCML document:

* ``http://`` / ``https://``: requested with httpx, GET with the parameters in the query string or
  POST with them as a form body (Twilio semantics). Redirects are followed; a non-2xx answer, a
  timeout or a connection failure is a :class:`WebhookError`.
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

import logging
import re
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from urllib.parse import urljoin

import httpx

from models.config import Settings, is_safe_app_name
from models.rcml import Document, HttpMethod
from stasis_app import __version__
from stasis_app.errors import MarkupError, WebhookError
from stasis_app.rcml import parse_rcml

__all__ = ["Webhooks", "app_file", "read_app_file", "resolve_url"]

log = logging.getLogger(__name__)

_HTTP = ("http://", "https://")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def resolve_url(url: str, base: str | None = None) -> str:
    """The absolute application URL (``http(s)://...`` or ``app:NAME``) that ``url`` names.

    Raises :class:`WebhookError` for a relative URL without a base, or one that leaves the apps folder.
    """
    if _SCHEME.match(url):
        return url  # absolute; a scheme other than http(s) or app: is refused by fetch()
    if base is None:
        raise WebhookError(url, "relative URL outside any document")
    if base.startswith(_HTTP):
        return urljoin(base, url)
    if base.startswith("app:"):
        name = url.removeprefix("./").removeprefix("/")
        return f"app:{name.removesuffix('.xml')}"
    raise WebhookError(url, f"cannot resolve against {base}")


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
            follow_redirects=True,
            # Proxies and .netrc from the environment must not capture calls to the customer's app.
            trust_env=False,
            headers={"User-Agent": f"stasis-rcml/{__version__}"},
        )
        # path -> ((mtime_ns, size), text): an unchanged app costs one stat() per request.
        self._app_cache: dict[Path, tuple[tuple[int, int], str]] = {}

    async def __aenter__(self) -> Webhooks:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

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
        log.debug("%s %s %s", method, url, params)  # formatted only when DEBUG is on
        target = url
        try:
            target = resolve_url(url, base)
            if target.startswith("app:"):
                document, status = self._fetch_app(target, params), "ok"
            else:
                document, status = await self._fetch_http(target, method, params)
        except (WebhookError, MarkupError) as exc:
            # The caller says what the failure means for the call, in one line; here only the timing.
            log.debug("%s %s failed: %s (%d ms)", method, target, exc, _ms(started))
            raise
        log.debug("%s %s -> %s (%d ms)", method, target, status, _ms(started))
        return document

    async def _fetch_http(self, url: str, method: HttpMethod, params: Mapping[str, str]) -> tuple[Document, str]:
        if not url.startswith(_HTTP):
            raise WebhookError(url, "unsupported URL (need http://, https:// or app:NAME)")
        try:
            if method == "GET":
                # Merged into the URL's own query: httpx's params= would replace it.
                response = await self._client.get(httpx.URL(url).copy_merge_params(dict(params)))
            else:
                response = await self._client.post(url, data=dict(params))
        except httpx.TimeoutException:
            raise WebhookError(url, f"timed out after {self._timeout:g} s") from None
        except httpx.TooManyRedirects:
            raise WebhookError(url, "too many redirects") from None
        except httpx.ConnectError as exc:
            raise WebhookError(url, _connect_reason(exc)) from None
        except httpx.HTTPError as exc:
            raise WebhookError(url, f"{type(exc).__name__}: {_first_line(exc)}") from None
        if not response.is_success:
            raise WebhookError(url, f"HTTP {response.status_code}")
        # After a redirect, relative URLs in the document are relative to where it really came from.
        source = str(response.url.copy_with(query=None)) if response.history else url
        return parse_rcml(response.content, source), str(response.status_code)

    def _fetch_app(self, url: str, params: Mapping[str, str]) -> Document:
        # Synchronous on purpose: a stat() of a small local file (and a read when it changed) costs
        # less than handing it to a thread.
        return parse_rcml(self._read_app(url), url, params)

    def _read_app(self, url: str) -> str:
        path = app_file(self._settings.apps_path, url)
        try:
            stat = path.stat()
            key: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            key = None  # read_app_file() says what is wrong
        cached = self._app_cache.get(path)
        if key is not None and cached is not None and cached[0] == key:
            return cached[1]
        text = read_app_file(path, url)
        if key is not None:
            self._app_cache[path] = (key, text)
        return text


def read_app_file(path: Path, url: str) -> str:
    """The text of the local app file ``path`` (named ``url``); a :class:`WebhookError` if unreadable."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WebhookError(url, f"no such app file {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WebhookError(url, f"cannot read {path}: {_first_line(exc)}") from None


def _connect_reason(exc: httpx.ConnectError) -> str:
    # httpx says "All connection attempts failed"; the refusal itself is further down the chain.
    cause: BaseException | None = exc
    for _ in range(8):  # bounded: a chain can in principle loop
        if cause is None:
            break
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        cause = cause.__cause__ or cause.__context__
    return f"cannot connect: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
