"""SIP REFER blind transfer (RFC 5589 §6.1) driven by the number's Refer URL.

Asterisk (``PJSIP_TRANSFER_HANDLING()=ari-only``) answers the REFER 202 and raises one ``ChannelTransfer``
without ``state``; every ``transfer_progress`` we post comes back as another ``ChannelTransfer`` with ``state``,
which is only an echo.

A REFER is offered to the :class:`Connection` of the Dial that connected the call (the Dial owns its bridge and
so its REFERs). Accepted, it becomes a :class:`Transfer`: named roles and one status, whose transitions post
``transfer_progress`` (the transferor's NOTIFYs). The refer app's RCML runs on the transferee's call, in the
transferee's bridge; its first Dial decides the final NOTIFY. The transferor stays up (out of the bridge) until
then: hanging it up earlier makes Asterisk send it a 503 sipfrag although the transfer worked.

    accepted -> fetching -> dialing -> answered | declined | unavailable -> ended
             \\-> declined (Refer URL failed: the call stays as it was) -> ended
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Mapping
from enum import Enum
from typing import Any, Protocol

from models.ari import ChannelTransfer, TransferState
from models.config import NumberConfig
from models.rcml import Dial, Document, HttpMethod
from stasis_app.ari.protocol import AsteriskApi
from stasis_app.bridges import Bridge
from stasis_app.errors import AriError, CallGone, MarkupError, WebhookError
from stasis_app.legs import CallLeg, hang_up
from stasis_app.logs import for_call
from stasis_app.outcomes import Handover, Outcome, Replace
from stasis_app.redact import redact_url
from stasis_app.routing import UnsafeTarget, check_refer_target

__all__ = ["Connection", "Transfer", "TransferHost", "TransferStatus", "Transfers"]

log = logging.getLogger(__name__)


class TransferStatus(Enum):
    ACCEPTED = "accepted"
    FETCHING = "fetching"  # the Refer URL is being requested
    DIALING = "dialing"  # the refer app's first Dial rings
    ANSWERED = "answered"
    DECLINED = "declined"
    UNAVAILABLE = "unavailable"
    ENDED = "ended"  # final NOTIFY sent, transferor let go


_FINAL = (TransferStatus.ANSWERED, TransferStatus.DECLINED, TransferStatus.UNAVAILABLE)
# What the transferor's phone is told on entering a status (its NOTIFY sipfrag: 100, 200, 603, 503).
_NOTIFY = {
    TransferStatus.FETCHING: TransferState.PROGRESS,
    TransferStatus.ANSWERED: TransferState.ANSWERED,
    TransferStatus.DECLINED: TransferState.DECLINED,
    TransferStatus.UNAVAILABLE: TransferState.UNAVAILABLE,
}
# At most this long the transferor stays in the bridge while the refer app's Dial gets its INVITEs out.
_RELEASE_WAIT_S = 1.0
# No NOTIFY sooner than this after the REFER's event. Asterisk 22.10.1's res_pjsip_refer publishes the
# ChannelTransfer event before it stores the state its NOTIFY framehook reads: a transfer_progress that lands in
# that gap (the pjsip thread descheduled under load) dereferences NULL and crashes Asterisk. The first NOTIFY is
# only the transferor's 100 Trying; the target's INVITE does not wait for it.
_FIRST_NOTIFY_S = 0.05
# The refer app's first Dial -> the final status.
_DIAL_FINAL = {"answered": TransferStatus.ANSWERED, "busy": TransferStatus.DECLINED}


class Transfer:
    """One accepted REFER: its roles and its status. Implements :class:`~stasis_app.outcomes.DialWatcher` for
    the refer app's first Dial."""

    def __init__(self, ari: AsteriskApi, transferor: CallLeg, transferee: CallLeg, target: str) -> None:
        self.id = secrets.token_hex(4)
        self.transferor = transferor
        self.transferee = transferee
        self.target = target  # the Refer-To user part, checked safe
        self.target_legs: list[str] = []  # channel ids the refer app's Dial rings, once known
        self.target_leg: str | None = None  # the one that answered
        self.status = TransferStatus.ACCEPTED
        # How the Dial that owns the bridge goes on: an outcome once the refer app is in hand, None when the
        # REFER was declined and the call stays as it was.
        self.handoff: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
        self.decided: asyncio.Future[TransferStatus] = asyncio.get_running_loop().create_future()
        # Set once the refer app's Dial has its INVITEs out, or the transfer is decided without one.
        self.dialing: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ari = ari
        self._posts: asyncio.Task[None] | None = None
        self._notify_from = asyncio.get_running_loop().time() + _FIRST_NOTIFY_S

    def role(self, channel_id: str) -> str | None:
        """``transferor``, ``transferee``, ``target`` or None."""
        if channel_id == self.transferor.id:
            return "transferor"
        if channel_id == self.transferee.id:
            return "transferee"
        if channel_id == self.target_leg or channel_id in self.target_legs:
            return "target"
        return None

    def move(self, new: TransferStatus, why: str) -> None:
        """The one transition: logs ``transfer <id>: old -> new`` and posts the NOTIFY the new status means.
        Posts go out in order; a final status is reached once (later ones are ignored)."""
        old = self.status
        if old is new or old is TransferStatus.ENDED or (old in _FINAL and new is not TransferStatus.ENDED):
            return
        self.status = new
        # The outcome is worth a line at INFO; the steps to it are DEBUG (a line costs ~15 us, on every call).
        level = logging.INFO if new in _FINAL else logging.DEBUG
        if log.isEnabledFor(level):
            with for_call(self.transferee.call_sid):
                log.log(level, "transfer %s: %s -> %s (%s)", self.id, old.value, new.value, why)
        if (state := _NOTIFY.get(new)) is not None:
            self._post(state)
        if (new is TransferStatus.DIALING or new in _FINAL) and not self.dialing.done():
            self.dialing.set_result(None)
        if new in _FINAL and not self.decided.done():
            self.decided.set_result(new)

    async def posted(self) -> None:
        """Wait until every NOTIFY asked for so far went out."""
        if self._posts is not None:
            await asyncio.shield(self._posts)

    # -- DialWatcher: the refer app's first Dial ------------------------------------------------------------

    def dial_started(self, ringing: list[str]) -> None:
        self.target_legs = list(ringing)
        self.move(TransferStatus.DIALING, f"refer app dials {len(ringing)} target(s)")

    def dial_decided(self, status: str, answered_by: str | None) -> None:
        self.target_leg = answered_by
        self.move(_DIAL_FINAL.get(status, TransferStatus.UNAVAILABLE), f"refer app's Dial {status}")

    # -- internals --------------------------------------------------------------------------------------------

    def _post(self, state: TransferState) -> None:
        previous = self._posts
        self._posts = asyncio.ensure_future(self._post_after(previous, state))

    async def _post_after(self, previous: asyncio.Task[None] | None, state: TransferState) -> None:
        if previous is not None:
            await asyncio.shield(previous)
        else:
            wait = self._notify_from - asyncio.get_running_loop().time()
            if wait > 0:
                await asyncio.sleep(wait)
        try:
            await self._ari.transfer_progress(self.transferor.id, state)
        except CallGone:
            # The transferor hung up after the 202, as phones do: the NOTIFY has nobody to go to.
            log.debug("transfer %s: NOTIFY %s: transferor already gone", self.id, state.value)
        except AriError as exc:
            log.warning("transfer %s: NOTIFY %s failed: %s", self.id, state.value, exc)


class Connection:
    """A Dial's caller and peer in its bridge while connected: where a REFER on the call is offered."""

    def __init__(
        self, caller: CallLeg, peer: CallLeg, bridge: Bridge, refer: tuple[str, HttpMethod] | None = None
    ) -> None:
        self.caller = caller
        self.peer = peer
        self.bridge = bridge
        self.refer = refer  # the Dial's own referUrl (absolute) and referMethod, which take the number's place
        self.transfer: Transfer | None = None
        self.active = True
        self._changed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def changed(self) -> asyncio.Future[None]:
        """Resolves when a transfer is offered (so the Dial re-reads who may leave)."""
        if self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        return self._changed

    def offer(self, transfer: Transfer) -> None:
        self.transfer = transfer
        if not self._changed.done():
            self._changed.set_result(None)

    def close(self) -> None:
        """The Dial is over: a transfer not handed off yet has no call to go to."""
        self.active = False


class TransferSite(Protocol):
    """What a transfer needs of the call session a REFER arrives on."""

    @property
    def number(self) -> NumberConfig: ...

    @property
    def leg(self) -> CallLeg: ...

    @property
    def peer_to_peer(self) -> bool: ...

    @property
    def connection(self) -> Connection | None: ...

    def params(self, leg: CallLeg | None = None) -> dict[str, str]: ...

    def connecting(self, leg: CallLeg) -> bool:
        """Whether ``leg`` has answered a Dial that is still connecting (bridging the two parties)."""

    async def connected(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) until the Dial connecting now has connected, or gave up."""


# A phone may REFER right after it answered, before the app has bridged it (under load that takes a while):
# such a REFER waits this long for the connection instead of being declined at once.
CONNECT_WAIT_S = 5.0


class TransferHost(Protocol):
    """What the transfer service needs of the engine."""

    ari: AsteriskApi

    def site(self, channel_id: str) -> tuple[CallLeg, TransferSite] | None: ...

    def in_conference(self, channel_id: str) -> bool:
        """Whether the channel takes part in a conference room (where Restcomm refuses a REFER)."""

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]: ...

    async def fetch(self, url: str, method: HttpMethod, params: Mapping[str, str]) -> Document: ...

    def take_over(
        self, site: TransferSite, leg: CallLeg, bridge: Bridge, document: Document, watcher: Transfer | None
    ) -> None:
        """Run ``document`` on ``leg`` (the callee of ``site``'s Dial) as a session of its own that owns
        ``bridge``; ``watcher`` hears how its first Dial goes."""


class Transfers:
    """Accepts or declines each REFER, and drives each accepted one to its end."""

    def __init__(self, host: TransferHost) -> None:
        self.host = host

    def on_transfer(self, event: ChannelTransfer, *, waited: bool = False) -> None:
        """Handle a ``ChannelTransfer`` event; echoes of our own ``transfer_progress`` are ignored."""
        if event.state is not None:
            return
        source = event.referred_by.source_channel
        destination = event.refer_to.requested_destination.destination
        found = self.host.site(source.id)
        if found is None:
            return self._decline(source.id, source.name, "the call is not one this app runs")
        leg, site = found
        connection = site.connection
        if destination is None:
            return self._decline(leg.id, leg.name, "attended transfer (Replaces) is not supported")
        if site.peer_to_peer:
            return self._decline(leg.id, leg.name, "peer-to-peer client call: not made by an RCML Dial")
        if self.host.in_conference(leg.id):
            return self._decline(leg.id, leg.name, "a conference participant may not transfer (as in Restcomm)")
        if connection is None or not connection.active or leg not in (connection.caller, connection.peer):
            if not waited and site.connecting(leg):
                self.host.spawn(self._when_connected(event, site), f"refer-wait-{leg.id}")
                return None
            return self._decline(leg.id, leg.name, "the call is not connected by an RCML Dial")
        if connection.transfer is not None:
            return self._decline(leg.id, leg.name, "a transfer is already in progress on this call")
        if connection.refer is None and site.number.refer_url is None:
            return self._decline(leg.id, leg.name, f"number {site.number.number} has no Refer URL")
        try:
            target = check_refer_target(destination)
        except UnsafeTarget as exc:
            return self._decline(leg.id, leg.name, str(exc))
        transferee = connection.peer if leg is connection.caller else connection.caller
        # Offered now, synchronously, so a second REFER in the same breath is declined.
        transfer = Transfer(self.host.ari, leg, transferee, target)
        connection.offer(transfer)
        with for_call(transferee.call_sid):
            log.info(
                "transfer %s: REFER on number %s: %s transfers %s to %s",
                transfer.id,
                site.number.number,
                leg.label,
                transferee.label,
                target,
            )
        self.host.spawn(self._run(site, connection, transfer), f"transfer-{transfer.id}")

    async def _when_connected(self, event: ChannelTransfer, site: TransferSite) -> None:
        await site.connected(CONNECT_WAIT_S)
        self.on_transfer(event, waited=True)

    def _decline(self, channel_id: str, name: str, reason: str) -> None:
        log.info("REFER from %s declined: %s", name, reason)
        self.host.spawn(self._post_decline(channel_id), f"decline-{channel_id}")

    async def _post_decline(self, channel_id: str) -> None:
        await asyncio.sleep(_FIRST_NOTIFY_S)  # see _FIRST_NOTIFY_S: the REFER's event may be ahead of its state
        try:
            await self.host.ari.transfer_progress(channel_id, TransferState.DECLINED)
        except AriError as exc:
            log.debug("transfer_progress declined on %s: %s", channel_id, exc)

    async def _run(self, site: TransferSite, connection: Connection, transfer: Transfer) -> None:
        number = site.number
        params = site.params(transfer.transferee) | {
            "Transferor": transfer.transferor.label,
            "Transferee": transfer.transferee.label,
            "ReferTarget": transfer.target,
        }
        if connection.refer is not None:
            url, method = connection.refer
            # Twilio's name for the Refer-To URI; Asterisk hands ARI its user part only, so that is all it has.
            params["ReferTransferTarget"] = f"<sip:{transfer.target}>"
        else:
            assert number.refer_url is not None  # checked before the transfer was accepted
            url, method = number.refer_url, number.refer_method
        transfer.move(TransferStatus.FETCHING, f"requesting {redact_url(url)}")
        keep_transferor = False
        try:
            try:
                document = await self.host.fetch(url, method, params)
            except (WebhookError, MarkupError) as exc:
                log.warning("REFER on number %s declined: %s", number.number, exc)
                transfer.move(TransferStatus.DECLINED, "Refer URL failed; the call stays as it was")
                # Back to the call it was on, if both parties still are.
                keep_transferor = connection.active and not transfer.transferee.is_gone
                self._hand_off(connection, transfer, None)
                return
            await self._run_refer_app(site, connection, transfer, document)
            await transfer.decided
        finally:
            await transfer.posted()
            if not keep_transferor and not transfer.transferor.is_gone:
                # The final NOTIFY went first: the other order makes Asterisk NOTIFY 503 itself.
                await hang_up(self.host.ari, transfer.transferor)
            transfer.move(TransferStatus.ENDED, "transferor let go" if not keep_transferor else "call goes on")

    async def _run_refer_app(
        self, site: TransferSite, connection: Connection, transfer: Transfer, document: Document
    ) -> None:
        has_dial = any(isinstance(verb, Dial) for verb in document.verbs)
        watcher = transfer if has_dial else None
        takes_over = transfer.transferee is connection.caller
        outcome: Outcome = Replace(document, watcher) if takes_over else Handover()
        if not self._hand_off(connection, transfer, outcome):
            transfer.move(TransferStatus.UNAVAILABLE, "the call ended meanwhile")
            return
        if not takes_over:
            # The caller is the one leaving: the callee's leg gets a session of its own, in the same bridge.
            self.host.take_over(site, transfer.transferee, connection.bridge, document, watcher)
        if has_dial:
            # The target's INVITE first: on the events websocket Asterisk runs requests one after another, and
            # taking the transferor out of the bridge waits on its channel. A moment more of Bob is harmless.
            await asyncio.wait({transfer.dialing}, timeout=_RELEASE_WAIT_S)
        await connection.bridge.release(self.host.ari, transfer.transferor)
        if not has_dial:
            transfer.move(TransferStatus.ANSWERED, "refer app has no Dial: counted as answered once it starts")

    @staticmethod
    def _hand_off(connection: Connection, transfer: Transfer, outcome: Outcome | None) -> bool:
        """Tell the Dial that owns the bridge how to go on; False if it is over already."""
        if not connection.active or transfer.handoff.done():
            if not transfer.handoff.done():
                transfer.handoff.set_result(None)
            return False
        transfer.handoff.set_result(outcome)
        return True
