"""What the fake Asterisk does with media it cannot find on its own disk, as Asterisk 22.10.1 does (probed on the
sandbox with a 404, a refused port and a good URL):

- ``sound:http(s)://...`` goes through the HTTP media cache: PlaybackStarted, a GET of the URL, then
  PlaybackFinished with state ``done`` when it got audio, ``failed`` for an error status, no connection, or a URL
  without a file extension (Asterisk picks the format by the extension);
- a bare ``http://...`` media is answered 201 and PlaybackStarted, and never finishes ("scheme is unsupported").

The GETs are real HTTP requests (the app's own HTTP side on a loopback port), or go to a mounted transport
(the rig's customer web app at ``http://app.test``); every one is recorded for the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

__all__ = ["Fetch", "MediaCache"]


@dataclass(frozen=True)
class Fetch:
    url: str
    status: int | None  # None: no connection
    body: bytes
    content_type: str


class MediaCache:
    """Asterisk's HTTP media cache: fetches URLs and says whether they gave something playable."""

    def __init__(self) -> None:
        self.mounts: dict[str, httpx.AsyncBaseTransport] = {}
        self.fetches: list[Fetch] = []
        self._client: httpx.AsyncClient | None = None

    async def playable(self, url: str) -> bool:
        """GET ``url``; True when it answered 2xx with a body and its path has a file extension."""
        if self._client is None:
            self._client = httpx.AsyncClient(mounts=self.mounts, trust_env=False, timeout=5.0)
        try:
            response = await self._client.get(url)
        except (httpx.HTTPError, httpx.InvalidURL, ValueError):  # Asterisk's curl fails the playback just the same
            self.fetches.append(Fetch(url, None, b"", ""))
            return False
        self.fetches.append(
            Fetch(url, response.status_code, response.content, response.headers.get("content-type", ""))
        )
        try:
            has_extension = "." in urlsplit(url).path.rsplit("/", 1)[-1]
        except ValueError:
            return False
        return response.is_success and bool(response.content) and has_extension

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
