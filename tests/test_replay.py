"""The seed flow on the fake Asterisk, event by event, against the stream a real Asterisk 22.10.1 sent.

``tests/captures/seed.jsonl`` is the ``--event-log`` of the e2e seed test (Alice calls 1001 -> app:dial-bob,
Bob REFERs 1002 -> app:refer dials 1002 -> app:dial-carol dials Carol, who answers; Alice hangs up). Here the
real engine runs the same apps on the fake, driven the way the sipp phones behaved, and both streams are
reduced to what the engine acts on: event type, the role of the channel (``alice``, ``bob``, ``carol``,
``Local;1``, ``Local;2``), and the fields that matter (dial status, channel state, Stasis args, hangup cause,
transfer state, playback state). Ids, names and timestamps are ignored.

Each channel's own events come in a fixed order, and that order must match exactly; how the events of different
channels interleave depends on timing (two recaptures of the same flow interleave a Local channel's ``Dial`` and
its partner's ``StasisStart`` differently), so across channels only the causal milestones of a transfer are
compared in order.

The echoes of our own ``transfer_progress`` (``ChannelTransfer`` with a state) are the exception: Asterisk
publishes them from the REFER's SIP thread after it has answered the request, so they may trail the
transferor's ``StasisEnd`` once the app hangs it up. They are compared among themselves, under their own key.

Regenerate the capture with ``RCML_RECAPTURE=1 scripts/test tests/e2e -k seed``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from models.config import NumberConfig
from stasis_app.ari.rest import ENGINE_EVENT_TYPES
from tests.contract import Step, step
from tests.rig import Rig

CAPTURES = Path(__file__).resolve().parent / "captures"
EXAMPLE_APPS = Path(__file__).resolve().parent.parent / "examples" / "apps"


def captured(name: str) -> list[Step]:
    lines = (CAPTURES / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [step(json.loads(line)["event"]) for line in lines]


@pytest.fixture
async def seed_rig(tmp_path):
    shutil.copytree(EXAMPLE_APPS, tmp_path, dirs_exist_ok=True)
    numbers = (
        NumberConfig(number="1001", voice_url="app:dial-bob", refer_url="app:refer"),
        NumberConfig(number="1002", voice_url="app:dial-carol"),
    )
    # The capture was made with 1002 reached through a Local channel.
    async with Rig(tmp_path, numbers=numbers, our_numbers="local-channel") as rig:
        yield rig


async def test_seed_flow_on_the_fake_replays_the_real_event_stream(seed_rig: Rig):
    rig = seed_rig
    # As the sipp phones did: Bob (bob_transferor.xml) answers at once, without 180; Carol (uas_answer.xml)
    # rings about 0.3 s, then answers.
    rig.fake.phone("PJSIP/bob", answer_after=0.01, ring=False)
    rig.fake.phone("PJSIP/carol", answer_after=0.3, ring=True)
    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    bob = rig.channel_named("PJSIP/bob")
    await rig.fake.settle()

    assert await rig.fake.refer(bob, "1002") == 202
    await rig.until(
        lambda: (
            bob not in rig.fake.channels
            and any(rig.fake.name_of(c).startswith("PJSIP/carol") for c in rig.fake.channels)
        )
    )
    await rig.fake.settle()
    await rig.fake.phone_hangup(alice)
    await rig.idle()
    rig.fake.assert_nothing_leaked()

    # The capture holds what the app's event filter lets through; the fake's log holds every event it raised.
    fake = [step(event) for event in rig.fake.event_log if event["type"] in ENGINE_EVENT_TYPES]
    real = captured("seed")
    assert by_channel(fake) == by_channel(real)
    assert milestones(fake) == milestones(real)


def by_channel(steps: list[Step]) -> dict[str, list[Step]]:
    """Each channel role's events in order; playbacks and bridges under their own keys."""
    grouped: dict[str, list[Step]] = {}
    for one in steps:
        key = {"PlaybackStarted": "playback", "PlaybackFinished": "playback", "BridgeDestroyed": "bridges"}.get(one[0])
        if one[0] == "ChannelTransfer" and one[2] != "None":
            key = "echoes"
        key = key or one[1]
        grouped.setdefault(key, []).append(one)
    return {key: _ringing_first(seq) for key, seq in grouped.items()}


def _ringing_first(seq: list[Step]) -> list[Step]:
    """Asterisk raises a leg's ``Dial RINGING`` and its ``ChannelStateChange Ringing`` from two threads: their
    order differs from run to run, so the pair is compared in one fixed order."""
    out = list(seq)
    for index in range(len(out) - 1):
        first, second = out[index], out[index + 1]
        if (first[0], *first[2:]) == ("Dial", "RINGING") and (second[0], *second[2:]) == (
            "ChannelStateChange",
            "Ringing",
        ):
            out[index], out[index + 1] = second, first
    return out


MILESTONES = {
    ("StasisStart", "alice", "Ring", ""),
    ("StasisStart", "bob", "Up", "dial"),
    ("ChannelTransfer", "bob", "None"),
    ("ChannelTransfer", "bob", "channel_progress"),
    ("StasisStart", "Local;2", "Ring", ""),
    ("StasisStart", "carol", "Up", "dial"),
    ("StasisStart", "Local;1", "Up", "dial"),
    ("StasisEnd", "bob"),
    ("StasisEnd", "alice"),
}


def milestones(steps: list[Step]) -> list[Step]:
    """The steps whose order is causal: the call, the REFER, its first NOTIFY, the target answering, the end."""
    return [one for one in steps if one in MILESTONES]
