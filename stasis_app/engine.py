"""The Stasis application: routes ARI events to legs, starts a session per incoming call, owns every task."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from models.ari import (
    AriEvent,
    ChannelDestroyed,
    ChannelEnteredBridge,
    ChannelHangupRequest,
    ChannelLeftBridge,
    ChannelStateChange,
    ChannelTransfer,
    PlaybackFinished,
    StasisEnd,
    StasisStart,
)
from models.config import NumberConfig, Settings
from models.rcml import Client, Dial, Document
from stasis_app.ari.protocol import AsteriskApi
from stasis_app.errors import AriError, CallGone
from stasis_app.legs import CallLeg, LegRole, LegState, Party
from stasis_app.session import CallSession, Requester, Services
from stasis_app.transfer import TransferHandler

__all__ = ["Engine"]

log = logging.getLogger(__name__)


class Engine:
    """Implements :class:`stasis_app.ari.protocol.EventHandler`; one per Stasis application."""

    def __init__(self, ari: AsteriskApi, webhooks: Requester, settings: Settings) -> None:
        self.settings = settings
        self.services = Services(ari, webhooks, settings, registry=self, on_session_end=self._session_ended)
        self.legs: dict[str, CallLeg] = {}  # identity map: one object per channel we own
        self.owner: dict[str, CallSession] = {}  # channel id -> the session it belongs to
        self.sessions: dict[str, asyncio.Task[None]] = {}
        self.transfers = TransferHandler(self)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._playbacks: dict[str, asyncio.Future[None]] = {}
        self._hangup_causes: dict[str, int] = {}

    # -- registry (what sessions ask of the engine) -------------------------------------------------------------

    def adopt(self, leg: CallLeg, session: CallSession) -> None:
        self.legs[leg.id] = leg
        self.owner[leg.id] = session

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def expect_playback(self, playback_id: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._playbacks[playback_id] = future
        future.add_done_callback(lambda _f: self._playbacks.pop(playback_id, None))
        return future

    def start_session(self, session: CallSession, document: Document | None = None) -> None:
        """Run a session's document (its Voice URL unless given one) in a task of its own."""
        self.sessions[session.id] = self.spawn(session.run(document), f"call-{session.leg.call_sid}")

    def _session_ended(self, session: CallSession) -> None:
        self.sessions.pop(session.id, None)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # A bug, not a call problem: say it once, with the traceback, for whoever fixes it.
            log.error("task %s failed", task.get_name(), exc_info=exc)

    # -- events ---------------------------------------------------------------------------------------------------

    def on_event(self, event: AriEvent) -> None:
        match event:
            case StasisStart(channel=channel, args=args):
                leg = self.legs.get(channel.id)
                if leg is not None:
                    leg.channel = channel
                    leg.set_state(LegState.UP, "answered (StasisStart)")
                elif channel.dialplan.exten == "h":
                    pass  # a dialplan whose patterns catch "h" re-enters Stasis after a hangup: not a call
                elif not args:
                    self._incoming(event)
                else:
                    # One of ours from before a restart: nobody runs it any more.
                    log.info("hanging up %s: not a call of this app's run", channel.name or channel.id)
                    self.spawn(self._hangup_stray(channel.id), "stray")
            case ChannelStateChange(channel=channel):
                leg = self.legs.get(channel.id)
                if leg is not None and channel.state == "Ringing" and leg.state is LegState.CALLING:
                    leg.set_state(LegState.RINGING, "far end ringing")
            case ChannelHangupRequest(channel=channel, cause=cause) if cause is not None:
                if channel.id in self.legs:
                    self._hangup_causes[channel.id] = cause
            case ChannelDestroyed(channel=channel, cause=cause):
                self._gone(channel.id, cause, "destroyed")
            case StasisEnd(channel=channel):
                self._gone(channel.id, self._hangup_causes.get(channel.id), "left Stasis")
            case ChannelEnteredBridge(bridge=bridge, channel=channel) if channel is not None:
                if (leg := self.legs.get(channel.id)) is not None:
                    leg.bridge_id = bridge.id
            case ChannelLeftBridge(bridge=bridge, channel=channel):
                if (leg := self.legs.get(channel.id)) is not None and leg.bridge_id == bridge.id:
                    leg.bridge_id = None
            case ChannelTransfer():
                self.transfers.on_transfer(event)
            case PlaybackFinished(playback=playback):
                if (future := self._playbacks.get(playback.id)) is not None and not future.done():
                    future.set_result(None)
            case _:
                pass

    def _gone(self, channel_id: str, cause: int | None, why: str) -> None:
        leg = self.legs.pop(channel_id, None)
        self.owner.pop(channel_id, None)
        self._hangup_causes.pop(channel_id, None)
        if leg is not None:
            leg.set_state(LegState.GONE, why, cause=cause)

    def _incoming(self, event: StasisStart) -> None:
        channel = event.channel
        exten = channel.dialplan.exten
        party = Party(
            from_=channel.caller.number,
            to=exten,
            caller_name=channel.caller.name,
            forwarded_from=channel.caller_rdnis or "",
        )
        number = self.settings.number(exten)
        peer_to_peer = number is None and exten in self.settings.routing.clients
        if peer_to_peer:
            number = NumberConfig(number=exten, voice_url=f"app:{exten}")  # never fetched: the Dial is ours
        if number is None:
            log.info("call from %s to %s: not a configured number; rejected", party.from_ or "?", exten)
            self.spawn(self._hangup_stray(channel.id, "unallocated"), "unknown-number")
            return
        state = LegState.UP if channel.state == "Up" else LegState.INBOUND
        leg = CallLeg(channel, LegRole.INBOUND, party, state=state)
        log.info(
            "call %s from %s to %s %s", leg.call_sid, party.from_ or "?", "client" if peer_to_peer else "number", exten
        )
        session = CallSession(self.services, leg, number, peer_to_peer=peer_to_peer)
        document = None
        if peer_to_peer:
            document = Document(verbs=(Dial(nouns=(Client(name=exten),)),), source=f"peer-to-peer call to {exten}")
        self.start_session(session, document)

    async def _hangup_stray(self, channel_id: str, reason: Any = "normal") -> None:
        try:
            await self.services.ari.hangup(channel_id, reason)
        except AriError:
            pass

    # -- connection ---------------------------------------------------------------------------------------------

    async def on_connected(self, reconnect: bool) -> None:
        """After a reconnect, re-read what Asterisk has: ARI does not replay the events we missed."""
        if not reconnect or not self.legs:
            return
        ari = self.services.ari
        try:
            listed_channels, listed_bridges = await asyncio.gather(ari.list_channels(), ari.list_bridges())
        except AriError as exc:
            log.warning("could not re-read channels and bridges after reconnecting: %s", exc)
            return
        channels = {channel.id: channel for channel in listed_channels}
        bridges = {bridge.id: bridge for bridge in listed_bridges}
        gone = [leg_id for leg_id in self.legs if leg_id not in channels]
        for leg_id in gone:
            self._gone(leg_id, None, "gone while the event stream was down")
        for leg_id, leg in list(self.legs.items()):
            if leg.role is LegRole.DIALED and channels[leg_id].state == "Up" and not leg.is_up:
                leg.set_state(LegState.UP, "answered while the event stream was down")
            bridge = bridges.get(leg.bridge_id or "")
            if leg.bridge_id is not None and (bridge is None or leg_id not in bridge.channels):
                leg.bridge_id = None
        for session in {id(s): s for s in self.owner.values()}.values():
            if session.bridge_id is not None and session.bridge_id not in bridges:
                session.bridge_id = None  # destroyed meanwhile: the next Dial makes a new one
        log.info("event stream back: %d calls, %d legs ended meanwhile", len(self.sessions), len(gone))

    async def close(self, timeout: float = 5.0) -> None:
        """Shut down: end every call we run (hanging up its legs, destroying its bridge), then stop."""
        for task in list(self.sessions.values()):
            task.cancel()
        pending = [task for task in self._tasks if not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        leftovers = [leg.id for leg in self.legs.values() if not leg.is_gone]
        for channel_id in leftovers:
            try:
                await self.services.ari.hangup(channel_id, "normal")
            except (CallGone, AriError):
                pass
