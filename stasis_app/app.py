"""Wires the pieces together: the ARI client, the webhook requester, the app's own HTTP side and the call engine."""

from __future__ import annotations

import contextlib
import gc
import logging
from pathlib import Path

from models.config import Settings
from stasis_app.ari.client import AriClient
from stasis_app.ari.events import EventLog
from stasis_app.engine import Engine
from stasis_app.errors import AriError, ConfigError
from stasis_app.http_side import HttpSide
from stasis_app.media import MediaService
from stasis_app.redact import redact_url
from stasis_app.safety import refuse_unsafe, startup_warnings
from stasis_app.webhook import Webhooks

__all__ = ["run_app"]

log = logging.getLogger(__name__)

# ChannelTransfer and transfer_progress appeared in Asterisk 22.3.0, 21.8.0 and 20.13.0.
_REFER_SINCE = {20: (20, 13), 21: (21, 8), 22: (22, 3)}
# Asterisk crashes on a REFER with "Refer-Sub: false" in ari-only mode before 22.11.0 (its issue #2021).
_REFER_SUB_FIXED = (22, 11)


async def run_app(settings: Settings, *, event_log: Path | None = None) -> None:
    """Run the Stasis application until cancelled; on the way out, end every call it runs.

    ``event_log``: append every ARI websocket message, as received, to this JSON Lines file.
    Raises :class:`ConfigError` before connecting when the deployment is unsafe (see :mod:`stasis_app.safety`).
    """
    refuse_unsafe(settings)
    for warning in startup_warnings(settings):
        log.warning("%s", warning)
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(_open_event_log(event_log)) if event_log is not None else None
        await _run(settings, sink)


def _open_event_log(path: Path) -> EventLog:
    try:
        return EventLog(path)
    except OSError as exc:
        raise ConfigError(f"--event-log {path}: cannot open: {exc.strerror or exc}") from None


async def _run(settings: Settings, sink: EventLog | None) -> None:
    media = MediaService(settings)
    async with (
        AriClient(settings.ari, event_sink=sink) as ari,
        Webhooks(settings) as webhooks,
        HttpSide(settings, media, ari),
    ):
        await webhooks.warm_up()
        engine = Engine(ari, webhooks, settings, media=media)
        # What start-up built (modules, pydantic schemas, the parsed apps) lives as long as the process: out of
        # the garbage collector's sight, so no collection walks it again while calls run.
        gc.collect()
        gc.freeze()
        log.info(
            "stasis-rcml: app %r on %s, %d numbers",
            settings.ari.app,
            redact_url(settings.ari.url),
            len(settings.numbers),
        )
        try:
            await ari.run(_Startup(engine, ari))
        finally:
            await engine.close()


class _Startup:
    """The engine as event handler, plus a one-time check of Asterisk's version on the first connect."""

    def __init__(self, engine: Engine, ari: AriClient) -> None:
        self.engine = engine
        self.ari = ari
        self.on_event = engine.on_event
        self._checked = False

    async def on_connected(self, reconnect: bool) -> None:
        if not self._checked:
            self._checked = True
            await self._check_version()
        await self.engine.on_connected(reconnect)

    async def _check_version(self) -> None:
        try:
            info = await self.ari.asterisk_info()
        except AriError as exc:
            log.warning("could not read Asterisk's version: %s", exc)
            return
        version = str(info.get("system", {}).get("version", ""))
        log.info("connected to Asterisk %s", version or "(unknown version)")
        parts = version.split(".")
        try:
            major_minor = (int(parts[0]), int(parts[1]))
        except (IndexError, ValueError):
            return
        if major_minor < _REFER_SINCE.get(major_minor[0], (0, 0)) or major_minor[0] < 20:
            log.warning("Asterisk %s has no ARI transfer handling (22.3+ needed): REFERs will not reach us", version)
        elif major_minor < _REFER_SUB_FIXED:
            log.warning(
                "Asterisk %s crashes on a REFER with 'Refer-Sub: false' in ari-only mode (issue #2021, fixed "
                "in 22.11.0); upgrade before exposing it to phones that send one",
                version,
            )
