"""The reconcile: what Asterisk holds, held against what the engine tracks, so that nothing is left behind.

A pass lists every channel and bridge and then:

- on a reconnect, first re-reads what the engine knows (events missed while the socket was down are not
  replayed): legs and bridges gone meanwhile end, bridge members and answers are brought up to date;
- a channel in our Stasis application (its dialplan location is ``Stasis(<app>...)``) that no running call owns:
  - still ringing, entered from the dialplan (no Stasis arguments): a call whose ``StasisStart`` we never saw
    (the socket was silently dead, or the previous run died before it got there). Nothing happened on it yet,
    so it is started now as the new call it is, through the same path as the event would have taken;
  - anything else (answered, or one the app originated: arguments ``dial``) is hung up. It belongs to a run
    that is over (a crash, a SIGKILL) or to a call that ended without it; its RCML state, CallSid and webhooks
    died with that run, so there is no document step to resume: adopting it would mean guessing;
- a bridge named ``rcml-*`` (:data:`stasis_app.bridges.PREFIX`) that no running call owns is destroyed;
- legs and bridges whose call ended and that Asterisk no longer lists are dropped from the engine's maps.

It runs at the first connect (a restarted app cleans the previous run's calls), after every reconnect and every
``[ari] reconcile_interval`` seconds. A periodic pass acts only on what it found unowned in the previous pass
too, so a channel whose ``StasisStart`` is merely on its way is never taken for a stray. One log line per thing
removed or started, and one summary line.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from models.ari import AriEvent, Channel, StasisStart
from models.ari import Bridge as BridgeSnapshot
from models.config import Settings
from stasis_app.ari.protocol import AsteriskApi
from stasis_app.bridges import PREFIX, Bridge, BridgeState
from stasis_app.cleanup import RetriedDeletes
from stasis_app.conference import Room, RoomState
from stasis_app.errors import AriError, CallGone
from stasis_app.legs import CallLeg, LegRole, LegState
from stasis_app.session import CallSession

__all__ = ["ReconcileHost", "Reconciler", "in_app"]

log = logging.getLogger(__name__)


def in_app(channel: Channel, app: str) -> bool:
    """Whether ``channel`` is in Stasis application ``app`` now: ``app_name`` "Stasis" with ``app_data``
    ``app`` or ``app,ARGS`` (as Asterisk 22.10.1 reports both an inbound and an answered originated channel)."""
    dialplan = channel.dialplan
    return dialplan.app_name == "Stasis" and dialplan.app_data.split(",", 1)[0] == app


class ReconcileHost(Protocol):
    """What the reconcile reads and changes: the engine's identity maps, and its event entry."""

    ari: AsteriskApi
    settings: Settings
    legs: dict[str, CallLeg]
    owner: dict[str, CallSession]
    bridges: dict[str, Bridge]
    sessions: dict[str, asyncio.Task[None]]

    def on_event(self, event: AriEvent) -> None: ...

    def leg_gone(self, channel_id: str, why: str) -> None: ...


class Reconciler:
    """Runs the passes described in the module docstring for one engine."""

    def __init__(self, host: ReconcileHost, interval: float) -> None:
        self.host = host
        self.interval = interval  # seconds between periodic passes; 0: none
        self.passes = 0
        self._suspects: set[str] = set()  # what the previous periodic pass found unowned
        self._lock = asyncio.Lock()
        self._loop: asyncio.Task[None] | None = None

    @property
    def app(self) -> str:
        return self.host.settings.ari.app

    def census(self) -> str:
        """What the engine tracks now, in words."""
        host = self.host
        return f"{len(host.sessions)} calls, {len(host.legs)} legs, {len(host.bridges)} bridges tracked"

    async def on_connected(self, reconnect: bool) -> None:
        """A pass after the event stream (re)connected, and the periodic passes from the first one on."""
        await self.run_once("reconnect" if reconnect else "first connect", resync=reconnect)
        if self._loop is None and self.interval > 0:
            self._loop = asyncio.ensure_future(self._periodic())
            self._loop.set_name("reconcile")

    async def stop(self) -> None:
        """No more passes or retried deletes; says what the engine still tracks."""
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        if isinstance(self.host.ari, RetriedDeletes):
            await self.host.ari.stop()
        log.info("stopping: %s", self.census())

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.run_once("periodic", resync=False)

    async def run_once(self, why: str, *, resync: bool) -> None:
        """One pass; ``resync``: re-read the engine's own legs and bridges first (after a reconnect)."""
        async with self._lock:
            try:
                channels, bridges = await asyncio.gather(self.host.ari.list_channels(), self.host.ari.list_bridges())
            except AriError as exc:
                log.warning("reconcile (%s): could not list channels and bridges: %s", why, exc)
                return
            self.passes += 1
            listed = {channel.id: channel for channel in channels}
            if resync:
                self._resync(listed, {bridge.id: bridge for bridge in bridges})
            self._prune(listed, {bridge.id for bridge in bridges})
            stray_channels = [c for c in channels if in_app(c, self.app) and not self._owns_channel(c.id)]
            stray_bridges = [b for b in bridges if b.name.startswith(PREFIX) and not self._owns_bridge(b.id)]
            if why == "periodic":
                found = {c.id for c in stray_channels} | {b.id for b in stray_bridges}
                stray_channels = [c for c in stray_channels if c.id in self._suspects]
                stray_bridges = [b for b in stray_bridges if b.id in self._suspects]
                self._suspects = found - {c.id for c in stray_channels} - {b.id for b in stray_bridges}
            else:
                self._suspects.clear()
            started = hung_up = destroyed = 0
            for channel in stray_channels:
                if self._missed_call(channel):
                    log.info("reconcile: %s (%s) entered Stasis unseen; starting it", channel.name, channel.state)
                    self.host.on_event(StasisStart(channel=channel, application=self.app))
                    started += 1
                else:
                    hung_up += await self._hang_up(channel)
            for bridge in stray_bridges:
                destroyed += await self._destroy(bridge)
            if started or hung_up or destroyed:
                level = logging.WARNING if why == "periodic" else logging.INFO
                log.log(
                    level,
                    "reconcile (%s): %d missed calls started, %d channels hung up, %d bridges destroyed; %s",
                    why,
                    started,
                    hung_up,
                    destroyed,
                    self.census(),
                )

    # -- ownership ----------------------------------------------------------------------------------------

    def _running(self, owner: object) -> bool:
        """Whether a bridge's or leg's owner still runs: a call session, or a conference room not yet ended."""
        if isinstance(owner, Room):
            return owner.state is not RoomState.ENDED
        return isinstance(owner, CallSession) and owner.id in self.host.sessions

    def _owns_channel(self, channel_id: str) -> bool:
        return channel_id in self.host.legs and self._running(self.host.owner.get(channel_id))

    def _owns_bridge(self, bridge_id: str) -> bool:
        bridge = self.host.bridges.get(bridge_id)
        return bridge is not None and self._running(bridge.owner)

    def _missed_call(self, channel: Channel) -> bool:
        """A ringing call from the dialplan the engine never heard of: its StasisStart was lost."""
        return (
            channel.state != "Up"
            and channel.dialplan.app_data == self.app  # no arguments: not one we originated
            and channel.dialplan.exten != "h"
            and channel.id not in self.host.legs
        )

    # -- acting -------------------------------------------------------------------------------------------

    async def _hang_up(self, channel: Channel) -> int:
        try:
            await self.host.ari.hangup(channel.id)
        except CallGone:
            return 0
        except AriError as exc:
            log.warning("reconcile: could not hang up %s: %s", channel.name, exc)
            return 0
        log.info("reconcile: hung up %s (%s): no call of this run owns it", channel.name or channel.id, channel.state)
        return 1

    async def _destroy(self, snapshot: BridgeSnapshot) -> int:
        try:
            await self.host.ari.destroy_bridge(snapshot.id)
        except CallGone:
            pass
        except AriError as exc:
            log.warning("reconcile: could not destroy bridge %s: %s", snapshot.id, exc)
            return 0
        if (bridge := self.host.bridges.pop(snapshot.id, None)) is not None:
            bridge.set_state(BridgeState.GONE, "destroyed by the reconcile")
        count = len(snapshot.channels)
        log.info("reconcile: destroyed bridge %s %s (%d channels): no call owns it", snapshot.name, snapshot.id, count)
        return 1

    # -- the engine's maps --------------------------------------------------------------------------------

    def _resync(self, channels: dict[str, Channel], bridges: dict[str, BridgeSnapshot]) -> None:
        host = self.host
        # Virtual legs (our numbers run in-process) have no channel: Asterisk never lists them.
        gone = [leg_id for leg_id, leg in host.legs.items() if not leg.virtual and leg_id not in channels]
        for leg_id in gone:
            host.leg_gone(leg_id, "gone while the event stream was down")
        for bridge_id, bridge in list(host.bridges.items()):
            if (snapshot := bridges.get(bridge_id)) is None:
                host.bridges.pop(bridge_id)
                bridge.set_state(BridgeState.GONE, "destroyed while the event stream was down")
            else:
                bridge.members = set(snapshot.channels)
        for leg_id, leg in host.legs.items():
            if leg.virtual:
                continue
            if leg.role is LegRole.DIALED and channels[leg_id].state == "Up" and not leg.is_up:
                leg.set_state(LegState.UP, "answered while the event stream was down")
            if leg.bridge is not None and (leg.bridge.is_gone or leg_id not in leg.bridge.members):
                leg.bridge = None
        log.info("event stream back: %d calls, %d legs ended meanwhile", len(host.sessions), len(gone))

    def _prune(self, channels: dict[str, Channel], bridges: set[str]) -> None:
        """Forget legs and bridges of ended calls that Asterisk no longer has (their last event was missed)."""
        host = self.host
        stale = [
            i for i, leg in host.legs.items() if not leg.virtual and i not in channels and not self._owns_channel(i)
        ]
        for leg_id in stale:
            host.leg_gone(leg_id, "no longer in Asterisk (reconcile)")
        for bridge_id in [b for b in host.bridges if b not in bridges and not self._owns_bridge(b)]:
            host.bridges.pop(bridge_id).set_state(BridgeState.GONE, "no longer in Asterisk (reconcile)")
