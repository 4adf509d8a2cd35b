"""The seed transfer under load on the real Asterisk: 10 calls/s for 3 s, overlapping, all through the app.

Alice's phone places 30 calls to 1001 at 10 per second; Bob's phone answers each and REFERs it to 1002 after
300 ms; 1002's app dials Carol, whose phone answers; Alice hangs up 1.5 s after she was answered, so about 20
calls are up at once. Every call must go the seed way, and Asterisk must hold nothing afterwards.
(scripts/bench-load measures the same flow at higher rates, side by side with Asterisk's own transfer.)
"""

from __future__ import annotations

import pytest

from tests.e2e.harness import Number, Phones, RcmlProcess, Sandbox

pytestmark = pytest.mark.e2e

RATE = 10
CALLS = RATE * 3
TALK_MS = 1500


async def test_seed_flow_at_10_calls_per_second_completes_every_call_and_leaves_nothing(
    sandbox: Sandbox, rcml: RcmlProcess, phones: Phones
):
    rcml.start([Number("1001", "app:dial-bob", "app:refer"), Number("1002", "app:dial-carol")])
    bob = await phones.start("bob", "bob_transferor.xml", calls=CALLS, target="1002", refer_delay_ms=300, hold_ms=1000)
    carol = await phones.start("carol", "uas_answer.xml", calls=CALLS, ring_ms=100)
    alice = await phones.start(
        "alice", "alice_uac.xml", service="1001", calls=CALLS, rate=RATE, limit=CALLS, talk_ms=TALK_MS
    )

    wait = CALLS / RATE + 20
    alice_saw, bob_saw, carol_saw = [await phone.result(wait) for phone in (alice, bob, carol)]

    # sipp exits 0 only when every one of its calls ran its scenario to the end
    saw = (alice_saw, bob_saw, carol_saw)
    assert [phone.returncode for phone in saw] == [0, 0, 0], saw
    # Alice: answered, and still on the call (now with Carol) when she hung up herself
    assert alice_saw.lines.count("final_response=200") == CALLS, alice_saw
    assert alice_saw.lines.count("hangup=local") == CALLS, alice_saw
    # Bob: every REFER accepted, every transfer reported as done (NOTIFY 200), then hung up by Asterisk
    assert bob_saw.lines.count("refer_response=202") == CALLS, bob_saw
    assert bob_saw.lines.count("final_sipfrag=200") == CALLS, bob_saw
    assert bob_saw.lines.count("hangup=remote") == CALLS, bob_saw
    # Carol: answered every transferred call, and was hung up when Alice hung up
    assert carol_saw.lines.count("answered") == CALLS, carol_saw
    assert carol_saw.lines.count("hangup=remote") == CALLS, carol_saw
    assert carol_saw.count("INVITE") == CALLS, carol_saw

    assert sandbox.leftovers(settle=5.0) == []
