"""<Dial><Conference> and <Sms> end to end: the real Asterisk 22 sandbox, sipp phones and the app as a process.

Alice, Bob and Carol (sipp UACs on 5071-5073) each call 1001, whose app puts them in the conference "room":
Asterisk must hold all three in one bridge, and nothing once they hung up. For <Sms>, Bob's phone (sipp UAS)
receives the SIP MESSAGE Asterisk sends for ARI's sendMessage and logs its body.
"""

from __future__ import annotations

import pytest

from tests.e2e.harness import Number, Phones, RcmlProcess, Sandbox, WebApp, eventually

pytestmark = pytest.mark.e2e

WAIT = 20.0
ROOM = (
    '<Response><Dial action="/left"><Conference statusCallback="/status" statusCallbackEvent="start end join leave"'
    ">room</Conference></Dial></Response>"
)


async def test_three_phones_in_one_conference_room(sandbox: Sandbox, rcml: RcmlProcess, phones: Phones, web: WebApp):
    web.xml("/1001.xml", ROOM)
    web.xml("/left", "<Response><Hangup/></Response>")
    web.xml("/status", "<Response/>")
    rcml.start([Number("1001", f"{web.url}/1001.xml")])
    callers = [
        await phones.start(name, "uac_call.xml", service="1001", user=name, talk_ms=talk)
        for name, talk in (("alice", 4000), ("bob", 4500), ("carol", 5000))
    ]
    await eventually(
        lambda: {"alice", "bob", "carol"} in sandbox.names_by_bridge(), 10, "Alice, Bob and Carol in one bridge"
    )
    assert len(sandbox.bridges()) == 1, sandbox.bridges()
    results = [await phone.result(WAIT) for phone in callers]
    for result in results:
        assert result.returncode == 0, result
        assert result.value("final_response") == "200", result
        assert result.value("hangup") == "local", result
    await eventually(lambda: len(web.calls("/left")) == 3, 5, "each participant's Dial action")
    assert {params["DialCallStatus"] for params in web.calls("/left")} == {"completed"}
    # Posted fire and forget, so they may arrive in any order: SequenceNumber gives the order (as Twilio's).
    await eventually(lambda: len(web.calls("/status")) == 8, 5, "start, 3 joins, 3 leaves and the end")
    ordered = sorted(web.calls("/status"), key=lambda params: int(params["SequenceNumber"]))
    assert ordered[0]["StatusCallbackEvent"] == "conference-start", ordered
    assert ordered[-1]["StatusCallbackEvent"] == "conference-end", ordered
    events = [params["StatusCallbackEvent"] for params in web.calls("/status")]
    assert events.count("participant-join") == 3, events
    assert events.count("participant-leave") == 3, events
    await eventually(lambda: not sandbox.bridges(), 5, "the room's bridge to be destroyed")


async def test_sms_reaches_the_phone_as_a_sip_message(sandbox: Sandbox, rcml: RcmlProcess, phones: Phones, web: WebApp):
    web.xml(
        "/1001.xml",
        '<Response><Pause length="1"/><Sms to="bob" from="1001" action="/sms">Meet at 5 in room 12</Sms></Response>',
    )
    web.xml("/sms", '<Response><Pause length="1"/><Hangup/></Response>')
    rcml.start([Number("1001", f"{web.url}/1001.xml")])
    bob = await phones.start("bob", "uas_message.xml")
    alice = await phones.start("alice", "uac_call.xml", service="1001", user="alice", talk_ms=8000)
    received = await bob.result(WAIT)
    assert received.returncode == 0, received
    assert received.value("message_body") == "Meet at 5 in room 12", received
    assert "1001" in (received.value("message_from") or ""), received
    caller = await alice.result(WAIT)
    assert caller.value("hangup") == "remote", caller
    (sms,) = web.calls("/sms")
    assert sms["SmsStatus"] == "sent"
