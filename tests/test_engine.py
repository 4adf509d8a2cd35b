"""The engine's own duties: event routing edge cases, resync after a lost event stream, clean shutdown."""

from __future__ import annotations

import pytest

from models.ari_messages import parse_event
from tests.rig import Rig

DIAL_BOB = "<Response><Dial><Client>bob</Client></Dial></Response>"


@pytest.fixture
async def rig(tmp_path):
    async with Rig(tmp_path) as rig:
        rig.web.xml("/1001.xml", DIAL_BOB)
        rig.fake.phone("PJSIP/bob", answer_after=0.01)
        yield rig


async def test_a_call_that_ended_while_the_event_stream_was_down_is_cleaned_up(rig):
    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    bob = rig.channel_named("PJSIP/bob")

    rig.fake.disconnect()
    await rig.fake.phone_hangup(bob)  # its events are lost
    await rig.fake.settle()
    assert rig.engine.legs, "the engine cannot know yet"

    await rig.fake.reconnect()
    await rig.idle()

    # Bob's leg was seen gone on re-reading the channels: the Dial ended, the document ended, Alice was hung up.
    assert rig.fake.hangup_causes[alice] == 16
    rig.fake.assert_nothing_leaked()


async def test_a_dial_answered_while_the_event_stream_was_down_connects(rig):
    rig.fake.phone("PJSIP/bob", answer_after=0.05)
    alice = await rig.call("alice", "1001")
    await rig.until(lambda: any(c.name.startswith("PJSIP/bob") for c in rig.fake.channels.values()))

    rig.fake.disconnect()
    bob = rig.channel_named("PJSIP/bob")
    await rig.until(lambda: rig.fake.channels[bob].state == "Up")
    await rig.fake.reconnect()

    await rig.until(lambda: rig.fake.bridged_with(alice) == {bob})
    await rig.fake.phone_hangup(alice)
    await rig.idle()
    rig.fake.assert_nothing_leaked()


async def test_close_ends_every_call_it_runs(rig):
    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    bob = rig.channel_named("PJSIP/bob")

    await rig.engine.close()
    await rig.fake.settle()

    assert rig.fake.hangup_causes[alice] == 16
    assert rig.fake.hangup_causes[bob] == 16
    rig.fake.assert_nothing_leaked()


async def test_a_channel_of_an_earlier_run_is_hung_up(rig):
    rig.fake.phone("PJSIP/dave", answer_after=0.01)
    # Dialed by a previous run of the app (args "dial"), answered after a restart: nobody owns it.
    await rig.fake.api.originate(endpoint="PJSIP/dave", channel_id="old-run-leg", app_args="dial")
    await rig.until(lambda: "old-run-leg" not in rig.fake.channels)
    rig.fake.assert_nothing_leaked()


async def test_unknown_event_types_are_ignored(rig):
    rig.engine.on_event(parse_event({"type": "BrandNewEvent", "application": "rcml", "something": 1}))
    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    await rig.fake.phone_hangup(alice)
    await rig.idle()
    rig.fake.assert_nothing_leaked()


async def test_a_bridge_destroyed_while_the_event_stream_was_down_is_forgotten(rig):
    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    bridge = rig.fake.in_bridge(alice)
    session = rig.engine.owner[alice]

    rig.fake.disconnect()
    await rig.fake.api.destroy_bridge(bridge)  # someone else's doing
    await rig.fake.reconnect()

    assert session.own_bridge is not None
    assert session.own_bridge.is_gone
    assert bridge not in rig.engine.bridges
    assert rig.engine.legs[alice].bridge is None
    await rig.fake.phone_hangup(alice)
    await rig.idle()
    rig.fake.assert_nothing_leaked()
