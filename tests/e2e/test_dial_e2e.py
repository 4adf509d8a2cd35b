"""Dial extras on the real Asterisk: X- headers of a <Sip> URI reach the callee's INVITE; ``record`` keeps the
bridged call in the spool; ``hangupOnStar`` ends Bob's leg on Alice's * (RFC 2833) and she goes on."""

from __future__ import annotations

import re

import pytest

from tests.e2e.harness import Number, Phones, RcmlProcess, Sandbox, WebApp, chroot_dir, eventually

pytestmark = pytest.mark.e2e

SIP_WITH_HEADERS = (
    '<Response><Dial timeout="10"><Sip>sip:carol@127.0.0.1:5073?X-Account=42&amp;X-Team=blue%20team</Sip>'
    "</Dial></Response>"
)


async def test_x_headers_of_a_sip_uri_are_on_the_invite_the_callee_gets(
    sandbox: Sandbox, rcml: RcmlProcess, phones: Phones
):
    rcml.start([Number("1001", "app:sip-headers")], apps={"sip-headers": SIP_WITH_HEADERS})
    carol = await phones.start("carol", "uas_answer.xml", ring_ms=100)
    alice = await phones.start("alice", "alice_uac.xml", service="1001", talk_ms=1500)

    alice_saw, carol_saw = await alice.result(20), await carol.result(20)

    assert (alice_saw.returncode, carol_saw.returncode) == (0, 0), (alice_saw, carol_saw)
    assert carol_saw.lines[0] == "answered", carol_saw
    invite = carol.invite_text()
    assert "X-Account: 42" in invite, invite
    assert "X-Team: blue team" in invite, invite


# -- record and hangupOnStar: Alice's media phone (alice_media.xml) talks and types; Bob answers -------------------

SPOOL = "var/spool/asterisk/recording"
RECORDING_URL = re.compile(r"^http://127\.0\.0\.1:8090/recordings/(RE[0-9a-f]{32})\.wav$")


def wav_seconds(name: str) -> float:
    """The length of a stored recording, from its file in the sandbox's spool (8 kHz 16-bit mono WAV)."""
    data = (chroot_dir() / SPOOL / f"{name}.wav").read_bytes()
    assert data[:4] == b"RIFF", data[:16]
    return (len(data) - 44) / 16000


async def test_dial_record_from_answer_keeps_the_bridged_call(
    sandbox: Sandbox, rcml: RcmlProcess, phones: Phones, web: WebApp
):
    web.xml(
        "/dial.xml",
        '<Response><Dial record="record-from-answer" action="/after.xml"><Client>bob</Client></Dial></Response>',
    )
    web.xml("/after.xml", "<Response><Hangup/></Response>")
    rcml.start([Number("1001", f"{web.url}/dial.xml")])
    bob = await phones.start("bob", "uas_answer.xml", ring_ms=500)
    # Alice talks 7 s of speech once connected, stays 1 s more and hangs up.
    alice = await phones.start(
        "alice", "alice_media.xml", service="1001", pre_ms=300, speak=1, speak_ms=7300, keys=0, talk_ms=700
    )
    alice_saw, bob_saw = await alice.result(30), await bob.result(30)
    assert alice_saw.value("hangup") == "local", alice_saw
    assert bob_saw.lines[:2] == ["answered", "hangup=remote"], bob_saw

    got = (await eventually(lambda: web.calls("/after.xml"), 10, "the Dial action"))[0]
    assert got["DialCallStatus"] == "completed", got
    match = RECORDING_URL.match(got["RecordingUrl"])
    assert match is not None, got
    name = match.group(1)
    assert got["RecordingSid"] == name, got
    # From the answer to Alice's BYE: about 8.3 s (Asterisk does not trim a bridge recording).
    assert 6 <= int(got["RecordingDuration"]) <= 10, got
    assert sandbox.http.get(f"/recordings/stored/{name}").status_code == 200
    assert 6.0 <= wav_seconds(name) <= 10.0, wav_seconds(name)
    kinds = {"RecordingStarted", "RecordingFinished", "RecordingFailed", "ChannelEnteredBridge", "ChannelLeftBridge"}
    seen = [
        f"{e['type']} {e.get('recording') or e.get('channel', {}).get('name')}"
        for e in rcml.events()
        if e["type"] in kinds
    ]
    (rcml.workdir / "dial-record-events.txt").write_text("\n".join(seen))
    print("\n".join(seen))
    assert any(line.startswith("RecordingFinished") and "'bridge:" in line for line in seen), seen


async def test_dial_hangup_on_star_ends_bobs_leg_and_alice_goes_on(
    sandbox: Sandbox, rcml: RcmlProcess, phones: Phones, web: WebApp
):
    web.xml(
        "/dial.xml",
        '<Response><Dial hangupOnStar="true" action="/after.xml"><Client>bob</Client></Dial></Response>',
    )
    web.xml("/after.xml", "<Response><Play>sound:beep</Play><Hangup/></Response>")
    rcml.start([Number("1001", f"{web.url}/dial.xml")])
    bob = await phones.start("bob", "uas_answer.xml", ring_ms=300)
    # Once connected Alice waits 1 s, presses * (then #), and would stay 8 s more: Asterisk hangs her up first.
    alice = await phones.start(
        "alice", "alice_media.xml", service="1001", pre_ms=1000, speak=0, speak_ms=0, keys=3, talk_ms=8000
    )
    bob_saw = await bob.result(20)
    assert bob_saw.lines[:2] == ["answered", "hangup=remote"], bob_saw  # the app hung Bob up on the *
    alice_saw = await alice.result(20)
    assert alice_saw.value("final_response") == "200", alice_saw
    assert alice_saw.value("hangup") == "remote", alice_saw  # the action's <Hangup/>, not her own BYE
    got = web.calls("/after.xml")[0]
    assert got["DialCallStatus"] == "completed", got
    assert got["CallStatus"] == "in-progress", got
    digits = [e["digit"] for e in rcml.events() if e["type"] == "ChannelDtmfReceived"]
    assert digits[:1] == ["*"], digits


async def test_whisper_and_send_digits_reach_bob_before_the_bridge_and_alice_hears_a_ringback_tone(
    sandbox: Sandbox, rcml: RcmlProcess, phones: Phones, web: WebApp
):
    web.xml(
        "/dial.xml",
        '<Response><Dial ringbackTone="tone:busy" action="/after.xml">'
        '<Number sendDigits="12" url="/whisper.xml">1002</Number></Dial></Response>',
    )
    web.xml("/whisper.xml", "<Response><Play>sound:beep</Play></Response>")
    web.xml("/after.xml", "<Response><Hangup/></Response>")
    # 1002 is not one of ours here: it goes out through the trunk (the phone on 5080).
    rcml.start([Number("1001", f"{web.url}/dial.xml")])
    trunk = await phones.start("trunk", "uas_answer.xml", ring_ms=1500)
    alice = await phones.start("alice", "alice_uac.xml", service="1001", talk_ms=5000)
    alice_saw, trunk_saw = await alice.result(20), await trunk.result(20)
    assert alice_saw.value("final_response") == "200", alice_saw
    assert trunk_saw.lines[:1] == ["answered"], trunk_saw

    events = rcml.events()
    names = {e["channel"]["id"]: e["channel"]["name"] for e in events if "channel" in e}
    # The app does not ask for PlaybackStarted (nothing acts on it): a tone that played is one that finished.
    order = [
        (
            e["type"],
            names.get(e.get("playback", {}).get("target_uri", "").partition(":")[2]) or e["channel"]["name"],
            e.get("playback", {}).get("media_uri", ""),
        )
        for e in events
        if e["type"] in ("PlaybackFinished", "ChannelEnteredBridge")
    ]
    print(order)
    alice_tone = [
        i
        for i, (kind, name, media) in enumerate(order)
        if kind == "PlaybackFinished" and name.startswith("PJSIP/alice") and media == "tone:busy"  # its ringbackTone
    ]
    callee_beep = [
        i for i, (kind, name, _) in enumerate(order) if kind == "PlaybackFinished" and name.startswith("PJSIP/trunk")
    ]
    callee_joins = [
        i
        for i, (kind, name, _) in enumerate(order)
        if kind == "ChannelEnteredBridge" and name.startswith("PJSIP/trunk")
    ]
    assert alice_tone, order
    assert callee_beep, order
    assert callee_joins, order
    assert max(alice_tone[0], callee_beep[0]) < callee_joins[0], order
    assert web.calls("/whisper.xml")[0]["Direction"] == "outbound-dial"
    # Alice hung up herself: the action is requested after her hangup, with the call already ending.
    after = await eventually(lambda: web.calls("/after.xml"), 5, "the Dial action")
    assert after[0]["DialCallStatus"] == "completed"
    assert "ERROR" not in rcml.log(), rcml.log()[-2000:]
    assert "sendDigits" not in rcml.log(), rcml.log()[-2000:]  # Asterisk took the DTMF (else one WARNING)
