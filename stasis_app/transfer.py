"""SIP REFER blind transfer (RFC 5589 §6.1) driven by the number's Refer URL.

Asterisk (``PJSIP_TRANSFER_HANDLING()=ari-only``) answers the REFER 202 and raises one ``ChannelTransfer``
without ``state``; every ``transfer_progress`` we post comes back as another ``ChannelTransfer`` with ``state``,
which is only an echo. The refer app's RCML runs on the transferee's call, in the transferee's bridge, and the
outcome of its first Dial becomes the transferor's final NOTIFY. The transferor stays up (out of the bridge)
until then: hanging it up earlier makes Asterisk send it a 503 sipfrag although the transfer worked.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from models.ari import ChannelTransfer, TransferState
from models.rcml import Dial, Document
from stasis_app.errors import AriError, CallGone, MarkupError, WebhookError
from stasis_app.legs import CallLeg
from stasis_app.routing import UnsafeTarget, check_refer_target
from stasis_app.session import CallSession
from stasis_app.verbs.base import Handover, Outcome, Replace

if TYPE_CHECKING:
    from stasis_app.engine import Engine

__all__ = ["TransferHandler"]

log = logging.getLogger(__name__)

# The first Dial of the refer app decides the transferor's final NOTIFY.
_FINAL_STATE = {
    "answered": TransferState.ANSWERED,  # 200
    "busy": TransferState.DECLINED,  # 603
}


class TransferHandler:
    """Accepts or declines each REFER, runs the refer app and keeps the transferor's phone informed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def on_transfer(self, event: ChannelTransfer) -> None:
        """Handle a ``ChannelTransfer`` event; echoes of our own ``transfer_progress`` are ignored."""
        if event.state is not None:
            return
        source = event.referred_by.source_channel
        destination = event.refer_to.requested_destination
        leg = self.engine.legs.get(source.id)
        session = self.engine.owner.get(source.id)
        if leg is None or session is None:
            return self._decline(source.id, source.name, "the call is not one this app runs")
        if destination.destination is None:
            return self._decline(leg.id, source.name, "attended transfer (Replaces) is not supported")
        if session.peer_to_peer:
            return self._decline(leg.id, source.name, "peer-to-peer client call: not made by an RCML Dial")
        if session.peer is None or leg not in (session.leg, session.peer):
            return self._decline(leg.id, source.name, "the call is not connected by an RCML Dial")
        if session.transferor is not None:
            return self._decline(leg.id, source.name, "a transfer is already in progress on this call")
        if session.number.refer_url is None:
            return self._decline(leg.id, source.name, f"number {session.number.number} has no Refer URL")
        try:
            target = check_refer_target(destination.destination)
        except UnsafeTarget as exc:
            return self._decline(leg.id, source.name, str(exc))
        transferee = session.peer if leg is session.leg else session.leg
        # Claimed now, synchronously, so a second REFER in the same breath is declined.
        session.set_transferor(leg)
        self.engine.spawn(self._transfer(session, leg, transferee, target), f"transfer-{leg.id}")

    def _decline(self, channel_id: str, name: str, reason: str) -> None:
        log.info("REFER from %s declined: %s", name or channel_id, reason)
        self.engine.spawn(self._post(channel_id, TransferState.DECLINED), f"decline-{channel_id}")

    async def _transfer(self, session: CallSession, transferor: CallLeg, transferee: CallLeg, target: str) -> None:
        number = session.number
        assert number.refer_url is not None  # checked before the transfer was accepted
        log.info(
            "REFER on number %s: %s transfers %s to %s",
            number.number,
            transferor.label,
            transferee.label,
            target,
        )
        progress = self.engine.spawn(self._post(transferor.id, TransferState.PROGRESS), "transfer-progress")
        params = session.params(transferee) | {
            "Transferor": transferor.label,
            "Transferee": transferee.label,
            "ReferTarget": target,
        }
        final = TransferState.UNAVAILABLE
        owned = True  # until the transferor is hung up, or handed back to a call that goes on
        try:
            try:
                document = await self.engine.services.webhooks.fetch(number.refer_url, number.refer_method, params)
            except (WebhookError, MarkupError) as exc:
                log.warning("REFER on number %s declined: %s", number.number, exc)
                final = TransferState.DECLINED
                if self._give_back(session, transferor, transferee):
                    owned = False
                    await progress
                    await self._post(transferor.id, final)
                return
            final = await self._run_refer_app(session, transferor, transferee, document)
        finally:
            if not progress.done():
                await progress
            if session.transferor is transferor:
                session.set_transferor(None)
            if owned and not transferor.is_gone:
                # A final NOTIFY first, then the hangup: the other order makes Asterisk NOTIFY 503 itself.
                await self._post(transferor.id, final)
                await session.hang_up(transferor)

    def _give_back(self, session: CallSession, transferor: CallLeg, transferee: CallLeg) -> bool:
        """A declined REFER leaves the call as it was, if both parties are still in it."""
        session.set_transferor(None)
        connected = session.peer is not None and transferor in (session.leg, session.peer)
        return connected and not transferor.is_gone and not transferee.is_gone

    async def _run_refer_app(
        self, session: CallSession, transferor: CallLeg, transferee: CallLeg, document: Document
    ) -> TransferState:
        bridge_id = session.bridge_id
        takes_over = transferee is session.leg
        outcome: Outcome = Replace(document) if takes_over else Handover()
        if not session.interrupt(outcome):
            log.info("transfer on number %s abandoned: the call ended meanwhile", session.number.number)
            return TransferState.UNAVAILABLE
        runner = session
        if not takes_over:
            # The caller is the one leaving: the callee's leg gets a session of its own, in the same bridge.
            session.bridge_id = None
            runner = CallSession(self.engine.services, transferee, session.number, bridge_id=bridge_id)
            runner.transferor = transferor
        has_dial = any(isinstance(verb, Dial) for verb in document.verbs)
        watch = runner.watch_first_dial() if has_dial else None
        if runner is not session:
            self.engine.start_session(runner, document)
        if bridge_id is not None:
            try:
                await self.engine.services.ari.remove_from_bridge(bridge_id, transferor.id)
            except AriError:
                pass  # gone already, or out of the bridge already: either way it is out
        if watch is None:
            return TransferState.ANSWERED  # a refer app without a Dial counts as answered once it starts
        status = await watch
        log.info("transfer on number %s: refer app's Dial %s", session.number.number, status)
        return _FINAL_STATE.get(status, TransferState.UNAVAILABLE)

    async def _post(self, channel_id: str, state: TransferState) -> None:
        try:
            await self.engine.services.ari.transfer_progress(channel_id, state)
        except CallGone:
            # The transferor hung up after the 202, as phones do: the NOTIFY has nobody to go to.
            log.debug("transfer_progress %s on %s: transferor already gone", state.value, channel_id)
        except AriError as exc:
            log.warning("transfer_progress %s on %s failed: %s", state.value, channel_id, exc)
