"""Faults under live calls on the real Asterisk: the app's websocket cut, the app killed and restarted.

Alice's phone places CALLS calls to 1001, whose app dials Bob; Bob's phone answers each; then:

- the app's TCP connections to Asterisk are aborted (``ss -K``) CUTS times while every call is bridged: the
  calls stay bridged, the app reconnects each time, and Alice's hangups still end every call cleanly;
- the app is SIGKILLed while every call is bridged and started again: the new process's first reconcile hangs
  up what the old one left (both phones get a BYE) and destroys its bridges.

Each asserts: the phones' scenarios ran to the end (nothing left ringing), nothing is left in Asterisk, the app
logged no traceback and, on SIGTERM, that its engine tracked nothing any more.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.harness import Number, Phones, RcmlProcess, Sandbox, eventually

pytestmark = pytest.mark.e2e

CALLS = 4
CUTS = 3
DIAL_BOB = '<Response><Dial timeout="10"><Client>bob</Client></Dial></Response>'


def pairs(sandbox: Sandbox) -> list[list[str]]:
    """Who is in which bridge, sorted: ``[["alice", "bob"], ...]``."""
    return sorted(sorted(names) for names in sandbox.names_by_bridge())


def all_bridged(sandbox: Sandbox) -> bool:
    return pairs(sandbox) == [["alice", "bob"]] * CALLS


async def bridged_calls(phones: Phones, sandbox: Sandbox, talk_ms: int):
    bob = await phones.start("bob", "uas_answer.xml", calls=CALLS, ring_ms=100)
    alice = await phones.start(
        "alice", "alice_uac.xml", service="1001", calls=CALLS, rate=10, limit=CALLS, talk_ms=talk_ms
    )
    await eventually(lambda: all_bridged(sandbox), 10, f"{CALLS} calls bridged")
    return alice, bob


def assert_engine_empty_at_stop(rcml: RcmlProcess) -> str:
    status = rcml.stop()
    output = rcml.log()
    assert status == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    stops = [line for line in output.splitlines() if "stopping: " in line]
    assert stops, output[-3000:]
    assert stops[-1].endswith("stopping: 0 calls, 0 legs, 0 bridges tracked"), stops
    return output


async def test_websocket_cut_while_calls_are_bridged_keeps_them_and_they_end_cleanly(
    sandbox: Sandbox, rcml: RcmlProcess, phones: Phones
):
    rcml.start([Number("1001", "app:dial-bob")], apps={"dial-bob": DIAL_BOB})
    alice, bob = await bridged_calls(phones, sandbox, talk_ms=3000 + CUTS * 2500)

    for cut in range(1, CUTS + 1):
        assert rcml.cut_ari() >= 1
        await eventually(lambda n=cut: rcml.log().count("event stream back") >= n, 15, f"reconnect {cut}")
        assert all_bridged(sandbox), pairs(sandbox)
        await asyncio.sleep(0.3)

    alice_saw, bob_saw = await alice.result(30), await bob.result(30)
    assert (alice_saw.returncode, bob_saw.returncode) == (0, 0), (alice_saw, bob_saw)
    assert alice_saw.lines.count("hangup=local") == CALLS, alice_saw  # every call lasted until Alice hung up
    assert bob_saw.lines.count("hangup=remote") == CALLS, bob_saw  # and the app hung Bob up after her
    assert sandbox.leftovers(settle=5.0) == []
    output = assert_engine_empty_at_stop(rcml)
    assert "reconcile (reconnect)" not in output  # nothing was left to clean after the cuts


async def test_app_killed_under_bridged_calls_is_cleaned_up_by_the_next_run(
    sandbox: Sandbox, rcml: RcmlProcess, phones: Phones
):
    numbers = [Number("1001", "app:dial-bob")]
    rcml.start(numbers, apps={"dial-bob": DIAL_BOB})
    alice, bob = await bridged_calls(phones, sandbox, talk_ms=30000)

    rcml.kill()
    await asyncio.sleep(0.5)
    assert all_bridged(sandbox), "Asterisk keeps the calls of a dead app"
    rcml.start(numbers, apps={"dial-bob": DIAL_BOB})

    alice_saw, bob_saw = await alice.result(20), await bob.result(20)
    assert (alice_saw.returncode, bob_saw.returncode) == (0, 0), (alice_saw, bob_saw)
    assert alice_saw.lines.count("hangup=remote") == CALLS, alice_saw
    assert bob_saw.lines.count("hangup=remote") == CALLS, bob_saw
    assert sandbox.leftovers(settle=5.0) == []
    output = assert_engine_empty_at_stop(rcml)
    summary = f"reconcile (first connect): 0 missed calls started, {2 * CALLS} channels hung up, {CALLS} bridges"
    assert summary in output, output[-3000:]
