"""A <Number> that is one of ours, run in-process (the default): its Voice app runs as a call of its own (its
CallSid, webhooks, Dial action and status), its callee joins the caller's bridge directly, its media verbs play
to the caller, its answer is the outer Dial's answer and its end ends the outer Dial as a callee hangup would.
No Local channel, no second bridge. The same outcomes as through a Local channel (tests/test_calls.py and
tests/test_transfer.py run both routes)."""

from __future__ import annotations

import pytest

from models.config import NumberConfig
from stasis_app.session import MAX_NESTING
from tests.rig import WEB, Rig


def numbers(*entries: tuple[str, bool]) -> tuple[NumberConfig, ...]:
    return tuple(
        NumberConfig(
            number=number, voice_url=f"{WEB}/{number}.xml", refer_url=f"{WEB}/refer-{number}.xml" if refer else None
        )
        for number, refer in entries
    )


@pytest.fixture
async def rig(tmp_path):
    async with Rig(tmp_path, numbers=numbers(("1001", True), ("1002", True), ("1003", False))) as rig:
        yield rig


def local_originates(rig: Rig) -> list[str]:
    return [p["endpoint"] for m, path, p in rig.fake.rest_log if (m, path) == ("POST", "/channels")]


def bridges_made(rig: Rig) -> int:
    return len([1 for m, path, _p in rig.fake.rest_log if m == "POST" and path.count("/") == 2 and "bridges" in path])


async def test_our_number_runs_as_a_call_of_its_own_in_the_callers_bridge(rig):
    rig.web.xml("/1001.xml", '<Response><Dial action="/after-1001"><Number>1002</Number></Dial></Response>')
    rig.web.xml("/1002.xml", '<Response><Dial action="/after-1002"><Client>carol</Client></Dial></Response>')
    rig.web.xml("/after-1001", "<Response><Hangup/></Response>")
    rig.web.xml("/after-1002", "<Response><Hangup/></Response>")
    rig.fake.phone("PJSIP/carol", answer_after=0.02)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    carol = rig.channel_named("PJSIP/carol")
    assert rig.fake.bridged_with(alice) == {carol}  # directly, in one bridge
    assert local_originates(rig) == ["PJSIP/carol"]
    assert bridges_made(rig) == 1

    (outer,) = rig.web.calls("/1001.xml")
    (inner,) = rig.web.calls("/1002.xml")
    assert inner["CallSid"] != outer["CallSid"]
    assert (inner["From"], inner["To"], inner["Direction"]) == ("alice", "1002", "inbound")
    assert inner["CallStatus"] == "ringing"

    await rig.fake.phone_hangup(carol)  # Carol ends 1002's call, which ends 1001's Dial as a callee hangup
    await rig.until(lambda: rig.web.calls("/after-1001"))
    (inner_after,) = rig.web.calls("/after-1002")
    (outer_after,) = rig.web.calls("/after-1001")
    assert inner_after["CallSid"] == inner["CallSid"]
    assert inner_after["DialCallStatus"] == "completed"
    assert outer_after["DialCallStatus"] == "completed"
    assert outer_after["DialCallSid"] not in ("", outer["CallSid"], inner["CallSid"])  # 1001's dialed leg
    await rig.idle()
    assert rig.fake.hangup_causes[alice] == 16
    rig.fake.assert_nothing_leaked()


@pytest.mark.parametrize(
    ("inner_app", "phone", "status"),
    [
        ("<Response><Dial><Client>carol</Client></Dial></Response>", {"busy": True}, "busy"),
        ('<Response><Dial timeout="1"><Client>carol</Client></Dial></Response>', {"answer_after": None}, "no-answer"),
        ('<Response><Reject reason="busy"/></Response>', {}, "busy"),
        (None, {}, "failed"),  # 1002's Voice URL fails: 503, as a Local channel's ;2 would end
    ],
    ids=["callee-busy", "callee-no-answer", "reject-busy", "app-fails"],
)
async def test_an_unanswered_call_to_our_number_reaches_the_dial_with_its_status(rig, inner_app, phone, status):
    rig.web.xml("/1001.xml", '<Response><Dial action="/after"><Number>1002</Number></Dial></Response>')
    rig.web.xml("/after", "<Response><Hangup/></Response>")
    if inner_app is None:
        rig.web.status("/1002.xml", 500)
    else:
        rig.web.xml("/1002.xml", inner_app)
    rig.fake.phone("PJSIP/carol", **phone)

    alice = await rig.call("alice", "1001")
    await rig.idle(timeout=5)

    (after,) = rig.web.calls("/after")
    assert after["DialCallStatus"] == status
    assert alice not in rig.fake.channels
    rig.fake.assert_nothing_leaked()


async def test_media_verbs_of_our_number_play_to_the_caller_and_answer_the_dial(rig):
    rig.web.xml("/1001.xml", '<Response><Dial action="/after"><Number>1002</Number></Dial></Response>')
    rig.web.xml("/after", "<Response><Play>sound:goodbye</Play></Response>")
    rig.web.xml("/1002.xml", "<Response><Play>sound:hello</Play><Hangup/></Response>")

    alice = await rig.call("alice", "1001")
    await rig.idle()

    assert [m for m in rig.fake.played[alice] if m.startswith("sound:")] == ["sound:hello", "sound:goodbye"]
    (after,) = rig.web.calls("/after")
    assert after["DialCallStatus"] == "completed"  # 1002's app answered: the Dial connected
    assert not [p for m, path, p in rig.fake.rest_log if m == "POST" and path == "/channels"]
    rig.fake.assert_nothing_leaked()


async def test_our_number_dialing_our_number(rig):
    rig.web.xml("/1001.xml", "<Response><Dial><Number>1002</Number></Dial></Response>")
    rig.web.xml("/1002.xml", "<Response><Dial><Number>1003</Number></Dial></Response>")
    rig.web.xml("/1003.xml", "<Response><Dial><Client>carol</Client></Dial></Response>")
    rig.fake.phone("PJSIP/carol", answer_after=0.02)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    carol = rig.channel_named("PJSIP/carol")
    assert rig.fake.bridged_with(alice) == {carol}
    sids = {rig.web.calls(f"/{n}.xml")[0]["CallSid"] for n in ("1001", "1002", "1003")}
    assert len(sids) == 3
    assert rig.web.calls("/1003.xml")[0]["From"] == "alice"

    await rig.fake.phone_hangup(alice)
    await rig.idle()
    assert rig.fake.hangup_causes[carol] == 16
    rig.fake.assert_nothing_leaked()


async def test_several_nouns_ring_at_once_and_another_wins(rig):
    rig.web.xml("/1001.xml", "<Response><Dial><Number>1002</Number><Client>bob</Client></Dial></Response>")
    rig.web.xml("/1002.xml", "<Response><Dial><Client>carol</Client></Dial></Response>")
    rig.fake.phone("PJSIP/carol", answer_after=None)
    rig.fake.phone("PJSIP/bob", answer_after=0.05)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    bob = rig.channel_named("PJSIP/bob")
    assert rig.fake.bridged_with(alice) == {bob}
    await rig.until(lambda: not [c for c in rig.fake.channels.values() if c.name.startswith("PJSIP/carol")])

    await rig.fake.phone_hangup(bob)
    await rig.idle()
    rig.fake.assert_nothing_leaked()


async def test_a_refer_from_our_numbers_callee_runs_that_numbers_refer_app(rig):
    rig.web.xml("/1001.xml", "<Response><Dial><Number>1002</Number></Dial></Response>")
    rig.web.xml("/1002.xml", "<Response><Dial><Client>carol</Client></Dial></Response>")
    rig.web.xml("/refer-1002.xml", "<Response><Dial><Client>dave</Client></Dial></Response>")
    rig.fake.phone("PJSIP/carol", answer_after=0.01)
    rig.fake.phone("PJSIP/dave", answer_after=0.02)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    carol = rig.channel_named("PJSIP/carol")
    await rig.fake.refer(carol, "dave")
    await rig.until(lambda: carol not in rig.fake.channels)
    dave = rig.channel_named("PJSIP/dave")
    await rig.until(lambda: rig.fake.bridged_with(alice) == {dave})

    (refer,) = rig.web.calls("/refer-1002.xml")
    assert (refer["Transferor"], refer["Transferee"], refer["To"]) == ("carol", "alice", "1002")
    assert refer["CallSid"] == rig.web.calls("/1002.xml")[0]["CallSid"]
    assert rig.fake.notifies[carol] == [100, 200]
    await rig.fake.phone_hangup(alice)
    await rig.idle()
    rig.fake.assert_nothing_leaked()


async def test_a_refer_from_the_caller_runs_the_refer_app_on_our_numbers_call(rig):
    rig.web.xml("/1001.xml", "<Response><Dial><Number>1002</Number></Dial></Response>")
    rig.web.xml("/1002.xml", "<Response><Dial><Client>carol</Client></Dial></Response>")
    rig.web.xml("/refer-1001.xml", "<Response><Dial><Client>dave</Client></Dial></Response>")
    rig.fake.phone("PJSIP/carol", answer_after=0.01)
    rig.fake.phone("PJSIP/dave", answer_after=0.02)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    carol = rig.channel_named("PJSIP/carol")
    await rig.fake.refer(alice, "dave")
    await rig.until(lambda: alice not in rig.fake.channels)
    dave = rig.channel_named("PJSIP/dave")
    await rig.until(lambda: rig.fake.bridged_with(carol) == {dave})

    (refer,) = rig.web.calls("/refer-1001.xml")
    assert (refer["Transferor"], refer["Transferee"], refer["Direction"]) == ("alice", "1002", "outbound-dial")
    assert rig.fake.notifies[alice] == [100, 200]
    await rig.fake.phone_hangup(carol)  # ends 1002's call, then the refer app's Dial: Dave is hung up
    await rig.idle()
    assert rig.fake.hangup_causes[dave] == 16
    rig.fake.assert_nothing_leaked()


async def test_a_refer_app_on_the_far_end_skips_media_it_cannot_play_with_one_warning(rig, caplog):
    rig.web.xml("/1001.xml", "<Response><Dial><Number>1002</Number></Dial></Response>")
    rig.web.xml("/1002.xml", "<Response><Dial><Client>carol</Client></Dial></Response>")
    rig.web.xml(
        "/refer-1001.xml", "<Response><Play>sound:one-moment</Play><Dial><Client>dave</Client></Dial></Response>"
    )
    rig.fake.phone("PJSIP/carol", answer_after=0.01)
    rig.fake.phone("PJSIP/dave", answer_after=0.02)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    carol = rig.channel_named("PJSIP/carol")
    await rig.fake.refer(alice, "dave")
    await rig.until(lambda: any(c.name.startswith("PJSIP/dave") for c in rig.fake.channels.values()))
    dave = rig.channel_named("PJSIP/dave")
    await rig.until(lambda: rig.fake.bridged_with(carol) == {dave})

    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 1
    assert "sound:one-moment" not in str(rig.fake.played)
    await rig.fake.phone_hangup(dave)
    await rig.idle()
    assert rig.fake.hangup_causes[carol] == 16
    rig.fake.assert_nothing_leaked()


async def test_a_number_dialing_itself_stops_at_the_nesting_bound(rig, caplog):
    rig.web.xml("/1001.xml", '<Response><Dial action="/after"><Number>1002</Number></Dial></Response>')
    rig.web.xml("/1002.xml", "<Response><Dial><Number>1002</Number></Dial></Response>")
    rig.web.xml("/after", "<Response><Hangup/></Response>")

    await rig.call("alice", "1001")
    await rig.idle()

    assert len(rig.web.calls("/1002.xml")) == MAX_NESTING
    (after,) = rig.web.calls("/after")
    assert after["DialCallStatus"] == "failed"
    assert len([r for r in caplog.records if "nested" in r.getMessage()]) == 1
    rig.fake.assert_nothing_leaked()
