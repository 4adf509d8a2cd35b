"""One call leg (an Asterisk channel we own): its state machine, who it is to the RCML app, and its events.

The engine keeps one :class:`CallLeg` per channel id (an identity map) and hands each leg the events that are
about it: state changes through :meth:`CallLeg.set_state`, everything a verb may wait for (DTMF, a playback or
recording finishing) through :meth:`CallLeg.deliver` to whoever :meth:`CallLeg.listen` s at the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

from models.ari import AriEvent, Channel
from stasis_app.ari.protocol import AsteriskApi, HangupReason
from stasis_app.errors import CallGone, StasisRcmlError
from stasis_app.logs import for_call

if TYPE_CHECKING:
    from stasis_app.bridges import Bridge

__all__ = [
    "CallLeg",
    "LegEvents",
    "LegRole",
    "LegState",
    "Party",
    "end_virtual",
    "hang_up",
    "new_call_sid",
    "virtual_pair",
]

# The Q.850 cause Asterisk gives each hangup reason; a virtual leg ends with the same one.
REASON_CAUSE: dict[str, int] = {
    "normal": 16,
    "busy": 17,
    "congestion": 34,
    "no_answer": 19,
    "timeout": 18,
    "rejected": 21,
    "unallocated": 1,
    "normal_unspecified": 31,
    "number_incomplete": 28,
    "codec_mismatch": 58,
    "interworking": 127,
    "failure": 38,
    "answered_elsewhere": 26,
}

log = logging.getLogger(__name__)

E = TypeVar("E", bound=AriEvent)


def new_call_sid() -> str:
    """A Restcomm-style call id (``CA`` + 32 hex digits)."""
    return "CA" + secrets.token_hex(16)


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


class LegEvents:
    """The events of one leg, queued for the verb listening while it runs (see :meth:`CallLeg.listen`)."""

    def __init__(self, leg: CallLeg) -> None:
        self._leg = leg
        self._queue: asyncio.Queue[AriEvent] = asyncio.Queue()

    def put(self, event: AriEvent) -> None:
        self._queue.put_nowait(event)

    async def next(
        self,
        kind: type[E] | tuple[type[E], ...],
        *,
        timeout: float | None = None,
        until: asyncio.Future[Any] | None = None,
    ) -> E | None:
        """The next event of ``kind``; None when ``timeout`` passes, ``until`` is done or the leg is gone first."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            while not self._queue.empty():
                event = self._queue.get_nowait()
                if isinstance(event, kind):
                    return event
            if self._leg.is_gone or (until is not None and until.done()):
                return None
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            getter = asyncio.ensure_future(self._queue.get())
            waits: set[asyncio.Future[Any]] = {getter, self._leg.ended}
            if until is not None:
                waits.add(until)
            try:
                await asyncio.wait(waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                got = getter.done()
                if not got:
                    getter.cancel()  # left running, it would take the next event from whoever listens next
            if got and isinstance(event := getter.result(), kind):
                return event


class CallLeg:
    """A channel we own, with one state and the futures verbs wait on."""

    def __init__(self, channel: Channel, role: LegRole, party: Party, *, state: LegState) -> None:
        self.channel = channel
        self.role = role
        self.party = party
        self.call_sid = new_call_sid()
        self.state = state
        self.cause: int | None = None  # Q.850 cause once GONE
        # Asterisk said the channel is hanging up (ChannelHangupRequest): its StasisEnd is on the way, after
        # whatever the hangup ended (a recording's RecordingFinished comes first).
        self.hanging_up = False
        self.hangup_cause: int | None = None  # the cause of a ChannelHangupRequest, until StasisEnd
        self.created = time.monotonic()
        self.answered_at: float | None = None
        self.bridge: Bridge | None = None  # the bridge Asterisk last reported it in
        self.hanging_up = False  # a hangup was asked for: asking again only earns a second request (or a 404)
        # A virtual leg has no channel: one end of a call to one of our own numbers run in-process (see
        # virtual_pair). ``twin`` is the other end; ``media`` the leg whose channel carries its audio.
        self.virtual = False
        self.twin: CallLeg | None = None
        self.media: CallLeg | None = None
        self.media_ready: asyncio.Future[None] | None = None
        # A virtual dialed leg: resolved once its number's app has put its first request to Asterisk under way.
        self.underway: asyncio.Future[None] | None = None
        self._listeners: list[LegEvents] = []
        self.on_change: list[Callable[[CallLeg], None]] = []  # told after each state change (status callbacks)
        loop = asyncio.get_running_loop()
        self.up: asyncio.Future[None] = loop.create_future()
        self.ended: asyncio.Future[int] = loop.create_future()

    @property
    def id(self) -> str:
        return self.channel.id

    @property
    def name(self) -> str:
        return self.channel.name or self.channel.id

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

    @property
    def media_leg(self) -> CallLeg | None:
        """The leg whose channel carries this leg's audio: itself, or for a virtual leg the one it leans on."""
        leg: CallLeg | None = self
        while leg is not None and leg.virtual:
            leg = leg.media
        return leg

    def set_state(self, new: LegState, why: str, *, cause: int | None = None) -> None:
        """The one place a leg changes state; resolves the futures verbs wait on and logs ``old -> new``."""
        old = self.state
        if old is new or old is LegState.GONE:
            return
        self.state = new
        if log.isEnabledFor(logging.DEBUG):
            with for_call(self.call_sid):
                log.debug("leg %s %s -> %s: %s", self.name, old.value, new.value, why)
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
        for tell in self.on_change:
            tell(self)

    @contextlib.contextmanager
    def listen(self) -> Iterator[LegEvents]:
        """Receive this leg's events (DTMF, playback and recording finished...) while the block runs."""
        events = LegEvents(self)
        self._listeners.append(events)
        try:
            yield events
        finally:
            self._listeners.remove(events)

    def deliver(self, event: AriEvent) -> None:
        """An event about this leg, from the engine; nobody listening means nobody needs it."""
        for events in self._listeners:
            events.put(event)

    def call_status(self) -> str:
        """``CallStatus`` as Restcomm reports it."""
        match self.state:
            case LegState.INBOUND | LegState.CALLING | LegState.RINGING:
                return "ringing"
            case LegState.UP:
                return "completed" if self.hanging_up else "in-progress"
            case LegState.GONE:
                return "completed" if self.answered_at is not None else "canceled"

    def __repr__(self) -> str:
        return f"<CallLeg {self.name} {self.role.value} {self.state.value}>"


def virtual_pair(caller: CallLeg, dialed_party: Party, inbound_party: Party, name: str) -> tuple[CallLeg, CallLeg]:
    """The two ends of a call from ``caller``'s Dial to one of our own numbers, run in-process.

    ``dialed`` is what the Dial rings (like a Local channel's ;1); ``inbound`` is the number's own call (;2),
    whose audio is ``caller``'s channel. Answering ``inbound`` answers ``dialed``; hanging up either ends both
    with the same cause, as a Local pair does."""
    loop = asyncio.get_running_loop()
    dialed = CallLeg(
        Channel(id="v" + secrets.token_hex(16), name=f"{name};1"), LegRole.DIALED, dialed_party, state=LegState.CALLING
    )
    inbound = CallLeg(
        Channel(id="v" + secrets.token_hex(16), name=f"{name};2"),
        LegRole.INBOUND,
        inbound_party,
        state=LegState.INBOUND,
    )
    for leg, other in ((dialed, inbound), (inbound, dialed)):
        leg.virtual, leg.twin = True, other
    inbound.media = caller
    inbound.media_ready = loop.create_future()
    dialed.underway = loop.create_future()
    return dialed, inbound


def end_virtual(leg: CallLeg, reason: HangupReason, why: str) -> None:
    """End both ends of a virtual pair with ``reason``'s cause."""
    cause = REASON_CAUSE.get(reason, 16)
    leg.set_state(LegState.GONE, why, cause=cause)
    if leg.twin is not None:
        leg.twin.set_state(LegState.GONE, f"its other end: {why}", cause=cause)


async def hang_up(ari: AsteriskApi, leg: CallLeg, reason: HangupReason = "normal") -> None:
    """Hang a leg up once, whoever asks first; a leg already gone is a normal case."""
    if leg.is_gone or leg.hanging_up:
        return
    if leg.virtual:
        end_virtual(leg, reason, f"hung up ({reason})")
        return
    leg.hanging_up = True
    try:
        await ari.hangup(leg.id, reason)
    except CallGone:
        leg.set_state(LegState.GONE, "already gone")
    except StasisRcmlError as exc:
        leg.hanging_up = False
        log.warning("could not hang up %s: %s", leg.name, exc)
