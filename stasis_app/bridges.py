"""One mixing bridge we made: who is in it (as Asterisk reports it), who owns it, and when it goes.

The engine keeps one :class:`Bridge` per bridge id (an identity map, like legs). Its members change only on
``ChannelEnteredBridge`` / ``ChannelLeftBridge`` (and the re-read after a reconnect): what we asked for is not
what happened until Asterisk says so.

Policy: a bridge belongs to exactly one owner, the call session whose Dial made it (or that a transfer handed it
to). It is not destroyed when it empties (a Dial ``action`` may bridge a new party into it with the same
caller), but when its owner's call ends; a bridge whose owner ended without destroying it is found by the
engine's reconcile and destroyed there.
"""

from __future__ import annotations

import asyncio
import logging
from enum import Enum
from typing import Protocol

from models.ari import LiveRecording
from stasis_app.ari.protocol import AsteriskApi
from stasis_app.errors import AriError, CallGone

__all__ = ["Bridge", "BridgeState", "Member"]

log = logging.getLogger(__name__)

PREFIX = "rcml-"  # every bridge we make is named so: the reconcile can tell ours from anyone else's


class Member(Protocol):
    """What a bridge needs of a leg: its channel id."""

    @property
    def id(self) -> str: ...


class BridgeState(Enum):
    CREATING = "creating"  # asked for, not confirmed yet
    LIVE = "live"
    DESTROYING = "destroying"
    GONE = "gone"


class Bridge:
    """A mixing bridge and its members' channel ids; ``owner`` is the session that will destroy it."""

    def __init__(self, bridge_id: str, name: str, owner: object) -> None:
        self.id = bridge_id
        self.name = name
        self.owner = owner
        self.state = BridgeState.CREATING
        self.members: set[str] = set()
        self._recordings: dict[str, asyncio.Future[LiveRecording]] = {}  # a Dial's record, by name

    def __contains__(self, leg: Member) -> bool:
        return leg.id in self.members

    @property
    def is_gone(self) -> bool:
        return self.state is BridgeState.GONE

    def set_state(self, new: BridgeState, why: str) -> None:
        """The one place a bridge changes state; GONE is final."""
        old = self.state
        if old is new or old is BridgeState.GONE:
            return
        self.state = new
        log.debug("bridge %s %s -> %s: %s", self.id, old.value, new.value, why)
        if new is BridgeState.GONE:
            self.members.clear()

    # -- what Asterisk reports (the engine calls these) -----------------------------------------------------

    def entered(self, channel_id: str) -> None:
        self.members.add(channel_id)

    def left(self, channel_id: str) -> None:
        self.members.discard(channel_id)

    def recording_ended(self, recording: LiveRecording) -> None:
        """A recording event of this bridge; one that says it ended resolves :meth:`recording`."""
        if recording.state not in ("done", "failed", "canceled"):
            return
        done = self._recordings.pop(recording.name, None)
        if done is not None and not done.done():
            done.set_result(recording)

    def recording(self, name: str) -> asyncio.Future[LiveRecording]:
        """Resolved with the recording ``name`` of this bridge once Asterisk says it ended (ask before starting
        it: the end may come with the answer)."""
        return self._recordings.setdefault(name, asyncio.get_running_loop().create_future())

    # -- what its owner asks ------------------------------------------------------------------------------

    async def create(self, ari: AsteriskApi) -> None:
        await ari.create_bridge(self.id, self.name)
        self.set_state(BridgeState.LIVE, "created")

    async def join(self, ari: AsteriskApi, *legs: Member) -> None:
        """Put ``legs`` in, in one request; CallGone if one of them (or the bridge) is gone, and then none is in,
        AriError if Asterisk refuses."""
        ids = [leg.id for leg in legs if leg.id not in self.members]
        if ids:
            await ari.add_to_bridge(self.id, *ids)

    async def release(self, ari: AsteriskApi, leg: Member) -> None:
        """Take ``leg`` out, if it is in; a leg that is gone or out already is out, which is all we want."""
        if self.is_gone:
            return
        try:
            await ari.remove_from_bridge(self.id, leg.id)
        except AriError:
            pass  # gone, or not in this bridge: either way it is out

    async def destroy(self, ari: AsteriskApi) -> None:
        """Destroy it (its channels stay up); a bridge already gone is a normal case."""
        if self.state in (BridgeState.GONE, BridgeState.DESTROYING):
            return
        self.set_state(BridgeState.DESTROYING, "its owner's call ended")
        try:
            await ari.destroy_bridge(self.id)
        except CallGone:
            self.set_state(BridgeState.GONE, "already gone")
        except AriError as exc:
            log.warning("could not destroy bridge %s: %s", self.id, exc)
            self.set_state(BridgeState.LIVE, "destroy failed; the reconcile retries")
            return
        self.set_state(BridgeState.GONE, "destroyed")

    def __repr__(self) -> str:
        return f"<Bridge {self.id} {self.state.value} {sorted(self.members)}>"
