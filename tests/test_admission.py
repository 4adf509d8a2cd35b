"""Admission control on the fake Asterisk: beyond the ceiling a new call is refused (503) before any webhook,
counted and logged at most once a second; the calls already up are not touched."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

import pytest

from models.config import LimitSettings
from tests.rig import Rig

DIAL_BOB = "<Response><Dial><Client>bob</Client></Dial></Response>"


@pytest.fixture
async def rig(tmp_path):
    async with Rig(tmp_path) as rig:
        yield rig


async def test_calls_beyond_max_calls_are_refused_before_any_webhook(rig, caplog):
    rig.engine.admission.limits = LimitSettings(max_calls=2)
    rig.web.xml("/1001.xml", DIAL_BOB)
    rig.fake.phone("PJSIP/bob", answer_after=0.01)

    up = [await rig.call("alice", "1001") for _ in range(2)]
    await rig.until(lambda: all(rig.fake.bridged_with(alice) for alice in up))
    refused = [await rig.call("eve", "1001") for _ in range(10)]
    await rig.until(lambda: all(alice not in rig.fake.channels for alice in refused))

    assert [rig.fake.hangup_causes[alice] for alice in refused] == [34] * 10  # 503 to each phone
    assert len(rig.web.calls("/1001.xml")) == 2  # no webhook for a refused call
    assert rig.engine.admission.refused == 10
    overload = [r for r in caplog.records if "overload" in r.getMessage()]
    assert len(overload) == 1  # at most one line a second
    assert "refused 1 new call" in overload[0].getMessage()
    assert all(rig.fake.bridged_with(alice) for alice in up)  # the calls up are untouched

    for alice in up:
        await rig.fake.phone_hangup(alice)
    await rig.idle()
    again = await rig.call("alice", "1001")  # room again: taken
    await rig.until(lambda: rig.fake.bridged_with(again))
    await rig.fake.phone_hangup(again)
    await rig.idle()
    assert len(rig.web.calls("/1001.xml")) == 3
    rig.fake.assert_nothing_leaked()


async def test_a_late_event_loop_refuses_new_calls_until_it_recovers(rig, caplog):
    caplog.set_level(logging.WARNING)
    rig.web.xml("/1001.xml", "<Response><Hangup/></Response>")
    await asyncio.sleep(0.06)  # the probe is running
    time.sleep(0.4)  # noqa: ASYNC251 - the point: something holds the loop 400 ms
    await rig.until(lambda: rig.engine.admission.lag_ms > 250)  # the overdue probe read it

    first = await rig.call("alice", "1001")
    await rig.until(lambda: first not in rig.fake.channels)
    assert rig.fake.hangup_causes[first] == 34
    assert "event loop" in caplog.text

    await rig.until(lambda: rig.engine.admission.lag_ms < 250, timeout=3)
    second = await rig.call("alice", "1001")
    await rig.until(lambda: len(rig.web.calls("/1001.xml")) == 1)
    await rig.until(lambda: second not in rig.fake.channels)
    await rig.idle()
    rig.fake.assert_nothing_leaked()


async def test_a_call_the_app_gets_to_late_is_refused_while_it_catches_up(rig, caplog):
    rig.engine.admission.limits = LimitSettings(max_event_age_ms=500)
    rig.web.xml("/1001.xml", "<Response><Hangup/></Response>")
    late = datetime.now(UTC) - timedelta(seconds=2)
    stamp = late.strftime("%Y-%m-%dT%H:%M:%S.") + f"{late.microsecond // 1000:03d}+0000"

    refused = await rig.fake.call_in("alice", "1001", timestamp=stamp)
    on_time = await rig.call("alice", "1001")
    await rig.idle()

    assert rig.fake.hangup_causes[refused] == 34
    assert rig.fake.hangup_causes[on_time] != 34
    assert len(rig.web.calls("/1001.xml")) == 1
    assert "behind Asterisk" in caplog.text
    rig.fake.assert_nothing_leaked()


async def test_while_asterisk_answers_slowly_new_calls_are_refused(rig, caplog):
    rig.engine.admission.limits = LimitSettings(max_answer_ms=100)
    rig.web.xml("/1001.xml", "<Response><Hangup/></Response>")
    rig.fake.answer_delay = 0.2  # Asterisk is saturated: every request waits 200 ms for its answer
    first = [await rig.call("alice", "1001") for _ in range(15)]  # taken: Asterisk answered in time so far
    await rig.until(lambda: not any(alice in rig.fake.channels for alice in first))
    await rig.until(lambda: rig.engine.ari.answer_ms() > 100)  # their hangups' answers took 200 ms each

    refused = await rig.call("alice", "1001")
    await rig.until(lambda: refused not in rig.fake.channels)
    assert rig.fake.hangup_causes[refused] == 34
    assert "takes" in caplog.text
    assert len(rig.web.calls("/1001.xml")) == 15

    # Asterisk catches up: fast answers (the refusals' own hangups among them) bring the average down again.
    rig.fake.answer_delay = 0.0
    for _ in range(30):
        again = await rig.call("alice", "1001")
        await rig.until(lambda: again not in rig.fake.channels)  # noqa: B023 - awaited at once
        if rig.fake.hangup_causes[again] != 34:
            break
    assert rig.fake.hangup_causes[again] != 34
    assert len(rig.web.calls("/1001.xml")) == 16
    await rig.idle()
    rig.fake.assert_nothing_leaked()
