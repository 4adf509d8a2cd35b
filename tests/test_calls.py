"""Scenario tests of RCML calls on the fake Asterisk: webhook requests, who is bridged with whom, no leaks."""

from __future__ import annotations

import pytest

from models.config import NumberConfig
from tests.rig import WEB, Rig

DIAL_BOB = "<Response><Dial><Client>bob</Client></Dial></Response>"


@pytest.fixture
async def rig(tmp_path):
    async with Rig(tmp_path) as rig:
        yield rig


async def test_answered_dial_then_bob_hangs_up(rig):
    rig.web.xml("/1001.xml", DIAL_BOB)
    rig.fake.phone("PJSIP/bob", answer_after=0.02)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    bob = rig.channel_named("PJSIP/bob")
    assert rig.fake.bridged_with(alice) == {bob}
    assert rig.fake.ringing.get(alice), "Alice heard no ringback while Bob rang"

    await rig.fake.phone_hangup(bob)
    await rig.idle()

    (voice,) = rig.web.calls("/1001.xml")
    assert voice["From"] == "alice"
    assert voice["To"] == "1001"
    assert voice["Direction"] == "inbound"
    assert voice["CallStatus"] == "ringing"
    assert voice["CallSid"].startswith("CA")
    assert {"AccountSid", "ApiVersion", "CallerName", "ForwardedFrom"} <= voice.keys()
    rig.fake.assert_nothing_leaked()


async def test_answered_dial_then_alice_hangs_up(rig):
    rig.web.xml("/1001.xml", DIAL_BOB)
    rig.fake.phone("PJSIP/bob", answer_after=0.01)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    bob = rig.channel_named("PJSIP/bob")

    await rig.fake.phone_hangup(alice)
    await rig.idle()

    assert rig.fake.hangup_causes[bob] == 16  # Bob got a normal BYE
    assert rig.web.paths() == ["/1001.xml"]  # no action, nothing else requested
    rig.assert_each_hangup_asked_once()
    rig.fake.assert_nothing_leaked()


@pytest.mark.parametrize("ordered", [True, False])
async def test_the_answer_and_the_bridge_go_out_together_where_asterisk_keeps_the_order(rig, ordered):
    # Over the websocket the Dial does not wait for the caller's answer to be answered before it bridges: the
    # answer's reply is held here until the addChannel was sent. Over HTTP (not ordered) it waits, as it must.
    rig.web.xml("/1001.xml", DIAL_BOB)
    rig.fake.phone("PJSIP/bob", answer_after=0.01)
    rig.fake.ordered = ordered
    request, sent = rig.fake.request, []

    async def held(method, path, query=None, body=None):
        sent.append(path.rsplit("/", 1)[-1])
        answer = await request(method, path, query, body)
        if path.endswith("/answer") and ordered:
            await rig.until(lambda: "addChannel" in sent)
        return answer

    rig.fake.request = held
    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    assert sent.index("answer") + 1 == sent.index("addChannel")
    await rig.fake.phone_hangup(alice)
    await rig.idle()
    rig.fake.assert_nothing_leaked()


async def test_busy_goes_to_the_action_with_dial_call_status(rig):
    rig.web.xml("/1001.xml", '<Response><Dial action="/after-dial"><Client>bob</Client></Dial><Hangup/></Response>')
    rig.web.xml("/after-dial", "<Response><Play>sound:busy</Play></Response>")
    rig.fake.phone("PJSIP/bob", busy=True)

    alice = await rig.call("alice", "1001")
    await rig.idle()

    (action,) = rig.web.calls("/after-dial")
    assert action["DialCallStatus"] == "busy"
    assert action["DialCallDuration"] == "0"
    assert action["DialCallSid"] == ""
    assert action["CallSid"] == rig.web.calls("/1001.xml")[0]["CallSid"]
    assert rig.fake.played[alice] == ["sound:busy"]  # the action's document replaced the rest
    rig.fake.assert_nothing_leaked()


async def test_busy_without_action_ends_the_document_with_busy(rig):
    rig.web.xml("/1001.xml", DIAL_BOB)
    rig.fake.phone("PJSIP/bob", busy=True)

    alice = await rig.call("alice", "1001")
    await rig.idle()

    # Never answered: Alice's phone is told "busy" (486), as a caller through a Local channel would be.
    assert rig.fake.hangup_causes[alice] == 17
    rig.fake.assert_nothing_leaked()


async def test_no_answer_after_the_dial_timeout_runs_the_next_verb(rig):
    rig.web.xml("/1001.xml", '<Response><Dial timeout="1"><Client>bob</Client></Dial><Play>sound:vm</Play></Response>')
    rig.fake.phone("PJSIP/bob", answer_after=None)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.played.get(alice))
    await rig.idle()

    assert rig.fake.played[alice] == ["sound:vm"]
    bob_events = [e for e in rig.fake.event_log if e["type"] == "Dial" and e["dialstatus"] == "CANCEL"]
    assert bob_events, "Bob's ringing leg was not cancelled"
    rig.fake.assert_nothing_leaked()


async def test_no_answer_reports_no_answer_to_the_action(rig):
    rig.web.xml("/1001.xml", '<Response><Dial timeout="1" action="/after"><Client>bob</Client></Dial></Response>')
    rig.web.xml("/after", "<Response><Hangup/></Response>")
    rig.fake.phone("PJSIP/bob", answer_after=None)

    await rig.call("alice", "1001")
    await rig.idle()

    (action,) = rig.web.calls("/after")
    assert action["DialCallStatus"] == "no-answer"
    assert int(action["DialRingDuration"]) >= 1
    rig.fake.assert_nothing_leaked()


async def test_several_nouns_ring_at_once_and_the_first_answer_wins(rig):
    rig.web.xml(
        "/1001.xml",
        "<Response><Dial><Client>bob</Client><Client>carol</Client><Number>5551234</Number></Dial></Response>",
    )
    rig.fake.phone("PJSIP/bob", answer_after=None)
    rig.fake.phone("PJSIP/carol", answer_after=0.03)
    rig.fake.phone("PJSIP/5551234@trunk", answer_after=None)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    carol = rig.channel_named("PJSIP/carol")
    assert rig.fake.bridged_with(alice) == {carol}
    originated = [
        params["endpoint"] for method, path, params in rig.fake.rest_log if (method, path) == ("POST", "/channels")
    ]
    assert sorted(originated) == ["PJSIP/5551234@trunk", "PJSIP/bob", "PJSIP/carol"]
    await rig.until(
        lambda: not any(c.name.startswith(("PJSIP/bob", "PJSIP/5551234")) for c in rig.fake.channels.values())
    )

    await rig.fake.phone_hangup(alice)
    await rig.idle()
    rig.fake.assert_nothing_leaked()


async def test_action_replaces_the_rest_of_the_document(rig):
    rig.web.xml(
        "/1001.xml",
        '<Response><Dial action="/next"><Client>bob</Client></Dial><Play>sound:never</Play></Response>',
    )
    rig.web.xml("/next", "<Response><Dial><Client>carol</Client></Dial></Response>")
    rig.fake.phone("PJSIP/bob", busy=True)
    rig.fake.phone("PJSIP/carol", answer_after=0.01)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    assert rig.names_with(alice) == {"PJSIP/carol"}

    await rig.fake.phone_hangup(alice)
    await rig.idle()
    assert alice not in rig.fake.played  # the Play after the first Dial never ran
    rig.fake.assert_nothing_leaked()


async def test_redirect_fetches_the_next_document_relative_to_the_current_one(rig):
    rig.web.xml("/1001.xml", '<Response><Redirect method="GET">next.xml</Redirect><Play>sound:never</Play></Response>')
    rig.web.xml("/next.xml", "<Response><Play>sound:hello</Play></Response>")

    alice = await rig.call("alice", "1001")
    await rig.idle()

    (redirect,) = rig.web.calls("/next.xml")
    assert redirect["From"] == "alice"
    assert redirect["CallStatus"] == "ringing"
    assert rig.fake.played[alice] == ["sound:hello"]
    assert rig.fake.hangup_causes[alice] == 16  # answered for the Play, then a normal hangup at the end
    rig.fake.assert_nothing_leaked()


async def test_caller_hangs_up_while_bob_rings(rig):
    rig.web.xml("/1001.xml", '<Response><Dial action="/after"><Client>bob</Client></Dial></Response>')
    rig.web.xml("/after", "<Response><Hangup/></Response>")
    rig.fake.phone("PJSIP/bob", answer_after=None)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: any(c.name.startswith("PJSIP/bob") for c in rig.fake.channels.values()))
    await rig.fake.phone_hangup(alice)
    await rig.idle()

    (action,) = rig.web.calls("/after")
    assert action["DialCallStatus"] == "canceled"
    assert action["CallStatus"] == "canceled"
    rig.fake.assert_nothing_leaked()


@pytest.mark.parametrize(
    ("failure", "expect"),
    [
        ("timeout", "timed out"),
        ("500", "HTTP 500"),
        ("invalid", "invalid RCML from http://app.test/1001.xml, line 1"),
    ],
)
async def test_voice_url_failure_hangs_up_with_a_cause_and_one_log_line(rig, caplog, failure, expect):
    if failure == "timeout":
        rig.web.hang("/1001.xml")
    elif failure == "500":
        rig.web.status("/1001.xml", 500)
    else:
        rig.web.xml("/1001.xml", "<Response><Dial><Client>bob</Dial></Response>")

    alice = await rig.call("alice", "1001")
    await rig.idle()

    assert rig.fake.hangup_causes[alice] == 34  # 503 to Alice's phone: the service failed, not the number
    problems = [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert len(problems) == 1, [r.getMessage() for r in problems]
    assert expect in problems[0].getMessage()
    assert "1001" in problems[0].getMessage()
    assert problems[0].exc_info is None
    assert "\n" not in problems[0].getMessage()
    rig.fake.assert_nothing_leaked()


async def test_unknown_number_is_rejected_without_a_request(rig):
    alice = await rig.call("alice", "9999")
    await rig.idle()

    assert rig.fake.hangup_causes[alice] == 1  # unallocated number: 404 to the phone
    assert rig.web.requests == []
    rig.fake.assert_nothing_leaked()


async def test_time_limit_ends_the_bridged_call(rig):
    rig.web.xml("/1001.xml", '<Response><Dial timeLimit="1" action="/after"><Client>bob</Client></Dial></Response>')
    rig.web.xml("/after", "<Response><Hangup/></Response>")
    rig.fake.phone("PJSIP/bob", answer_after=0.01)

    await rig.call("alice", "1001")
    await rig.idle(timeout=4)

    (action,) = rig.web.calls("/after")
    assert action["DialCallStatus"] == "completed"
    assert action["DialCallDuration"] == "1"
    rig.fake.assert_nothing_leaked()


async def test_reject_busy_refuses_without_answering(rig):
    rig.web.xml("/1001.xml", '<Response><Reject reason="busy"/></Response>')

    alice = await rig.call("alice", "1001")
    await rig.idle()

    assert rig.fake.hangup_causes[alice] == 17
    assert not any(path.endswith("/answer") for _m, path, _p in rig.fake.rest_log)
    rig.fake.assert_nothing_leaked()


async def test_our_own_number_runs_its_voice_app_through_a_local_channel(tmp_path):
    async with Rig(tmp_path, our_numbers="local-channel") as rig:
        await _through_a_local_channel(rig)


async def _through_a_local_channel(rig: Rig) -> None:
    rig.web.xml("/1001.xml", "<Response><Dial><Number>1002</Number></Dial></Response>")
    rig.web.xml("/1002.xml", "<Response><Dial><Client>carol</Client></Dial></Response>")
    rig.fake.phone("PJSIP/carol", answer_after=0.02)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    local_1 = next(iter(rig.fake.bridged_with(alice)))
    assert rig.fake.name_of(local_1).startswith("Local/1002@rcml")
    carol = rig.channel_named("PJSIP/carol")
    local_2 = next(iter(rig.fake.bridged_with(carol)))
    assert rig.fake.name_of(local_2).endswith(";2")

    (inner,) = rig.web.calls("/1002.xml")
    assert inner["From"] == "alice"
    assert inner["To"] == "1002"

    await rig.fake.phone_hangup(carol)
    await rig.idle()
    rig.fake.assert_nothing_leaked()


@pytest.mark.parametrize("our_numbers", ["in-process", "local-channel"])
async def test_an_answered_caller_hears_the_ring_tone_until_the_dial_connects(tmp_path, our_numbers):
    # 1002's app answers (its Play) before it dials Carol: the ringback is in-band, on whichever channel carries
    # that call's audio, and it stops when Carol answers.
    async with Rig(tmp_path, our_numbers=our_numbers) as rig:
        rig.web.xml("/1001.xml", "<Response><Dial><Number>1002</Number></Dial></Response>")
        rig.web.xml("/1002.xml", "<Response><Play>sound:hello</Play><Dial><Client>carol</Client></Dial></Response>")
        rig.fake.phone("PJSIP/carol", answer_after=0.1)

        alice = await rig.call("alice", "1001")
        await rig.until(lambda: any(rig.fake.name_of(c).startswith("PJSIP/carol") for c in rig.fake.channels))
        carol = rig.channel_named("PJSIP/carol")
        await rig.until(lambda: rig.fake.in_bridge(carol) is not None)
        await rig.fake.settle()

        # A PJSIP channel gets Asterisk's ring indication; a Local channel a tone:ring playback, because it
        # would pass the indication's stop on to its other half and go on ringing itself.
        rang = set(rig.fake.ring_tones) | {c for c, media in rig.fake.played.items() if "tone:ring" in media}
        (ringing,) = rang
        assert rig.fake.name_of(ringing).startswith("PJSIP/alice" if our_numbers == "in-process" else "Local/")
        assert not rig.fake.ring_tone
        assert "tone:ring" not in rig.fake.playing(ringing)
        await rig.fake.phone_hangup(alice)
        await rig.idle()
        rig.fake.assert_nothing_leaked()


async def test_busy_through_our_own_number_reaches_the_first_dial_as_busy(rig):
    rig.web.xml("/1001.xml", '<Response><Dial action="/after"><Number>1002</Number></Dial></Response>')
    rig.web.xml("/after", "<Response><Hangup/></Response>")
    rig.web.xml("/1002.xml", "<Response><Dial><Client>carol</Client></Dial></Response>")
    rig.fake.phone("PJSIP/carol", busy=True)

    await rig.call("alice", "1001")
    await rig.idle()

    (action,) = rig.web.calls("/after")
    assert action["DialCallStatus"] == "busy"
    rig.fake.assert_nothing_leaked()


async def test_peer_to_peer_client_call_needs_no_rcml(tmp_path):
    from models.config import RoutingSettings

    async with Rig(tmp_path) as rig:
        rig.settings = rig.settings.model_copy(
            update={"routing": RoutingSettings(apps_dir=tmp_path, clients=("alice", "bob"))}
        )
        rig.engine.settings = rig.settings
        rig.fake.phone("PJSIP/bob", answer_after=0.01)

        alice = await rig.call("alice", "bob")
        await rig.until(lambda: rig.fake.bridged_with(alice))
        assert rig.names_with(alice) == {"PJSIP/bob"}

        await rig.fake.phone_hangup(alice)
        await rig.idle()
        assert rig.web.requests == []
        rig.fake.assert_nothing_leaked()


async def test_numbers_match_as_restcomm_matches_them_plus_insensitive_and_a_catch_all(tmp_path):
    numbers = (
        NumberConfig(number="+1112", voice_url=f"{WEB}/plus.xml"),
        NumberConfig(number="*", voice_url=f"{WEB}/any.xml"),
    )
    async with Rig(tmp_path, numbers=numbers) as rig:
        rig.web.xml("/plus.xml", "<Response><Hangup/></Response>")
        rig.web.xml("/any.xml", "<Response><Dial><Number>5556</Number></Dial></Response>")
        rig.fake.phone("PJSIP/5556@trunk", busy=True)

        await rig.call("alice", "1112")  # reaches +1112
        await rig.call("alice", "5555")  # reaches the catch-all, which dials out (5556 is not ours)
        await rig.idle()

        (plus,) = rig.web.calls("/plus.xml")
        assert plus["To"] == "1112"
        (anything,) = rig.web.calls("/any.xml")
        assert anything["To"] == "5555"
        assert [p["endpoint"] for m, path, p in rig.fake.rest_log if (m, path) == ("POST", "/channels")] == [
            "PJSIP/5556@trunk"
        ]
        rig.fake.assert_nothing_leaked()


async def test_x_headers_of_a_sip_uri_are_set_on_the_outgoing_call(rig):
    rig.web.xml(
        "/1001.xml", "<Response><Dial><Sip>sip:bob@example.com?X-Account=42&X-Team=blue</Sip></Dial></Response>"
    )
    rig.fake.phone("PJSIP/trunk/sip:bob@example.com", busy=True)

    await rig.call("alice", "1001")
    await rig.idle()

    (originate,) = [p for m, path, p in rig.fake.rest_log if (m, path) == ("POST", "/channels")]
    assert originate["endpoint"] == "PJSIP/trunk/sip:bob@example.com"
    assert originate["variables"] == {"PJSIP_HEADER(add,X-Account)": "42", "PJSIP_HEADER(add,X-Team)": "blue"}
    rig.fake.assert_nothing_leaked()


async def test_dial_noun_status_callbacks_tell_each_event_as_twilio_does(rig):
    events = "initiated ringing answered completed"
    rig.web.xml(
        "/1001.xml",
        f'<Response><Dial><Client statusCallback="/progress" statusCallbackEvent="{events}">bob</Client>'
        '<Client statusCallback="/progress-carol" statusCallbackMethod="get">carol</Client></Dial></Response>',
    )
    rig.web.xml("/progress", "")
    rig.web.xml("/progress-carol", "")
    rig.fake.phone("PJSIP/bob", answer_after=0.05)
    rig.fake.phone("PJSIP/carol", answer_after=None)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    await rig.fake.phone_hangup(alice)
    await rig.idle()
    await rig.until(lambda: len(rig.web.calls("/progress")) == 4 and rig.web.calls("/progress-carol"))

    bob = rig.web.calls("/progress")
    (voice,) = rig.web.calls("/1001.xml")
    assert [p["CallStatus"] for p in bob] == ["initiated", "ringing", "in-progress", "completed"]
    assert [p["SequenceNumber"] for p in bob] == ["0", "1", "2", "3"]
    assert {p["ParentCallSid"] for p in bob} == {voice["CallSid"]}
    assert len({p["CallSid"] for p in bob}) == 1
    assert bob[0]["CallSid"] != voice["CallSid"]
    assert (bob[0]["To"], bob[0]["Direction"], bob[0]["CallbackSource"]) == (
        "bob",
        "outbound-dial",
        "call-progress-events",
    )
    assert "CallDuration" in bob[3]
    # Carol lost the race: only "completed" (the default event), as canceled, with GET.
    (carol,) = rig.web.calls("/progress-carol")
    assert carol["CallStatus"] == "canceled"
    assert [m for m, path, _p in rig.web.requests if path == "/progress-carol"] == ["GET"]
    rig.fake.assert_nothing_leaked()


async def test_a_failing_status_callback_never_touches_the_call(rig):
    rig.web.xml("/1001.xml", '<Response><Dial><Client statusCallback="/gone">bob</Client></Dial></Response>')
    rig.web.hang("/gone")
    rig.fake.phone("PJSIP/bob", answer_after=0.01)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    await rig.fake.phone_hangup(alice)
    await rig.idle()
    rig.fake.assert_nothing_leaked()


async def test_the_numbers_status_callback_is_told_when_its_call_ends(tmp_path):
    number = NumberConfig(number="1001", voice_url=f"{WEB}/1001.xml", status_callback=f"{WEB}/ended")
    async with Rig(tmp_path, numbers=(number,)) as rig:
        rig.web.xml("/1001.xml", "<Response><Dial><Client>bob</Client></Dial></Response>")
        rig.web.xml("/ended", "")
        rig.fake.phone("PJSIP/bob", answer_after=0.01)

        alice = await rig.call("alice", "1001")
        await rig.until(lambda: rig.fake.bridged_with(alice))
        await rig.fake.phone_hangup(alice)
        await rig.idle()
        await rig.until(lambda: rig.web.calls("/ended"))

        (ended,) = rig.web.calls("/ended")
        assert ended["CallSid"] == rig.web.calls("/1001.xml")[0]["CallSid"]
        assert ended["CallStatus"] == "completed"
        assert "CallDuration" in ended
        rig.fake.assert_nothing_leaked()
