"""The ARI contract (tests/contract.py) against the sandbox Asterisk 22.10.1, with sipp phones: the same
scripts tests/test_contract.py runs against the fake."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect

from models.ari import HANDLED_EVENT_TYPES
from models.config import AriSettings
from stasis_app.ari.rest import AriRest
from stasis_app.ari.transport import AsteriskTransport
from tests.contract import SCENARIOS, Phone, Runner, Scenario
from tests.e2e.harness import ARI_AUTH, Phones, Sandbox

pytestmark = pytest.mark.e2e

_SCENARIO_FILES = {
    "answer": "uas_answer.xml",
    "busy": "uas_busy.xml",
    "noanswer": "uas_noanswer.xml",
    "transferor": "bob_transferor.xml",
}


class RealSide:
    """The sandbox Asterisk as a contract runner sees it: REST on our own transport, events on a websocket."""

    app = "rcml"

    def __init__(self, phones: Phones) -> None:
        self.phones = phones
        token = base64.b64encode(":".join(ARI_AUTH).encode()).decode()
        self.auth = {"Authorization": f"Basic {token}"}
        self.transport = AsteriskTransport("127.0.0.1", 8088, headers=self.auth)
        self.events: list[dict[str, Any]] = []

    @contextlib.asynccontextmanager
    async def listening(self) -> AsyncIterator[None]:
        url = f"ws://127.0.0.1:8088/ari/events?app={self.app}&subscribeAll=false"
        async with connect(url, additional_headers=self.auth, proxy=None) as socket:
            reader = asyncio.create_task(self._read(socket))
            settings = AriSettings(url="http://127.0.0.1:8088", username="x", password="y", app=self.app)
            # What the app asks for, plus the Dial events the fake must keep producing as Asterisk does.
            await AriRest(self.transport, settings.app).set_event_filter(HANDLED_EVENT_TYPES)
            try:
                yield
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                await self.transport.aclose()

    async def _read(self, socket: Any) -> None:
        async for message in socket:
            self.events.append(json.loads(message))

    async def phone(self, phone: Phone) -> None:
        variables: dict[str, str | int] = {}
        if phone.behaviour == "answer":
            variables["ring_ms"] = 50
        if phone.behaviour == "transferor":
            variables |= {"target": phone.target, "refer_delay_ms": 300, "hold_ms": 3000}
        await self.phones.start(phone.name, _SCENARIO_FILES[phone.behaviour], **variables)

    async def refer(self, channel_id: str, target: str) -> None:
        pass  # the sipp transferor sends its REFER by itself, refer_delay_ms after answering


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
async def test_asterisk_keeps_the_contract(sandbox: Sandbox, phones: Phones, scenario: Scenario):
    side = RealSide(phones)
    try:
        async with side.listening():
            await Runner(side, timeout=15.0).play(scenario)
    finally:
        left = sandbox.leftovers(settle=3.0)
        if left:
            sandbox.clean_up()
    assert not left, f"left behind in Asterisk: {left}"
