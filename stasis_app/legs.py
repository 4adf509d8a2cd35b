"""One call leg (an Asterisk channel we own): its state machine and who it is to the RCML app."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from enum import Enum

from models.ari import Channel

__all__ = ["CallLeg", "LegRole", "LegState", "Party", "new_call_sid"]

log = logging.getLogger(__name__)


def new_call_sid() -> str:
    """A Restcomm-style call id (``CA`` + 32 hex digits)."""
    return "CA" + uuid.uuid4().hex


class LegState(Enum):
    """Where a leg is. Every change goes through :meth:`CallLeg.set_state`."""

    INBOUND = "inbound"  # an incoming call in Stasis, not answered yet
    CALLING = "calling"  # we originated it; no answer yet
    RINGING = "ringing"  # the far end is ringing
    UP = "up"  # answered
    GONE = "gone"  # hung up; nothing more can happen


class LegRole(Enum):
    INBOUND = "inbound"  # the caller of a number
    DIALED = "outbound-dial"  # a party an RCML <Dial> called


@dataclass(frozen=True)
class Party:
    """How the RCML app knows a leg: ``From`` / ``To`` as it sees them."""

    from_: str
    to: str
    caller_name: str = ""
    forwarded_from: str = ""
    label: str = ""  # a dialed party: the client name, number or SIP user the Dial named


class CallLeg:
    """A channel we own, with one state and futures the verbs wait on."""

    def __init__(self, channel: Channel, role: LegRole, party: Party, *, state: LegState) -> None:
        self.channel = channel
        self.role = role
        self.party = party
        self.call_sid = new_call_sid()
        self.state = state
        self.cause: int | None = None  # Q.850 cause once GONE
        self.created = time.monotonic()
        self.answered_at: float | None = None
        self.bridge_id: str | None = None  # the bridge Asterisk last reported it in
        self.hanging_up = False  # a hangup was asked for: asking again only earns a second request (or a 404)
        loop = asyncio.get_running_loop()
        self.up: asyncio.Future[None] = loop.create_future()
        self.ended: asyncio.Future[int] = loop.create_future()

    @property
    def id(self) -> str:
        return self.channel.id

    @property
    def label(self) -> str:
        """What the RCML app calls this party (``Transferor`` / ``Transferee``): a dialed leg is the client,
        number or SIP user it dialed; an inbound leg is its ``From``."""
        return self.party.label if self.role is LegRole.DIALED else self.party.from_

    @property
    def is_up(self) -> bool:
        return self.state is LegState.UP

    @property
    def is_gone(self) -> bool:
        return self.state is LegState.GONE

    def set_state(self, new: LegState, why: str, *, cause: int | None = None) -> None:
        """The one place a leg changes state; resolves the futures verbs wait on and logs ``old -> new``."""
        old = self.state
        if old is new or old is LegState.GONE:
            return
        self.state = new
        log.debug("leg %s (%s) %s -> %s: %s", self.channel.name or self.id, self.call_sid, old.value, new.value, why)
        if new is LegState.UP:
            self.answered_at = time.monotonic()
            if not self.up.done():
                self.up.set_result(None)
        elif new is LegState.GONE:
            self.cause = 16 if cause is None else cause
            if not self.ended.done():
                self.ended.set_result(self.cause)
            if not self.up.done():
                # Nobody waits for an answer that can no longer come; cancel quietly.
                self.up.cancel()

    def call_status(self) -> str:
        """``CallStatus`` as Restcomm reports it."""
        match self.state:
            case LegState.INBOUND | LegState.CALLING | LegState.RINGING:
                return "ringing"
            case LegState.UP:
                return "in-progress"
            case LegState.GONE:
                return "completed" if self.answered_at is not None else "canceled"

    def __repr__(self) -> str:
        return f"<CallLeg {self.channel.name or self.id} {self.role.value} {self.state.value}>"
