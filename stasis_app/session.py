"""A call session: one RCML document run on one leg, verb after verb, in that leg's bridge."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from models.config import NumberConfig, Settings
from models.rcml import Document, HttpMethod
from stasis_app.ari.protocol import AsteriskApi, HangupReason
from stasis_app.errors import CallGone, MarkupError, StasisRcmlError, WebhookError
from stasis_app.legs import CallLeg, LegState
from stasis_app.verbs import EXECUTORS
from stasis_app.verbs.base import Handover, HangupCall, Next, Outcome, Replace

__all__ = ["API_VERSION", "CallSession", "Requester", "Services"]

log = logging.getLogger(__name__)

API_VERSION = "2012-04-24"

# A Dial that did not connect ends the call with a matching cause, so a caller that reached this number through
# another number's <Dial> (a Local channel) sees busy as busy.
_END_CAUSE: dict[str, HangupReason] = {"busy": "busy", "no-answer": "no_answer", "failed": "congestion"}


class Requester(Protocol):
    """The one way to request an application URL (Voice URL, Refer URL, Dial action, Redirect)."""

    async def fetch(
        self, url: str, method: HttpMethod, params: Mapping[str, str], *, base: str | None = None
    ) -> Document: ...


class Registry(Protocol):
    """The engine's map of legs and the sessions that own them."""

    def adopt(self, leg: CallLeg, session: CallSession) -> None: ...

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]: ...

    def expect_playback(self, playback_id: str) -> asyncio.Future[None]: ...


@dataclass
class Services:
    """What every session shares."""

    ari: AsteriskApi
    webhooks: Requester
    settings: Settings
    registry: Registry
    on_session_end: Callable[[CallSession], None] = field(default=lambda _session: None)


class CallSession:
    """Runs RCML on ``leg``. A Dial's legs and the bridge belong to the session until it ends or hands them on."""

    def __init__(
        self,
        services: Services,
        leg: CallLeg,
        number: NumberConfig,
        *,
        bridge_id: str | None = None,
        peer_to_peer: bool = False,
    ) -> None:
        self.id = uuid.uuid4().hex
        self.peer_to_peer = peer_to_peer  # a client calling a client by name: no RCML, no transfers
        self.services = services
        self.leg = leg
        self.number = number
        self.bridge_id = bridge_id
        self.dial_legs: dict[str, CallLeg] = {}
        self.peer: CallLeg | None = None  # the party a Dial connected, while connected
        self.transferor: CallLeg | None = None  # set while a REFER on this call is being handled
        self.last_dial_status: str | None = None
        self.document_source = ""
        self._interrupt: asyncio.Future[Outcome] | None = None
        self._changed: asyncio.Future[None] | None = None
        self._dial_watch: asyncio.Future[str] | None = None
        services.registry.adopt(leg, self)

    # -- what verbs use -------------------------------------------------------------------------------------

    @property
    def ari(self) -> AsteriskApi:
        return self.services.ari

    @property
    def settings(self) -> Settings:
        return self.services.settings

    def params(self, leg: CallLeg | None = None) -> dict[str, str]:
        """The standard request parameters of a leg's call, as Restcomm sends them."""
        leg = leg or self.leg
        return {
            "CallSid": leg.call_sid,
            "AccountSid": self.settings.webhooks.account_sid,
            "From": leg.party.from_,
            "To": leg.party.to,
            "CallStatus": leg.call_status(),
            "ApiVersion": API_VERSION,
            "Direction": leg.role.value,
            "CallerName": leg.party.caller_name,
            "ForwardedFrom": leg.party.forwarded_from,
        }

    async def fetch(self, url: str, method: HttpMethod, extra: Mapping[str, str] | None = None) -> Document:
        """Request an application URL with this call's parameters (plus ``extra``), relative to the document."""
        params = self.params() | dict(extra or {})
        return await self.services.webhooks.fetch(url, method, params, base=self.document_source or None)

    async def answer(self) -> None:
        """Answer the caller if nobody has yet."""
        if self.leg.state is LegState.INBOUND:
            await self.ari.answer(self.leg.id)
            self.leg.set_state(LegState.UP, "answered by the app")

    async def ensure_bridge(self) -> str:
        """The session's mixing bridge, created on first use."""
        if self.bridge_id is None:
            bridge_id = uuid.uuid4().hex
            await self.ari.create_bridge(bridge_id, f"rcml-{self.number.number}")
            self.bridge_id = bridge_id
        return self.bridge_id

    def adopt(self, leg: CallLeg) -> None:
        """A leg this session's Dial created: hung up with the session unless handed on."""
        for gone in [leg_id for leg_id, old in self.dial_legs.items() if old.is_gone]:
            del self.dial_legs[gone]
        self.dial_legs[leg.id] = leg
        self.services.registry.adopt(leg, self)

    # -- transfers ------------------------------------------------------------------------------------------

    def interrupt(self, outcome: Outcome) -> bool:
        """End the connected Dial with ``outcome`` (a transfer). False if no Dial is connected any more."""
        if self._interrupt is None or self._interrupt.done():
            return False
        self._interrupt.set_result(outcome)
        return True

    def open_interrupt(self) -> asyncio.Future[Outcome]:
        self._interrupt = asyncio.get_running_loop().create_future()
        return self._interrupt

    def close_interrupt(self) -> None:
        if self._interrupt is not None and not self._interrupt.done():
            self._interrupt.cancel()
        self._interrupt = None

    def changed(self) -> asyncio.Future[None]:
        """Resolves the next time :meth:`set_transferor` runs, so a waiting Dial re-reads who may leave."""
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        return self._changed

    def set_transferor(self, leg: CallLeg | None) -> None:
        self.transferor = leg
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)

    def watch_first_dial(self) -> asyncio.Future[str]:
        """Resolves with the status of the next Dial this session runs (``answered`` when it connects)."""
        self._dial_watch = asyncio.get_running_loop().create_future()
        return self._dial_watch

    def report_dial(self, status: str) -> None:
        if self._dial_watch is not None and not self._dial_watch.done():
            self._dial_watch.set_result(status)

    # -- running --------------------------------------------------------------------------------------------

    async def run(self, document: Document | None = None) -> None:
        """Fetch the Voice URL (unless given a document), run it, then end the call."""
        outcome: Outcome
        try:
            if document is None:
                document = await self.fetch(self.number.voice_url, self.number.voice_method)
            outcome = await self._execute(document)
        except (WebhookError, MarkupError) as exc:
            log.warning("number %s, call %s: %s; hanging up", self.number.number, self.leg.call_sid, exc)
            outcome = HangupCall("normal" if self.leg.is_up else "congestion")
        except CallGone:
            outcome = HangupCall()
        except asyncio.CancelledError:
            await self._finish(HangupCall())
            raise
        except StasisRcmlError as exc:
            log.error("number %s, call %s: %s; hanging up", self.number.number, self.leg.call_sid, exc)
            outcome = HangupCall("normal" if self.leg.is_up else "congestion")
        await self._finish(outcome)

    async def _execute(self, document: Document) -> Outcome:
        verbs = document.verbs
        self.document_source = document.source
        index = 0
        while index < len(verbs):
            if self.leg.is_gone:
                return HangupCall()
            verb = verbs[index]
            index += 1
            outcome = await EXECUTORS[type(verb)].execute(self, verb)
            match outcome:
                case Next():
                    continue
                case Replace(document=replacement):
                    verbs, index = replacement.verbs, 0
                    self.document_source = replacement.source
                case HangupCall() | Handover():
                    return outcome
        reason = "normal" if self.leg.is_up else _END_CAUSE.get(self.last_dial_status or "", "normal")
        return HangupCall(reason)

    async def _finish(self, outcome: Outcome) -> None:
        self.close_interrupt()
        self.report_dial("canceled")
        try:
            if isinstance(outcome, Handover):
                return
            reason = outcome.reason if isinstance(outcome, HangupCall) else "normal"
            jobs = [self.hang_up(leg, "normal") for leg in self.dial_legs.values() if leg is not self.transferor]
            if self.leg is not self.transferor:
                jobs.append(self.hang_up(self.leg, reason))
            await asyncio.gather(*jobs)
            if self.bridge_id is not None:
                bridge_id, self.bridge_id = self.bridge_id, None
                try:
                    await self.ari.destroy_bridge(bridge_id)
                except CallGone:
                    pass
                except StasisRcmlError as exc:
                    log.warning("could not destroy bridge %s: %s", bridge_id, exc)
        finally:
            self.services.on_session_end(self)

    async def hang_up(self, leg: CallLeg, reason: HangupReason = "normal") -> None:
        """Hang a leg up once, whoever asks first; a leg already gone is a normal case."""
        if leg.is_gone or leg.hanging_up:
            return
        leg.hanging_up = True
        try:
            await self.ari.hangup(leg.id, reason)
        except CallGone:
            leg.set_state(LegState.GONE, "already gone")
        except StasisRcmlError as exc:
            leg.hanging_up = False
            log.warning("could not hang up %s: %s", leg.channel.name or leg.id, exc)
