"""How REST reaches the real Asterisk 22.10.1: over the events websocket by default, over HTTP when asked.

The seed transfer is the workload: some twenty REST calls (answer, originate, bridges, transfer_progress...) and
the resync and event filter at connect. What the app holds open to Asterisk's HTTP port right after the call
tells which transport carried them: the websocket alone, or the websocket plus the kept-alive HTTP connections
(idle ones live 5 s) its last requests used.
"""

from __future__ import annotations

import pytest

from tests.e2e.harness import Number, Phones, RcmlProcess, Sandbox, WebApp
from tests.e2e.test_transfer_e2e import assert_seed_outcome, transferred_to_carol

pytestmark = pytest.mark.e2e

SEED = [Number("1001", "app:dial-bob", "app:refer"), Number("1002", "app:dial-carol")]


@pytest.mark.parametrize("rest", ["auto", "http"])
async def test_the_seed_transfer_with_rest_over_the_websocket_or_http(
    sandbox: Sandbox, rcml: RcmlProcess, phones: Phones, web: WebApp, rest: str
):
    rcml.start(SEED, ari_rest=rest)
    alice, bob, carol = await transferred_to_carol(sandbox, phones, rcml, "bob_transferor.xml", "1002")
    connections = rcml.ari_connections()

    assert_seed_outcome(alice, bob, carol)
    log = rcml.log()
    if rest == "auto":
        assert "ARI REST goes over the events websocket" in log, log[-2000:]
        # Every request of the call went over the one socket the events came on: nothing else was opened.
        assert connections == 1
    else:
        assert "ARI REST goes over" not in log
        # The websocket, and the kept-alive connection(s) the requests just used.
        assert connections >= 2
