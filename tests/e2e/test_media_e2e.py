"""<Gather> and <Record> end to end: the real Asterisk sandbox and Alice's sipp phone typing and talking.

Alice's phone (``alice_media.xml``) sends DTMF as RFC 2833 / 4733 telephone-events in RTP (sipp's
``dtmf_2833_*.pcap``; the PJSIP endpoints use the default ``dtmf_mode=rfc4733``) and speech as PCMA RTP (sipp's
``g711a.pcap``, 7.05 s).
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.harness import Number, Phones, RcmlProcess, Sandbox, WebApp, chroot_dir, eventually

pytestmark = pytest.mark.e2e

WAIT = 30.0
SPOOL = "var/spool/asterisk/recording"
SPEECH_S = 7.05  # g711a.pcap
RECORDING_URL = re.compile(r"^http://127\.0\.0\.1:8090/recordings/(RE[0-9a-f]{32})\.wav$")


def wav_seconds(name: str) -> float:
    """The length of a stored recording, from its file in the sandbox's spool (8 kHz 16-bit mono WAV)."""
    data = (chroot_dir() / SPOOL / f"{name}.wav").read_bytes()
    assert data[:4] == b"RIFF", data[:16]
    assert data[8:12] == b"WAVE", data[:16]
    return (len(data) - 44) / 16000


async def test_gather_collects_keys_typed_during_the_prompt(
    sandbox: Sandbox, rcml: RcmlProcess, phones: Phones, web: WebApp
):
    # hello-world lasts about 1.3 s: Alice types 1, 2, # from 0.5 s on, so the first key stops it.
    web.xml(
        "/ivr.xml",
        '<Response><Gather numDigits="5" timeout="4" action="/digits.xml"><Play>sound:hello-world</Play>'
        "<Play>sound:hello-world</Play></Gather><Play>sound:beep</Play></Response>",
    )
    web.xml("/digits.xml", "<Response><Hangup/></Response>")
    rcml.start([Number("1001", f"{web.url}/ivr.xml")])
    alice = await phones.start(
        "alice", "alice_media.xml", service="1001", pre_ms=500, speak=0, speak_ms=0, keys=1, talk_ms=8000
    )
    result = await alice.result(WAIT)
    assert result.returncode == 0, result
    assert result.value("final_response") == "200", result
    assert result.value("hangup") == "remote", result  # the action's <Hangup/>
    assert [params["Digits"] for params in web.calls("/digits.xml")] == ["12"], web.requests
    events = rcml.events()
    digits = [e["digit"] for e in events if e["type"] == "ChannelDtmfReceived"]
    assert digits == ["1", "2", "#"], digits
    # The first key stopped the prompt: one hello-world played, none after, no beep (the action replaced it).
    # (The app does not ask for PlaybackStarted: a playback that ran is one that finished.)
    played = [e["playback"]["media_uri"] for e in events if e["type"] == "PlaybackFinished"]
    assert played == ["sound:hello-world"], played


async def test_gather_without_input_goes_on_to_the_next_verb(
    sandbox: Sandbox, rcml: RcmlProcess, phones: Phones, web: WebApp
):
    web.xml(
        "/ivr.xml",
        '<Response><Gather timeout="1" action="/digits.xml"><Play>sound:beep</Play></Gather>'
        '<Redirect method="GET">/after.xml</Redirect></Response>',
    )
    web.xml("/after.xml", "<Response><Hangup/></Response>")
    rcml.start([Number("1001", f"{web.url}/ivr.xml")])
    alice = await phones.start(
        "alice", "alice_media.xml", service="1001", pre_ms=0, speak=0, speak_ms=0, keys=0, talk_ms=8000
    )
    result = await alice.result(WAIT)
    assert result.value("hangup") == "remote", result
    assert web.paths() == ["/ivr.xml", "/after.xml"], web.paths()


async def test_record_ended_by_pound_keeps_the_speech(sandbox: Sandbox, rcml: RcmlProcess, phones: Phones, web: WebApp):
    web.xml("/rec.xml", '<Response><Record maxLength="30" timeout="10" action="/recorded.xml"/></Response>')
    web.xml("/recorded.xml", "<Response><Hangup/></Response>")
    rcml.start([Number("1001", f"{web.url}/rec.xml")])
    alice = await phones.start(
        "alice", "alice_media.xml", service="1001", pre_ms=700, speak=1, speak_ms=7300, keys=2, talk_ms=8000
    )
    result = await alice.result(WAIT)
    assert result.value("hangup") == "remote", result
    params = await eventually(lambda: web.calls("/recorded.xml"), 5, "the Record action")
    got = params[0]
    assert got["Digits"] == "#", got
    match = RECORDING_URL.match(got["RecordingUrl"])
    assert match is not None, got
    name = match.group(1)
    assert got["RecordingSid"] == name
    assert abs(int(got["RecordingDuration"]) - SPEECH_S) <= 1.5, got
    assert sandbox.http.get(f"/recordings/stored/{name}").status_code == 200
    assert abs(wav_seconds(name) - SPEECH_S) <= 1.5, wav_seconds(name)
    _dump_recording_events(rcml)


async def test_record_kept_when_the_caller_hangs_up_mid_recording(
    sandbox: Sandbox, rcml: RcmlProcess, phones: Phones, web: WebApp
):
    web.xml("/rec.xml", '<Response><Record action="/recorded.xml" playBeep="false"/></Response>')
    web.xml("/recorded.xml", "<Response><Play>sound:beep</Play></Response>")
    rcml.start([Number("1001", f"{web.url}/rec.xml")])
    # Alice talks for 3 s of the 7 s sample and hangs up while she is still talking.
    alice = await phones.start(
        "alice", "alice_media.xml", service="1001", pre_ms=300, speak=1, speak_ms=3000, keys=0, talk_ms=1
    )
    result = await alice.result(WAIT)
    assert result.value("hangup") == "local", result
    params = await eventually(lambda: web.calls("/recorded.xml"), 10, "the Record action after the hangup")
    got = params[0]
    assert got["Digits"] == "hangup", got
    match = RECORDING_URL.match(got["RecordingUrl"])
    assert match is not None, got
    assert 2 <= int(got["RecordingDuration"]) <= 4, got
    assert 2.0 <= wav_seconds(match.group(1)) <= 4.0, wav_seconds(match.group(1))
    _dump_recording_events(rcml)


def _dump_recording_events(rcml: RcmlProcess) -> None:
    """Keep the recording events as Asterisk sent them next to the run (the fake copies them)."""
    kinds = {"RecordingStarted", "RecordingFinished", "RecordingFailed", "StasisEnd", "ChannelHangupRequest"}
    lines = [f"{e['type']} {e.get('recording', '')}" for e in rcml.events() if e["type"] in kinds]
    (rcml.workdir / "recording-events.txt").write_text("\n".join(lines))
    print("\n".join(lines))
