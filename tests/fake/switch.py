"""The in-memory Asterisk core behind :class:`tests.fake.asterisk.FakeAsterisk`: channels, bridges,
playbacks, scripted phones and REFER subscriptions, and the events each state change produces.

Every transition emits its events in the order Asterisk 22.10.1 does in /work/shared/traces; the choices the
traces do not cover are listed in the docstring of :mod:`tests.fake.asterisk`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any
from uuid import uuid4

from models.ari import TransferState
from tests.fake.events import EventBuilder, bridge_json, channel_json
from tests.fake.model import (
    FakeBridge,
    FakeChannel,
    FakePlayback,
    Phone,
    ReferSubscription,
    dial_status,
    outgoing_dialplan,
    refer_user_part,
)


class Switch:
    """Channels, bridges and the events their changes produce. ``emit`` receives each event dict in order."""

    EPOCH = 1795497500  # uniqueids look like Asterisk's "<start time>.<counter>"
    endpoint_context = "rcml"  # the dialplan context Asterisk reports on originated PJSIP channels

    def __init__(self, app: str, emit: Callable[[dict[str, Any]], None]) -> None:
        self.app = app
        self.events = EventBuilder(app)
        self._emit = emit
        self.channels: dict[str, FakeChannel] = {}
        self.bridges: dict[str, FakeBridge] = {}
        self.playbacks: dict[str, FakePlayback] = {}
        self.phones: dict[str, Phone] = {}
        self.refers: dict[str, ReferSubscription] = {}
        self.names: dict[str, str] = {}  # every channel ever, by id
        self.ringing: dict[str, bool] = {}
        self.ring_tone: set[str] = set()  # answered channels hearing the in-band ring tone now
        self.ring_tones: dict[str, int] = {}  # how often each channel's in-band ring tone was started
        self.hangup_causes: dict[str, int] = {}
        self.played: dict[str, list[str]] = {}
        self.stray_transfer_progress: list[tuple[str, TransferState]] = []
        self.muted: dict[str, str] = {}  # channel id -> the direction muted
        self.messages: list[dict[str, str]] = []  # out-of-call messages sent (to, from, body, delivered)
        self.timers: set[asyncio.TimerHandle] = set()
        self.errors: list[BaseException] = []
        # Told of a hangup after its request, before StasisEnd (a live recording ends and is kept there).
        self.on_hangup: list[Callable[[FakeChannel], None]] = []
        self._uid = itertools.count(3)
        self._sip_index = itertools.count(3)
        self._local_index = itertools.count(1)

    # -- timers -------------------------------------------------------------------------------------------

    def later(self, ch: FakeChannel | None, delay: float, fn: Callable[..., None], *args: Any) -> asyncio.TimerHandle:
        """Run ``fn(*args)`` after ``delay`` seconds; cancelled with ``ch`` when it goes."""

        def run() -> None:
            self.timers.discard(handle)
            try:
                fn(*args)
            except Exception as exc:  # surfaced by FakeAsterisk.settle()
                self.errors.append(exc)

        handle = asyncio.get_running_loop().call_later(max(delay, 0.0), run)
        self.timers.add(handle)
        if ch is not None:
            ch.timers.append(handle)
        return handle

    def _cancel(self, handle: asyncio.TimerHandle | None) -> None:
        if handle is not None:
            handle.cancel()
            self.timers.discard(handle)

    # -- channels -----------------------------------------------------------------------------------------

    def _add(self, ch: FakeChannel) -> FakeChannel:
        self.channels[ch.id] = ch
        self.names[ch.id] = ch.name
        return ch

    def peers_of(self, ch: FakeChannel) -> list[FakeChannel]:
        if ch.bridge_id is None:
            return []
        return [self.channels[c] for c in self.bridges[ch.bridge_id].channels if c != ch.id]

    def local_peer(self, ch: FakeChannel) -> FakeChannel | None:
        return self.channels.get(ch.local_peer) if ch.local_peer else None

    def inbound(self, caller: str, exten: str, context: str) -> FakeChannel:
        uid = next(self._uid)
        ch = self._add(
            FakeChannel(
                id=f"{self.EPOCH}.{uid}",
                name=f"PJSIP/{caller}-{next(self._sip_index):08x}",
                state="Ring",
                protocol_id=f"{uid}-{uuid4().hex[:5]}@127.0.0.1",
                caller={"name": caller, "number": caller},
                connected={"name": "", "number": ""},
                dialplan={
                    "context": context,
                    "exten": exten,
                    "priority": 1,
                    "app_name": "Stasis",
                    "app_data": self.app,
                },
                endpoint=f"PJSIP/{caller}",
                in_stasis=True,
            )
        )
        self._emit(self.events.stasis_start(ch, []))
        return ch

    def originate(
        self, endpoint: str, channel_id: str, app_args: str, caller: dict[str, str], timeout: float
    ) -> dict[str, Any]:
        """Start dialing; returns the channel as ARI's 200 shows it (state Down)."""
        if endpoint.startswith("Local/"):
            return self._originate_local(endpoint, channel_id, app_args, caller, timeout)
        phone = self.phones[endpoint]
        ch = self._add(
            FakeChannel(
                id=channel_id,
                name=f"{endpoint}-{next(self._sip_index):08x}",
                state="Down",
                protocol_id=str(uuid4()),
                caller=dict(caller),
                connected=dict(caller),
                dialplan=outgoing_dialplan(self.endpoint_context),
                endpoint=endpoint,
                dialstring=endpoint.partition("/")[2],
                app_args=app_args,
                subscribed=True,
                dialing=True,
            )
        )
        snapshot = channel_json(ch)
        self._emit(self.events.dial(ch, ""))
        if phone.ring:
            self._dial_ringing(ch)
        cause = 17 if phone.busy else phone.reject_cause
        if cause is not None:
            self.later(ch, phone.answer_after or 0.0, self._dial_failed, ch, cause)
        elif phone.answer_after is not None:
            self.later(ch, phone.answer_after, self._dial_answered, ch)
        self.later(ch, timeout, self._dial_timed_out, ch)
        return snapshot

    def _originate_local(
        self, endpoint: str, channel_id: str, app_args: str, caller: dict[str, str], timeout: float
    ) -> dict[str, Any]:
        spec = endpoint.removeprefix("Local/")
        exten, _, context = spec.partition("/")[0].partition("@")
        context = context or "default"
        base = f"Local/{exten}@{context}-{next(self._local_index):08x}"
        one = self._add(
            FakeChannel(
                id=channel_id,
                name=f"{base};1",
                state="Down",
                protocol_id="",
                caller=dict(caller),
                connected=dict(caller),
                dialplan=outgoing_dialplan(context, exten),
                endpoint=endpoint,
                dialstring=spec,
                app_args=app_args,
                subscribed=True,
                dialing=True,
                local_half=1,
                local_peer=f"{channel_id}-2",
            )
        )
        two = self._add(
            FakeChannel(
                id=f"{channel_id}-2",
                name=f"{base};2",
                state="Ring",
                protocol_id="",
                caller=dict(caller),
                connected={"name": "", "number": ""},
                dialplan={
                    "context": context,
                    "exten": exten,
                    "priority": 1,
                    "app_name": "Stasis",
                    "app_data": self.app,
                },
                endpoint=endpoint,
                in_stasis=True,
                # Originating the pair subscribes the app to both halves: ;2's ChannelDestroyed reaches it too.
                subscribed=True,
                local_half=2,
                local_peer=channel_id,
            )
        )
        # 22.10.1 (tests/captures/seed.jsonl): ;2 enters Stasis before ;1's first Dial event.
        self._emit(self.events.stasis_start(two, []))
        self._emit(self.events.dial(one, ""))
        self.later(one, timeout, self._dial_timed_out, one)
        return channel_json(one)

    def _dial_ringing(self, ch: FakeChannel) -> None:
        if not ch.dialing or ch.state == "Ringing":
            return
        ch.state = "Ringing"
        self._emit(self.events.state_change(ch))
        self._emit(self.events.dial(ch, "RINGING"))

    def _dial_answered(self, ch: FakeChannel, also_up: FakeChannel | None = None) -> None:
        if not ch.dialing:
            return
        for handle in ch.timers:
            self._cancel(handle)
        ch.timers.clear()
        ch.dialing = False
        ch.state = "Up"
        self._emit(self.events.state_change(ch))
        if also_up is not None:
            self._emit(self.events.state_change(also_up))
        self._emit(self.events.dial(ch, "ANSWER"))
        ch.in_stasis = True
        ch.dialplan = {
            **ch.dialplan,
            "app_name": "Stasis",
            "app_data": ",".join(filter(None, [self.app, ch.app_args])),
        }
        self._emit(self.events.stasis_start(ch, ch.app_args.split(",") if ch.app_args else []))
        self._phone_hangs_up_later(ch)

    def _dial_failed(self, ch: FakeChannel, cause: int) -> None:
        if not ch.dialing:
            return
        # 22.10.1 (sandbox findings, uas_busy): the hangup request comes first, then the Dial status.
        self._emit(self.events.hangup_request(ch, cause))
        self._emit(self.events.dial(ch, dial_status(cause)))
        self._teardown(ch, cause)

    def _dial_timed_out(self, ch: FakeChannel) -> None:
        if not ch.dialing:
            return
        # No final Dial event: Asterisk 22.10.1 only destroys the channel (the contract test checks it).
        self._teardown(ch, 19)

    def _phone_hangs_up_later(self, ch: FakeChannel) -> None:
        phone = self.phones.get(ch.endpoint)
        if phone is not None and phone.hangup_after is not None:
            self.later(ch, phone.hangup_after, self.phone_hangup, ch)

    def answer(self, ch: FakeChannel) -> None:
        if ch.state == "Up":
            return
        ch.state = "Up"
        peer = self.local_peer(ch)
        if peer is not None and peer.dialing:
            # Answering ;2: ;1 reports Up first, then ;2, then ;1's Dial ANSWER and StasisStart (seed capture).
            self._dial_answered(peer, also_up=ch)
            return
        self._emit(self.events.state_change(ch))
        if peer is None:
            self._phone_hangs_up_later(ch)

    def ring(self, ch: FakeChannel) -> None:
        if ch.state == "Up":
            # chan_pjsip cannot send 180 after the answer: Asterisk starts its ring tone generator instead.
            self.ring_tone.add(ch.id)
            self.ring_tones[ch.id] = self.ring_tones.get(ch.id, 0) + 1
            return
        self.ringing[ch.id] = True
        peer = self.local_peer(ch)
        if peer is not None:
            self._dial_ringing(peer)

    def ring_stop(self, ch: FakeChannel) -> None:
        if ch.local_half is None:
            self.ring_tone.discard(ch.id)
        # else: a Local channel queues the stop to its other half (core_unreal.c) and its own tone plays on.

    def rest_hangup(self, ch: FakeChannel, cause: int) -> None:
        """``DELETE /channels/{id}``: the softhangup Asterisk reports as cause 32, then the channel goes."""
        self._emit(self.events.hangup_request(ch, 32, soft=True))
        if ch.dialing:
            self._emit(self.events.dial(ch, "CANCEL"))
        self._teardown(ch, cause)

    def phone_hangup(self, ch: FakeChannel) -> None:
        """The person on ``ch`` hangs up (BYE, or CANCEL before answer): a hangup request without a cause."""
        if ch.dialing:
            raise ValueError(f"{ch.name} is still being dialed; script a refusal with phone(reject_cause=...)")
        self._emit(self.events.hangup_request(ch))
        self._teardown(ch, 16)

    def _remote_hangup(self, ch: FakeChannel, cause: int) -> None:
        self._emit(self.events.hangup_request(ch, cause))
        self._teardown(ch, cause)

    def _teardown(self, ch: FakeChannel, cause: int) -> None:
        peer = self.local_peer(ch)
        first = ch if ch.local_half == 1 else peer
        before_answer = first is not None and first.dialing
        ch.dialing = False
        for handle in ch.timers:
            self._cancel(handle)
        ch.timers.clear()
        self.ring_tone.discard(ch.id)  # the tone generator goes with its channel
        for pb in [p for p in self.playbacks.values() if p.channel_id == ch.id]:
            self.finish_playback(pb)
        for hook in self.on_hangup:
            hook(ch)
        if ch.bridge_id is not None:
            self.leave(self.bridges[ch.bridge_id], ch)
        if ch.in_stasis:
            self._emit(self.events.stasis_end(ch))
            ch.in_stasis = False
            if ch.app_args is not None:  # back in the originate's dial thread, as ChannelDestroyed shows
                ch.dialplan = {**ch.dialplan, "app_name": "AppDial2", "app_data": "(Outgoing Line)"}
            elif ch.subscribed:
                # Back in the dialplan after Stasis(): its Hangup() is one more (soft) hangup request, cause 16
                # whatever the channel's own cause (sandbox findings, Local busy: 16 there too).
                self._emit(self.events.hangup_request(ch, 16, soft=True))
        sub = self.refers.get(ch.id)
        if sub is not None and not sub.terminated:
            # Asterisk itself NOTIFYs 503 and reports it as a ChannelTransfer with state channel_progress.
            sub.notifies.append(TransferState.UNAVAILABLE.sipfrag)
            sub.terminated = True
            if ch.subscribed:
                self._emit(self.events.channel_transfer(sub.refer_to, self.referred_by(ch), "channel_progress"))
        # An answered ;1 hung up takes its ;2 down first and is destroyed last (seed capture).
        ends_pair_first = peer is not None and ch.local_half == 1 and not before_answer
        if ch.subscribed and not ends_pair_first:
            self._emit(self.events.destroyed(ch, cause))
        del self.channels[ch.id]
        self.hangup_causes[ch.id] = cause
        if peer is not None:
            if not before_answer:
                self._remote_hangup(peer, 16)
                if ends_pair_first:
                    self._emit(self.events.destroyed(ch, cause))
            elif peer.local_half == 1:
                self._dial_failed(peer, cause)
            else:
                self._remote_hangup(peer, cause)

    # -- bridges ------------------------------------------------------------------------------------------

    def enter(self, br: FakeBridge, ch: FakeChannel) -> None:
        if ch.bridge_id == br.id:
            return
        if ch.bridge_id is not None:
            self.leave(self.bridges[ch.bridge_id], ch)
        br.channels.append(ch.id)
        ch.bridge_id = br.id
        self._emit(self.events.entered_bridge(br, ch))

    def leave(self, br: FakeBridge, ch: FakeChannel) -> None:
        br.channels.remove(ch.id)
        ch.bridge_id = None
        self._emit(self.events.left_bridge(br, ch))

    def destroy_bridge(self, br: FakeBridge) -> None:
        for pb in [p for p in self.playbacks.values() if p.kind == "bridge" and p.channel_id == br.id]:
            self.finish_playback(pb)
        for cid in list(br.channels):
            self.leave(br, self.channels[cid])
        del self.bridges[br.id]
        self._emit(self.events.bridge_destroyed(br))

    # -- playbacks ----------------------------------------------------------------------------------------

    def play(self, ch: FakeChannel, media: str, playback_id: str, duration: float | None) -> FakePlayback:
        """Start a playback; it finishes after ``duration`` seconds (None: when finish_playback is called)."""
        pb = FakePlayback(playback_id, ch.id, media)
        self.playbacks[pb.id] = pb
        self.played.setdefault(ch.id, []).append(media)
        self._emit(self.events.playback_started(pb))
        if duration is not None and not media.startswith("tone:"):  # tones play until stopped
            pb.timer = self.later(None, duration, self.finish_playback, pb)
        return pb

    def play_bridge(self, br: FakeBridge, media: str, playback_id: str, duration: float) -> None:
        pb = FakePlayback(playback_id, br.id, media, kind="bridge")
        self.playbacks[pb.id] = pb
        self.played.setdefault(br.id, []).append(media)
        self._emit(self.events.playback_started(pb))
        if not media.startswith("tone:"):
            pb.timer = self.later(None, duration, self.finish_playback, pb)

    def finish_playback(self, pb: FakePlayback, state: str = "done") -> None:
        if self.playbacks.pop(pb.id, None) is None:
            return
        self._cancel(pb.timer)
        # Asterisk reports stopped, cancelled and complete playbacks all as "done"; media it could not open "failed"
        pb.state = state
        self._emit(self.events.playback_finished(pb))

    def dtmf(self, ch: FakeChannel, digit: str) -> None:
        """The phone on ``ch`` sends one key (RFC 4733): ChannelDtmfReceived, as ``dtmf_mode=rfc4733`` gives."""
        self._emit(self.events.event("ChannelDtmfReceived", digit=digit, duration_ms=100, channel=channel_json(ch)))

    # -- REFER --------------------------------------------------------------------------------------------

    def referred_by(self, ch: FakeChannel) -> dict[str, Any]:
        """A fresh snapshot; the peer only when exactly one other channel shares the bridge (traces)."""
        data: dict[str, Any] = {"source_channel": channel_json(ch)}
        if ch.bridge_id is not None:
            peers = self.peers_of(ch)
            if len(peers) == 1:
                data["connected_channel"] = channel_json(peers[0])
            data["bridge"] = bridge_json(self.bridges[ch.bridge_id])
        return data

    def refer(self, ch: FakeChannel, destination: str | None, protocol_id: str | None) -> int:
        refer_to: dict[str, Any]
        if protocol_id is not None:
            refer_to = {"requested_destination": {"protocol_id": protocol_id}}
            target = next((c for c in self.channels.values() if c.protocol_id == protocol_id), None)
            if target is not None:
                refer_to["destination_channel"] = channel_json(target)
                peers = self.peers_of(target)
                if len(peers) == 1:
                    refer_to["connected_channel"] = channel_json(peers[0])
                if target.bridge_id is not None:
                    refer_to["bridge"] = bridge_json(self.bridges[target.bridge_id])
        else:
            user = refer_user_part(destination or "")
            if user is None:
                return 400
            refer_to = {"requested_destination": {"destination": user}}
        self.refers[ch.id] = ReferSubscription(ch.id, refer_to)
        self._emit(self.events.channel_transfer(refer_to, self.referred_by(ch)))
        return 202

    def transfer_progress(self, ch: FakeChannel, state: TransferState) -> None:
        sub = self.refers.get(ch.id)
        if sub is None or sub.terminated:
            self.stray_transfer_progress.append((ch.id, state))
            return
        if not sub.notifies and state is not TransferState.PROGRESS:
            # Asterisk always opens the subscription with a 100 Trying, even when the first state is final.
            sub.notifies.append(TransferState.PROGRESS.sipfrag)
        sub.notifies.append(state.sipfrag)
        sub.terminated = state is not TransferState.PROGRESS
        self._emit(self.events.channel_transfer(sub.refer_to, self.referred_by(ch), state.value))
