"""The call model's own promises, on the fake Asterisk: a bug in a verb still ends the call, any verb can be
interrupted, the call sid is on every log line of a call, a transfer logs where it is, and nothing a refused
request made is left behind."""

from __future__ import annotations

import asyncio
import logging

import pytest

from models.config import NumberConfig
from models.rcml import Play
from stasis_app import verbs
from stasis_app.call_requests import MAX_DOCUMENTS
from stasis_app.context import CallContext, Needs
from stasis_app.logs import CallSidFilter
from stasis_app.outcomes import HangupCall, Outcome
from tests.fake.asterisk import _Refused
from tests.rig import WEB, Rig

DIAL_BOB = "<Response><Dial><Client>bob</Client></Dial></Response>"


@pytest.fixture
async def rig(tmp_path):
    async with Rig(tmp_path) as rig:
        yield rig


class _BrokenPlay:
    needs = Needs.ANSWERED

    async def execute(self, call: CallContext, verb: Play) -> Outcome:
        raise KeyError("a bug")


async def test_a_bug_in_a_verb_ends_the_call_cleanly_and_is_logged_once(rig, caplog, monkeypatch):
    monkeypatch.setitem(verbs.EXECUTORS, Play, _BrokenPlay())
    rig.web.xml("/1001.xml", "<Response><Play>sound:hello</Play></Response>")

    alice = await rig.call("alice", "1001")
    await rig.idle()

    assert alice not in rig.fake.channels  # hung up, not left ringing or up
    assert not rig.engine.sessions
    bugs = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(bugs) == 1
    assert "bug" in bugs[0].getMessage()
    assert bugs[0].exc_info is not None
    rig.fake.assert_nothing_leaked()


async def test_any_verb_can_be_interrupted(rig):
    rig.web.xml("/1001.xml", '<Response><Play loop="0">sound:hello</Play></Response>')
    alice = await rig.call("alice", "1001")
    await rig.until(lambda: len(rig.fake.played.get(alice, [])) >= 2)

    (session,) = {id(s): s for s in rig.engine.owner.values()}.values()
    assert session.interrupt(HangupCall("normal"))
    await rig.idle()

    assert rig.fake.hangup_causes[alice] == 16
    rig.fake.assert_nothing_leaked()


async def test_every_log_line_of_a_call_names_its_call_sid(rig, caplog):
    caplog.handler.addFilter(CallSidFilter())
    caplog.set_level(logging.DEBUG, logger="stasis_app")
    rig.web.xml("/1001.xml", '<Response><Dial action="/after"><Client>bob</Client></Dial></Response>')
    rig.web.xml("/after", "<Response><Hangup/></Response>")
    rig.fake.phone("PJSIP/bob", busy=True)

    await rig.call("alice", "1001")
    await rig.idle()

    (voice,) = rig.web.calls("/1001.xml")
    sid = voice["CallSid"]
    mine = [r for r in caplog.records if r.name.startswith("stasis_app") and sid in getattr(r, "call", "")]
    mine = [r for r in mine if r.name != "stasis_app.webhook"]  # its DEBUG line shows the request's parameters
    assert any("Dial busy" in r.getMessage() for r in mine)
    assert any("call from alice to number 1001" in r.getMessage() for r in mine)
    assert all(sid not in r.getMessage() for r in mine)  # carried by the filter, not formatted by hand


async def test_a_redirect_loop_ends_the_call_after_the_document_budget(rig, caplog):
    rig.web.xml("/1001.xml", "<Response><Redirect>/1001.xml</Redirect></Response>")

    alice = await rig.call("alice", "1001")
    await rig.idle()

    assert len(rig.web.calls("/1001.xml")) == MAX_DOCUMENTS
    assert alice not in rig.fake.channels
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "Redirect or action loop" in warnings[0]
    rig.fake.assert_nothing_leaked()


async def test_a_local_redirect_loop_does_not_hold_the_event_loop(tmp_path):
    (tmp_path / "loop.xml").write_text("<Response><Redirect>app:loop</Redirect></Response>")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async with Rig(tmp_path, numbers=(NumberConfig(number="1001", voice_url="app:loop"),)) as rig:
        beat = asyncio.create_task(ticker())
        await rig.call("alice", "1001")
        await rig.idle()
        beat.cancel()
    assert ticks >= MAX_DOCUMENTS  # other tasks ran between the documents


async def test_a_transfer_logs_each_step(rig, caplog):
    caplog.set_level(logging.DEBUG, logger="stasis_app")
    rig.web.xml("/1001.xml", DIAL_BOB)
    rig.web.xml("/refer.xml", "<Response><Dial><Client>carol</Client></Dial></Response>")
    rig.fake.phone("PJSIP/bob", answer_after=0.01)
    rig.fake.phone("PJSIP/carol", answer_after=0.05)

    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    bob = rig.channel_named("PJSIP/bob")
    await rig.fake.refer(bob, "carol")
    await rig.until(lambda: rig.names_with(alice) == {"PJSIP/carol"})
    await rig.until(lambda: bob not in rig.fake.channels)
    await rig.fake.phone_hangup(alice)
    await rig.idle()

    records = [r for r in caplog.records if r.getMessage().startswith("transfer ")]
    steps = [r.getMessage().split(" (")[0] for r in records]
    ids = {line.split()[1].rstrip(":") for line in steps}
    assert len(ids) == 1
    assert [line.split(": ", 1)[1] for line in steps[1:]] == [
        "accepted -> fetching",
        "fetching -> dialing",
        "dialing -> answered",
        "answered -> ended",
    ]
    # At INFO a transfer is two lines, the REFER and its outcome: the steps between are DEBUG.
    assert [r.levelname for r in records] == ["INFO", "DEBUG", "DEBUG", "INFO", "DEBUG"]


async def test_a_refused_originate_leaves_nothing_in_the_engine(rig):
    rig.web.xml("/1001.xml", "<Response><Dial><Client>nosuch</Client></Dial></Response>")
    alice = await rig.call("alice", "1001")
    await rig.idle()
    assert rig.fake.hangup_causes[alice] == 34  # failed: 503 to the phone
    assert not rig.engine.legs
    assert not rig.engine.bridges
    rig.fake.assert_nothing_leaked()


async def test_a_callee_that_cannot_be_bridged_is_hung_up_and_the_dial_fails(rig, monkeypatch):
    rig.web.xml("/1001.xml", '<Response><Dial action="/after"><Client>bob</Client></Dial></Response>')
    rig.web.xml("/after", "<Response><Hangup/></Response>")
    rig.fake.phone("PJSIP/bob", answer_after=0.01)
    real = rig.fake._add_to_bridge

    async def refuse_bob(bridge_id: str, channels: str) -> None:
        if any(rig.fake.name_of(channel_id).startswith("PJSIP/bob") for channel_id in channels.split(",")):
            raise _Refused(500, "Internal Server Error")
        await real(bridge_id, channels)

    monkeypatch.setattr(rig.fake, "_add_to_bridge", refuse_bob)
    await rig.call("alice", "1001")
    await rig.idle()

    (action,) = rig.web.calls("/after")
    assert action["DialCallStatus"] == "failed"
    rig.fake.assert_nothing_leaked()


async def test_a_failing_voice_url_runs_the_numbers_voice_fallback_url(tmp_path):
    number = NumberConfig(number="1001", voice_url=f"{WEB}/voice", voice_fallback_url=f"{WEB}/fallback")
    async with Rig(tmp_path, numbers=(number,)) as rig:
        rig.web.status("/voice", 500)
        rig.web.xml("/fallback", DIAL_BOB)
        rig.fake.phone("PJSIP/bob", answer_after=0.01)

        alice = await rig.call("alice", "1001")
        await rig.until(lambda: rig.fake.bridged_with(alice))
        await rig.fake.phone_hangup(alice)
        await rig.idle()

        (fallback,) = rig.web.calls("/fallback")
        assert fallback["ErrorCode"] == "11200"
        assert fallback["CallSid"] == rig.web.calls("/voice")[0]["CallSid"]
        rig.fake.assert_nothing_leaked()
