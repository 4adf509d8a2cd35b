"""<Record> call flows on the fake Asterisk: Alice calls 1001 and leaves a message; what Asterisk keeps and
what the app is told. The fake's recording clock runs 100 times fast (a "5 s" silence takes 50 ms)."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from tests.rig import Rig

URL = re.compile(r"^http://127\.0\.0\.1:8090/recordings/(RE[0-9a-f]{32})\.wav$")


@pytest.fixture
async def rig(tmp_path):
    async with Rig(tmp_path) as rig:
        rig.fake.recordings.scale = 100
        rig.web.xml("/recorded.xml", "<Response><Hangup/></Response>")
        rig.web.xml("/after.xml", "<Response><Hangup/></Response>")
        yield rig


async def recording(rig: Rig, document: str) -> str:
    """Alice calls 1001, whose document is ``document``; returns her channel once the recording runs."""
    rig.web.xml("/1001.xml", document)
    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.recordings.live)
    await asyncio.sleep(0.03)  # Alice talks for 3 s
    return alice


def action(rig: Rig) -> dict[str, str]:
    (params,) = rig.web.calls("/recorded.xml")
    return params


async def test_pound_ends_the_recording_and_the_action_gets_url_duration_and_digits(rig):
    alice = await recording(rig, '<Response><Record action="/recorded.xml"/></Response>')
    (name,) = rig.fake.recordings.live
    await rig.fake.phone_dtmf(alice, "#")
    await rig.idle()

    got = action(rig)
    match = URL.match(got["RecordingUrl"])
    assert match is not None, got
    assert match.group(1) == name == got["RecordingSid"]
    assert got["Digits"] == "#"
    assert got["RecordingDuration"].isdigit()
    assert name in rig.fake.recordings.stored  # kept by Asterisk, under the name we chose
    assert rig.fake.recordings.beeps == [name]  # playBeep defaults to true
    rig.fake.assert_nothing_leaked()


async def test_keys_outside_finish_on_key_do_not_end_it(rig):
    alice = await recording(rig, '<Response><Record finishOnKey="1" action="/recorded.xml"/></Response>')
    await rig.fake.phone_dtmf(alice, "5#")
    await rig.fake.settle()
    assert rig.fake.recordings.live, "a key outside finishOnKey ended the recording"
    await rig.fake.phone_dtmf(alice, "1")
    await rig.idle()

    assert action(rig)["Digits"] == "1"


async def test_max_length_ends_it(rig):
    await recording(rig, '<Response><Record maxLength="3" timeout="0" action="/recorded.xml"/></Response>')
    await rig.idle()

    got = action(rig)
    assert got["RecordingDuration"] == "3"
    assert got["Digits"] == ""
    record = [p for method, path, p in rig.fake.rest_log if path.endswith("/record")]
    assert record[0]["maxDurationSeconds"] == "3"
    assert record[0]["maxSilenceSeconds"] == "0"
    assert record[0]["ifExists"] == "fail"


async def test_silence_timeout_ends_it_without_the_silence(rig):
    rig.web.xml("/1001.xml", '<Response><Record timeout="5" action="/recorded.xml"/></Response>')
    alice = await rig.call("alice", "1001")
    rig.fake.recordings.talks(alice, 2)  # Alice says 2 s, then nothing
    await rig.idle()

    assert action(rig)["RecordingDuration"] == "2"


async def test_nothing_said_runs_the_next_verb_without_the_action(rig):
    rig.web.xml(
        "/1001.xml", '<Response><Record timeout="2" action="/recorded.xml"/><Redirect>/after.xml</Redirect></Response>'
    )
    alice = await rig.call("alice", "1001")
    rig.fake.recordings.talks(alice, 0)
    await rig.idle()

    assert rig.web.paths() == ["/1001.xml", "/after.xml"]


async def test_play_beep_false(rig):
    await recording(rig, '<Response><Record playBeep="false" maxLength="1" action="/recorded.xml"/></Response>')
    await rig.idle()

    assert rig.fake.recordings.beeps == []
    assert action(rig)["RecordingDuration"] == "1"


async def test_hangup_mid_recording_keeps_it_and_still_requests_the_action(rig):
    rig.web.xml("/recorded.xml", "<Response><Play>sound:thanks</Play></Response>")
    alice = await recording(rig, '<Response><Record action="/recorded.xml"/><Play>sound:never</Play></Response>')
    (name,) = rig.fake.recordings.live
    await rig.fake.phone_hangup(alice)
    await rig.idle()

    got = action(rig)
    assert got["Digits"] == "hangup"
    assert got["RecordingSid"] == name
    assert got["CallStatus"] == "completed"
    assert name in rig.fake.recordings.stored
    assert "sound:thanks" not in rig.fake.played.get(alice, [])  # nobody left to play it to
    rig.fake.assert_nothing_leaked()


async def test_hangup_mid_recording_is_a_hangup_even_when_stasis_end_comes_late(rig):
    # Asterisk: ChannelHangupRequest, RecordingFinished, then StasisEnd, which may come in a later read than the
    # recording's end. The Record verb runs on at RecordingFinished: it must not take the hangup for silence.
    rig.web.xml("/recorded.xml", "<Response><Play>sound:thanks</Play></Response>")
    alice = await recording(rig, '<Response><Record action="/recorded.xml"/><Play>sound:never</Play></Response>')
    rig.fake.event_gaps["StasisEnd"] = 0.05
    await rig.fake.phone_hangup(alice)
    await rig.idle()

    got = action(rig)
    assert got["Digits"] == "hangup"
    assert got["CallStatus"] == "completed"
    assert "sound:thanks" not in rig.fake.played.get(alice, [])  # the action's answer has nobody to play to
    rig.fake.assert_nothing_leaked()


async def test_recording_refused_is_one_warning_and_the_next_verb(rig, caplog):
    rig.fake.recordings.refuse = "Internal Server Error"  # no spool directory, a full disk
    rig.web.xml("/1001.xml", '<Response><Record action="/recorded.xml"/><Redirect>/after.xml</Redirect></Response>')
    with caplog.at_level(logging.WARNING):
        await rig.call("alice", "1001")
        await rig.idle()

    assert rig.web.paths() == ["/1001.xml", "/after.xml"]
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("stasis_app")]
    assert lines == ["number 1001: <Record> failed: Asterisk refused to record: Internal Server Error; next verb"]
    assert not any(r.exc_info for r in caplog.records)


async def test_recording_failing_midway_is_one_warning_and_the_next_verb(rig, caplog):
    rig.web.xml("/1001.xml", '<Response><Record action="/recorded.xml"/><Redirect>/after.xml</Redirect></Response>')
    with caplog.at_level(logging.WARNING):
        await rig.call("alice", "1001")
        await rig.until(lambda: rig.fake.recordings.live)
        (name,) = rig.fake.recordings.live
        rig.fake.recordings.fail(name, "No space left on device")
        await rig.idle()

    assert rig.web.paths() == ["/1001.xml", "/after.xml"]
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("stasis_app")]
    assert lines == [f"number 1001: <Record> {name} failed: No space left on device; next verb"]


async def test_recording_status_callback_is_posted_in_the_background(rig):
    rig.web.status("/status", 500)  # a failing callback changes nothing for the call
    alice = await recording(
        rig, '<Response><Record action="/recorded.xml" recordingStatusCallback="/status"/></Response>'
    )
    await rig.fake.phone_dtmf(alice, "*")
    await rig.idle()
    await rig.until(lambda: rig.web.calls("/status"))

    (status,) = rig.web.calls("/status")
    assert status["RecordingStatus"] == "completed"
    assert status["RecordingSid"] == action(rig)["RecordingSid"]
    assert status["RecordingUrl"] == action(rig)["RecordingUrl"]
    assert status["CallSid"] == action(rig)["CallSid"]


async def test_record_after_a_dial_takes_the_caller_out_of_the_bridge(rig):
    rig.web.xml(
        "/1001.xml",
        '<Response><Dial><Client>bob</Client></Dial><Record maxLength="2" action="/recorded.xml"/></Response>',
    )
    rig.fake.phone("PJSIP/bob", answer_after=0.01, hangup_after=0.05)
    await rig.call("alice", "1001")
    await rig.idle()

    assert action(rig)["RecordingDuration"] == "2"
