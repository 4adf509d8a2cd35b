"""SIP REFER blind transfer through the number's Refer URL, on the fake Asterisk.

Each scenario: Alice calls number A (1001), A's app dials Bob, someone REFERs; we assert the Refer request and
its parameters, the transfer_progress states (the NOTIFY sipfrags the transferor's phone got), who is bridged
with whom at the end, and that nothing leaked.
"""

from __future__ import annotations

import asyncio

import pytest

from models.config import NumberConfig
from tests.rig import WEB, Rig

DIAL_BOB = "<Response><Dial><Client>bob</Client></Dial></Response>"
REFER_TO_TARGET = "<Response><Dial><Number>1002</Number></Dial></Response>"
DIAL_CAROL = "<Response><Dial><Client>carol</Client></Dial></Response>"


@pytest.fixture(params=["in-process", "local-channel"])
async def rig(tmp_path, request):
    """Every scenario twice: our own number 1002 run in-process (the default) and through a Local channel."""
    async with Rig(tmp_path, our_numbers=request.param) as rig:
        rig.web.xml("/1001.xml", DIAL_BOB)
        rig.web.xml("/1002.xml", DIAL_CAROL)
        rig.fake.phone("PJSIP/bob", answer_after=0.01)
        yield rig


async def connected(rig: Rig) -> tuple[str, str]:
    """Alice calls 1001 and is bridged with Bob; returns (alice, bob) channel ids."""
    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    return alice, rig.channel_named("PJSIP/bob")


def progress_states(rig: Rig, channel_id: str) -> list[str]:
    return [
        params["states"]
        for method, path, params in rig.fake.rest_log
        if path == f"/channels/{channel_id}/transfer_progress"
    ]


def rest_index(rig: Rig, method: str, path: str, **params: str) -> int:
    for index, (seen_method, seen_path, seen_params) in enumerate(rig.fake.rest_log):
        if (seen_method, seen_path) == (method, path) and params.items() <= seen_params.items():
            return index
    raise AssertionError(f"no {method} {path} {params}")


def originated(rig: Rig) -> list[str]:
    return [params["endpoint"] for method, path, params in rig.fake.rest_log if (method, path) == ("POST", "/channels")]


def talks_to_1002(rig: Rig, channel_id: str, caller: str) -> None:
    """``channel_id`` is connected to 1002's call (whose app dialed Carol), which ``caller`` placed."""
    carol = rig.channel_named("PJSIP/carol")
    if rig.settings.routing.our_numbers == "local-channel":
        assert {rig.fake.name_of(c).split("-")[0] for c in rig.fake.bridged_with(channel_id)} == {"Local/1002@rcml"}
        assert caller_ids(rig, "Local/1002@rcml/n") == [f'"{caller}" <{caller}>']
        assert rig.fake.name_of(next(iter(rig.fake.bridged_with(carol)))).endswith(";2")
    else:
        # In-process: Carol joined the caller's bridge directly; no Local channel, no second bridge.
        assert rig.fake.bridged_with(channel_id) == {carol}
        assert not [name for name in originated(rig) if name.startswith("Local/")]
    assert caller_ids(rig, "PJSIP/carol") == [f'"{caller}" <{caller}>']


def caller_ids(rig: Rig, endpoint: str) -> list[str]:
    return [
        params["callerId"]
        for method, path, params in rig.fake.rest_log
        if (method, path) == ("POST", "/channels") and params["endpoint"] == endpoint
    ]


async def hang_up_everyone(rig: Rig) -> None:
    for channel_id, channel in list(rig.fake.channels.items()):
        if channel.name.startswith("PJSIP/") and channel_id in rig.fake.channels:
            await rig.fake.phone_hangup(channel_id)
    await rig.idle()
    rig.fake.assert_nothing_leaked()


async def test_seed_flow_bob_transfers_alice_to_1002_and_carol_answers(rig):
    rig.web.xml("/refer.xml", REFER_TO_TARGET)
    rig.fake.phone("PJSIP/carol", answer_after=0.03)
    alice, bob = await connected(rig)
    (voice,) = rig.web.calls("/1001.xml")

    assert await rig.fake.refer(bob, "1002") == 202
    await rig.until(lambda: bob not in rig.fake.channels)

    (refer,) = rig.web.calls("/refer.xml")
    assert refer["Transferor"] == "bob"
    assert refer["Transferee"] == "alice"
    assert refer["ReferTarget"] == "1002"
    assert refer["CallSid"] == voice["CallSid"]  # the transferee's call: Alice's
    assert (refer["From"], refer["To"], refer["Direction"]) == ("alice", "1001", "inbound")
    assert refer["CallStatus"] == "in-progress"
    # Bob's phone: NOTIFY 100, then 200 once Carol answered; only then was Bob hung up.
    assert rig.fake.notifies[bob] == [100, 200]
    assert progress_states(rig, bob) == ["channel_progress", "channel_answered"]
    answered_at = rest_index(rig, "POST", f"/channels/{bob}/transfer_progress", states="channel_answered")
    assert rest_index(rig, "DELETE", f"/channels/{bob}") > answered_at
    assert rest_index(rig, "POST", f"/bridges/{rig.fake.in_bridge(alice)}/removeChannel", channel=bob) < answered_at
    # 1002 is our number: its Voice app ran as a call of its own and dialed Carol; Alice talks to Carol.
    (second,) = rig.web.calls("/1002.xml")
    assert (second["From"], second["To"], second["Direction"]) == ("alice", "1002", "inbound")
    assert second["CallSid"] != voice["CallSid"]
    talks_to_1002(rig, alice, "alice")
    await hang_up_everyone(rig)
    rig.assert_each_hangup_asked_once()


async def test_when_the_target_answers_the_ringback_stops_and_it_is_bridged_in_one_round_trip(rig):
    # Over the websocket (the fake keeps the order as it does): the reply to Alice's ring stop is held here until
    # the addChannel has been sent, which the Dial only does without waiting for that reply. (A refer app that
    # dials one of our numbers in-process stops the ringing in its own Dial, and bridges in the number's.)
    rig.web.xml("/refer.xml", DIAL_CAROL)
    rig.fake.phone("PJSIP/carol", answer_after=0.03)
    alice, bob = await connected(rig)
    request, sent = rig.fake.request, []

    async def held(method, path, query=None, body=None):
        sent.append((method, path))
        answer = await request(method, path, query, body)
        if (method, path) == ("DELETE", f"/channels/{alice}/ring"):
            await rig.until(lambda: sent[-1][1].endswith("/addChannel"))
        return answer

    rig.fake.request = held
    assert await rig.fake.refer(bob, "1002") == 202
    await rig.until(lambda: bob not in rig.fake.channels)
    stop = sent.index(("DELETE", f"/channels/{alice}/ring"))
    assert sent[stop + 1][1].endswith("/addChannel")
    assert rig.fake.bridged_with(alice) == {rig.channel_named("PJSIP/carol")}
    await hang_up_everyone(rig)


@pytest.mark.parametrize("our_numbers", ["in-process", "local-channel"])
async def test_seed_flow_with_a_local_refer_app(tmp_path, our_numbers):
    numbers = (
        NumberConfig(number="1001", voice_url=f"{WEB}/1001.xml", refer_url="app:refer"),
        NumberConfig(number="1002", voice_url=f"{WEB}/1002.xml"),
    )
    (tmp_path / "refer.xml").write_text(
        "<Response><Dial><Number>$core_ReferTarget</Number></Dial></Response>", encoding="utf-8"
    )
    async with Rig(tmp_path, numbers=numbers, our_numbers=our_numbers) as rig:
        rig.web.xml("/1001.xml", DIAL_BOB)
        rig.web.xml("/1002.xml", DIAL_CAROL)
        rig.fake.phone("PJSIP/bob", answer_after=0.01)
        rig.fake.phone("PJSIP/carol", answer_after=0.01)
        alice, bob = await connected(rig)

        await rig.fake.refer(bob, "1002")
        await rig.until(lambda: bob not in rig.fake.channels)

        assert rig.fake.notifies[bob] == [100, 200]
        talks_to_1002(rig, alice, "alice")
        await hang_up_everyone(rig)


async def test_alice_transfers_and_the_refer_app_runs_on_bobs_leg(rig):
    rig.web.xml("/refer.xml", REFER_TO_TARGET)
    rig.fake.phone("PJSIP/carol", answer_after=0.02)
    alice, bob = await connected(rig)

    await rig.fake.refer(alice, "1002")
    await rig.until(lambda: alice not in rig.fake.channels)

    (refer,) = rig.web.calls("/refer.xml")
    assert (refer["Transferor"], refer["Transferee"], refer["ReferTarget"]) == ("alice", "bob", "1002")
    assert refer["Direction"] == "outbound-dial"  # the transferee's call is Bob's Dial leg
    assert refer["To"] == "bob"
    assert refer["CallSid"] != rig.web.calls("/1001.xml")[0]["CallSid"]
    assert rig.fake.notifies[alice] == [100, 200]
    # Bob is now the calling party: 1002's app (and Carol's phone) see him, not Alice.
    talks_to_1002(rig, bob, "bob")
    assert rig.web.calls("/1002.xml")[0]["From"] == "bob"
    await hang_up_everyone(rig)


async def test_target_busy_goes_to_the_action_which_reconnects_bob(rig):
    rig.web.xml("/refer.xml", '<Response><Dial action="/refer-result"><Number>1002</Number></Dial></Response>')
    rig.web.xml("/refer-result", DIAL_BOB)
    rig.fake.phone("PJSIP/carol", busy=True)
    alice, bob = await connected(rig)

    await rig.fake.refer(bob, "1002")
    await rig.until(lambda: bob not in rig.fake.channels and rig.fake.bridged_with(alice))

    assert rig.fake.notifies[bob] == [100, 603]  # busy -> channel_declined
    (result,) = rig.web.calls("/refer-result")
    assert result["DialCallStatus"] == "busy"
    assert result["CallSid"] == rig.web.calls("/1001.xml")[0]["CallSid"]
    bob_again = rig.channel_named("PJSIP/bob")
    assert bob_again != bob
    assert rig.fake.bridged_with(alice) == {bob_again}
    await hang_up_everyone(rig)


async def test_target_never_answers_then_the_verbs_after_the_dial_run(rig):
    rig.web.xml(
        "/refer.xml", '<Response><Dial timeout="1"><Client>carol</Client></Dial><Play>sound:sorry</Play></Response>'
    )
    rig.fake.phone("PJSIP/carol", answer_after=None)
    alice, bob = await connected(rig)

    await rig.fake.refer(bob, "carol")
    await rig.until(lambda: rig.fake.played.get(alice) == ["sound:sorry"], timeout=4)

    # Alice heard the ring tone while Carol rang, and not over what came after.
    assert rig.fake.ring_tones[alice] == 1
    assert alice not in rig.fake.ring_tone
    assert rig.fake.notifies[bob] == [100, 503]  # no answer -> channel_unavailable
    assert bob not in rig.fake.channels
    await rig.idle()
    rig.fake.assert_nothing_leaked()


@pytest.mark.parametrize("failure", ["timeout", "500", "invalid"])
async def test_refer_url_failure_declines_and_the_call_stays_as_it_was(rig, caplog, failure):
    if failure == "timeout":
        rig.web.hang("/refer.xml")
    elif failure == "500":
        rig.web.status("/refer.xml", 500)
    else:
        rig.web.xml("/refer.xml", "<Response><Dial><Number>1002</Dial></Response>")
    alice, bob = await connected(rig)

    await rig.fake.refer(bob, "1002")
    await rig.until(lambda: len(rig.fake.notifies.get(bob, [])) == 2)
    await rig.fake.settle()

    assert rig.fake.notifies[bob] == [100, 603]
    assert rig.fake.bridged_with(alice) == {bob}  # both still talking
    assert originated(rig) == ["PJSIP/bob"]
    declines = [r.getMessage() for r in caplog.records if "declined" in r.getMessage()]
    assert len(declines) == 1
    assert "refer.xml" in declines[0]
    await hang_up_everyone(rig)


async def test_refer_on_a_peer_to_peer_call_is_declined(tmp_path):
    from models.config import RoutingSettings

    async with Rig(tmp_path) as rig:
        rig.settings = rig.settings.model_copy(update={"routing": RoutingSettings(apps_dir=tmp_path, clients=("bob",))})
        rig.engine.settings = rig.settings
        rig.fake.phone("PJSIP/bob", answer_after=0.01)
        alice = await rig.call("alice", "bob")
        await rig.until(lambda: rig.fake.bridged_with(alice))
        bob = rig.channel_named("PJSIP/bob")

        await rig.fake.refer(bob, "1002")
        await rig.until(lambda: rig.fake.notifies.get(bob))
        await rig.fake.settle()

        assert rig.fake.notifies[bob] == [100, 603]  # Asterisk opens with 100 Trying; ours is the 603
        assert rig.fake.bridged_with(alice) == {bob}
        assert rig.web.requests == []
        await hang_up_everyone(rig)


async def test_number_without_refer_url_declines(rig):
    rig.fake.phone("PJSIP/carol", answer_after=0.01)
    alice = await rig.call("alice", "1002")  # 1002 dials Carol and has no Refer URL
    await rig.until(lambda: rig.fake.bridged_with(alice))
    carol = rig.channel_named("PJSIP/carol")

    await rig.fake.refer(carol, "1001")
    await rig.until(lambda: rig.fake.notifies.get(carol))
    await rig.fake.settle()

    assert rig.fake.notifies[carol] == [100, 603]  # Asterisk opens with 100 Trying; ours is the 603
    assert rig.fake.bridged_with(alice) == {carol}
    await hang_up_everyone(rig)


async def test_attended_transfer_is_declined(rig):
    alice, bob = await connected(rig)

    await rig.fake.refer(bob, None, protocol_id="some-call-id@127.0.0.1")
    await rig.until(lambda: rig.fake.notifies.get(bob))
    await rig.fake.settle()

    assert rig.fake.notifies[bob] == [100, 603]  # Asterisk opens with 100 Trying; ours is the 603
    assert rig.fake.bridged_with(alice) == {bob}
    assert rig.web.calls("/refer.xml") == []
    await hang_up_everyone(rig)


async def test_transferee_hangs_up_while_the_target_rings(rig):
    rig.web.xml("/refer.xml", "<Response><Dial><Client>carol</Client></Dial></Response>")
    rig.fake.phone("PJSIP/carol", answer_after=None)
    alice, bob = await connected(rig)

    await rig.fake.refer(bob, "carol")
    await rig.until(lambda: any(c.name.startswith("PJSIP/carol") for c in rig.fake.channels.values()))
    await rig.fake.phone_hangup(alice)
    await rig.idle()

    assert rig.fake.notifies[bob] == [100, 503]
    assert progress_states(rig, bob) == ["channel_progress", "channel_unavailable"]
    rig.fake.assert_nothing_leaked()


async def test_transferor_hangs_up_right_after_the_202(rig, caplog):
    rig.web.xml("/refer.xml", REFER_TO_TARGET)
    rig.fake.phone("PJSIP/carol", answer_after=0.03)
    alice, bob = await connected(rig)

    await rig.fake.refer(bob, "1002")
    await rig.fake.phone_hangup(bob)
    await rig.until(lambda: rig.fake.bridged_with(alice) and "PJSIP/carol" in str(rig.fake.channels))

    # Asterisk told Bob's phone 503 itself; Alice's transfer went on undisturbed.
    assert rig.fake.notifies[bob][-1] == 503
    talks_to_1002(rig, alice, "alice")
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    await hang_up_everyone(rig)


async def test_two_refers_at_once_the_second_is_declined(rig):
    rig.web.xml("/refer.xml", REFER_TO_TARGET)
    rig.fake.phone("PJSIP/carol", answer_after=0.02)
    alice, bob = await connected(rig)

    await rig.fake.refer(bob, "1002")
    await rig.fake.refer(alice, "1002")
    await rig.until(lambda: bob not in rig.fake.channels and 603 in rig.fake.notifies.get(alice, []))

    assert len(rig.web.calls("/refer.xml")) == 1
    assert rig.fake.notifies[alice] == [100, 603]  # Asterisk opens with 100 Trying; ours is the 603
    assert rig.fake.notifies[bob] == [100, 200]
    assert alice in rig.fake.channels
    await hang_up_everyone(rig)


@pytest.mark.parametrize("declined", [False, True])
async def test_no_notify_goes_out_sooner_than_50_ms_after_the_refer(rig, declined):
    # Asterisk 22.10.1 publishes the REFER's event before it stores the state its NOTIFY hook reads: a
    # transfer_progress that lands in that gap crashes it.
    rig.web.xml("/refer.xml", REFER_TO_TARGET)
    rig.fake.phone("PJSIP/carol", answer_after=0.0)
    _alice, bob = await connected(rig)
    loop = asyncio.get_running_loop()

    referred_at = loop.time()
    await rig.fake.refer(bob, "1002&x" if declined else "1002")
    await rig.until(lambda: rig.fake.notifies.get(bob))

    assert loop.time() - referred_at >= 0.05
    await hang_up_everyone(rig)


@pytest.mark.parametrize(
    "target",
    ["1002&PJSIP/carol", "carol/x", "1002,30", "a(b)", "carol@evil", "car ol", "10\x0102", "9" * 65],
)
async def test_refer_target_that_could_change_a_dial_string_is_declined(rig, target):
    alice, bob = await connected(rig)

    await rig.fake.refer(bob, target)
    await rig.until(lambda: rig.fake.notifies.get(bob))
    await rig.fake.settle()

    assert rig.fake.notifies[bob] == [100, 603]  # Asterisk opens with 100 Trying; ours is the 603
    assert rig.web.calls("/refer.xml") == []
    assert originated(rig) == ["PJSIP/bob"]
    assert rig.fake.bridged_with(alice) == {bob}
    await hang_up_everyone(rig)


async def test_refer_app_without_a_dial_counts_as_answered_once_it_starts(rig):
    rig.web.xml("/refer.xml", "<Response><Play>sound:goodbye</Play><Hangup/></Response>")
    alice, bob = await connected(rig)

    await rig.fake.refer(bob, "1002")
    await rig.idle()

    assert rig.fake.notifies[bob] == [100, 200]
    assert rig.fake.played[alice] == ["sound:goodbye"]
    rig.fake.assert_nothing_leaked()


async def test_bob_as_transferee_hangs_up_while_the_target_rings(rig):
    rig.web.xml("/refer.xml", "<Response><Dial><Client>carol</Client></Dial></Response>")
    rig.fake.phone("PJSIP/carol", answer_after=None)
    alice, bob = await connected(rig)

    await rig.fake.refer(alice, "carol")
    await rig.until(lambda: any(c.name.startswith("PJSIP/carol") for c in rig.fake.channels.values()))
    await rig.fake.phone_hangup(bob)
    await rig.idle()

    assert rig.fake.notifies[alice] == [100, 503]
    assert progress_states(rig, alice) == ["channel_progress", "channel_unavailable"]
    rig.assert_each_hangup_asked_once()
    rig.fake.assert_nothing_leaked()


async def test_a_dials_refer_url_handles_its_refer_instead_of_the_numbers(rig):
    rig.web.xml(
        "/1001.xml",
        '<Response><Dial referUrl="/dial-refer.xml" referMethod="get"><Client>bob</Client></Dial></Response>',
    )
    rig.web.xml("/dial-refer.xml", "<Response><Dial><Client>carol</Client></Dial></Response>")
    rig.fake.phone("PJSIP/carol", answer_after=0.02)
    alice, bob = await connected(rig)

    await rig.fake.refer(bob, "carol")
    await rig.until(lambda: bob not in rig.fake.channels)

    assert rig.web.calls("/refer.xml") == []  # the number's Refer URL is not asked
    (refer,) = rig.web.calls("/dial-refer.xml")
    assert [m for m, path, _p in rig.web.requests if path == "/dial-refer.xml"] == ["GET"]
    assert (refer["Transferor"], refer["Transferee"], refer["ReferTarget"]) == ("bob", "alice", "carol")
    assert refer["ReferTransferTarget"] == "<sip:carol>"
    assert rig.fake.notifies[bob] == [100, 200]
    assert rig.fake.bridged_with(alice) == {rig.channel_named("PJSIP/carol")}
    await hang_up_everyone(rig)


async def test_a_refer_right_after_the_answer_waits_for_the_bridge_instead_of_being_declined(rig, monkeypatch):
    rig.web.xml("/refer.xml", REFER_TO_TARGET)
    rig.fake.phone("PJSIP/carol", answer_after=0.02)
    slow = rig.fake._add_to_bridge

    async def busy_app(bridge_id: str, channel_id: str) -> None:
        await asyncio.sleep(0.2)  # the app is slow to bridge, as under load
        await slow(bridge_id, channel_id)

    monkeypatch.setattr(rig.fake, "_add_to_bridge", busy_app)
    alice = await rig.call("alice", "1001")
    await rig.until(lambda: any(c.name.startswith("PJSIP/bob") and c.state == "Up" for c in rig.fake.channels.values()))
    bob = rig.channel_named("PJSIP/bob")
    assert not rig.fake.bridged_with(alice)  # Bob answered; the app has not bridged him yet

    await rig.fake.refer(bob, "1002")
    await rig.until(lambda: bob not in rig.fake.channels, timeout=5)

    assert rig.fake.notifies[bob] == [100, 200]
    assert len(rig.web.calls("/refer.xml")) == 1
    await hang_up_everyone(rig)
