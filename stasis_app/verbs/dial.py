"""``<Dial>``: ring every noun at once, bridge the first that answers with the caller, report how it went."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from models.ari import Channel
from models.rcml import Dial, Sip
from stasis_app.errors import AriError, MarkupError, WebhookError
from stasis_app.legs import CallLeg, LegRole, LegState, Party
from stasis_app.routing import UnsafeTarget, dial_string, noun_label
from stasis_app.verbs.base import HangupCall, Next, Outcome, Replace

if TYPE_CHECKING:
    from stasis_app.session import CallSession

__all__ = ["DialResult", "DialVerb", "dial_status_for"]

log = logging.getLogger(__name__)

# Asterisk's own dial timeout is a backstop only (if this app dies, nothing rings forever); ours decides.
_ORIGINATE_GRACE_S = 5


@dataclass(frozen=True)
class DialResult:
    status: str  # completed | busy | no-answer | failed | canceled
    call_sid: str = ""
    duration: int = 0
    ring_duration: int = 0
    interrupted: Outcome | None = None  # a transfer ended the Dial


def dial_status_for(causes: list[int]) -> str:
    """``DialCallStatus`` when no leg answered, from the Q.850 causes the legs ended with."""
    if any(cause in (17, 21) for cause in causes):  # user busy, call rejected
        return "busy"
    if any(cause in (18, 19) for cause in causes):  # no user responding, no answer
        return "no-answer"
    return "failed"


class DialVerb:
    async def execute(self, call: CallSession, verb: Dial) -> Outcome:
        result = await _DialAttempt(call, verb).run()
        call.last_dial_status = result.status
        if result.interrupted is not None:
            return result.interrupted
        log.info(
            "number %s, call %s: Dial %s (%d s)",
            call.number.number,
            call.leg.call_sid,
            result.status,
            result.duration,
        )
        if verb.action is None:
            return HangupCall() if call.leg.is_gone else Next()
        params = {
            "DialCallStatus": result.status,
            "DialCallSid": result.call_sid,
            "DialCallDuration": str(result.duration),
            "DialRingDuration": str(result.ring_duration),
        }
        if call.leg.is_gone:
            # The app still learns how the Dial ended; there is no call left to run its answer on.
            try:
                await call.fetch(verb.action, verb.method, params)
            except (WebhookError, MarkupError) as exc:
                log.warning("number %s, call %s: %s", call.number.number, call.leg.call_sid, exc)
            return HangupCall()
        return Replace(await call.fetch(verb.action, verb.method, params))


def _caller_id(name: str, number: str) -> str:
    """Asterisk's ``"name" <number>`` form; quotes and angle brackets in either would break it."""
    name = name.translate({ord(c): None for c in '"<>'})
    number = number.translate({ord(c): None for c in '"<>'})
    return f'"{name}" <{number}>' if name else number


class _DialAttempt:
    def __init__(self, call: CallSession, verb: Dial) -> None:
        self.call = call
        self.verb = verb
        self.legs: list[CallLeg] = []
        self.started = time.monotonic()
        self.ringback: str | None = None  # playback id of an in-band ring tone
        self.timed_out = False

    async def run(self) -> DialResult:
        try:
            winner = await self._ring()
        finally:
            await self._stop_ringback()
        if winner is None:
            status = self._failed_status()
            self.call.report_dial(status)
            return DialResult(status, ring_duration=self._elapsed())
        return await self._connect(winner)

    def _failed_status(self) -> str:
        if self.call.leg.is_gone:
            return "canceled"
        if self.timed_out:
            return "no-answer"
        return dial_status_for([leg.cause or 0 for leg in self.legs])

    def _elapsed(self) -> int:
        return round(time.monotonic() - self.started)

    # -- ringing ----------------------------------------------------------------------------------------------

    async def _ring(self) -> CallLeg | None:
        call, caller = self.call, self.call.leg
        # Whoever the Dial runs for is the calling party: Alice, or Bob when a transfer runs on his leg.
        caller_id = self.verb.caller_id or caller.label
        caller_name = caller.party.caller_name if caller.role is LegRole.INBOUND else caller.label
        jobs: list[Coroutine[Any, Any, Any]] = []
        for noun in self.verb.nouns:
            try:
                endpoint = dial_string(call.settings, noun)
            except UnsafeTarget as exc:
                log.warning("number %s, call %s: %s", call.number.number, caller.call_sid, exc)
                continue
            label = noun_label(noun)
            to = noun.uri if isinstance(noun, Sip) else label
            party = Party(from_=caller_id, to=to, caller_name=caller_name, label=label)
            leg = CallLeg(Channel(id=uuid.uuid4().hex, name=endpoint), LegRole.DIALED, party, state=LegState.CALLING)
            call.adopt(leg)  # before originating: its first events may arrive before the REST answer
            self.legs.append(leg)
            jobs.append(self._originate(leg, endpoint, _caller_id(caller_name, caller_id)))
        # Independent REST calls go out together, the originates first: the INVITE is what someone waits for.
        await asyncio.gather(*jobs, call.ensure_bridge(), self._start_ringback())
        return await self._first_answer()

    async def _originate(self, leg: CallLeg, endpoint: str, caller_id: str) -> None:
        try:
            await self.call.ari.originate(
                endpoint=endpoint,
                channel_id=leg.id,
                app_args="dial",
                caller_id=caller_id,
                timeout=self.verb.timeout + _ORIGINATE_GRACE_S,
                originator=self.call.leg.id,
            )
        except AriError as exc:
            log.warning("number %s: cannot dial %s: %s", self.call.number.number, endpoint, exc.reason)
            leg.set_state(LegState.GONE, f"originate refused: {exc.reason}", cause=34)

    async def _first_answer(self) -> CallLeg | None:
        caller = self.call.leg
        deadline = self.started + self.verb.timeout
        while True:
            live = [leg for leg in self.legs if not leg.is_gone]
            for leg in live:
                if leg.is_up:
                    await self._hangup_losers(leg)
                    return leg
            if not live or caller.is_gone:
                await self._hangup_losers(None)
                return None
            waits: set[asyncio.Future[Any]] = {caller.ended}
            for leg in live:
                waits.add(leg.up)
                waits.add(leg.ended)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.timed_out = True
                await self._hangup_losers(None)
                return None
            await asyncio.wait(waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)

    async def _hangup_losers(self, winner: CallLeg | None) -> None:
        losers = [leg for leg in self.legs if leg is not winner and not leg.is_gone]
        await asyncio.gather(*(self.call.hang_up(leg) for leg in losers))

    async def _start_ringback(self) -> None:
        caller = self.call.leg
        try:
            if caller.is_up:
                # An answered call hears no 180: play the ring tone in-band instead.
                self.ringback = uuid.uuid4().hex
                await self.call.ari.play(caller.id, "tone:ring", self.ringback)
            else:
                await self.call.ari.ring(caller.id)
        except AriError as exc:  # no ringback is no reason to fail the Dial
            log.debug("no ringback for %s: %s", caller.id, exc)
            self.ringback = None

    async def _stop_ringback(self) -> None:
        if self.ringback is not None:
            playback, self.ringback = self.ringback, None
            try:
                await self.call.ari.stop_playback(playback)
            except AriError:
                pass

    # -- connected --------------------------------------------------------------------------------------------

    async def _connect(self, winner: CallLeg) -> DialResult:
        call, caller = self.call, self.call.leg
        ring_duration = self._elapsed()
        bridge_id = await call.ensure_bridge()
        try:
            await asyncio.gather(self._join_caller(bridge_id), call.ari.add_to_bridge(bridge_id, winner.id))
        except AriError as exc:
            # Someone hung up in between (Asterisk answers 400/404/422 for such a channel): seen below as gone.
            log.debug("bridging %s: %s", winner.id, exc)
        call.peer = winner
        call.report_dial("answered")
        interrupt = call.open_interrupt()
        limit = asyncio.get_running_loop().create_future()
        timer = asyncio.get_running_loop().call_later(self.verb.time_limit, limit.set_result, None)
        try:
            while True:
                if interrupt.done():
                    call.dial_legs.pop(winner.id, None)
                    return DialResult("completed", winner.call_sid, interrupted=interrupt.result())
                leaving = call.transferor  # a transferor's hangup is the transfer's business, not the Dial's
                if (caller.is_gone and caller is not leaving) or (winner.is_gone and winner is not leaving):
                    break
                if limit.done():
                    break
                waits: set[asyncio.Future[Any]] = {interrupt, limit, call.changed()}
                waits |= {leg.ended for leg in (caller, winner) if leg is not leaving}
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            call.peer = None
            call.close_interrupt()
        if not winner.is_gone:
            await self.call.hang_up(winner)
        duration = round(time.monotonic() - (winner.answered_at or time.monotonic()))
        return DialResult("completed", winner.call_sid, duration, ring_duration)

    async def _join_caller(self, bridge_id: str) -> None:
        await self.call.answer()
        caller = self.call.leg
        if caller.bridge_id != bridge_id:
            await self.call.ari.add_to_bridge(bridge_id, caller.id)
            caller.bridge_id = bridge_id
