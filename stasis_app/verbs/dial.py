"""``<Dial>``: ring every noun at once, bridge the first that answers with the caller, report how it went.

While connected the Dial owns its bridge and so the REFERs on the call: a transfer is offered to its
:class:`~stasis_app.transfer.Connection`, and the Dial goes on as the transfer's ``handoff`` says.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

from models.rcml import Dial, Sip
from stasis_app.context import CallContext, Needs
from stasis_app.errors import AriError, CallGone, MarkupError, WebhookError
from stasis_app.legs import CallLeg, LegRole, Party
from stasis_app.outcomes import DialWatcher, HangupCall, Next, Outcome, Replace
from stasis_app.routing import UnsafeTarget, dial_string, noun_label, our_number, sip_headers
from stasis_app.verbs.dial_extras import DialExtras
from stasis_app.verbs.progress import CallProgress

__all__ = ["DialResult", "DialVerb", "dial_status_for"]

log = logging.getLogger(__name__)

# Asterisk's own dial timeout is a backstop only (if this app dies, nothing rings forever); ours decides.
_ORIGINATE_GRACE_S = 5
_RINGBACK_WAIT_S = 0.1
_MAX_TIME_LIMIT_S = 7 * 24 * 3600  # loop.call_later overflows on absurd values; a week is past any real call


@dataclass(frozen=True)
class DialResult:
    status: str  # completed | busy | no-answer | failed | canceled
    call_sid: str = ""
    duration: int = 0
    ring_duration: int = 0
    interrupted: Outcome | None = None  # a transfer ended the Dial
    recording: dict[str, str] | None = None  # record: RecordingUrl, RecordingSid, RecordingDuration


def dial_status_for(causes: list[int]) -> str:
    """``DialCallStatus`` when no leg answered, from the Q.850 causes the legs ended with."""
    if any(cause in (17, 21) for cause in causes):  # user busy, call rejected
        return "busy"
    if any(cause in (18, 19) for cause in causes):  # no user responding, no answer
        return "no-answer"
    return "failed"


class DialVerb:
    needs = Needs.NOTHING

    async def execute(self, call: CallContext, verb: Dial) -> Outcome:
        result = await _DialAttempt(call, verb).run()
        call.dial_ended(result.status)
        if result.interrupted is not None:
            return result.interrupted
        # A connected call that ended is the usual case, a line at DEBUG; busy, no answer and failures at INFO.
        level = logging.DEBUG if result.status == "completed" else logging.INFO
        log.log(level, "number %s: Dial %s (%d s)", call.number.number, result.status, result.duration)
        if verb.action is None:
            return HangupCall() if call.caller.is_gone else Next()
        params = {
            "DialCallStatus": result.status,
            "DialCallSid": result.call_sid,
            "DialCallDuration": str(result.duration),
            "DialRingDuration": str(result.ring_duration),
        } | (result.recording or {})
        if call.caller.is_gone:
            # The app still learns how the Dial ended; there is no call left to run its answer on.
            try:
                await call.fetch(verb.action, verb.method, params)
            except (WebhookError, MarkupError) as exc:
                log.warning("number %s: %s", call.number.number, exc)
            return HangupCall()
        return Replace(await call.fetch(verb.action, verb.method, params))


def _caller_id(name: str, number: str) -> str:
    """Asterisk's ``"name" <number>`` form; quotes and angle brackets in either would break it."""
    name = name.translate({ord(c): None for c in '"<>'})
    number = number.translate({ord(c): None for c in '"<>'})
    return f'"{name}" <{number}>' if name else number


class _DialAttempt:
    def __init__(self, call: CallContext, verb: Dial) -> None:
        self.call = call
        self.verb = verb
        self.legs: list[CallLeg] = []
        self.started = time.monotonic()
        self.timed_out = False
        self.watcher: DialWatcher | None = call.dial_watcher()
        self.extras = DialExtras(call, verb)

    async def run(self) -> DialResult:
        try:
            winner = await self._ring()
        except BaseException:
            await self.extras.stop_ringing()
            raise
        try:
            if winner is None:
                await self.extras.stop_ringing()
                status = self._failed_status()
                self._decided(status, None)
                result = DialResult(status, ring_duration=self._elapsed())
            else:
                result = await self._connect(winner)
        finally:
            await self.extras.stop_ringing()  # stopped on the way to the bridge already, unless that failed
            await self.extras.close()
        recording = await self.extras.recorded()
        return dataclasses.replace(result, recording=recording) if recording else result

    def _decided(self, status: str, winner: CallLeg | None) -> None:
        if self.watcher is not None:
            watcher, self.watcher = self.watcher, None
            watcher.dial_decided(status, winner.id if winner else None)

    def _failed_status(self) -> str:
        if self.call.caller.is_gone:
            return "canceled"
        if self.timed_out:
            return "no-answer"
        return dial_status_for([leg.cause or 0 for leg in self.legs])

    def _elapsed(self) -> int:
        return round(time.monotonic() - self.started)

    # -- ringing ----------------------------------------------------------------------------------------------

    async def _ring(self) -> CallLeg | None:
        call, caller = self.call, self.call.caller
        # Whoever the Dial runs for is the calling party: Alice, or Bob when a transfer runs on his leg.
        caller_id = self.verb.caller_id or caller.label
        caller_name = caller.party.caller_name if caller.role is LegRole.INBOUND else caller.label
        shown = _caller_id(caller_name, caller_id)
        jobs = []
        for noun in self.verb.nouns:
            ours = our_number(call.settings, noun)  # a configured number: safe as it is
            if ours is None:
                try:
                    endpoint = dial_string(call.settings, noun)
                    headers = sip_headers(noun)
                except UnsafeTarget as exc:
                    log.warning("number %s: %s", call.number.number, exc)
                    continue
            label = noun_label(noun)
            to = noun.uri if isinstance(noun, Sip) else label
            party = Party(from_=caller_id, to=to, caller_name=caller_name, label=label)
            if ours is not None:
                self.legs.append(call.dial_ours(ours, party))
                continue
            leg = call.new_leg(endpoint, party)
            self.legs.append(leg)
            self.extras.dialing(leg, noun)
            if noun.status_callback is not None:
                CallProgress(call, leg, noun.status_callback).initiated()  # the INVITE goes out now
            # PJSIP adds each as a header of the INVITE (checked: X- only, printable values).
            variables = {f"PJSIP_HEADER(add,{name})": value for name, value in headers.items()} or None
            jobs.append(call.originate(leg, endpoint, shown, self.verb.timeout + _ORIGINATE_GRACE_S, variables))
        # Independent REST calls go out together, the originates first: the INVITE is what someone waits for.
        underway = [leg.underway for leg in self.legs if leg.underway is not None]
        if not underway:
            await asyncio.gather(*jobs, call.bridge(), self.extras.ring())
        else:
            # One of our numbers in-process: its app's INVITE (or answer) goes first, the ringback after it. Its
            # app may be slow to fetch: the caller hears ringing after at most _RINGBACK_WAIT_S all the same.
            await asyncio.gather(*jobs, call.bridge())
            await asyncio.wait(underway, timeout=_RINGBACK_WAIT_S)
            await self.extras.ring()
        await self.extras.ringing(await call.bridge())
        if self.watcher is not None:
            self.watcher.dial_started([leg.id for leg in self.legs if not leg.is_gone])
        return await self._first_answer()

    async def _first_answer(self) -> CallLeg | None:
        caller = self.call.caller
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

    # -- connected --------------------------------------------------------------------------------------------

    async def _connect(self, winner: CallLeg) -> DialResult:
        call, caller = self.call, self.call.caller
        ring_duration = self._elapsed()
        if self.extras.holds(winner):
            await self.extras.stop_ringing()  # before what runs on the callee, or the ringback playback
        declined = await self.extras.answered(winner)
        if declined is not None:  # its whisper hung up or failed: as if it had not answered
            declined = "canceled" if caller.is_gone else declined
            await call.hang_up(winner)
            self._decided(declined, None)
            return DialResult(declined, winner.call_sid, ring_duration=ring_duration)
        bridge = await call.bridge()
        try:
            # Both parties in one request. Asterisk adds all or none: when one party is gone (CallGone) neither is
            # in, and the Dial ends below as soon as that party's end is read, whichever it is.
            # The ringing stops in the same round trip, just before.
            await call.answer_and_join(caller, winner, first=self.extras.stop_ringing)
        except CallGone:
            pass
        except AriError as exc:
            # Not a party hanging up: Asterisk refused. The call cannot be connected, and nobody may be left up
            # and unbridged.
            log.warning("number %s: Dial could not connect %s: %s", call.number.number, winner.name, exc)
            await call.hang_up(winner)
            self._decided("failed", None)
            return DialResult("failed", winner.call_sid, ring_duration=ring_duration)
        self._decided("answered", winner)
        await self.extras.connected(bridge)
        refer = (self.verb.refer_url, self.verb.refer_method) if self.verb.refer_url else None
        connection = call.connect(winner, bridge, refer)
        limit = asyncio.get_running_loop().create_future()
        seconds = min(self.verb.time_limit, _MAX_TIME_LIMIT_S)
        timer = asyncio.get_running_loop().call_later(seconds, _resolve, limit)
        try:
            while True:
                transfer = connection.transfer
                if transfer is not None and transfer.handoff.done():
                    outcome = transfer.handoff.result()
                    if outcome is not None:
                        if transfer.transferor is winner:
                            call.let_go(winner)  # the transfer hangs it up, after the final NOTIFY
                        return DialResult("completed", winner.call_sid, interrupted=outcome)
                    connection.transfer = transfer = None  # declined: the call stays as it was
                leaving = transfer.transferor if transfer is not None else None
                # A transferor's hangup is the transfer's business, not the Dial's.
                if (caller.is_gone and caller is not leaving) or (winner.is_gone and winner is not leaving):
                    break
                if limit.done() or self.extras.star.done():
                    break
                waits: set[asyncio.Future[Any]] = {limit, connection.changed(), self.extras.star}
                waits |= {leg.ended for leg in (caller, winner) if leg is not leaving}
                if transfer is not None:
                    waits.add(transfer.handoff)
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            connection.close()
        if not winner.is_gone:
            await call.hang_up(winner)
        duration = round(time.monotonic() - (winner.answered_at or time.monotonic()))
        return DialResult("completed", winner.call_sid, duration, ring_duration)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
