"""The README's IVR example on the real Asterisk: Gather over a Say, the key chooses, a Say, then a Dial."""

from __future__ import annotations

import pytest

from tests.e2e.harness import Number, Phones, RcmlProcess, Sandbox

pytestmark = pytest.mark.e2e


async def test_the_example_ivr_connects_alice_to_bob_when_she_presses_1(
    sandbox: Sandbox, rcml: RcmlProcess, phones: Phones
):
    rcml.start([Number("1003", "app:ivr"), Number("1001", "app:dial-bob")])  # as examples/config.toml has them
    bob = await phones.start("bob", "uas_answer.xml", ring_ms=100)
    # Alice types 1, 2, # from 1.5 s on (the first key, 1, is the choice) and hangs up 8 s after the answer.
    alice = await phones.start(
        "alice", "alice_media.xml", service="1003", pre_ms=1500, speak=0, speak_ms=0, keys=1, talk_ms=8000
    )
    alice_saw, bob_saw = await alice.result(30), await bob.result(30)

    assert alice_saw.value("final_response") == "200", alice_saw
    assert bob_saw.lines[0] == "answered", bob_saw
    events = rcml.events()
    spoken = [e["playback"] for e in events if e["type"] == "PlaybackFinished"]
    assert [p["state"] for p in spoken if "/tts/" in p["media_uri"]][:2] == ["done", "done"], spoken
    bridged = [
        e for e in events if e["type"] == "ChannelEnteredBridge" and e["channel"]["name"].startswith("PJSIP/bob")
    ]
    assert bridged, "Bob was never bridged with Alice"
