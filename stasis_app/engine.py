"""The Stasis application: routes ARI events to legs and bridges, starts a session per incoming call, owns every
task. It is the host sessions and transfers ask for what is shared (Asterisk, the requester, the identity maps).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Mapping
from typing import Any, cast

from models.ari import (
    AriEvent,
    BridgeDestroyed,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelEnteredBridge,
    ChannelHangupRequest,
    ChannelLeftBridge,
    ChannelStateChange,
    ChannelTransfer,
    PlaybackFinished,
    RecordingFailed,
    RecordingFinished,
    RecordingStarted,
    StasisEnd,
    StasisStart,
)
from models.config import NumberConfig, Settings
from models.rcml import Client, Dial, Document, HttpMethod
from stasis_app.admission import Admission
from stasis_app.ari.protocol import AsteriskApi, HangupReason
from stasis_app.bridges import Bridge, BridgeState
from stasis_app.callbacks import Callbacks
from stasis_app.cleanup import RetriedDeletes
from stasis_app.conference import Conferences
from stasis_app.errors import AriError
from stasis_app.legs import CallLeg, LegRole, LegState, Party
from stasis_app.logs import for_call
from stasis_app.media import MediaService
from stasis_app.reconcile import Reconciler
from stasis_app.session import CallSession, Requester
from stasis_app.transfer import Transfer as _Transfer
from stasis_app.transfer import Transfers, TransferSite
from stasis_app.whisper import run_whisper

__all__ = ["Engine"]

log = logging.getLogger(__name__)


class Engine:
    """Implements :class:`stasis_app.ari.protocol.EventHandler`; one per Stasis application."""

    def __init__(
        self, ari: AsteriskApi, webhooks: Requester, settings: Settings, *, media: MediaService | None = None
    ) -> None:
        # A failed hangup or bridge destroy is retried, not forgotten; every other call passes through.
        self.ari: AsteriskApi = cast(AsteriskApi, RetriedDeletes(ari))
        self.webhooks = webhooks
        self.settings = settings
        self.media = media or MediaService(settings)  # speech and media URLs for Say and Play
        self.legs: dict[str, CallLeg] = {}  # identity map: one object per channel we own
        self.owner: dict[str, CallSession] = {}  # channel id -> the session it belongs to
        self.bridges: dict[str, Bridge] = {}  # identity map: one object per bridge we made
        self.sessions: dict[str, asyncio.Task[None]] = {}
        self.transfers = Transfers(self)
        self.callbacks = Callbacks(webhooks)
        self.conferences = Conferences(ari, self.callbacks, self.bridges)  # rooms no single call owns
        self.admission = Admission(settings.limits)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.reconciler = Reconciler(self, settings.ari.reconcile_interval)

    # -- what sessions and transfers ask of the engine --------------------------------------------------------

    def register(self, leg: CallLeg, session: CallSession) -> None:
        self.legs[leg.id] = leg
        self.owner[leg.id] = session
        session.leg_ids.add(leg.id)

    def new_bridge(self, owner: CallSession, name: str) -> Bridge:
        bridge = Bridge(secrets.token_hex(16), name, owner)
        self.bridges[bridge.id] = bridge
        return bridge

    def session_ended(self, session: CallSession) -> None:
        self.sessions.pop(session.id, None)
        bridge = session.own_bridge
        if bridge is not None and bridge.is_gone:
            self.bridges.pop(bridge.id, None)
        # The session's own legs only: scanning every leg of every call made each call's end cost O(calls).
        for leg_id in session.leg_ids:
            leg = self.legs.get(leg_id)
            # A refused originate made no channel, so no event will clear it: the session's end does.
            if leg is not None and leg.is_gone and self.owner.get(leg_id) is session:
                self._forget(leg_id)

    def in_conference(self, channel_id: str) -> bool:
        return self.conferences.room_of(channel_id) is not None

    def site(self, channel_id: str) -> tuple[CallLeg, TransferSite] | None:
        leg, session = self.legs.get(channel_id), self.owner.get(channel_id)
        return (leg, session) if leg is not None and session is not None else None

    async def fetch(self, url: str, method: HttpMethod, params: Mapping[str, str]) -> Document:
        return await self.webhooks.fetch(url, method, params)

    def take_over(
        self, site: TransferSite, leg: CallLeg, bridge: Bridge, document: Document, watcher: _Transfer | None
    ) -> None:
        session = CallSession(self, leg, site.number, bridge=bridge, watcher=watcher)
        self.start_session(session, document)

    async def whisper(self, dialer: CallSession, leg: CallLeg, url: str, method: HttpMethod) -> str | None:
        return await run_whisper(self, dialer, leg, url, method)

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def start_session(self, session: CallSession, document: Document | None = None) -> None:
        """Run a session's document (its Voice URL unless given one) in a task of its own."""
        self.sessions[session.id] = self.spawn(session.run(document), f"call-{session.leg.call_sid}")

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
                if leg is not None and leg.role is LegRole.DIALED:
                    leg.channel = channel
                    leg.set_state(LegState.UP, "answered (StasisStart)")
                elif leg is not None:
                    pass  # started already: the reconcile found it before this event came
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
                if leg is not None:
                    if channel.state == "Ringing" and leg.state is LegState.CALLING:
                        leg.set_state(LegState.RINGING, "far end ringing")
                    leg.deliver(event)
            case ChannelDestroyed(channel=channel, cause=cause):
                self._gone(channel.id, cause, "destroyed")
            case ChannelHangupRequest(channel=channel, cause=cause):
                if (leg := self.legs.get(channel.id)) is not None:
                    leg.hanging_up = True
                    if cause is not None:
                        leg.hangup_cause = cause
            case StasisEnd(channel=channel):
                leg = self.legs.get(channel.id)
                self._gone(channel.id, leg.hangup_cause if leg else None, "left Stasis")
            case ChannelEnteredBridge(bridge=snapshot, channel=channel) if channel is not None:
                if (bridge := self.bridges.get(snapshot.id)) is not None:
                    bridge.entered(channel.id)
                    if (leg := self.legs.get(channel.id)) is not None:
                        leg.bridge = bridge
            case ChannelLeftBridge(bridge=snapshot, channel=channel):
                if (bridge := self.bridges.get(snapshot.id)) is not None:
                    bridge.left(channel.id)
                if (leg := self.legs.get(channel.id)) is not None and leg.bridge is bridge:
                    leg.bridge = None
            case BridgeDestroyed(bridge=snapshot):
                if (bridge := self.bridges.pop(snapshot.id, None)) is not None:
                    bridge.set_state(BridgeState.GONE, "destroyed (BridgeDestroyed)")
            case ChannelTransfer():
                self.transfers.on_transfer(event)
            case PlaybackFinished(playback=playback):
                kind, _, target = playback.target_uri.partition(":")
                if kind == "channel" and (leg := self.legs.get(target)) is not None:
                    leg.deliver(event)
            case (
                RecordingStarted(recording=recording)
                | RecordingFinished(recording=recording)
                | RecordingFailed(recording=recording)
            ):
                kind, _, target = recording.target_uri.partition(":")
                if kind == "channel" and (leg := self.legs.get(target)) is not None:
                    leg.deliver(event)
                elif kind == "bridge" and (bridge := self.bridges.get(target)) is not None:
                    bridge.recording_ended(recording)  # a Dial's record
            case ChannelDtmfReceived(channel=channel):
                if (leg := self.legs.get(channel.id)) is not None:
                    leg.deliver(event)
            case _:
                pass

    def leg_gone(self, channel_id: str, why: str) -> None:
        """A channel we tracked is gone without an event saying so (the reconcile found out)."""
        self._gone(channel_id, None, why)

    def _gone(self, channel_id: str, cause: int | None, why: str) -> None:
        leg = self._forget(channel_id)
        if leg is not None:
            leg.set_state(LegState.GONE, why, cause=cause)

    def _forget(self, channel_id: str) -> CallLeg | None:
        leg = self.legs.pop(channel_id, None)
        self.owner.pop(channel_id, None)
        if leg is not None and leg.bridge is not None:
            leg.bridge.left(channel_id)
            leg.bridge = None
        return leg

    def _incoming(self, event: StasisStart) -> None:
        channel = event.channel
        exten = channel.dialplan.exten
        party = Party(
            from_=channel.caller.number,
            to=exten,
            caller_name=channel.caller.name,
            forwarded_from=channel.caller_rdnis or "",
        )
        number = self.settings.incoming_number(exten)
        peer_to_peer = number is None and exten in self.settings.routing.clients
        if peer_to_peer:
            number = NumberConfig(number=exten, voice_url=f"app:{exten}")  # never fetched: the Dial is ours
        if number is None:
            log.info("call from %s to %s: not a configured number; rejected", party.from_ or "?", exten)
            self.spawn(self._hangup_stray(channel.id, "unallocated"), "unknown-number")
            return
        if not self.admission.admit(len(self.sessions), event.timestamp, self.ari.answer_ms()):
            self.spawn(self._hangup_stray(channel.id, "congestion"), "refused")
            return
        state = LegState.UP if channel.state == "Up" else LegState.INBOUND
        leg = CallLeg(channel, LegRole.INBOUND, party, state=state)
        with for_call(leg.call_sid):
            kind = "client" if peer_to_peer else "number"
            log.info("call from %s to %s %s (%s)", party.from_ or "?", kind, exten, channel.name)
        session = CallSession(self, leg, number, peer_to_peer=peer_to_peer)
        document = None
        if peer_to_peer:
            document = Document(verbs=(Dial(nouns=(Client(name=exten),)),), source=f"peer-to-peer call to {exten}")
        self.start_session(session, document)

    async def _hangup_stray(self, channel_id: str, reason: HangupReason = "normal") -> None:
        try:
            await self.ari.hangup(channel_id, reason)
        except AriError:
            pass

    # -- connection ---------------------------------------------------------------------------------------------

    async def on_connected(self, reconnect: bool) -> None:
        """Reconcile with what Asterisk has (ARI does not replay the events we missed): see :mod:`.reconcile`."""
        self.admission.start()
        await self.reconciler.on_connected(reconnect)

    async def close(self, timeout: float = 5.0) -> None:
        """Shut down: end every call we run (hanging up its legs, destroying its bridge), then stop."""
        await self.admission.stop()
        await self.reconciler.stop()
        for task in list(self.sessions.values()):
            task.cancel()
        pending = [task for task in self._tasks if not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        for leg in [leg for leg in self.legs.values() if not leg.is_gone and not leg.virtual]:
            await self._hangup_stray(leg.id)
        for bridge in [bridge for bridge in self.bridges.values() if not bridge.is_gone]:
            await bridge.destroy(self.ari)
        await self.callbacks.drain(timeout)
