"""A call session: one RCML document run on one leg, verb after verb, in that leg's bridge.

The session is the :class:`~stasis_app.context.CallContext` its verbs see, and the place a REFER on the call
finds the number and the connected Dial (:class:`~stasis_app.transfer.TransferSite`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from enum import Enum
from typing import Any, Protocol

from models.ari import Channel
from models.config import NumberConfig, Settings
from models.rcml import Dial, Document, HttpMethod, Verb
from stasis_app.ari.protocol import AsteriskApi, HangupReason, in_turn
from stasis_app.bridges import PREFIX, Bridge
from stasis_app.call_media import CallMedia
from stasis_app.call_requests import API_VERSION, CallRequests, DocumentBudgetSpent, Requester
from stasis_app.callbacks import Callbacks
from stasis_app.conference import Conferences
from stasis_app.context import Needs
from stasis_app.errors import AriError, CallGone, MarkupError, StasisRcmlError, WebhookError
from stasis_app.legs import CallLeg, LegRole, LegState, Party, end_virtual, hang_up, virtual_pair
from stasis_app.logs import CALL_SID
from stasis_app.media import MediaService
from stasis_app.outcomes import DialWatcher, Handover, HangupCall, Next, Outcome, Replace
from stasis_app.transfer import Connection
from stasis_app.verbs import EXECUTORS
from stasis_app.webhook import resolve_url

__all__ = ["API_VERSION", "CallSession", "Requester", "SessionHost", "SessionState"]

log = logging.getLogger(__name__)

# A Dial that did not connect ends the call with a matching cause, so a caller that reached this number through
# another number's <Dial> (a Local channel) sees busy as busy.
_END_CAUSE: dict[str, HangupReason] = {"busy": "busy", "no-answer": "no_answer", "failed": "congestion"}

# Calls to our own numbers nested in one another, in-process (1001 dials 1002 which dials 1003...).
MAX_NESTING = 8


class SessionHost(Protocol):
    """What a session needs of the engine: Asterisk, the requester, and the identity maps it registers in."""

    ari: AsteriskApi
    webhooks: Requester
    settings: Settings
    media: MediaService

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` in a task the host keeps (and reports if it fails), beyond this session's end."""

    conferences: Conferences
    callbacks: Callbacks

    def register(self, leg: CallLeg, session: CallSession) -> None: ...

    def new_bridge(self, owner: CallSession, name: str) -> Bridge: ...

    def session_ended(self, session: CallSession) -> None: ...

    def start_session(self, session: CallSession, document: Document | None = None) -> None: ...

    async def whisper(self, dialer: CallSession, leg: CallLeg, url: str, method: HttpMethod) -> str | None:
        """Run a Dial noun's whisper ``url`` on ``leg`` (see :mod:`stasis_app.whisper`)."""


class SessionState(Enum):
    STARTING = "starting"  # fetching the first document
    RUNNING = "running"  # running verbs
    ENDING = "ending"  # hanging up its legs, destroying its bridge
    ENDED = "ended"


class CallSession(CallMedia, CallRequests):
    """Runs RCML on ``leg``. A Dial's legs and the bridge belong to the session until it ends or hands them on."""

    host: SessionHost

    def __init__(
        self,
        host: SessionHost,
        leg: CallLeg,
        number: NumberConfig,
        *,
        bridge: Bridge | None = None,
        watcher: DialWatcher | None = None,
        peer_to_peer: bool = False,
        parent: CallSession | None = None,
    ) -> None:
        self.id = secrets.token_hex(16)
        self.host = host
        self.leg = leg
        self._number = number
        self.peer_to_peer = peer_to_peer  # a client calling a client by name: no RCML, no transfers
        # An in-process call to one of our numbers runs in the bridge of the call that dialed it.
        self.parent = parent
        self.depth: int = parent.depth + 1 if parent is not None else 0
        self.state = SessionState.STARTING
        self.own_bridge: Bridge | None = bridge
        if bridge is not None:
            bridge.owner = self
        self.dial_legs: dict[str, CallLeg] = {}
        self.leg_ids: set[str] = set()  # every leg the engine registered for this call, to forget them at its end
        self.connection: Connection | None = None  # the Dial's connected pair, while connected
        self.last_dial_status: str | None = None
        self.document_source = ""
        self.documents = 0
        self._watcher = watcher
        self._watcher_given = False
        self._bridge_lock = asyncio.Lock()
        self._interrupt: asyncio.Future[Outcome] | None = None
        host.register(leg, self)

    def set_state(self, new: SessionState, why: str) -> None:
        old = self.state
        if old is new or old is SessionState.ENDED:
            return
        self.state = new
        log.debug("session %s -> %s: %s", old.value, new.value, why)

    # -- TransferSite -----------------------------------------------------------------------------------------

    @property
    def number(self) -> NumberConfig:
        return self._number

    # -- CallContext ------------------------------------------------------------------------------------------

    @property
    def caller(self) -> CallLeg:
        return self.leg

    @property
    def settings(self) -> Settings:
        return self.host.settings

    @property
    def ari(self) -> AsteriskApi:
        return self.host.ari

    @property
    def document_url(self) -> str:
        return self.document_source

    @property
    def media(self) -> MediaService:
        return self.host.media

    def new_leg(self, endpoint: str, party: Party) -> CallLeg:
        leg = CallLeg(Channel(id=secrets.token_hex(16), name=endpoint), LegRole.DIALED, party, state=LegState.CALLING)
        for gone in [leg_id for leg_id, old in self.dial_legs.items() if old.is_gone]:
            del self.dial_legs[gone]
        self.dial_legs[leg.id] = leg
        self.host.register(leg, self)
        return leg

    async def originate(
        self, leg: CallLeg, endpoint: str, caller_id: str, timeout: int, variables: dict[str, str] | None = None
    ) -> bool:
        try:
            await self.ari.originate(
                endpoint=endpoint,
                channel_id=leg.id,
                app_args="dial",
                caller_id=caller_id,
                timeout=timeout,
                variables=variables,
                originator=media.id if (media := self.leg.media_leg) is not None else None,
            )
        except AriError as exc:
            self._under_way()
            log.warning("number %s: cannot dial %s: %s", self._number.number, endpoint, exc.reason)
            # No channel was made, so no event will ever say it ended: it ends here.
            leg.set_state(LegState.GONE, f"originate refused: {exc.reason}", cause=34)
            return False
        self._under_way()
        return True

    def _under_way(self) -> None:
        """Tell the Dial that rang this number in-process that its app's first request is out (see Dial._ring)."""
        twin = self.leg.twin
        if twin is not None and twin.underway is not None and not twin.underway.done():
            twin.underway.set_result(None)

    async def hang_up(self, leg: CallLeg, reason: HangupReason = "normal") -> None:
        await hang_up(self.ari, leg, reason)

    def dial_ours(self, number: NumberConfig, party: Party) -> CallLeg:
        # The number's own call: From/To as its app would see them through a Local channel.
        inbound = Party(from_=party.from_, to=number.number, caller_name=party.caller_name)
        name = f"{number.number}@in-process-{secrets.token_hex(4)}"
        dialed, leg = virtual_pair(self.leg, party, inbound, name)
        if self.depth >= MAX_NESTING:
            # A number that dials itself (or a ring of numbers) would nest calls without end.
            log.warning(
                "number %s: our number %s would be the %d-th call nested in this one (a number dialing itself?);"
                " that noun fails",
                self._number.number,
                number.number,
                self.depth + 1,
            )
            end_virtual(dialed, "congestion", "too deeply nested")
            return dialed
        for gone in [leg_id for leg_id, old in self.dial_legs.items() if old.is_gone]:
            del self.dial_legs[gone]
        self.dial_legs[dialed.id] = dialed
        self.host.register(dialed, self)
        log.debug("number %s: dials our number %s in-process (%s)", self._number.number, number.number, leg.call_sid)
        self.host.start_session(CallSession(self.host, leg, number, parent=self))
        return dialed

    async def bridge(self) -> Bridge:
        if self.parent is not None and self.own_bridge is None:
            return await self.parent.bridge()
        async with self._bridge_lock:
            if self.own_bridge is None or self.own_bridge.is_gone:
                bridge = self.host.new_bridge(self, f"{PREFIX}{self._number.number}")
                self.own_bridge = bridge
                await bridge.create(self.ari)
            return self.own_bridge

    async def join(self, *legs: CallLeg) -> None:
        # A virtual leg's audio is already in the bridge: the caller whose Dial rang it, or that call's callee.
        real = [leg for leg in legs if not leg.virtual]
        if real:
            await (await self.bridge()).join(self.ari, *real)

    async def answer_and_join(self, *legs: CallLeg, first: Callable[[], Awaitable[None]] | None = None) -> None:
        steps = [first] if first is not None else []
        if self.leg.virtual:
            for step in steps:
                await step()
            await self.answer()  # waits until the Dial that rang this number has connected its caller
            await self.join(*legs)
        else:
            await in_turn(self.ari, *steps, self.answer, lambda: self.join(*legs))

    def connecting(self, leg: CallLeg) -> bool:
        if self.connection is not None and self.connection.active:
            return False
        answered = [dialed for dialed in self.dial_legs.values() if dialed.is_up]
        return leg in answered or (leg is self.leg and bool(answered))

    async def connected(self, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while self.connecting(self.leg) or any(self.connecting(dialed) for dialed in self.dial_legs.values()):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or self.state is SessionState.ENDED:
                return
            await asyncio.sleep(min(0.02, remaining))

    def connect(self, peer: CallLeg, bridge: Bridge, refer: tuple[str, HttpMethod] | None = None) -> Connection:
        if peer.virtual and (ready := peer.twin and peer.twin.media_ready) and not ready.done():
            ready.set_result(None)  # the number's app may now play to this call's caller
        if refer is not None:
            try:
                refer = (resolve_url(refer[0], self.document_source or None), refer[1])
            except WebhookError:
                pass  # requested as written if a REFER comes: it fails then, one line, and the REFER gets 603
        self.connection = Connection(self.leg, peer, bridge, refer)
        return self.connection

    def dial_watcher(self) -> DialWatcher | None:
        if self._watcher_given:
            return None
        self._watcher_given = True
        return self._watcher

    def dial_ended(self, status: str) -> None:
        self.last_dial_status = status

    async def whisper(self, leg: CallLeg, url: str, method: HttpMethod) -> str | None:
        return await self.host.whisper(self, leg, url, method)

    def let_go(self, leg: CallLeg) -> None:
        """A transfer took ``leg`` over: this session no longer hangs it up."""
        self.dial_legs.pop(leg.id, None)

    @property
    def conferences(self) -> Conferences:
        return self.host.conferences

    async def send_message(self, to: str, from_: str, body: str) -> None:
        await self.ari.send_message(to, from_, body)

    # -- running --------------------------------------------------------------------------------------------

    def interrupt(self, outcome: Outcome) -> bool:
        """Stop the running verb (whichever it is) and go on with ``outcome``; False if no verb is running."""
        if self._interrupt is None or self._interrupt.done():
            return False
        self._interrupt.set_result(outcome)
        return True

    async def run(self, document: Document | None = None) -> None:
        """Fetch the Voice URL (unless given a document), run it, then end the call."""
        CALL_SID.set(self.leg.call_sid)  # this task's own context: every line it logs names the call
        outcome: Outcome
        try:
            if document is None:
                document = await self.host.webhooks.fetch_voice(self._number, self.params())
            outcome = await self._execute(document)
        except (WebhookError, MarkupError) as exc:
            log.warning("number %s: %s; hanging up", self._number.number, exc)
            outcome = HangupCall("normal" if self.leg.is_up else "congestion")
        except DocumentBudgetSpent as exc:
            log.warning("%s (a Redirect or action loop?); hanging up", exc)
            outcome = HangupCall("normal" if self.leg.is_up else "congestion")
        except CallGone:
            outcome = HangupCall()
        except asyncio.CancelledError:
            await self._finish(HangupCall())
            raise
        except StasisRcmlError as exc:
            log.error("number %s: %s; hanging up", self._number.number, exc)
            outcome = HangupCall("normal" if self.leg.is_up else "congestion")
        except Exception:
            # A bug, not a call problem: said once, with the traceback, and the call still ends cleanly.
            log.exception("number %s: bug while running the call; hanging up", self._number.number)
            outcome = HangupCall("normal" if self.leg.is_up else "congestion")
        await self._finish(outcome)

    async def _execute(self, document: Document) -> Outcome:
        self.set_state(SessionState.RUNNING, document.source)
        verbs, index = self._start_document(document)
        while index < len(verbs):
            if self.leg.is_gone:
                return HangupCall()
            verb = verbs[index]
            index += 1
            executor = EXECUTORS[type(verb)]
            if not isinstance(verb, Dial):
                self._under_way()
            if executor.needs is Needs.ANSWERED:
                await self.answer()
            outcome = await self._run_verb(executor.execute(self, verb))
            match outcome:
                case Next():
                    await asyncio.sleep(0)  # a document of instant verbs must not hold the loop
                case Replace(document=replacement, watcher=watcher):
                    if watcher is not None:
                        self._watcher, self._watcher_given = watcher, False
                    verbs, index = self._start_document(replacement)
                    await asyncio.sleep(0)
                case HangupCall() | Handover():
                    return outcome
        reason = "normal" if self.leg.is_up else _END_CAUSE.get(self.last_dial_status or "", "normal")
        return HangupCall(reason)

    def _start_document(self, document: Document) -> tuple[tuple[Verb, ...], int]:
        self.documents += 1
        self.document_source = document.source
        return document.verbs, 0

    async def _run_verb(self, running: Coroutine[Any, Any, Outcome]) -> Outcome:
        interrupt: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._interrupt = interrupt
        task = asyncio.ensure_future(running)
        try:
            await asyncio.wait({task, interrupt}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return task.result()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return interrupt.result()
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            self._interrupt = None

    async def _finish(self, outcome: Outcome) -> None:
        self.set_state(SessionState.ENDING, type(outcome).__name__)
        self._under_way()
        try:
            await self.stop_ringing()
            if self.connection is not None:
                self.connection.close()
            if self._watcher is not None:
                self._watcher.dial_decided("canceled", None)  # ignored if its Dial decided already
            if isinstance(outcome, Handover):
                return
            reason = outcome.reason if isinstance(outcome, HangupCall) else "normal"
            jobs = [self.hang_up(leg) for leg in self.dial_legs.values()]
            jobs.append(self.hang_up(self.leg, reason))
            await asyncio.gather(*jobs)
            self._call_ended()
            if self.own_bridge is not None and self.own_bridge.owner is self:
                await self.own_bridge.destroy(self.ari)
        finally:
            self.set_state(SessionState.ENDED, "done")
            self.host.session_ended(self)
