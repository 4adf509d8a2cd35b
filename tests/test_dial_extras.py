"""<Dial> extras on the fake Asterisk: Alice calls 1001, which dials Bob with ``record``, ``hangupOnStar``,
``ringbackTone`` or a ``sendDigits`` Number. The fake's recording clock runs 100 times fast (50 ms = "5 s")."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.rig import Rig, numbers

URL = re.compile(r"^http://127\.0\.0\.1:8090/recordings/(RE[0-9a-f]{32})\.wav$")


@pytest.fixture
async def rig(tmp_path):
    async with Rig(tmp_path, numbers=numbers(("1001", "/1001.xml", None), ("1002", "/1002.xml", None))) as rig:
        rig.fake.recordings.scale = 100
        rig.web.xml("/after", "<Response><Hangup/></Response>")
        yield rig


def dial(attributes: str, noun: str = "<Client>bob</Client>", then: str = "") -> str:
    return f'<Response><Dial action="/after" {attributes}>{noun}</Dial>{then}</Response>'


def bridge_records(rig: Rig) -> list[str]:
    return [
        path for method, path, _p in rig.fake.rest_log if method == "POST" and re.search(r"/bridges/.*/record$", path)
    ]


# -- record ----------------------------------------------------------------------------------------------------


async def test_record_from_answer_records_the_bridge_and_the_action_gets_the_recording(rig):
    rig.web.xml("/1001.xml", dial('record="record-from-answer"'))
    rig.fake.phone("PJSIP/bob", answer_after=0.05)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    await rig.until(lambda: rig.fake.recordings.live)
    (name,) = rig.fake.recordings.live
    bridge = rig.fake.in_bridge(alice)
    assert bridge_records(rig) == [f"/bridges/{bridge}/record"]  # the bridge: a bridged channel cannot be
    await asyncio.sleep(0.04)  # they talk for 4 s
    await rig.fake.phone_hangup(rig.channel_named("PJSIP/bob"))
    await rig.idle()

    (action,) = rig.web.calls("/after")
    assert action["DialCallStatus"] == "completed"
    match = URL.match(action["RecordingUrl"])
    assert match is not None, action
    assert match.group(1) == name == action["RecordingSid"]
    assert 4 <= int(action["RecordingDuration"]) <= 8  # from the answer: the 5 s of ringing are not in it
    assert name in rig.fake.recordings.stored
    rig.fake.assert_nothing_leaked()


async def test_record_from_ringing_starts_while_bob_rings(rig):
    rig.web.xml("/1001.xml", dial('record="record-from-ringing"'))
    rig.fake.phone("PJSIP/bob", answer_after=0.1)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.recordings.live)
    assert not rig.fake.bridged_with(alice), "the recording should start before Bob answers"
    await rig.until(lambda: rig.fake.bridged_with(alice))
    await asyncio.sleep(0.03)
    await rig.fake.phone_hangup(alice)
    await rig.idle()

    (action,) = rig.web.calls("/after")
    assert URL.match(action["RecordingUrl"])
    assert int(action["RecordingDuration"]) >= 12  # 10 s of ringing and 3 s of talk
    rig.fake.assert_nothing_leaked()


async def test_without_record_nothing_is_recorded(rig):
    rig.web.xml("/1001.xml", dial(""))
    rig.fake.phone("PJSIP/bob", answer_after=0.01)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    await rig.fake.phone_hangup(alice)
    await rig.idle()

    (action,) = rig.web.calls("/after")
    assert "RecordingUrl" not in action
    assert bridge_records(rig) == []


async def test_record_refused_by_asterisk_still_connects_the_call(rig):
    rig.web.xml("/1001.xml", dial('record="true"'))
    rig.fake.phone("PJSIP/bob", answer_after=0.01)
    rig.fake.recordings.refuse = "Internal Server Error"  # no recording spool

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    await rig.fake.phone_hangup(rig.channel_named("PJSIP/bob"))
    await rig.idle()

    (action,) = rig.web.calls("/after")
    assert action["DialCallStatus"] == "completed"
    assert "RecordingUrl" not in action
    assert len(bridge_records(rig)) == 1
    rig.fake.assert_nothing_leaked()


# -- hangupOnStar ----------------------------------------------------------------------------------------------


async def test_star_hangs_bob_up_and_alice_goes_on_with_the_next_verb(rig):
    rig.web.xml(
        "/1001.xml",
        '<Response><Dial hangupOnStar="true"><Client>bob</Client></Dial><Play>sound:goodbye</Play></Response>',
    )
    rig.fake.phone("PJSIP/bob", answer_after=0.01)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    bob = rig.channel_named("PJSIP/bob")
    await rig.fake.phone_dtmf(alice, "1#")
    await rig.fake.settle()
    assert rig.fake.bridged_with(alice) == {bob}, "a key other than * ended the call"
    await rig.fake.phone_dtmf(alice, "*")
    await rig.until(lambda: rig.fake.played.get(alice))

    assert bob not in rig.fake.channels  # hung up by the app
    assert rig.fake.played[alice] == ["sound:goodbye"]  # Alice is still up: the next verb runs for her
    await rig.idle()
    rig.fake.assert_nothing_leaked()


async def test_star_goes_to_the_action_as_completed(rig):
    rig.web.xml("/1001.xml", dial('hangupOnStar="true"'))
    rig.fake.phone("PJSIP/bob", answer_after=0.01)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    await rig.fake.phone_dtmf(alice, "*")
    await rig.idle()

    (action,) = rig.web.calls("/after")
    assert action["DialCallStatus"] == "completed"
    assert action["CallStatus"] == "in-progress"  # Alice was still on the line when it was requested
    rig.fake.assert_nothing_leaked()


async def test_star_without_hangup_on_star_is_just_a_key(rig):
    rig.web.xml("/1001.xml", dial(""))
    rig.fake.phone("PJSIP/bob", answer_after=0.01)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    bob = rig.channel_named("PJSIP/bob")
    await rig.fake.phone_dtmf(alice, "*")
    await rig.fake.settle()
    assert rig.fake.bridged_with(alice) == {bob}
    await rig.fake.phone_hangup(alice)
    await rig.idle()


# -- ringbackTone ----------------------------------------------------------------------------------------------


async def test_ringback_tone_is_played_to_alice_instead_of_ringing(rig):
    rig.web.xml("/1001.xml", dial('ringbackTone="tone:busy"'))
    rig.fake.phone("PJSIP/bob", answer_after=0.05)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.played.get(alice))
    assert rig.fake.played[alice] == ["tone:busy"]
    assert not rig.fake.ringing.get(alice), "Alice got a 180 although the Dial has a ringbackTone"
    assert rig.fake.playing(alice) == ["tone:busy"], "the tone should play while Bob rings"
    await rig.until(lambda: rig.fake.bridged_with(alice))
    assert rig.fake.playing(alice) == [], "the tone went on after Bob answered"
    await rig.fake.phone_hangup(alice)
    await rig.idle()
    rig.fake.assert_nothing_leaked()


async def test_ringback_sound_is_played_over_and_over_while_bob_rings(rig):
    rig.web.xml("/1001.xml", dial('ringbackTone="sound:custom-ring"'))
    rig.fake.media_duration = 0.02
    rig.fake.phone("PJSIP/bob", answer_after=None)  # never answers

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: len(rig.fake.played.get(alice, [])) >= 2, timeout=3)
    await rig.fake.phone_hangup(alice)
    await rig.idle()
    assert set(rig.fake.played[alice]) == {"sound:custom-ring"}
    rig.fake.assert_nothing_leaked()


# -- sendDigits ------------------------------------------------------------------------------------------------


async def test_send_digits_go_to_bob_once_he_answers_before_the_bridge(rig):
    rig.web.xml("/1001.xml", dial("", '<Number sendDigits="ww1234#">5551234</Number>'))
    rig.fake.phone("PJSIP/5551234@trunk", answer_after=0.01)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    callee = rig.channel_named("PJSIP/5551234")
    assert rig.fake.dtmf_sent[callee] == ["ww1234#"]
    assert alice not in rig.fake.dtmf_sent
    log = rig.fake.rest_log
    dtmf = [i for i, (_m, path, _p) in enumerate(log) if path == f"/channels/{callee}/dtmf"]
    joined = [
        i for i, (_m, path, p) in enumerate(log) if path.endswith("/addChannel") and callee in p["channel"].split(",")
    ]
    assert dtmf[0] < joined[0], "the digits went out after the callee was bridged"
    await rig.fake.phone_hangup(alice)
    await rig.idle()
    rig.fake.assert_nothing_leaked()


# -- a noun's url: the whisper ---------------------------------------------------------------------------------


async def test_whisper_plays_to_bob_before_he_is_bridged_with_alice(rig):
    rig.web.xml("/1001.xml", dial("", '<Client url="/whisper.xml">bob</Client>'))
    rig.web.xml("/whisper.xml", "<Response><Play>sound:you-have-a-call</Play></Response>")
    rig.fake.phone("PJSIP/bob", answer_after=0.01)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    bob = rig.channel_named("PJSIP/bob")
    assert rig.fake.played[bob] == ["sound:you-have-a-call"]
    assert alice not in rig.fake.played  # Alice does not hear the whisper
    joins = [
        i
        for i, (_m, path, p) in enumerate(rig.fake.rest_log)
        if path.endswith("/addChannel") and bob in p["channel"].split(",")
    ]
    plays = [i for i, (_m, path, _p) in enumerate(rig.fake.rest_log) if path.startswith(f"/channels/{bob}/play")]
    assert plays[0] < joins[0]
    (whisper,) = rig.web.calls("/whisper.xml")
    (voice,) = rig.web.calls("/1001.xml")
    assert whisper["CallSid"] != voice["CallSid"]  # the callee's own call
    assert (whisper["Direction"], whisper["CallStatus"], whisper["To"]) == ("outbound-dial", "in-progress", "bob")
    await rig.fake.phone_hangup(alice)
    await rig.idle()
    assert rig.web.calls("/after")[0]["DialCallStatus"] == "completed"
    rig.fake.assert_nothing_leaked()


async def test_whisper_that_hangs_up_is_a_dial_nobody_answered(rig):
    rig.web.xml("/1001.xml", dial("", '<Number url="/whisper.xml">5551234</Number>', "<Play>sound:sorry</Play>"))
    rig.web.xml("/whisper.xml", '<Response><Pause length="0"/><Hangup/></Response>')
    rig.web.xml("/after", "<Response><Play>sound:sorry</Play></Response>")
    rig.fake.phone("PJSIP/5551234@trunk", answer_after=0.01)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.web.calls("/after"))
    await rig.until(lambda: rig.fake.played.get(alice))
    await rig.idle()

    (action,) = rig.web.calls("/after")
    assert action["DialCallStatus"] == "no-answer"
    assert rig.fake.played[alice] == ["sound:sorry"]
    assert not [p for _m, path, p in rig.fake.rest_log if path.endswith("/addChannel") and p["channel"] != alice]
    rig.fake.assert_nothing_leaked()


async def test_whisper_gather_lets_bob_accept_with_a_key(rig):
    rig.web.xml("/1001.xml", dial("", '<Client url="/whisper.xml" method="GET">bob</Client>'))
    rig.web.xml(
        "/whisper.xml",
        '<Response><Gather numDigits="1" timeout="3" action="/accept.xml"><Play>sound:press-1</Play></Gather>'
        "<Hangup/></Response>",
    )
    rig.web.xml("/accept.xml", "<Response><Play>sound:connecting</Play></Response>")
    rig.fake.phone("PJSIP/bob", answer_after=0.01)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.web.calls("/whisper.xml"))
    await rig.until(lambda: [c for c in rig.fake.channels.values() if c.name.startswith("PJSIP/bob")])
    bob = rig.channel_named("PJSIP/bob")
    await rig.until(lambda: rig.fake.played.get(bob))
    await rig.fake.phone_dtmf(bob, "1")
    await rig.until(lambda: rig.fake.bridged_with(alice))

    assert rig.web.calls("/accept.xml")[0]["Digits"] == "1"
    assert rig.fake.played[bob] == ["sound:press-1", "sound:connecting"]
    await rig.fake.phone_hangup(bob)
    await rig.idle()
    rig.fake.assert_nothing_leaked()


async def test_whisper_url_that_fails_is_a_failed_dial(rig):
    rig.web.xml("/1001.xml", dial("", '<Client url="/missing.xml">bob</Client>'))
    rig.fake.phone("PJSIP/bob", answer_after=0.01)

    await rig.call("alice", "1001")
    await rig.idle()

    assert rig.web.calls("/after")[0]["DialCallStatus"] == "failed"
    assert not [path for _m, path, _p in rig.fake.rest_log if path.endswith("/addChannel")]  # nobody was bridged
    rig.fake.assert_nothing_leaked()


async def test_alice_hanging_up_during_the_whisper_ends_it_and_bob(rig):
    rig.web.xml("/1001.xml", dial("", '<Client url="/whisper.xml">bob</Client>'))
    rig.web.xml("/whisper.xml", '<Response><Pause length="30"/></Response>')
    rig.fake.phone("PJSIP/bob", answer_after=0.01)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.web.calls("/whisper.xml"))
    await rig.fake.phone_hangup(alice)
    await rig.idle(timeout=3)

    assert rig.web.calls("/after")[0]["DialCallStatus"] == "canceled"
    assert not [path for _m, path, _p in rig.fake.rest_log if path.endswith("/addChannel")]
    rig.fake.assert_nothing_leaked()


async def test_bob_hanging_up_during_the_whisper_is_a_failed_dial_and_alice_goes_on(rig):
    rig.web.xml("/1001.xml", dial("", '<Client url="/whisper.xml">bob</Client>'))
    rig.web.xml("/whisper.xml", '<Response><Pause length="30"/></Response>')
    rig.web.xml("/after", "<Response><Play>sound:sorry</Play></Response>")
    rig.fake.phone("PJSIP/bob", answer_after=0.01)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.web.calls("/whisper.xml"))
    await rig.fake.phone_hangup(rig.channel_named("PJSIP/bob"))
    await rig.until(lambda: rig.fake.played.get(alice))
    await rig.idle(timeout=3)

    assert rig.web.calls("/after")[0]["DialCallStatus"] == "failed"
    assert rig.fake.played[alice] == ["sound:sorry"]
    rig.fake.assert_nothing_leaked()
