"""The fake Asterisk on its own, driven like the engine would drive it, checked against the real traces
(/work/shared/traces, Asterisk 22.10.1). ChannelVarset and ChannelConnectedLine are left out of the expected
sequences: the real client subscribes with eventFilter = HANDLED_EVENT_TYPES, so the engine never sees them."""

from __future__ import annotations

import re
from typing import TypeVar

import pytest

from models.ari import (
    AriEvent,
    Channel,
    ChannelDestroyed,
    ChannelEnteredBridge,
    ChannelHangupRequest,
    ChannelStateChange,
    ChannelTransfer,
    Dial,
    PlaybackFinished,
    PlaybackStarted,
    StasisStart,
    TransferState,
)
from stasis_app.errors import AriError, CallGone
from tests.fake_asterisk import FakeAsterisk

E = TypeVar("E")

CHANNEL_KEYS = {
    "id",
    "name",
    "state",
    "protocol_id",
    "caller",
    "connected",
    "accountcode",
    "dialplan",
    "creationtime",
    "language",
}


class Recorder:
    """The smallest EventHandler: remembers what arrived, in order."""

    def __init__(self) -> None:
        self.events: list[AriEvent] = []
        self.connects: list[bool] = []

    def on_event(self, event: AriEvent) -> None:
        self.events.append(event)

    async def on_connected(self, reconnect: bool) -> None:
        self.connects.append(reconnect)

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    def flow(self, *channel_ids: str) -> list[tuple[str, str]]:
        """(event type, detail) of the events about one of ``channel_ids``, in order."""
        return [(e.type, detail(e)) for e in self.events if (ch := about(e)) is not None and ch.id in channel_ids]

    def transfers(self) -> list[ChannelTransfer]:
        return [e for e in self.events if isinstance(e, ChannelTransfer)]


def about(event: AriEvent) -> Channel | None:
    """The channel an event is about: the dialed one for Dial, the transferor for ChannelTransfer."""
    match event:
        case Dial(peer=peer):
            return peer
        case ChannelTransfer(referred_by=referred_by):
            return referred_by.source_channel
    channel: Channel | None = getattr(event, "channel", None)
    return channel


def detail(event: AriEvent) -> str:
    """What tells two events of a type apart in a call flow."""
    match event:
        case Dial(dialstatus=status):
            return status
        case ChannelStateChange(channel=channel):
            return channel.state
        case ChannelHangupRequest(cause=cause, soft=soft):
            return f"cause={cause} soft={soft}"
        case ChannelDestroyed(cause=cause, cause_txt=text):
            return f"{cause} {text}"
        case ChannelTransfer(state=state):
            return str(state)
        case StasisStart(args=args):
            return ",".join(args)
    return ""


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def fake(recorder: Recorder):
    fake = FakeAsterisk()
    fake.attach(recorder)
    await fake.start()
    yield fake
    await fake.stop()


async def alice_talks_to_bob(fake: FakeAsterisk, recorder: Recorder) -> tuple[str, str]:
    """Alice calls 1001; the app answers, bridges her, dials Bob, who answers at once, and bridges him."""
    fake.phone("PJSIP/bob", ring=False, answer_after=0)
    alice = await fake.call_in("alice", "1001")
    await fake.api.answer(alice)
    await fake.api.create_bridge("call-1", "rcml-call")
    await fake.api.add_to_bridge("call-1", alice)
    await fake.api.originate(endpoint="PJSIP/bob", channel_id="bob-1", app_args="dialed", caller_id='"alice" <alice>')
    await fake.wait_for(lambda: any(e.channel.id == "bob-1" for e in recorder.of(StasisStart)))
    await fake.api.add_to_bridge("call-1", "bob-1")
    await fake.settle()
    return alice, "bob-1"


async def test_inbound_call_answered_and_bridged_with_bob_in_trace_order(fake: FakeAsterisk, recorder: Recorder):
    alice, bob = await alice_talks_to_bob(fake, recorder)

    # summary_after-answer.txt lines 4-16
    named = [(e.type, ch.id if (ch := about(e)) else None) for e in recorder.events]
    assert named == [
        ("StasisStart", alice),
        ("ChannelStateChange", alice),
        ("ChannelEnteredBridge", alice),
        ("Dial", bob),
        ("ChannelStateChange", bob),
        ("Dial", bob),
        ("StasisStart", bob),
        ("ChannelEnteredBridge", bob),
    ]
    assert recorder.connects == [False]
    assert recorder.flow(bob) == [
        ("Dial", ""),
        ("ChannelStateChange", "Up"),
        ("Dial", "ANSWER"),
        ("StasisStart", "dialed"),
        ("ChannelEnteredBridge", ""),
    ]
    start = recorder.of(StasisStart)[0]
    assert start.channel.state == "Ring"
    assert start.args == []
    assert (start.channel.dialplan.context, start.channel.dialplan.exten) == ("rcml", "1001")
    assert re.fullmatch(r"PJSIP/alice-[0-9a-f]{8}", fake.name_of(alice))
    assert re.fullmatch(r"\d+\.\d+", alice)
    assert fake.channels[bob].caller.name == "alice"
    assert recorder.of(ChannelEnteredBridge)[-1].bridge.channels == [alice, bob]
    assert fake.bridged_with(alice) == {bob}
    assert fake.in_bridge(bob) == "call-1"
    assert ("POST", "/bridges/call-1/addChannel", {"channel": bob}) in fake.rest_log


async def test_hangups_follow_the_trace(fake: FakeAsterisk, recorder: Recorder):
    alice, bob = await alice_talks_to_bob(fake, recorder)
    recorder.events.clear()

    await fake.phone_hangup(alice)
    await fake.api.hangup(bob)
    await fake.api.destroy_bridge("call-1")
    await fake.settle()

    # summary_after-answer.txt lines 104-123: an inbound channel's ChannelDestroyed never reaches the app
    assert recorder.flow(alice, bob) == [
        ("ChannelHangupRequest", "cause=None soft=None"),
        ("ChannelLeftBridge", ""),
        ("StasisEnd", ""),
        ("ChannelHangupRequest", "cause=32 soft=True"),
        ("ChannelLeftBridge", ""),
        ("StasisEnd", ""),
        ("ChannelDestroyed", "16 Normal Clearing"),
    ]
    assert recorder.events[-1].type == "BridgeDestroyed"
    [destroyed] = recorder.of(ChannelDestroyed)
    assert destroyed.channel.dialplan.app_name == "AppDial2"
    assert fake.hangup_causes == {alice: 16, bob: 16}
    fake.assert_nothing_leaked()


async def test_every_event_is_shaped_like_asterisks(fake: FakeAsterisk, recorder: Recorder):
    _, bob = await alice_talks_to_bob(fake, recorder)
    await fake.refer(bob, "carol")
    await fake.api.hangup(bob)
    await fake.settle()

    for raw in fake.event_log:
        assert {"type", "timestamp", "application", "asterisk_id"} <= raw.keys()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", raw["timestamp"])
        for key in ("channel", "peer"):
            if key in raw:
                assert raw[key].keys() == CHANNEL_KEYS
        if raw["type"] == "ChannelTransfer":
            assert raw["referred_by"]["source_channel"].keys() == CHANNEL_KEYS


async def test_busy_phone(fake: FakeAsterisk, recorder: Recorder):
    fake.phone("PJSIP/carol", busy=True)

    await fake.api.originate(endpoint="PJSIP/carol", channel_id="carol-1", app_args="dialed")
    await fake.wait_for(lambda: "carol-1" not in fake.channels)
    await fake.settle()

    assert recorder.flow("carol-1") == [
        ("Dial", ""),
        ("ChannelStateChange", "Ringing"),
        ("Dial", "RINGING"),
        ("ChannelHangupRequest", "cause=17 soft=None"),  # 22.10.1 (uas_busy): before the Dial status
        ("Dial", "BUSY"),
        ("ChannelDestroyed", "17 User busy"),
    ]
    fake.assert_nothing_leaked()


async def test_phone_that_never_answers_times_out(fake: FakeAsterisk, recorder: Recorder):
    fake.phone("PJSIP/bob", answer_after=None)
    fake.timeout_scale = 0.01

    channel = await fake.api.originate(endpoint="PJSIP/bob", channel_id="bob-1", app_args="", timeout=5)
    assert channel.state == "Down"
    await fake.wait_for(lambda: "bob-1" not in fake.channels)
    await fake.settle()

    assert recorder.flow("bob-1") == [
        ("Dial", ""),
        ("ChannelStateChange", "Ringing"),
        ("Dial", "RINGING"),
        ("ChannelDestroyed", "19 User alerting, no answer"),  # no final Dial event, as on Asterisk 22.10.1
    ]
    assert (
        "POST",
        "/channels",
        {"endpoint": "PJSIP/bob", "app": "rcml", "appArgs": "", "channelId": "bob-1", "timeout": "5"},
    ) in fake.rest_log


async def test_app_cancels_a_ringing_leg(fake: FakeAsterisk, recorder: Recorder):
    fake.phone("PJSIP/bob", answer_after=None)
    await fake.api.originate(endpoint="PJSIP/bob", channel_id="bob-1", app_args="")

    await fake.api.hangup("bob-1")
    await fake.settle()

    assert recorder.flow("bob-1")[-3:] == [
        ("ChannelHangupRequest", "cause=32 soft=True"),
        ("Dial", "CANCEL"),
        ("ChannelDestroyed", "16 Normal Clearing"),
    ]
    fake.assert_nothing_leaked()


async def test_refused_calls_and_missing_things(fake: FakeAsterisk):
    with pytest.raises(AriError) as refused:
        await fake.api.originate(endpoint="PJSIP/nobody", channel_id="x-1", app_args="")
    assert refused.value.status == 500
    with pytest.raises(CallGone):
        await fake.api.hangup("no-such-channel")
    await fake.api.create_bridge("b", "b")
    with pytest.raises(CallGone):
        await fake.api.add_to_bridge("b", "no-such-channel")
    with pytest.raises(CallGone):
        await fake.api.add_to_bridge("no-such-bridge", "x")
    await fake.api.destroy_bridge("b")
    fake.assert_nothing_leaked()


async def test_channels_added_in_one_request_all_enter_or_none_does(fake: FakeAsterisk):
    # As Asterisk 22.10.1's addChannel (tests/contract.py holds the fake to it): every channel of the list is
    # looked up first; one that is missing refuses the request, and nobody enters.
    alice = await fake.call_in("alice")
    await fake.api.answer(alice)
    await fake.api.create_bridge("b", "b")
    with pytest.raises(CallGone):
        await fake.api.add_to_bridge("b", alice, "no-such-channel")
    await fake.settle()
    assert not any(event["type"] == "ChannelEnteredBridge" for event in fake.event_log)
    fake.phone("PJSIP/bob", answer_after=0)
    await fake.api.originate(endpoint="PJSIP/bob", channel_id="bob-1", app_args="dial")
    await fake.settle()
    await fake.api.add_to_bridge("b", alice, "bob-1")
    await fake.settle()
    entered = [event["channel"]["id"] for event in fake.event_log if event["type"] == "ChannelEnteredBridge"]
    assert entered == [alice, "bob-1"]
    for channel in (alice, "bob-1"):
        await fake.api.hangup(channel)
    await fake.api.destroy_bridge("b")
    await fake.settle()
    fake.assert_nothing_leaked()


async def test_assert_nothing_leaked_names_what_is_left(fake: FakeAsterisk):
    alice = await fake.call_in("alice")
    await fake.api.create_bridge("b", "b")

    with pytest.raises(AssertionError, match=rf"channel PJSIP/alice-\w+ \({re.escape(alice)}, Ring\).*bridge b"):
        fake.assert_nothing_leaked()


async def test_bob_refers_alice_to_carol(fake: FakeAsterisk, recorder: Recorder):
    alice, bob = await alice_talks_to_bob(fake, recorder)

    assert await fake.refer(bob, "<sip:carol@127.0.0.1>") == 202
    await fake.settle()

    [transfer] = recorder.transfers()
    assert transfer.state is None
    assert transfer.refer_to.requested_destination.destination == "carol"
    assert transfer.refer_to.requested_destination.protocol_id is None
    assert transfer.referred_by.source_channel.id == bob
    assert transfer.referred_by.connected_channel is not None
    assert transfer.referred_by.connected_channel.id == alice
    assert transfer.referred_by.bridge is not None
    assert transfer.referred_by.bridge.channels == [alice, bob]
    assert fake.notifies[bob] == []


@pytest.mark.parametrize(
    ("refer_to", "destination"),
    [
        ("<sip:1002@127.0.0.1;user=phone>", "1002"),
        ("<sip:1002@127.0.0.1?X-Foo=bar>", "1002"),
        ("sip:1002&PJSIP/carol@127.0.0.1", "1002&PJSIP/carol"),
        ("<sip:%26PJSIP%2Fcarol@127.0.0.1>", "&PJSIP/carol"),
        ("1002,30", "1002,30"),
        (f"sip:{'9' * 100}@127.0.0.1", "9" * 79),
    ],
)
async def test_refer_to_user_part_as_asterisk_reports_it(
    fake: FakeAsterisk, recorder: Recorder, refer_to: str, destination: str
):
    _, bob = await alice_talks_to_bob(fake, recorder)

    await fake.refer(bob, refer_to)
    await fake.settle()

    assert recorder.transfers()[0].refer_to.requested_destination.destination == destination


async def test_refer_to_a_tel_uri_is_refused_without_event(fake: FakeAsterisk, recorder: Recorder):
    _, bob = await alice_talks_to_bob(fake, recorder)

    assert await fake.refer(bob, "<tel:1002>") == 400
    await fake.settle()

    assert recorder.transfers() == []


async def test_transfer_progress_is_echoed_and_notified(fake: FakeAsterisk, recorder: Recorder):
    alice, bob = await alice_talks_to_bob(fake, recorder)
    fake.phone("PJSIP/carol", answer_after=0.01)
    await fake.refer(bob, "carol")
    await fake.settle()

    await fake.api.transfer_progress(bob, TransferState.PROGRESS)
    assert recorder.transfers()[-1].state == "channel_progress"  # the echo beats the 204, as in the traces
    await fake.api.originate(endpoint="PJSIP/carol", channel_id="carol-1", app_args="transfer-target")
    await fake.wait_for(lambda: any(e.channel.id == "carol-1" for e in recorder.of(StasisStart)))
    await fake.api.add_to_bridge("call-1", "carol-1")
    await fake.api.transfer_progress(bob, TransferState.ANSWERED)
    await fake.api.hangup(bob)
    await fake.settle()

    assert [t.state for t in recorder.transfers()] == [None, "channel_progress", "channel_answered"]
    answered = recorder.transfers()[-1]
    assert answered.refer_to.requested_destination.destination == "carol"
    assert answered.referred_by.connected_channel is None  # three in the bridge: no single peer (trace seq 67)
    assert answered.referred_by.bridge is not None
    assert answered.referred_by.bridge.channels == [alice, bob, "carol-1"]
    assert fake.notifies[bob] == [100, 200]
    assert fake.subscription_terminated(bob)
    assert ("POST", f"/channels/{bob}/transfer_progress", {"states": "channel_progress"}) in fake.rest_log
    assert fake.bridged_with(alice) == {"carol-1"}


async def test_transferor_hung_up_before_the_final_state_gets_503(fake: FakeAsterisk, recorder: Recorder):
    _, bob = await alice_talks_to_bob(fake, recorder)
    await fake.refer(bob, "carol")
    await fake.api.transfer_progress(bob, TransferState.PROGRESS)
    await fake.settle()
    recorder.events.clear()

    await fake.api.hangup(bob)
    await fake.settle()

    # blind_transfer_hangup_transferor_early.jsonl seq 58-66
    assert recorder.flow(bob) == [
        ("ChannelHangupRequest", "cause=32 soft=True"),
        ("ChannelLeftBridge", ""),
        ("StasisEnd", ""),
        ("ChannelTransfer", "channel_progress"),
        ("ChannelDestroyed", "16 Normal Clearing"),
    ]
    assert recorder.transfers()[0].referred_by.bridge is None
    assert fake.notifies[bob] == [100, 503]
    assert fake.subscription_terminated(bob)
    with pytest.raises(CallGone) as gone:
        await fake.api.transfer_progress(bob, TransferState.ANSWERED)
    assert (gone.value.status, gone.value.reason) == (404, "Channel not found")


async def test_transfer_progress_without_refer_is_only_recorded(fake: FakeAsterisk, recorder: Recorder):
    _, bob = await alice_talks_to_bob(fake, recorder)

    await fake.api.transfer_progress(bob, TransferState.PROGRESS)
    await fake.settle()

    assert recorder.transfers() == []
    assert fake.stray_transfer_progress == [(bob, TransferState.PROGRESS)]


async def test_local_channel_enters_as_an_inbound_call_and_answers_the_dialer(fake: FakeAsterisk, recorder: Recorder):
    await fake.api.originate(
        endpoint="Local/1002@rcml/n", channel_id="loc-1", app_args="dialed", caller_id='"alice" <1001>'
    )
    await fake.settle()
    inner = "loc-1-2"

    [start] = recorder.of(StasisStart)
    assert start.channel.id == inner
    assert start.args == []
    assert (start.channel.dialplan.context, start.channel.dialplan.exten) == ("rcml", "1002")
    assert start.channel.state == "Ring"
    assert start.channel.caller.number == "1001"
    assert re.fullmatch(r"Local/1002@rcml-[0-9a-f]{8};2", fake.name_of(inner))
    assert fake.name_of("loc-1") == fake.name_of(inner)[:-1] + "1"

    await fake.api.ring(inner)
    await fake.api.answer(inner)
    await fake.settle()

    assert fake.ringing[inner]
    assert recorder.flow("loc-1") == [
        ("Dial", ""),
        ("ChannelStateChange", "Ringing"),
        ("Dial", "RINGING"),
        ("ChannelStateChange", "Up"),
        ("Dial", "ANSWER"),
        ("StasisStart", "dialed"),
    ]

    await fake.api.hangup("loc-1")
    await fake.settle()

    # As 22.10.1 did (tests/captures/seed.jsonl): ;2 is hung up, leaves Stasis, runs the dialplan's Hangup()
    # and is destroyed; only then is ;1 destroyed.
    assert recorder.flow(inner)[-4:] == [
        ("ChannelHangupRequest", "cause=16 soft=None"),
        ("StasisEnd", ""),
        ("ChannelHangupRequest", "cause=16 soft=True"),
        ("ChannelDestroyed", "16 Normal Clearing"),
    ]
    assert [(e.type, e.channel.id) for e in recorder.events if e.type == "ChannelDestroyed"] == [
        ("ChannelDestroyed", inner),
        ("ChannelDestroyed", "loc-1"),
    ]
    fake.assert_nothing_leaked()


async def test_local_channel_busy_reaches_the_dialer(fake: FakeAsterisk, recorder: Recorder):
    await fake.api.originate(endpoint="Local/1002@rcml/n", channel_id="loc-1", app_args="dialed")
    await fake.settle()

    await fake.api.hangup("loc-1-2", "busy")
    await fake.settle()

    assert recorder.flow("loc-1-2")[-4:] == [
        ("ChannelHangupRequest", "cause=32 soft=True"),
        ("StasisEnd", ""),
        ("ChannelHangupRequest", "cause=16 soft=True"),  # the dialplan's Hangup() after Stasis()
        ("ChannelDestroyed", "17 User busy"),
    ]
    assert recorder.flow("loc-1")[-3:] == [
        ("ChannelHangupRequest", "cause=17 soft=None"),
        ("Dial", "BUSY"),
        ("ChannelDestroyed", "17 User busy"),
    ]
    assert fake.hangup_causes == {"loc-1-2": 17, "loc-1": 17}
    fake.assert_nothing_leaked()


async def test_playbacks(fake: FakeAsterisk, recorder: Recorder):
    alice = await fake.call_in()
    await fake.api.answer(alice)

    await fake.api.play(alice, "sound:hello-world", "pb-1")
    await fake.api.play(alice, "tone:ring", "pb-2")
    await fake.wait_for(lambda: recorder.of(PlaybackFinished) != [])
    await fake.api.stop_playback("pb-2")
    await fake.settle()

    playbacks = [e for e in recorder.events if isinstance(e, PlaybackStarted | PlaybackFinished)]
    assert [(e.type, e.playback.id) for e in playbacks] == [
        ("PlaybackStarted", "pb-1"),
        ("PlaybackStarted", "pb-2"),
        ("PlaybackFinished", "pb-1"),
        ("PlaybackFinished", "pb-2"),
    ]
    assert fake.played[alice] == ["sound:hello-world", "tone:ring"]
    await fake.api.hangup(alice)
    fake.assert_nothing_leaked()


async def test_phone_that_hangs_up_by_itself(fake: FakeAsterisk, recorder: Recorder):
    fake.phone("PJSIP/bob", answer_after=0, ring=False, hangup_after=0.01)

    await fake.api.originate(endpoint="PJSIP/bob", channel_id="bob-1", app_args="")
    await fake.wait_for(lambda: "bob-1" not in fake.channels)
    await fake.settle()

    assert recorder.flow("bob-1")[-3:] == [
        ("ChannelHangupRequest", "cause=None soft=None"),
        ("StasisEnd", ""),
        ("ChannelDestroyed", "16 Normal Clearing"),
    ]
