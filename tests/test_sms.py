"""<Sms>: a SIP MESSAGE through ARI's sendMessage, SmsStatus in the action; scenario tests and parsing."""

from __future__ import annotations

import pytest

from models.rcml import Sms
from stasis_app.errors import MarkupError
from stasis_app.rcml import parse_rcml
from stasis_app.verbs.sms import message_target
from tests.rig import Rig


@pytest.fixture
async def rig(tmp_path):
    async with Rig(tmp_path) as rig:
        yield rig


async def test_sms_is_sent_to_the_client_and_the_action_gets_sent(rig):
    rig.fake.phone("PJSIP/bob")
    rig.web.xml("/1001.xml", '<Response><Sms to="bob" from="1001" action="/sms-done">Meet at 5</Sms></Response>')
    rig.web.xml("/sms-done", "<Response><Hangup/></Response>")
    await rig.call("alice", "1001")
    await rig.idle()
    assert rig.fake.messages == [{"to": "pjsip:bob", "from": "1001", "body": "Meet at 5", "delivered": "True"}]
    (done,) = rig.web.calls("/sms-done")
    assert done["SmsStatus"] == "sent"
    assert done["SmsSid"].startswith("SM")
    assert done["From"] == "alice"
    assert done["To"] == "1001", "the call's own parameters are kept"
    rig.fake.assert_nothing_leaked()


async def test_sms_defaults_to_the_caller_and_goes_on_with_the_next_verb(rig):
    rig.web.xml(
        "/1001.xml", '<Response><Sms statusCallback="/sms-status">Thanks</Sms><Play>sound:bye</Play></Response>'
    )
    rig.web.xml("/sms-status", "")
    alice = await rig.call("alice", "1001")
    await rig.idle()
    await rig.engine.callbacks.drain()
    assert [(m["to"], m["from"]) for m in rig.fake.messages] == [("pjsip:alice", "1001")]
    assert rig.fake.played[alice] == ["sound:bye"]
    (status,) = rig.web.calls("/sms-status")
    assert status["SmsStatus"] == "sent"


async def test_sms_to_something_that_is_no_name_fails_and_is_not_sent(rig):
    rig.web.xml("/1001.xml", '<Response><Sms to="bob;transport=tcp" action="/sms-done">x</Sms></Response>')
    rig.web.xml("/sms-done", "<Response><Hangup/></Response>")
    await rig.call("alice", "1001")
    await rig.idle()
    assert rig.fake.messages == []
    (done,) = rig.web.calls("/sms-done")
    assert done["SmsStatus"] == "failed"


@pytest.mark.parametrize(
    ("to", "target"),
    [
        ("bob", "pjsip:bob"),
        ("+15551234", "pjsip:+15551234"),
        ("sip:bob@127.0.0.1:5070", "pjsip:sip:bob@127.0.0.1:5070"),
        ("bob/sip:evil@x", None),
        ("xmpp:bob", None),
        ("a b", None),
        ("", None),
    ],
)
def test_message_target(to, target):
    assert message_target(to) == target


def test_parse_sms():
    (sms,) = parse_rcml('<Response><Sms to="bob" from="1001" action="/a" method="get">hi</Sms></Response>', "t").verbs
    assert sms == Sms(body="hi", to="bob", from_="1001", action="/a", method="GET")
    with pytest.raises(MarkupError):
        parse_rcml("<Response><Sms to='bob'></Sms></Response>", "t")
