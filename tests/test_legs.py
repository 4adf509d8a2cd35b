"""A leg's one state machine."""

from __future__ import annotations

import pytest

from models.ari import Channel
from stasis_app.legs import CallLeg, LegRole, LegState, Party


def leg(role=LegRole.INBOUND, state=LegState.INBOUND):
    return CallLeg(
        Channel(id="c1", name="PJSIP/alice-1"), role, Party(from_="alice", to="1001", label="bob"), state=state
    )


async def test_answer_resolves_up_and_reports_in_progress():
    alice = leg()
    assert alice.call_status() == "ringing"
    alice.set_state(LegState.UP, "answered")
    assert alice.up.done()
    assert alice.answered_at is not None
    assert alice.call_status() == "in-progress"


async def test_gone_is_final_and_carries_the_cause():
    bob = leg(LegRole.DIALED, LegState.CALLING)
    bob.set_state(LegState.GONE, "busy", cause=17)
    assert await bob.ended == 17
    assert bob.up.cancelled()  # nobody waits for an answer that cannot come
    bob.set_state(LegState.UP, "too late")
    assert bob.state is LegState.GONE
    assert bob.call_status() == "canceled"


async def test_completed_after_an_answer():
    bob = leg(LegRole.DIALED, LegState.RINGING)
    bob.set_state(LegState.UP, "answered")
    bob.set_state(LegState.GONE, "bye")
    assert bob.cause == 16
    assert bob.call_status() == "completed"


@pytest.mark.parametrize(("role", "label"), [(LegRole.INBOUND, "alice"), (LegRole.DIALED, "bob")])
async def test_label_is_the_from_of_a_caller_and_the_dialed_name_of_a_callee(role, label):
    assert leg(role).label == label


async def test_call_sids_are_unique_restcomm_style():
    first, second = leg(), leg()
    assert first.call_sid != second.call_sid
    assert first.call_sid.startswith("CA")
    assert len(first.call_sid) == 34
