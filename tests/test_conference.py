"""<Dial><Conference>: scenario tests on the fake Asterisk, attribute by attribute, and its parsing."""

from __future__ import annotations

import logging

import pytest

from models.rcml import DialConference
from stasis_app.errors import MarkupError
from stasis_app.rcml import parse_rcml
from tests.rig import Rig


@pytest.fixture
async def rig(tmp_path):
    async with Rig(tmp_path) as rig:
        yield rig


def room(attributes: str = "", dial: str = 'action="/left"', name: str = "room") -> str:
    return f"<Response><Dial {dial}><Conference {attributes}>{name}</Conference></Dial></Response>"


def conference_bridges(rig) -> list[str]:
    return [bid for bid, bridge in rig.fake.bridges.items() if "conference" in bridge.name]


async def test_three_callers_share_one_bridge_and_nothing_is_left(rig):
    rig.web.xml("/1001.xml", room('statusCallback="/status" statusCallbackEvent="start end join leave"'))
    rig.web.xml("/left", "<Response><Hangup/></Response>")
    rig.web.xml("/status", "")
    alice = await rig.call("alice", "1001")
    bob = await rig.call("bob", "1001")
    carol = await rig.call("carol", "1001")
    await rig.until(lambda: len(rig.fake.bridged_with(alice)) == 2)
    assert rig.fake.bridged_with(alice) == {bob, carol}
    assert len(conference_bridges(rig)) == 1

    for channel in (alice, bob, carol):
        await rig.fake.phone_hangup(channel)
    await rig.idle()
    await rig.engine.callbacks.drain()

    left = rig.web.calls("/left")
    assert [params["DialCallStatus"] for params in left] == ["completed"] * 3
    events = [params["StatusCallbackEvent"] for params in rig.web.calls("/status")]
    assert events[0] == "conference-start"
    assert events.count("participant-join") == 3
    assert events.count("participant-leave") == 3
    assert events[-1] == "conference-end"
    (end,) = [p for p in rig.web.calls("/status") if p["StatusCallbackEvent"] == "conference-end"]
    assert end["ReasonConferenceEnded"] == "last-participant-left"
    assert end["FriendlyName"] == "room"
    assert end["ConferenceSid"].startswith("CF")
    assert not rig.engine.conferences.rooms
    rig.fake.assert_nothing_leaked()


async def test_a_waiting_participant_hears_the_wait_tone_until_a_starter_enters(rig):
    rig.web.xml("/1001.xml", room('startConferenceOnEnter="false"'))
    rig.web.xml("/1002.xml", room())
    rig.web.xml("/left", "<Response><Hangup/></Response>")
    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.played.get(alice))
    await rig.fake.settle()
    assert rig.fake.played[alice] == ["tone:callwaiting"]
    assert rig.fake.in_bridge(alice) is None, "a participant waiting for a starter is not in the room yet"

    bob = await rig.call("bob", "1002")
    await rig.until(lambda: rig.fake.bridged_with(alice) == {bob})
    await rig.fake.settle()
    assert not [pb for pb in rig.fake._switch.playbacks.values() if pb.channel_id == alice], "wait tone stopped"

    await rig.fake.phone_hangup(bob)
    await rig.fake.phone_hangup(alice)
    await rig.idle()
    rig.fake.assert_nothing_leaked()


async def test_wait_url_rcml_plays_its_play_verbs_while_waiting(rig):
    rig.web.xml("/1001.xml", room('startConferenceOnEnter="false" waitUrl="/wait" waitMethod="GET"'))
    rig.web.xml("/wait", "<Response><Play>sound:hold-on</Play><Pause length='0'/></Response>")
    alice = await rig.call("alice", "1001")
    await rig.until(lambda: len(rig.fake.played.get(alice, [])) >= 3)
    assert set(rig.fake.played[alice]) == {"sound:hold-on"}, "the wait document loops"
    (wait,) = rig.web.calls("/wait")
    assert wait["FriendlyName"] == "room"

    await rig.fake.phone_hangup(alice)
    await rig.idle()
    rig.fake.assert_nothing_leaked()


async def test_end_conference_on_exit_sends_everyone_to_their_action(rig):
    rig.web.xml("/1001.xml", room('endConferenceOnExit="true"'))
    rig.web.xml("/1002.xml", room('muted="true"'))
    rig.web.xml("/left", "<Response><Play>sound:goodbye</Play><Hangup/></Response>")
    moderator = await rig.call("alice", "1001")
    bob = await rig.call("bob", "1002")
    await rig.until(lambda: rig.fake.bridged_with(moderator) == {bob})
    assert rig.fake.muted == {bob: "in"}

    await rig.fake.phone_hangup(moderator)
    await rig.until(lambda: "sound:goodbye" in rig.fake.played.get(bob, []))
    assert bob not in rig.fake.muted, "unmuted on leaving the room: the rest of the document hears him"
    await rig.idle()
    bob_left = [p for p in rig.web.calls("/left") if p["From"] == "bob"]
    assert bob_left[0]["DialCallStatus"] == "completed"
    assert not conference_bridges(rig)
    rig.fake.assert_nothing_leaked()


async def test_max_participants_refuses_the_next_caller_with_failed(rig):
    rig.web.xml("/1001.xml", room('maxParticipants="2"'))
    rig.web.xml("/left", "<Response><Hangup/></Response>")
    alice = await rig.call("alice", "1001")
    bob = await rig.call("bob", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice) == {bob})
    await rig.call("carol", "1001")
    await rig.until(lambda: rig.web.calls("/left"))
    (refused,) = rig.web.calls("/left")
    assert refused["From"] == "carol"
    assert refused["DialCallStatus"] == "failed"
    assert rig.fake.bridged_with(alice) == {bob}

    await rig.fake.phone_hangup(alice)
    await rig.fake.phone_hangup(bob)
    await rig.idle()
    rig.fake.assert_nothing_leaked()


@pytest.mark.parametrize(
    ("beep", "enter", "leave"), [("true", 1, 1), ("false", 0, 0), ("onEnter", 1, 0), ("onExit", 0, 1)]
)
async def test_beep_on_enter_and_exit_as_asked(rig, beep, enter, leave):
    rig.web.xml("/1001.xml", room(f'beep="{beep}"'))
    rig.web.xml("/left", "<Response><Hangup/></Response>")
    alice = await rig.call("alice", "1001")
    await rig.until(lambda: conference_bridges(rig) and rig.fake.in_bridge(alice))
    (bridge,) = conference_bridges(rig)
    assert rig.fake.played.get(bridge, []) == [], "nobody to beep to when the first one enters"
    bob = await rig.call("bob", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice) == {bob})
    await rig.fake.settle()
    assert rig.fake.played.get(bridge, []) == ["sound:beep"] * enter
    carol = await rig.call("carol", "1001")
    await rig.until(lambda: len(rig.fake.bridged_with(alice)) == 2)
    await rig.fake.phone_hangup(carol)
    await rig.until(lambda: len(rig.fake.bridged_with(alice)) == 1)
    await rig.fake.settle()
    assert rig.fake.played.get(bridge, []) == ["sound:beep"] * (2 * enter + leave)

    await rig.fake.phone_hangup(alice)
    await rig.fake.phone_hangup(bob)
    await rig.idle()
    rig.fake.assert_nothing_leaked()


async def test_a_refer_from_a_participant_is_declined_and_the_call_goes_on(rig, caplog):
    caplog.set_level(logging.INFO, "stasis_app.transfer")
    rig.web.xml("/1001.xml", room())
    alice = await rig.call("alice", "1001")
    bob = await rig.call("bob", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice) == {bob})

    assert await rig.fake.refer(bob, "1002") == 202
    await rig.until(lambda: rig.fake.notifies.get(bob))
    await rig.fake.settle()
    assert rig.fake.notifies[bob] == [100, 603]  # Asterisk opens with 100 Trying; ours is the 603
    assert rig.fake.bridged_with(alice) == {bob}
    assert rig.web.calls("/refer.xml") == []
    assert "a conference participant may not transfer" in caplog.text

    await rig.fake.phone_hangup(alice)
    await rig.fake.phone_hangup(bob)
    await rig.idle()
    rig.fake.assert_nothing_leaked()


async def test_time_limit_takes_the_participant_out_to_the_action(rig):
    rig.web.xml("/1001.xml", room(dial='action="/left" timeLimit="1"'))
    rig.web.xml("/left", "<Response><Hangup/></Response>")
    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.web.calls("/left"), timeout=3)
    (left,) = rig.web.calls("/left")
    assert left["DialCallStatus"] == "completed"
    assert left["DialCallDuration"] == "1"
    await rig.idle()
    assert alice not in rig.fake.channels
    rig.fake.assert_nothing_leaked()


async def test_a_failing_status_callback_never_breaks_the_call(rig):
    rig.web.xml("/1001.xml", room('statusCallback="/status" statusCallbackEvent="join leave"', dial=""))
    rig.web.hang("/status")
    alice = await rig.call("alice", "1001")
    bob = await rig.call("bob", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice) == {bob})
    await rig.fake.phone_hangup(alice)
    await rig.fake.phone_hangup(bob)
    await rig.idle()
    await rig.engine.callbacks.drain()
    assert len(rig.web.calls("/status")) == 4
    rig.fake.assert_nothing_leaked()


def test_parse_conference_attributes():
    (dial,) = parse_rcml(
        '<Response><Dial action="a" timeLimit="30"><Conference muted="true" beep="onExit" maxParticipants="5"'
        ' startConferenceOnEnter="false" endConferenceOnExit="true" waitUrl="" statusCallback="s"'
        ' statusCallbackEvent="start join hold">r1</Conference></Dial></Response>',
        "t",
    ).verbs
    assert isinstance(dial, DialConference)
    c = dial.conference
    assert (c.name, c.muted, c.beep, c.max_participants) == ("r1", True, "onExit", 5)
    assert (c.start_conference_on_enter, c.end_conference_on_exit, c.wait_url) == (False, True, "")
    assert c.status_callback_event == {"start", "join"}  # hold: not raised here, ignored
    assert (dial.action, dial.time_limit) == ("a", 30)


@pytest.mark.parametrize(
    "rcml",
    [
        "<Response><Dial><Conference>r</Conference><Client>bob</Client></Dial></Response>",
        "<Response><Dial><Conference></Conference></Dial></Response>",
        '<Response><Dial><Conference maxParticipants="251">r</Conference></Dial></Response>',
        '<Response><Dial><Conference beep="loud">r</Conference></Dial></Response>',
    ],
)
def test_parse_conference_refuses(rcml):
    with pytest.raises(MarkupError):
        parse_rcml(rcml, "t")


async def test_the_periodic_reconcile_leaves_a_live_rooms_bridge_alone(tmp_path):
    async with Rig(tmp_path, reconcile_interval=0.05) as rig:
        rig.web.xml("/1001.xml", room())
        rig.web.xml("/left", "<Response><Hangup/></Response>")
        alice = await rig.call("alice", "1001")
        bob = await rig.call("bob", "1001")
        await rig.until(lambda: rig.fake.bridged_with(alice) == {bob})
        start = rig.engine.reconciler.passes
        await rig.until(lambda: rig.engine.reconciler.passes >= start + 3)

        assert rig.fake.bridged_with(alice) == {bob}  # the room's bridge, owned by no call, is not a leftover
        for channel in (alice, bob):
            await rig.fake.phone_hangup(channel)
        await rig.idle()
        rig.fake.assert_nothing_leaked()
