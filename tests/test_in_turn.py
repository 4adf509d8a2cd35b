"""``in_turn``: requests Asterisk must carry out in order, in one round trip where the transport keeps the order."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from stasis_app.ari.protocol import in_turn
from stasis_app.ari.rest import AriRest
from stasis_app.errors import AriError, CallGone
from tests.test_ari_events import until


class _Held:
    """A transport that logs each request as it is sent and answers only when the test releases it."""

    def __init__(self, ordered: bool) -> None:
        self.ordered = ordered
        self.sent: list[str] = []
        self.answers: dict[str, asyncio.Future[tuple[int, bytes]]] = {}

    async def request(
        self, method: str, path: str, query: Mapping[str, str] | None = None, body: bytes | None = None
    ) -> tuple[int, bytes]:
        self.sent.append(path)
        self.answers[path] = asyncio.get_running_loop().create_future()
        return await self.answers[path]

    def answer(self, path: str, status: int = 204, body: bytes = b"") -> None:
        self.answers[path].set_result((status, body))

    async def aclose(self) -> None:
        pass


def _answer_and_bridge(held: _Held) -> asyncio.Task[None]:
    """Alice's answer, then Alice and Bob into bridge b1, in turn, over ``held``."""
    ari = AriRest(held, "rcml")
    return asyncio.create_task(
        in_turn(ari, lambda: ari.answer("alice"), lambda: ari.add_to_bridge("b1", "alice", "bob"))
    )


async def test_over_an_ordered_transport_every_request_goes_out_before_any_answer_and_in_order():
    held = _Held(ordered=True)
    task = _answer_and_bridge(held)
    await until(lambda: len(held.sent) == 2)
    assert held.sent == ["/channels/alice/answer", "/bridges/b1/addChannel"]  # the answer not in yet
    held.answer("/bridges/b1/addChannel")
    held.answer("/channels/alice/answer")
    await task


async def test_over_http_each_request_waits_for_the_answer_to_the_one_before():
    held = _Held(ordered=False)
    task = _answer_and_bridge(held)
    await until(lambda: len(held.sent) == 1)
    await asyncio.sleep(0.01)
    assert held.sent == ["/channels/alice/answer"]
    held.answer("/channels/alice/answer")
    await until(lambda: len(held.sent) == 2)
    held.answer("/bridges/b1/addChannel")
    await task


@pytest.mark.parametrize("ordered", [True, False])
async def test_every_step_runs_and_the_first_steps_error_is_raised(ordered: bool):
    held = _Held(ordered=ordered)
    task = _answer_and_bridge(held)
    await until(lambda: "/channels/alice/answer" in held.answers)
    held.answer("/channels/alice/answer", 404, b'{"message":"Channel not found"}')
    await until(lambda: "/bridges/b1/addChannel" in held.answers)
    held.answer("/bridges/b1/addChannel", 500, b'{"message":"Internal Server Error"}')
    with pytest.raises(AriError) as raised:
        await task
    assert isinstance(raised.value, CallGone)  # the answer's, not the later 500
    assert held.sent == ["/channels/alice/answer", "/bridges/b1/addChannel"]
