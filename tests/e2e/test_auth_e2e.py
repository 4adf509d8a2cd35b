"""SIP digest authentication on the real Asterisk: the shipped config must enforce an endpoint's ``auth=``.

Dave (``asterisk/pjsip.conf``) is the sample phone with ``auth=dave-auth``. Without credentials his INVITE gets
401 and never reaches the app; answering the challenge gets him through to his number's app. Before
``modules.conf`` loaded the digest authenticator, Asterisk let the unauthenticated INVITE in.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.harness import REPO, SANDBOX, Number, Phones, RcmlProcess, Sandbox, WebApp, eventually

pytestmark = pytest.mark.e2e

DAVE = ("dave", "dave-sample-password")  # as in asterisk/pjsip.conf
ANSWER_THEN_HANG_UP = '<Response><Pause length="1"/><Hangup/></Response>'
WAIT = 20.0


def stasis_starts(rcml: RcmlProcess) -> list[str]:
    """The channel names of the StasisStart events the app received."""
    return [event["channel"]["name"] for event in rcml.events() if event.get("type") == "StasisStart"]


def test_digest_authenticators_are_loaded(sandbox: Sandbox):
    done = subprocess.run(
        [str(SANDBOX), "cli", "module show like authenticator"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert "res_pjsip_authenticator_digest.so" in done.stdout, done.stdout
    assert "res_pjsip_outbound_authenticator_digest.so" in done.stdout, done.stdout
    assert "Not Running" not in done.stdout, done.stdout


async def test_invite_without_credentials_is_refused_with_401(sandbox: Sandbox, rcml: RcmlProcess, phones: Phones):
    rcml.start([Number("1001", "app:answer")], apps={"answer": ANSWER_THEN_HANG_UP})
    dave = await phones.start("dave", "dave_auth_uac.xml", service="1001", auth=DAVE, challenge=0)
    result = await dave.result(WAIT)
    assert result.returncode == 0, result
    assert result.lines == ["challenged=401", "final_response=401"], result
    assert any(first.startswith("SIP/2.0 401") for first in result.received), result
    assert stasis_starts(rcml) == []  # the call never reached the app


async def test_phone_answering_the_challenge_gets_through(sandbox: Sandbox, rcml: RcmlProcess, phones: Phones):
    rcml.start([Number("1001", "app:answer")], apps={"answer": ANSWER_THEN_HANG_UP})
    dave = await phones.start("dave", "dave_auth_uac.xml", service="1001", auth=DAVE, challenge=1, talk_ms=8000)
    result = await dave.result(WAIT)
    assert result.returncode == 0, result
    assert result.lines == ["challenged=401", "final_response=200", "hangup=remote"], result
    await eventually(lambda: any(name.startswith("PJSIP/dave-") for name in stasis_starts(rcml)), 5, "dave's call")


async def test_wrong_password_is_refused(sandbox: Sandbox, rcml: RcmlProcess, phones: Phones):
    rcml.start([Number("1001", "app:answer")], apps={"answer": ANSWER_THEN_HANG_UP})
    dave = await phones.start("dave", "dave_auth_uac.xml", service="1001", auth=("dave", "guess"), challenge=1)
    result = await dave.result(WAIT)
    assert result.returncode == 0, result
    assert result.lines == ["challenged=401", "final_response=401"], result
    assert stasis_starts(rcml) == []


async def test_refer_from_the_trunk_is_refused_and_the_call_goes_on(
    sandbox: Sandbox, rcml: RcmlProcess, phones: Phones, web: WebApp
):
    # The carrier side of a call must not be able to transfer it: the trunk has allow_transfer=no.
    web.xml("/refer.xml", "<Response><Dial><Number>1002</Number></Dial></Response>")
    dial_out = '<Response><Dial timeout="10"><Number>5555</Number></Dial></Response>'
    rcml.start([Number("1001", "app:dial-out", f"{web.url}/refer.xml")], apps={"dial-out": dial_out})
    trunk = await phones.start("trunk", "bob_transferor.xml", target="1002", refer_delay_ms=700, hold_ms=1500)
    alice = await phones.start("alice", "alice_uac.xml", service="1001", talk_ms=10000)
    await eventually(lambda: "refer_response=603" in trunk.lines(), 10, "the trunk's REFER refused")
    assert sorted(sorted(names) for names in sandbox.names_by_bridge()) == [["alice", "trunk"]]
    trunk_result, alice_result = await trunk.result(WAIT), await alice.result(WAIT)
    assert trunk_result.value("hangup") == "local", trunk_result  # it kept the call, then hung up itself
    assert alice_result.value("final_response") == "200", alice_result
    assert web.calls("/refer.xml") == []  # the Refer app never ran
