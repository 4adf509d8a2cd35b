"""The app's own HTTP side (aiohttp.web), bound as ``[http]`` says (127.0.0.1:8090 by default).

It serves what Asterisk's HTTP media cache and the customer's app fetch from us:

* ``GET /tts/<sha256>.wav``: speech rendered for ``<Say>`` (:mod:`stasis_app.tts`);
* ``GET /apps/<file>``: an audio file of the apps folder, for a relative ``<Play>`` in an ``app:`` document
  (one plain file name with an audio extension: no folders, no ``..``, never the RCML files themselves);
* ``GET /recordings/<name>.wav``: a recording Asterisk stored, read over ARI (``RecordingUrl``).

Anything else is 404. Each request is one log line (``http: GET /tts/... -> 200``).
"""

from __future__ import annotations

import logging
import re
from types import TracebackType
from typing import Self

from aiohttp import web
from aiohttp.typedefs import Handler

from models.config import Settings
from stasis_app.ari.protocol import AsteriskApi
from stasis_app.errors import AriError, CallGone, ConfigError
from stasis_app.media import MediaService, safe_media_name
from stasis_app.tts import KEY

__all__ = ["HttpSide"]

log = logging.getLogger(__name__)

_RECORDING = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
_SHUTDOWN_S = 2.0  # seconds a request in flight may still take when the app stops


class HttpSide:
    """The HTTP server: ``async with HttpSide(settings, media, ari) as http:``; :attr:`base_url` once started.

    When ``[http] public_url`` is unset and ``port`` is 0, the port the server really got goes into
    ``media.base_url``, so the URLs given to Asterisk point at it.
    """

    def __init__(self, settings: Settings, media: MediaService, ari: AsteriskApi) -> None:
        self.settings = settings
        self.media = media
        self.ari = ari
        app = web.Application(middlewares=[_log_request])
        app.router.add_get(r"/tts/{key:[0-9a-f]{64}}.wav", self._speech)
        app.router.add_get("/apps/{name}", self._app_file)
        app.router.add_get("/recordings/{name}.wav", self._recording)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_S)
        self.base_url = settings.http.base_url

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen; :class:`ConfigError` (one line) when the address cannot be bound."""
        http = self.settings.http
        await self._runner.setup()
        site = web.TCPSite(self._runner, http.bind, http.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise ConfigError(f"[http] cannot listen on {http.bind}:{http.port}: {exc.strerror or exc}") from None
        if http.public_url is None:
            host, port = self._runner.addresses[0][:2]
            self.base_url = f"http://{host}:{port}"
            self.media.base_url = self.base_url
        log.info("http: serving speech, apps-folder media and recordings on %s", self.base_url)

    async def stop(self) -> None:
        """Stop listening and close the connections (requests in flight get a moment to finish)."""
        await self._runner.cleanup()

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        path = self.media.speech.path(request.match_info["key"])
        if KEY.fullmatch(path.stem) is None or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Content-Type": "audio/wav"})

    async def _app_file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if not safe_media_name(name):
            raise web.HTTPNotFound()
        path = self.settings.apps_path / name
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    async def _recording(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if _RECORDING.fullmatch(name) is None or ".." in name:
            raise web.HTTPNotFound()
        try:
            audio = await self.ari.stored_recording_file(name)
        except CallGone:
            raise web.HTTPNotFound() from None
        except AriError as exc:
            log.warning("http: recording %s: %s", name, exc)
            raise web.HTTPBadGateway() from None
        response = web.StreamResponse(headers={"Content-Type": "audio/wav"})
        response.content_length = len(audio)
        await response.prepare(request)
        await response.write(audio)
        await response.write_eof()
        return response


@web.middleware
async def _log_request(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        log.info("http: %s %s -> %d", request.method, request.path, exc.status)
        raise
    agent = request.headers.get("User-Agent", "-")
    log.info("http: %s %s -> %d (%s)", request.method, request.path, response.status, agent)
    return response
