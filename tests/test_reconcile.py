"""Nothing left behind: the reconcile after a restart and a reconnect, the periodic one, and retried deletes."""

from __future__ import annotations

import logging

import pytest

from models.ari import Channel, DialplanCEP
from stasis_app.reconcile import in_app
from tests.rig import Rig

DIAL_BOB = '<Response><Dial timeout="5"><Client>bob</Client></Dial></Response>'
FAST = (0.02, 0.02)  # retry delays for these tests


@pytest.fixture(params=[60.0])
async def rig(tmp_path, request):
    async with Rig(tmp_path, reconcile_interval=request.param) as rig:
        rig.web.xml("/1001.xml", DIAL_BOB)
        rig.fake.phone("PJSIP/bob", answer_after=0.01)
        rig.engine.ari.delays = FAST  # type: ignore[attr-defined]
        yield rig


async def alice_bridged_with_bob(rig: Rig) -> tuple[str, str]:
    alice = await rig.call("alice", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice))
    return alice, rig.channel_named("PJSIP/bob")


async def test_a_restarted_app_hangs_up_the_previous_runs_calls_and_destroys_their_bridges(rig, caplog):
    await alice_bridged_with_bob(rig)
    carol = await rig.call("carol", "1001")  # a second call, up with Bob too
    await rig.until(lambda: rig.fake.bridged_with(carol))

    with caplog.at_level(logging.INFO, logger="stasis_app.reconcile"):
        engine = await rig.restart()
        await rig.fake.settle()

    rig.fake.assert_nothing_leaked()
    assert (engine.legs, engine.bridges, engine.sessions) == ({}, {}, {})
    lines = [r.getMessage() for r in caplog.records if r.name == "stasis_app.reconcile"]
    assert sum("reconcile: hung up PJSIP/" in line for line in lines) == 4, lines
    assert sum("reconcile: destroyed bridge rcml-1001" in line for line in lines) == 2, lines
    assert any(
        line.startswith("reconcile (first connect): 0 missed calls started, 4 channels hung up, 2 bridges")
        for line in lines
    ), lines


async def test_a_call_that_entered_stasis_while_the_socket_was_dead_is_started_after_the_reconnect(rig):
    rig.fake.disconnect()
    alice = await rig.call("alice", "1001")  # its StasisStart is lost
    await rig.fake.settle()
    assert not rig.engine.sessions

    await rig.fake.reconnect()
    await rig.until(lambda: rig.fake.bridged_with(alice))
    assert len(rig.web.calls("/1001.xml")) == 1

    # The StasisStart that was in flight arrives after all: the call is not started twice.
    (late,) = rig.fake.events_of("StasisStart")[:1]
    rig.fake.deliver_late(late)
    await rig.fake.settle()
    assert len(rig.web.calls("/1001.xml")) == 1
    assert len(rig.engine.sessions) == 1

    await rig.fake.phone_hangup(alice)
    await rig.idle()
    rig.fake.assert_nothing_leaked()


async def test_a_failed_hangup_is_retried_until_the_channel_is_gone(rig):
    rig.fake.phone("PJSIP/bob", answer_after=0.01, hangup_after=0.05)
    alice = await rig.call("alice", "1001")
    rig.fake.fail("DELETE", f"/channels/{alice}", times=2)  # the end of the call hangs Alice up: refused twice

    await rig.idle()
    await rig.fake.settle()

    assert rig.fake.hangup_causes[alice] == 16
    deletes = [path for method, path, _p in rig.fake.rest_log if method == "DELETE" and path == f"/channels/{alice}"]
    assert len(deletes) == 3
    rig.fake.assert_nothing_leaked()


async def test_a_failed_bridge_destroy_is_retried(rig):
    alice, _bob = await alice_bridged_with_bob(rig)
    rig.fake.fail("DELETE", "/bridges/")

    await rig.fake.phone_hangup(alice)
    await rig.until(lambda: not rig.fake.bridges)
    await rig.idle()
    assert not rig.engine.bridges
    rig.fake.assert_nothing_leaked()


@pytest.mark.parametrize("rig", [0.05], indirect=True)
async def test_a_delete_that_keeps_failing_is_left_to_the_periodic_reconcile(rig, caplog):
    rig.fake.phone("PJSIP/bob", answer_after=0.01, hangup_after=0.05)
    alice = await rig.call("alice", "1001")
    rig.fake.fail("DELETE", f"/channels/{alice}", times=1 + len(FAST))  # the hangup and each of its retries

    with caplog.at_level(logging.INFO):
        await rig.until(lambda: not rig.engine.sessions)
        await rig.until(lambda: alice not in rig.fake.channels, timeout=3.0)
        await rig.idle()

    assert any(
        "could not delete channel:" in r.getMessage() and "in 3 attempts" in r.getMessage() for r in caplog.records
    )
    assert any(r.getMessage().startswith("reconcile: hung up PJSIP/alice") for r in caplog.records)
    rig.fake.assert_nothing_leaked()


@pytest.mark.parametrize("rig", [0.05], indirect=True)
async def test_the_periodic_reconcile_destroys_our_stray_bridge_after_two_passes_and_leaves_others_alone(rig):
    reconciler = rig.engine.reconciler
    await rig.fake.api.create_bridge("stray", "rcml-1001")
    await rig.fake.api.create_bridge("theirs", "conference-7")
    start = reconciler.passes

    await rig.until(lambda: reconciler.passes == start + 1)
    assert "stray" in rig.fake.bridges, "one sighting is not enough: its StasisStart may be on its way"
    await rig.until(lambda: "stray" not in rig.fake.bridges)
    assert reconciler.passes >= start + 2
    assert "theirs" in rig.fake.bridges
    await rig.fake.api.destroy_bridge("theirs")


def test_our_stasis_app_is_told_by_the_dialplan_location_asterisk_reports():
    # As Asterisk 22.10.1 lists them: an inbound call in Stasis(rcml), a leg we originated once answered, one
    # still being dialed (not in Stasis yet), and channels of other Stasis applications.
    def channel(app_name: str, app_data: str) -> Channel:
        return Channel(id="c", dialplan=DialplanCEP(app_name=app_name, app_data=app_data))

    assert in_app(channel("Stasis", "rcml"), "rcml")
    assert in_app(channel("Stasis", "rcml,dial"), "rcml")
    assert not in_app(channel("AppDial2", "(Outgoing Line)"), "rcml")
    assert not in_app(channel("Stasis", "rcml2"), "rcml")
    assert not in_app(channel("Stasis", "other,rcml"), "rcml")
    assert not in_app(channel("Dial", "PJSIP/rcml"), "rcml")
