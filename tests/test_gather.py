"""<Gather> call flows on the fake Asterisk: Alice calls 1001, hears the prompt, types keys; what the app gets."""

from __future__ import annotations

import pytest

from stasis_app.errors import MarkupError
from stasis_app.rcml import parse_rcml
from tests.rig import Rig


@pytest.fixture
async def rig(tmp_path):
    async with Rig(tmp_path) as rig:
        rig.web.xml("/digits.xml", "<Response><Hangup/></Response>")
        rig.web.xml("/after.xml", "<Response><Hangup/></Response>")
        yield rig


def playing(rig: Rig, channel: str) -> bool:
    return any(pb.channel_id == channel for pb in rig.fake._switch.playbacks.values())


async def answered_and_prompted(rig: Rig, gather: str) -> str:
    """Alice calls 1001, whose document is ``gather``; returns her channel once the prompt plays."""
    rig.web.xml("/1001.xml", gather)
    alice = await rig.call("alice", "1001")
    await rig.until(lambda: playing(rig, alice))
    return alice


async def test_first_key_stops_the_prompt_and_the_digits_go_to_the_action(rig):
    alice = await answered_and_prompted(
        rig,
        '<Response><Gather numDigits="3" action="/digits.xml"><Play>tone:ring</Play><Play>sound:x</Play></Gather>'
        "</Response>",
    )
    await rig.fake.phone_dtmf(alice, "1")
    await rig.until(lambda: not playing(rig, alice))
    await rig.fake.phone_dtmf(alice, "23")
    await rig.idle()

    assert [call["Digits"] for call in rig.web.calls("/digits.xml")] == ["123"]
    assert rig.fake.played[alice] == ["tone:ring"]  # interrupted: the second Play never started
    assert any(method == "DELETE" and path.startswith("/playbacks/") for method, path, _ in rig.fake.rest_log)
    rig.fake.assert_nothing_leaked()


async def test_finish_on_key_ends_input_and_is_not_part_of_the_digits(rig):
    alice = await answered_and_prompted(
        rig, '<Response><Gather action="/digits.xml"><Play>tone:ring</Play></Gather></Response>'
    )
    await rig.fake.phone_dtmf(alice, "42#")
    await rig.idle()

    assert [call["Digits"] for call in rig.web.calls("/digits.xml")] == ["42"]


async def test_empty_finish_on_key_makes_pound_a_digit(rig):
    alice = await answered_and_prompted(
        rig,
        '<Response><Gather finishOnKey="" numDigits="2" action="/digits.xml" method="GET"><Play>tone:ring</Play>'
        "</Gather></Response>",
    )
    await rig.fake.phone_dtmf(alice, "1#")
    await rig.idle()

    assert [call["Digits"] for call in rig.web.calls("/digits.xml")] == ["1#"]
    assert rig.web.requests[-1][0] == "GET"


async def test_custom_finish_on_key(rig):
    alice = await answered_and_prompted(
        rig, '<Response><Gather finishOnKey="*" action="/digits.xml"><Play>tone:ring</Play></Gather></Response>'
    )
    await rig.fake.phone_dtmf(alice, "9#*")
    await rig.idle()

    assert [call["Digits"] for call in rig.web.calls("/digits.xml")] == ["9#"]


async def test_timeout_between_digits_submits_what_was_typed(rig):
    alice = await answered_and_prompted(
        rig,
        '<Response><Gather timeout="1" numDigits="4" action="/digits.xml"><Play>tone:ring</Play></Gather></Response>',
    )
    await rig.fake.phone_dtmf(alice, "7")
    await rig.until(lambda: rig.web.calls("/digits.xml"), timeout=3)
    await rig.idle()

    assert [call["Digits"] for call in rig.web.calls("/digits.xml")] == ["7"]


async def test_no_input_runs_the_next_verb_after_the_timeout(rig):
    rig.web.xml(
        "/1001.xml",
        '<Response><Gather timeout="1" action="/digits.xml"><Play>sound:hello</Play><Pause length="0"/></Gather>'
        "<Redirect>/after.xml</Redirect></Response>",
    )
    alice = await rig.call("alice", "1001")
    await rig.idle()

    assert rig.web.paths() == ["/1001.xml", "/after.xml"]
    assert rig.fake.played[alice] == ["sound:hello"]
    rig.fake.assert_nothing_leaked()


async def test_default_action_is_the_document_itself(rig):
    rig.web.xml("/1001.xml", '<Response><Gather timeout="1"><Play>sound:x</Play></Gather><Hangup/></Response>')
    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.played.get(alice) and not playing(rig, alice))
    await rig.fake.phone_dtmf(alice, "5#")  # after the prompt, within the timeout
    await rig.idle(timeout=6)

    first, second = rig.web.calls("/1001.xml")  # the second run of it got no input: <Hangup/>
    assert "Digits" not in first
    assert second["Digits"] == "5"
    assert rig.web.requests[1][0] == "POST"


async def test_caller_hanging_up_during_gather_ends_the_call_without_an_action(rig):
    alice = await answered_and_prompted(
        rig, '<Response><Gather action="/digits.xml"><Play>tone:ring</Play></Gather></Response>'
    )
    await rig.fake.phone_dtmf(alice, "1")
    await rig.fake.phone_hangup(alice)
    await rig.idle()

    assert rig.web.paths() == ["/1001.xml"]
    rig.fake.assert_nothing_leaked()


async def test_keys_during_a_nested_pause_count(rig):
    rig.web.xml(
        "/1001.xml", '<Response><Gather numDigits="1" action="/digits.xml"><Pause length="5"/></Gather></Response>'
    )
    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.channels[alice].state == "Up")
    await rig.fake.phone_dtmf(alice, "8")
    await rig.idle(timeout=2)  # well before the 5 s pause would have ended

    assert [call["Digits"] for call in rig.web.calls("/digits.xml")] == ["8"]


@pytest.mark.parametrize("kind", ["speech", "dtmf speech", "speech dtmf"])
def test_speech_input_is_refused_at_parse_time(kind):
    with pytest.raises(MarkupError, match="speech recognition is not supported"):
        parse_rcml(f'<Response><Gather input="{kind}"/></Response>', "ivr.xml")


def test_only_media_verbs_nest_in_gather():
    with pytest.raises(MarkupError, match=r"<Dial> cannot be nested in <Gather>"):
        parse_rcml("<Response><Gather><Dial>1002</Dial></Gather></Response>", "ivr.xml")
    document = parse_rcml('<Response><Gather input="dtmf"><Play>x</Play><Pause/></Gather></Response>', "ivr.xml")
    (gather,) = document.verbs
    assert [type(verb).__name__ for verb in gather.verbs] == ["Play", "Pause"]  # type: ignore[union-attr]
