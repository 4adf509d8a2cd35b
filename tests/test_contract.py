"""The ARI contract (tests/contract.py) against the fake Asterisk; tests/e2e/test_contract_e2e.py runs the same
scripts against the real one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from models.ari import AriEvent
from tests.contract import SCENARIOS, Phone, Runner, Scenario
from tests.fake_asterisk import FakeAsterisk


class _Ignore:
    def on_event(self, event: AriEvent) -> None:
        pass

    async def on_connected(self, reconnect: bool) -> None:
        pass


class FakeSide:
    """The fake Asterisk as a contract runner sees it."""

    def __init__(self, fake: FakeAsterisk) -> None:
        self.fake = fake
        self.transport = fake
        self.app = fake.app

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.fake.event_log

    async def phone(self, phone: Phone) -> None:
        endpoint = f"PJSIP/{phone.name}"
        match phone.behaviour:
            case "answer":
                self.fake.phone(endpoint, answer_after=0.01)
            case "busy":
                self.fake.phone(endpoint, busy=True)
            case "noanswer":
                self.fake.phone(endpoint, answer_after=None)
            case "transferor":
                self.fake.phone(endpoint, answer_after=0.01, ring=False)

    async def refer(self, channel_id: str, target: str) -> None:
        assert await self.fake.refer(channel_id, target) == 202


@pytest.fixture
async def fake() -> AsyncIterator[FakeAsterisk]:
    fake = FakeAsterisk()
    fake.attach(_Ignore())
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
async def test_the_fake_keeps_the_contract(fake: FakeAsterisk, scenario: Scenario):
    await Runner(FakeSide(fake)).play(scenario)
    await fake.settle()
    fake.assert_nothing_leaked()
