"""REFER blind transfer end to end: the real Asterisk 22 sandbox, sipp desk phones and the app as a process.

Alice (sipp UAC, 5071) calls 1001, whose app dials Bob (5072); Bob's phone sends REFER after refer_delay_ms;
the Refer app runs on Alice's call. We assert what the phones saw (NOTIFY sipfrags, BYEs, who hung up), what
the web app was asked, and what Asterisk holds; the fixtures assert that nothing is left and the app stops
cleanly.
"""

from __future__ import annotations

import pytest

from tests.e2e.harness import Number, Phones, RcmlProcess, Sandbox, WebApp, eventually

pytestmark = pytest.mark.e2e

REFER_DELAY_MS = 700
DIAL_CAROL = '<Response><Dial timeout="10"><Client>carol</Client></Dial></Response>'
DIAL_BOB = '<Response><Dial timeout="10"><Client>bob</Client></Dial></Response>'
REFER_TO_1002 = "<Response><Dial><Number>1002</Number></Dial></Response>"
WAIT = 20.0  # the most any phone may take in these scenarios


def http_numbers(web: WebApp) -> list[Number]:
    return [
        Number("1001", f"{web.url}/1001.xml", f"{web.url}/refer.xml"),
        Number("1002", f"{web.url}/1002.xml"),
    ]


def bridged(sandbox: Sandbox) -> list[list[str]]:
    """Who is in which bridge, sorted: ``[["Local;1", "alice"], ["Local;2", "carol"]]``."""
    return sorted(sorted(names) for names in sandbox.names_by_bridge())


async def transferred_to_carol(sandbox: Sandbox, phones: Phones, rcml: RcmlProcess, bob_scenario: str, target: str):
    """Alice calls 1001 -> Bob; Bob REFERs ``target``; Carol answers. Returns (alice, bob, carol) results."""
    bob = await phones.start("bob", bob_scenario, target=target, refer_delay_ms=REFER_DELAY_MS, hold_ms=3000)
    carol = await phones.start("carol", "uas_answer.xml", ring_ms=300)
    alice = await phones.start("alice", "alice_uac.xml", service="1001", talk_ms=5000)
    await eventually(lambda: "answered" in carol.lines(), 10, "Carol to answer")
    if rcml.our_numbers == "local-channel":
        # While Alice talks to Carol: Alice's bridge holds Local ;1, the other bridge Local ;2 and Carol.
        expected, what = [["Local;1", "alice"], ["Local;2", "carol"]], "Alice with Local ;1, Local ;2 with Carol"
    else:
        # 1002 runs in-process: Carol joined Alice's bridge; no Local channel, no second bridge.
        expected, what = [["alice", "carol"]], "Alice and Carol in one bridge"
    await eventually(lambda: bridged(sandbox) == expected, 5, what)
    return await alice.result(WAIT), await bob.result(WAIT), await carol.result(WAIT)


def assert_seed_outcome(alice, bob, carol) -> None:
    assert (alice.returncode, bob.returncode, carol.returncode) == (0, 0, 0), (alice, bob, carol)
    # Bob: 202, NOTIFY 100 then 200, then Asterisk hangs him up.
    assert bob.value("refer_response") == "202", bob
    assert bob.sipfrags == [100, 200], bob
    assert bob.value("final_sipfrag") == "200", bob
    assert bob.value("hangup") == "remote", bob
    assert bob.count("BYE") >= 1, bob
    # Carol answered and stayed until Alice hung up: the call went on with her.
    assert carol.lines[0] == "answered", carol
    assert carol.value("hangup") == "remote", carol
    assert alice.value("final_response") == "200", alice
    assert alice.value("hangup") == "local", alice


@pytest.mark.parametrize(
    ("apps", "our_numbers"),
    [("app-files", "in-process"), ("http", "in-process"), ("app-files", "local-channel")],
    ids=["app-files", "http", "app-files-local-channel"],
)
async def test_seed_flow_bob_transfers_alice_to_1002_and_carol_answers(
    sandbox: Sandbox, rcml: RcmlProcess, phones: Phones, web: WebApp, apps: str, our_numbers: str
):
    if apps == "app-files":
        if our_numbers == "local-channel":
            rcml.capture = "seed"  # tests/test_replay.py replays this stream, Local channel included
        rcml.start(
            [Number("1001", "app:dial-bob", "app:refer"), Number("1002", "app:dial-carol")], our_numbers=our_numbers
        )
    else:
        web.xml("/1001.xml", DIAL_BOB)
        web.xml("/refer.xml", REFER_TO_1002)
        web.xml("/1002.xml", DIAL_CAROL)
        rcml.start(http_numbers(web), our_numbers=our_numbers)

    alice, bob, carol = await transferred_to_carol(sandbox, phones, rcml, "bob_transferor.xml", "1002")

    assert_seed_outcome(alice, bob, carol)
    if apps == "http":
        assert web.paths() == ["/1001.xml", "/refer.xml", "/1002.xml"]
        (voice,) = web.calls("/1001.xml")
        (refer,) = web.calls("/refer.xml")
        assert (refer["Transferor"], refer["Transferee"], refer["ReferTarget"]) == ("bob", "alice", "1002")
        assert refer["CallSid"] == voice["CallSid"]  # the transferee's call: Alice's
        assert (refer["From"], refer["To"], refer["Direction"]) == ("alice", "1001", "inbound")
        (second,) = web.calls("/1002.xml")
        assert second["From"] == "alice"
        assert second["To"] == "1002"


def serve_seed_apps(web: WebApp, refer: str = REFER_TO_1002) -> None:
    web.xml("/1001.xml", DIAL_BOB)
    web.xml("/refer.xml", refer)
    web.xml("/1002.xml", DIAL_CAROL)


async def test_target_busy_goes_to_the_dial_action_which_reconnects_bob(
    sandbox: Sandbox, rcml: RcmlProcess, phones: Phones, web: WebApp
):
    serve_seed_apps(web, '<Response><Dial action="/refer-result" timeout="10"><Number>1002</Number></Dial></Response>')
    # The pause lets Bob's first call end before he is called again: Carol is busy at once, and Bob's sipp
    # scenario, still waiting for its NOTIFYs, cannot take a second INVITE (a real phone can).
    web.xml("/refer-result", '<Response><Pause length="1"/>' + DIAL_BOB.removeprefix("<Response>"))
    rcml.capture = "target_busy"
    rcml.start(http_numbers(web))

    bob = await phones.start("bob", "bob_transferor.xml", target="1002", refer_delay_ms=REFER_DELAY_MS, hold_ms=3000)
    # Busy after 200 ms, as across a network. At once, Asterisk sends Bob the 100 NOTIFY (held 50 ms), the 603
    # and the BYE back to back, which his sipp scenario cannot follow (a real phone can).
    carol = await phones.start("carol", "uas_busy.xml", busy_ms=200)
    alice = await phones.start("alice", "alice_uac.xml", service="1001", talk_ms=7000)
    first = await bob.result(WAIT)
    # Bob's phone is free again: it takes the second call (Asterisk retransmits the INVITE until it does).
    await phones.port_free("bob")
    bob_again = await phones.start("bob", "uas_answer.xml", label="bob2", ring_ms=200)
    alice_result, second, carol_result = await alice.result(WAIT), await bob_again.result(WAIT), await carol.result(5)

    assert first.returncode == 0, first
    assert first.sipfrags == [100, 603], first
    assert first.value("final_sipfrag") == "603", first
    assert first.value("hangup") == "remote", first  # the app hangs the transferor up after the final NOTIFY
    assert carol_result.lines == ["busy"], carol_result
    (result,) = web.calls("/refer-result")
    assert result["DialCallStatus"] == "busy"
    assert result["From"] == "alice"
    assert result["To"] == "1001"
    assert web.paths() == ["/1001.xml", "/refer.xml", "/1002.xml", "/refer-result"]
    # Bob was called a second time, answered, and talked with Alice until she hung up.
    assert second.returncode == 0, second
    assert second.count("INVITE") >= 1, second
    assert second.lines == ["answered", "hangup=remote"], second
    assert alice_result.returncode == 0, alice_result
    assert alice_result.value("hangup") == "local", alice_result


async def test_target_never_answers_then_the_dial_action_runs(
    sandbox: Sandbox, rcml: RcmlProcess, phones: Phones, web: WebApp
):
    serve_seed_apps(web, '<Response><Dial action="/refer-result" timeout="3"><Number>1002</Number></Dial></Response>')
    web.xml("/refer-result", '<Response><Pause length="1"/><Hangup/></Response>')
    rcml.capture = "target_noanswer"
    rcml.start(http_numbers(web))

    bob = await phones.start("bob", "bob_transferor.xml", target="1002", refer_delay_ms=REFER_DELAY_MS, hold_ms=3000)
    carol = await phones.start("carol", "uas_noanswer.xml")
    alice = await phones.start("alice", "alice_uac.xml", service="1001", talk_ms=15000)
    # While Carol rings, Alice hears the ring tone in-band: Asterisk's tone generator writes signed linear to
    # her channel (``ring`` on an answered channel), and stops before the action runs.
    await eventually(lambda: write_format(sandbox, "PJSIP/alice") == "slin", 10, "Alice's ring tone")
    await eventually(lambda: write_format(sandbox, "PJSIP/alice") in ("ulaw", None), 10, "the ring tone stopped")
    alice_result, bob_result, carol_result = await alice.result(WAIT), await bob.result(WAIT), await carol.result(5)

    assert bob_result.returncode == 0, bob_result
    assert bob_result.sipfrags == [100, 503], bob_result
    assert bob_result.value("final_sipfrag") == "503", bob_result
    assert bob_result.value("hangup") == "remote", bob_result
    assert carol_result.returncode == 0, carol_result
    assert carol_result.lines == ["cancelled"], carol_result
    (result,) = web.calls("/refer-result")
    assert result["DialCallStatus"] == "no-answer"
    # The action's <Hangup/> ended Alice's call, long before her 15 s.
    assert alice_result.returncode == 0, alice_result
    assert alice_result.value("hangup") == "remote", alice_result


def write_format(sandbox: Sandbox, prefix: str) -> str | None:
    """The format Asterisk writes to the first channel named ``prefix...`` (None: there is none)."""
    names = [channel["name"] for channel in sandbox.channels() if channel["name"].startswith(prefix)]
    if not names:
        return None
    for line in sandbox.cli(f"core show channel {names[0]}").splitlines():
        key, _, value = line.strip().partition(": ")
        if key == "WriteFormat":
            return value.strip()
    return None


async def bob_keeps_his_call(sandbox: Sandbox, bob, *, after: str) -> None:
    """Once Bob's phone logged ``after``, Alice and Bob are still bridged together."""
    await eventually(lambda: any(line.startswith(after) for line in bob.lines()), 10, f"Bob's {after}")
    assert bridged(sandbox) == [["alice", "bob"]]


async def test_refer_on_a_peer_to_peer_call_is_declined_and_the_call_goes_on(
    sandbox: Sandbox, rcml: RcmlProcess, phones: Phones, web: WebApp
):
    rcml.capture = "p2p_refer"
    rcml.start(http_numbers(web), clients=["alice", "bob", "carol"])

    bob = await phones.start("bob", "bob_transferor.xml", target="1002", refer_delay_ms=REFER_DELAY_MS, hold_ms=1500)
    alice = await phones.start("alice", "alice_uac.xml", service="bob", talk_ms=10000)
    await bob_keeps_his_call(sandbox, bob, after="notify sipfrag=603")
    bob_result, alice_result = await bob.result(WAIT), await alice.result(WAIT)

    assert bob_result.returncode == 0, bob_result
    assert bob_result.value("refer_response") == "202", bob_result
    # The app posts channel_declined only; Asterisk sends the initial NOTIFY 100 itself, then the 603.
    assert bob_result.sipfrags == [100, 603], bob_result
    assert bob_result.value("final_sipfrag") == "603", bob_result
    assert bob_result.value("hangup") == "local", bob_result  # he kept his call and hung up himself
    assert alice_result.returncode == 0, alice_result
    assert alice_result.value("hangup") == "remote", alice_result
    assert web.paths() == []  # no RCML on a client-to-client call, and no Refer URL


@pytest.mark.parametrize(
    ("scenario", "capture"),
    [
        ("bob_transferor_user_phone.xml", "refer_user_phone"),  # <sip:1002@host;user=phone>
        ("bob_transferor_header.xml", "refer_header"),  # <sip:1002@host?X-Foo=bar>
        ("bob_transferor_no_referred_by.xml", "refer_no_referred_by"),
    ],
)
async def test_refer_to_variants_transfer_like_the_seed_flow(
    sandbox: Sandbox, rcml: RcmlProcess, phones: Phones, web: WebApp, scenario: str, capture: str
):
    serve_seed_apps(web)
    rcml.capture = capture
    rcml.start(http_numbers(web))

    alice, bob, carol = await transferred_to_carol(sandbox, phones, rcml, scenario, "1002")

    assert_seed_outcome(alice, bob, carol)
    (refer,) = web.calls("/refer.xml")
    assert (refer["Transferor"], refer["Transferee"], refer["ReferTarget"]) == ("bob", "alice", "1002")


async def test_refer_to_a_tel_uri_gets_400_and_the_call_goes_on(
    sandbox: Sandbox, rcml: RcmlProcess, phones: Phones, web: WebApp
):
    serve_seed_apps(web)
    rcml.capture = "refer_tel"
    rcml.start(http_numbers(web))

    bob = await phones.start("bob", "bob_transferor_tel.xml", refer_delay_ms=REFER_DELAY_MS, hold_ms=1500)
    alice = await phones.start("alice", "alice_uac.xml", service="1001", talk_ms=10000)
    await bob_keeps_his_call(sandbox, bob, after="refer_response=")
    bob_result, alice_result = await bob.result(WAIT), await alice.result(WAIT)

    assert bob_result.returncode == 0, bob_result
    assert bob_result.value("refer_response") == "400", bob_result
    assert bob_result.sipfrags == [], bob_result
    assert bob_result.count("NOTIFY") == 0, bob_result
    assert bob_result.value("hangup") == "local", bob_result
    assert alice_result.returncode == 0, alice_result
    assert alice_result.value("hangup") == "remote", alice_result
    assert web.paths() == ["/1001.xml"]  # no Refer URL request
    assert not [e for e in rcml.events() if e["type"] == "ChannelTransfer"]  # Asterisk raised no event


async def test_refer_sub_false(sandbox: Sandbox, rcml: RcmlProcess, phones: Phones, web: WebApp):
    if sandbox.version_tuple < (22, 11, 0):
        # An expected failure that is not run: the REFER would crash the Asterisk every other test shares.
        pytest.xfail(f"Asterisk {sandbox.version} crashes on Refer-Sub: false (issue #2021, fixed in 22.11.0)")
    serve_seed_apps(web)
    rcml.capture = "refer_sub_false"
    rcml.start(http_numbers(web))

    bob = await phones.start(
        "bob", "bob_transferor_norefersub.xml", target="1002", refer_delay_ms=REFER_DELAY_MS, hold_ms=3000
    )
    carol = await phones.start("carol", "uas_answer.xml", ring_ms=300)
    alice = await phones.start("alice", "alice_uac.xml", service="1001", talk_ms=5000)
    alice_result, bob_result, carol_result = await alice.result(WAIT), await bob.result(WAIT), await carol.result(WAIT)

    assert bob_result.value("refer_response") == "202", bob_result
    assert bob_result.value("hangup") == "remote", bob_result
    assert bob_result.count("NOTIFY") == 0, bob_result  # RFC 4488: no implicit subscription
    assert carol_result.lines == ["answered", "hangup=remote"], carol_result
    assert alice_result.value("hangup") == "local", alice_result
    (refer,) = web.calls("/refer.xml")
    assert (refer["Transferor"], refer["Transferee"], refer["ReferTarget"]) == ("bob", "alice", "1002")


async def test_a_refer_target_with_dial_string_syntax_is_declined_and_carol_is_never_called(
    sandbox: Sandbox, rcml: RcmlProcess, phones: Phones, web: WebApp
):
    serve_seed_apps(web)
    rcml.capture = "refer_injection"
    rcml.start(http_numbers(web))

    # Refer-To: <sip:1002&PJSIP/carol@127.0.0.1>; Asterisk passes the user part through verbatim.
    bob = await phones.start(
        "bob", "bob_transferor.xml", target="1002&PJSIP/carol", refer_delay_ms=REFER_DELAY_MS, hold_ms=1500
    )
    carol = await phones.start("carol", "uas_answer.xml")
    alice = await phones.start("alice", "alice_uac.xml", service="1001", talk_ms=10000)
    await bob_keeps_his_call(sandbox, bob, after="notify sipfrag=603")
    bob_result, alice_result = await bob.result(WAIT), await alice.result(WAIT)
    carol_result = await carol.result(0.5)  # she was never called: killed, having received nothing

    assert bob_result.returncode == 0, bob_result
    assert bob_result.sipfrags == [100, 603], bob_result
    assert bob_result.value("hangup") == "local", bob_result
    assert alice_result.returncode == 0, alice_result
    assert alice_result.value("hangup") == "remote", alice_result
    assert carol_result.received == [], carol_result
    assert carol_result.lines == [], carol_result
    assert web.paths() == ["/1001.xml"]
    (transfer,) = [e for e in rcml.events() if e["type"] == "ChannelTransfer" and "state" not in e]
    assert transfer["refer_to"]["requested_destination"]["destination"] == "1002&PJSIP/carol"


async def test_a_dials_refer_url_takes_the_refer_instead_of_the_numbers(
    sandbox: Sandbox, rcml: RcmlProcess, phones: Phones, web: WebApp
):
    web.xml(
        "/1001.xml", '<Response><Dial timeout="10" referUrl="/dial-refer.xml"><Client>bob</Client></Dial></Response>'
    )
    web.xml("/dial-refer.xml", REFER_TO_1002)
    web.xml("/1002.xml", DIAL_CAROL)
    rcml.start([Number("1001", f"{web.url}/1001.xml"), Number("1002", f"{web.url}/1002.xml")])  # no Refer URL

    alice, bob, carol = await transferred_to_carol(sandbox, phones, rcml, "bob_transferor.xml", "1002")

    assert_seed_outcome(alice, bob, carol)
    (refer,) = web.calls("/dial-refer.xml")
    assert (refer["Transferor"], refer["Transferee"], refer["ReferTarget"]) == ("bob", "alice", "1002")
    assert refer["ReferTransferTarget"] == "<sip:1002>"
