"""Dial extras on the real Asterisk: X- headers of a <Sip> URI reach the callee's INVITE."""

from __future__ import annotations

import pytest

from tests.e2e.harness import Number, Phones, RcmlProcess, Sandbox

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
