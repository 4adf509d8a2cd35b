"""Named conference rooms: one ARI mixing bridge per name, shared by every call that dials it.

A :class:`Room` is not owned by any call session: the :class:`Conferences` registry (one per engine) owns it, and
its bridge is registered in the engine's bridge identity map like any other (members from Entered/LeftBridge).

Policy, in one place (:meth:`Room._leave`): a room ends, and its bridge is destroyed, when its last participant
leaves, or when a participant with ``endConferenceOnExit`` leaves a started room (the others then leave it too,
and each goes on with its own Dial ``action`` or next verb). A room whose participants all wait for a starter
(``startConferenceOnEnter="false"``) has no bridge yet: it is made when the first starter enters.

    created -> waiting (no starter yet) -> live -> ended
            \\-> live -> ended

Status callbacks (``statusCallback``, Twilio's ``conference-start``, ``conference-end``, ``participant-join``,
``participant-leave``) are fire-and-forget requests in tasks of their own: a slow or failing application never
delays or breaks a call.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from models.rcml import Conference, HttpMethod
from stasis_app.ari.protocol import AsteriskApi
from stasis_app.bridges import PREFIX, Bridge
from stasis_app.callbacks import Callbacks
from stasis_app.errors import AriError
from stasis_app.legs import CallLeg

__all__ = ["Conferences", "Participant", "Room", "RoomState"]

log = logging.getLogger(__name__)

BEEP = "sound:beep"


class RoomState(Enum):
    CREATED = "created"
    WAITING = "waiting"  # participants wait for one with startConferenceOnEnter
    LIVE = "live"  # started: its bridge mixes
    ENDED = "ended"  # bridge destroyed; the name is free for a new room


@dataclass(eq=False)
class Participant:
    """One call in a room: its leg, its ``<Conference>`` attributes and its call's request parameters."""

    leg: CallLeg
    options: Conference
    params: Mapping[str, str]
    status_callback: str | None = None  # absolute
    muted: bool = False
    joined: bool = False  # in the bridge (not waiting)
    joined_at: float = field(default_factory=time.monotonic)


class Room:
    """One named conference: its participants, its bridge once started, and one state."""

    def __init__(self, registry: Conferences, name: str) -> None:
        self.registry = registry
        self.name = name
        self.sid = "CF" + secrets.token_hex(16)
        self.state = RoomState.CREATED
        self.participants: list[Participant] = []
        self.bridge: Bridge | None = None
        loop = asyncio.get_running_loop()
        self.started: asyncio.Future[None] = loop.create_future()
        self.ended: asyncio.Future[str] = loop.create_future()  # resolves with why
        self.max_participants = 250  # set by the first participant, as Twilio's conference settings are
        self._sequence = 0
        self._bridge_lock = asyncio.Lock()

    def set_state(self, new: RoomState, why: str) -> None:
        """The one transition; starting and ending resolve :attr:`started` / :attr:`ended`. ENDED is final."""
        old = self.state
        if old is new or old is RoomState.ENDED:
            return
        self.state = new
        log.info("conference %s (%s): %s -> %s: %s", self.name, self.sid, old.value, new.value, why)
        if new is RoomState.LIVE and not self.started.done():
            self.started.set_result(None)
        if new is RoomState.ENDED and not self.ended.done():
            self.ended.set_result(why)

    @property
    def is_full(self) -> bool:
        return len(self.participants) >= self.max_participants

    # -- what the Conference verb asks ------------------------------------------------------------------------

    def add(self, participant: Participant) -> None:
        """Count ``participant`` in (synchronously: the next caller sees it when checking the limit)."""
        if not self.participants:
            self.max_participants = participant.options.max_participants
        self.participants.append(participant)
        if participant.options.start_conference_on_enter:
            if self.state is not RoomState.LIVE:
                self.set_state(RoomState.LIVE, f"{participant.leg.label} starts it")
                self.notify("conference-start", participant)
        elif self.state is RoomState.CREATED:
            self.set_state(RoomState.WAITING, f"{participant.leg.label} waits for a starter")

    async def enter(self, participant: Participant) -> None:
        """Put ``participant`` in the bridge (made on first use); beep to the others first, if they want it."""
        bridge = await self._bridge()
        if participant.options.beep in ("true", "onEnter") and any(p.joined for p in self.participants):
            await self._beep(bridge)
        await bridge.join(self.registry.ari, participant.leg)
        participant.joined = True
        participant.joined_at = time.monotonic()
        self.notify("participant-join", participant)

    async def leave(self, participant: Participant) -> None:
        """``participant`` is done (hung up, time limit, the room ended, or its verb was cancelled)."""
        if participant not in self.participants:
            return
        self.participants.remove(participant)
        ari, leg = self.registry.ari, participant.leg
        if participant.joined and not leg.is_gone and self.bridge is not None:
            await self.bridge.release(ari, leg)
        if participant.muted and not leg.is_gone:
            try:
                await ari.unmute(leg.id, "in")
            except AriError:
                pass  # gone meanwhile: nothing to unmute
        if participant.joined:
            self.notify("participant-leave", participant)
        others = [p for p in self.participants if p.joined]
        if self.state is RoomState.LIVE and participant.options.end_conference_on_exit:
            await self._end("participant-with-end-conference-on-exit-left", participant)
        elif not self.participants:
            await self._end("last-participant-left", participant)
        elif others and participant.joined and participant.options.beep in ("true", "onExit") and self.bridge:
            await self._beep(self.bridge)

    # -- internals ------------------------------------------------------------------------------------------------

    async def _bridge(self) -> Bridge:
        async with self._bridge_lock:
            if self.bridge is None:
                self.bridge = self.registry.new_bridge(self)
                await self.bridge.create(self.registry.ari)
            return self.bridge

    async def _beep(self, bridge: Bridge) -> None:
        try:
            await self.registry.ari.play_bridge(bridge.id, BEEP, secrets.token_hex(16))
        except AriError as exc:  # a missing beep is no reason to fail a participant
            log.debug("conference %s: no beep: %s", self.name, exc)

    async def _end(self, why: str, last: Participant) -> None:
        if self.state is RoomState.ENDED:
            return  # a participant leaving an ended room (endConferenceOnExit sent everyone out)
        was_live = self.state is RoomState.LIVE
        self.set_state(RoomState.ENDED, why)
        self.registry.forget(self)
        if self.bridge is not None:
            await self.bridge.destroy(self.registry.ari)
        if was_live:
            self.notify("conference-end", last, {"ReasonConferenceEnded": why})

    def notify(self, event: str, about: Participant, extra: Mapping[str, str] | None = None) -> None:
        """Post ``event`` to every status callback that asked for it (each URL once), in tasks of their own."""
        self._sequence += 1
        short = event.split("-")[1]  # start, end, join, leave: as statusCallbackEvent names them
        if event == "conference-end":
            extra = dict(extra or {}) | {"CallSidEndingConference": about.leg.call_sid}
        targets: dict[tuple[str, HttpMethod], None] = {}  # ordered, each URL once
        for p in [*self.participants, about]:
            if p.status_callback is not None and short in p.options.status_callback_event:
                targets[(p.status_callback, p.options.status_callback_method)] = None
        for url, method in targets:
            params = (
                dict(about.params)
                | {
                    "ConferenceSid": self.sid,
                    "FriendlyName": self.name,
                    "StatusCallbackEvent": event,
                    "SequenceNumber": str(self._sequence),
                    "Timestamp": time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()),
                    "Muted": str(about.muted).lower(),
                    "Hold": "false",
                    "StartConferenceOnEnter": str(about.options.start_conference_on_enter).lower(),
                    "EndConferenceOnExit": str(about.options.end_conference_on_exit).lower(),
                }
                | dict(extra or {})
            )
            self.registry.callbacks.post(url, method, params)


class Conferences:
    """Every room, by name (one namespace per application, as Twilio's per account)."""

    def __init__(self, ari: AsteriskApi, callbacks: Callbacks, bridges: dict[str, Bridge]) -> None:
        self.ari = ari
        self.callbacks = callbacks
        self.rooms: dict[str, Room] = {}
        self._bridges = bridges  # the engine's identity map: Entered/LeftBridge keep members up to date

    def room(self, name: str) -> Room:
        """The room called ``name``, made if there is none (or the last one ended)."""
        room = self.rooms.get(name)
        if room is None or room.state is RoomState.ENDED:
            room = self.rooms[name] = Room(self, name)
        return room

    def room_of(self, channel_id: str) -> Room | None:
        """The room ``channel_id`` takes part in (waiting or joined), if any."""
        for room in self.rooms.values():
            if any(p.leg.id == channel_id for p in room.participants):
                return room
        return None

    def new_bridge(self, room: Room) -> Bridge:
        bridge = Bridge(secrets.token_hex(16), f"{PREFIX}conference-{room.sid}", room)
        self._bridges[bridge.id] = bridge
        return bridge

    def forget(self, room: Room) -> None:
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
